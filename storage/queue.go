package storage

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Entry is one message read from a session's offline queue.
type Entry struct {
	// Seq is the entry's position in the session's queue: strictly
	// increasing in enqueue order, never reused while the queue exists.
	Seq uint64
	// PacketID is the packet ID the message was last sent with (MarkSent),
	// or 0 if it was never sent: a non-zero PacketID means "resend with DUP".
	PacketID uint16
	// Message is the stored message.
	Message Message
	// Size is the entry's size as the queue counts it, for AckEntriesAsync.
	Size int64
}

// headItem finds the oldest entry of a queue as of the staged writes.
// Point lookups from the head bound cover the usual in-order case; after
// a few misses (holes left by out-of-order acks) it falls back to one
// iterator seek (a scan for a memory queue).
func (b *batch) headItem(st *qstate) (entryRef, uint64, bool, error) {
	for seq := st.work.head; seq < st.work.next && seq < st.work.head+4; seq++ {
		e, ok, err := b.entry(st, seq)
		if err != nil || ok {
			return e, seq, ok, err
		}
	}
	if st.mem != nil {
		seq, v, ok := st.mem.first(st.work.head, st.work.next)
		return entryRef{val: v}, seq, ok, nil
	}
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: sidPrefix(famQueue, st.id, 0)})
	defer it.Close()
	it.Seek(queueKey(st.id, st.work.head))
	if it.Valid() {
		if seq := seqFromKey(it.Item().Key()); seq < st.work.next {
			return entryRef{item: it.Item()}, seq, true, nil
		}
	}
	return entryRef{}, 0, false, nil
}

// dropHead removes the oldest entry; found is false when the queue is
// empty (the counters are then reset, healing any drift).
func (b *batch) dropHead(st *qstate) (bool, error) {
	e, seq, found, err := b.headItem(st)
	if err != nil {
		return false, err
	}
	if !found {
		if st.work.count != 0 {
			b.s.log.Warn().Str("client_id", st.id).Uint64("count", st.work.count).Msg("queue counters drifted: reset")
		}
		st.work.count, st.work.bytes, st.work.head = 0, 0, st.work.next
		return false, nil
	}
	return true, b.removeEntry(st, seq, e.size())
}

// dropAged removes head entries older than MaxAge (at most 64 per call, to
// bound the work one Enqueue does).
func (b *batch) dropAged(st *qstate) (int, error) {
	cut := b.now.Add(-b.s.opts.Queue.MaxAge).UnixNano()
	n := 0
	for ; n < 64 && st.work.count > 0; n++ {
		e, seq, found, err := b.headItem(st)
		if err != nil || !found {
			return n, err
		}
		var created int64
		if err := e.value(func(v []byte) error {
			var err error
			created, _, err = peekTimes(v)
			return err
		}); err != nil && !errors.Is(err, ErrCorrupt) {
			return n, err
		}
		if created > cut {
			return n, nil
		}
		if err := b.removeEntry(st, seq, e.size()); err != nil {
			return n, err
		}
	}
	return n, nil
}

// removeEntry deletes queue entry seq, its inflight marker and its packet
// ID mapping, and updates the counters.
func (b *batch) removeEntry(st *qstate, seq uint64, size int64) error {
	var item *badger.Item
	err := badger.ErrKeyNotFound
	switch {
	case st.mem != nil:
		b.setMem(st.mem, seq, nil) // no inflight markers in memory
	case !st.work.markers: // never MarkSent, or volatile (those have none)
		b.del(queueKey(st.id, seq))
	default:
		b.del(queueKey(st.id, seq))
		item, err = b.get(inflightKey(st.id, seq))
	}
	switch {
	case err == nil:
		b.del(inflightKey(st.id, seq))
		var pid uint16
		if err := item.Value(func(v []byte) error { pid, err = decodeInflight(v); return err }); err != nil {
			return err
		}
		if err := b.delPacketIf(st.id, pid, seq); err != nil {
			return err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	if st.work.count > 0 {
		st.work.count--
	}
	// ValueSize is approximate for values in the value log; clamp, and
	// reset on empty, so the byte count cannot drift for good.
	st.work.bytes = max(st.work.bytes-size, 0)
	if st.work.count == 0 {
		st.work.bytes = 0
		st.work.markers = false // each entry's marker went with it
		st.work.head = st.work.next
		st.work.dense = true
	} else if seq == st.work.head {
		st.work.head = seq + 1
	} else {
		st.work.dense = false // a gap above the head
	}
	return nil
}

// delPacketIf deletes the packet ID mapping pid if it points at seq.
func (b *batch) delPacketIf(id string, pid uint16, seq uint64) error {
	item, err := b.get(packetKey(id, pid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var mapped uint64
	if err := item.Value(func(v []byte) error { mapped, err = decodeSeq(v); return err }); err != nil {
		return err
	}
	if mapped == seq {
		b.del(packetKey(id, pid))
	}
	return nil
}

func decodeSeq(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: packet mapping", ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

func encodeInflight(pid uint16, sentAt int64) []byte {
	return binary.AppendVarint(binary.BigEndian.AppendUint16(nil, pid), sentAt)
}

func decodeInflight(v []byte) (uint16, error) {
	if len(v) < 2 {
		return 0, fmt.Errorf("%w: inflight marker", ErrCorrupt)
	}
	return binary.BigEndian.Uint16(v), nil
}

// Ack removes the listed entries (delivered and acknowledged) from a
// session's queue, with their inflight markers. Unknown seqs are ignored,
// so a repeated Ack is harmless. It returns once the removal is durable.
func (s *Store) Ack(ctx context.Context, session string, seqs ...uint64) error {
	w := make(waiter, 1)
	if err := s.AckAsync(session, seqs, func(err error) { w <- err }); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

// orNoop lets callers of the Async methods pass a nil done when they do
// not need the outcome.
func orNoop(done func(error)) func(error) {
	if done == nil {
		return func(error) {}
	}
	return done
}

// AckAsync is Ack without waiting; done follows EnqueueAsync's rules (nil
// when the outcome is not needed).
func (s *Store) AckAsync(session string, seqs []uint64, done func(error)) error {
	refs := make([]AckRef, len(seqs))
	for i, seq := range seqs {
		refs[i].Seq = seq
	}
	return s.AckEntriesAsync(session, refs, done)
}

// AckRef names an entry to remove: its Seq and its Size as Read gave it
// (Entry.Size; 0 if not known).
type AckRef struct {
	Seq  uint64
	Size int64
}

// AckEntriesAsync is AckAsync for entries whose sizes are known: in a
// queue with no gap between its head and its end (the usual case: entries
// are removed in order) they are removed without looking each one up,
// which was about a quarter of the store's work in a drain.
func (s *Store) AckEntriesAsync(session string, refs []AckRef, done func(error)) error {
	done = orNoop(done)
	if err := checkSID(session); err != nil {
		return err
	}
	refs = slices.Clone(refs)
	slices.SortFunc(refs, func(a, b AckRef) int { return cmp.Compare(a.Seq, b.Seq) })
	refs = slices.CompactFunc(refs, func(a, b AckRef) bool { return a.Seq == b.Seq })
	return s.submit(&ackOp{s: s, id: session, refs: refs, done: done})
}

type ackOp struct {
	s     *Store
	id    string
	refs  []AckRef
	done  func(error)
	acked int
}

func (o *ackOp) apply(b *batch) error {
	o.acked = 0
	st, err := b.queue(o.id)
	if err != nil {
		return err
	}
	for _, r := range o.refs {
		seq := r.Seq
		if seq < st.work.head || seq >= st.work.next {
			continue
		}
		if st.work.dense && r.Size > 0 && st.mem == nil {
			// Every seq in [head, next) is present: no lookup.
			if err := b.removeEntry(st, seq, r.Size); err != nil {
				return err
			}
			o.acked++
			continue
		}
		e, ok, err := b.entry(st, seq)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := b.removeEntry(st, seq, e.size()); err != nil {
			return err
		}
		o.acked++
	}
	return nil
}

func (o *ackOp) finish(err error) {
	if err == nil {
		o.s.stats.Acked.Add(uint64(o.acked))
	}
	o.done(err)
}

// MarkSent records that entry seq of a session was sent with packetID, so
// that after a disconnect (or a restart) it is resent with DUP and the
// same packet ID, and a PUBACK carrying packetID maps back to the entry
// (AckPacket, LookupPacket). A packet ID still mapped to another entry of
// the session is moved. It returns ErrNotFound if the entry is gone.
func (s *Store) MarkSent(ctx context.Context, session string, seq uint64, packetID uint16) error {
	w := make(waiter, 1)
	if err := s.MarkSentAsync(session, seq, packetID, func(err error) { w <- err }); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

// MarkSentAsync is MarkSent without waiting; done follows EnqueueAsync's
// rules.
func (s *Store) MarkSentAsync(session string, seq uint64, packetID uint16, done func(error)) error {
	done = orNoop(done)
	if err := checkSID(session); err != nil {
		return err
	}
	if packetID == 0 {
		return fmt.Errorf("%w: packet id 0", ErrInvalid)
	}
	return s.submit(&markOp{s: s, id: session, seq: seq, pid: packetID, done: done})
}

type markOp struct {
	s    *Store
	id   string
	seq  uint64
	pid  uint16
	done func(error)
}

func (o *markOp) apply(b *batch) error {
	if _, err := b.get(queueKey(o.id, o.seq)); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: queue entry %d of %q", ErrNotFound, o.seq, o.id)
		}
		return err
	}
	// The packet ID may still point at an older entry (IDs are reused
	// after an ack): that entry is no longer inflight under it.
	if item, err := b.get(packetKey(o.id, o.pid)); err == nil {
		var old uint64
		if err := item.Value(func(v []byte) error { old, err = decodeSeq(v); return err }); err != nil {
			return err
		}
		if old != o.seq {
			b.del(inflightKey(o.id, old))
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	// The entry may have been sent before with another packet ID.
	if item, err := b.get(inflightKey(o.id, o.seq)); err == nil {
		var old uint16
		if err := item.Value(func(v []byte) error { old, err = decodeInflight(v); return err }); err != nil {
			return err
		}
		if old != o.pid {
			if err := b.delPacketIf(o.id, old, o.seq); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	st, err := b.queue(o.id)
	if err != nil {
		return err
	}
	st.work.markers = true
	b.set(inflightKey(o.id, o.seq), encodeInflight(o.pid, b.now.UnixNano()))
	b.set(packetKey(o.id, o.pid), binary.BigEndian.AppendUint64(nil, o.seq))
	return nil
}

func (o *markOp) finish(err error) { o.done(err) }

// AckPacket removes the entry that was sent with packetID (MarkSent) and
// returns it, so the caller can emit a delivered receipt for it; the
// mapping survives restarts. It returns ErrNotFound for an unknown packet
// ID.
func (s *Store) AckPacket(ctx context.Context, session string, packetID uint16) (Entry, error) {
	if err := checkSID(session); err != nil {
		return Entry{}, err
	}
	w := make(waiter, 1)
	o := &ackPacketOp{s: s, id: session, pid: packetID, done: func(err error) { w <- err }}
	if err := s.submit(o); err != nil {
		return Entry{}, err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil {
		return Entry{}, err
	}
	return o.entry, nil
}

type ackPacketOp struct {
	s     *Store
	id    string
	pid   uint16
	done  func(error)
	entry Entry
	gone  bool
}

func (o *ackPacketOp) apply(b *batch) error {
	o.entry, o.gone = Entry{PacketID: o.pid}, false
	item, err := b.get(packetKey(o.id, o.pid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: packet id %d of %q", ErrNotFound, o.pid, o.id)
	}
	if err != nil {
		return err
	}
	if err := item.Value(func(v []byte) error { o.entry.Seq, err = decodeSeq(v); return err }); err != nil {
		return err
	}
	st, err := b.queue(o.id)
	if err != nil {
		return err
	}
	qi, err := b.get(queueKey(o.id, o.entry.Seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		// A stale mapping: clean it and report the entry as gone.
		b.del(packetKey(o.id, o.pid))
		b.del(inflightKey(o.id, o.entry.Seq))
		o.gone = true
		return nil
	}
	if err != nil {
		return err
	}
	if err := qi.Value(o.entry.Message.UnmarshalBinary); err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	return b.removeEntry(st, o.entry.Seq, qi.ValueSize())
}

func (o *ackPacketOp) finish(err error) {
	if err == nil && o.gone {
		err = fmt.Errorf("%w: entry %d of %q", ErrNotFound, o.entry.Seq, o.id)
	} else if err == nil {
		o.s.stats.Acked.Add(1)
	}
	o.done(err)
}

// LookupPacket returns the entry that was sent with packetID without
// removing it (ErrNotFound if none).
func (s *Store) LookupPacket(session string, packetID uint16) (Entry, error) {
	if err := checkSID(session); err != nil {
		return Entry{}, err
	}
	e := Entry{PacketID: packetID}
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(packetKey(session, packetID))
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { e.Seq, err = decodeSeq(v); return err }); err != nil {
			return err
		}
		if c, err := s.published(session); err != nil {
			return err
		} else if e.Seq >= c.next {
			return badger.ErrKeyNotFound
		}
		qi, err := txn.Get(queueKey(session, e.Seq))
		if err != nil {
			return err
		}
		return qi.Value(e.Message.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, fmt.Errorf("%w: packet id %d of %q", ErrNotFound, packetID, session)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("storage: lookup packet %d of %q: %w", packetID, session, err)
	}
	return e, nil
}

// Len returns the number of entries in a session's queue, as of the last
// durable commit (entries found expired but not yet deleted included).
func (s *Store) Len(session string) (int, error) {
	if err := checkSID(session); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	c, err := s.published(session)
	return int(c.count), err
}

// Bytes returns the encoded size of a session's queue (approximate for
// messages above ValueThreshold).
func (s *Store) Bytes(session string) (int64, error) {
	if err := checkSID(session); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	c, err := s.published(session)
	return c.bytes, err
}

// LastSeq returns the committed watermark of a session's queue: every
// entry with Seq <= LastSeq is durable, and no higher entry is readable.
func (s *Store) LastSeq(session string) (uint64, error) {
	if err := checkSID(session); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	c, err := s.published(session)
	return c.next - 1, err
}
