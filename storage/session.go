package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// NeverExpire is the MQTT 5 session expiry interval meaning "never".
const NeverExpire = 0xFFFFFFFF

// Subscription is one subscription of a session, with its MQTT 5 options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	// RetainHandling is 0 (send retained on subscribe), 1 (only for a new
	// subscription) or 2 (never).
	RetainHandling byte
	// Identifier is the subscription identifier (0: none).
	Identifier uint32
}

// Session is the durable part of an MQTT session. ClientID is its key.
type Session struct {
	ClientID string
	User     string
	// ProtocolVersion is 3 (3.1), 4 (3.1.1) or 5.
	ProtocolVersion byte
	// Clean is true for a clean (non-persistent) session.
	Clean bool
	// ExpiryInterval is the session expiry interval in seconds;
	// NeverExpire means never.
	ExpiryInterval uint32
	// DisconnectedAt is the disconnect time in unix nanoseconds, 0 while
	// connected.
	DisconnectedAt int64
	Subscriptions  []Subscription
}

// ExpiredAt reports whether the session has expired at now: it is
// disconnected and its expiry interval has elapsed since.
func (ss *Session) ExpiredAt(now time.Time) bool {
	if ss.DisconnectedAt == 0 || ss.ExpiryInterval == NeverExpire {
		return false
	}
	return ss.DisconnectedAt+int64(ss.ExpiryInterval)*int64(time.Second) <= now.UnixNano()
}

const sessionVersion = 1

const (
	sessFlagClean      = 1
	subFlagNoLocal     = 1
	subFlagRAP         = 2
	subFlagRHShift     = 2
	subFlagKnown       = 0x0f
	sessFlagKnown      = sessFlagClean
	subMinEncodedBytes = 4
)

// MarshalBinary encodes the session in a versioned binary format.
func (ss *Session) MarshalBinary() ([]byte, error) {
	e := enc{b: make([]byte, 0, 32+len(ss.ClientID)+len(ss.User)+len(ss.Subscriptions)*24)}
	e.byte(sessionVersion)
	var flags byte
	if ss.Clean {
		flags |= sessFlagClean
	}
	e.byte(flags)
	e.byte(ss.ProtocolVersion)
	e.uvarint(uint64(ss.ExpiryInterval))
	e.varint(ss.DisconnectedAt)
	e.str(ss.ClientID)
	e.str(ss.User)
	e.uvarint(uint64(len(ss.Subscriptions)))
	for _, sub := range ss.Subscriptions {
		if sub.QoS > 2 || sub.RetainHandling > 2 {
			return nil, fmt.Errorf("%w: subscription %q qos %d retain handling %d", ErrInvalid, sub.Filter, sub.QoS, sub.RetainHandling)
		}
		f := sub.RetainHandling << subFlagRHShift
		if sub.NoLocal {
			f |= subFlagNoLocal
		}
		if sub.RetainAsPublished {
			f |= subFlagRAP
		}
		e.str(sub.Filter)
		e.byte(sub.QoS)
		e.byte(f)
		e.uvarint(uint64(sub.Identifier))
	}
	return e.b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; it never panics and
// returns an error wrapping ErrCorrupt on malformed input.
func (ss *Session) UnmarshalBinary(b []byte) error {
	d := dec{b: b}
	if v := d.byte("version"); d.err == nil && v != sessionVersion {
		return fmt.Errorf("%w: session version %d", ErrUnsupportedVersion, v)
	}
	var out Session
	flags := d.byte("flags")
	if flags&^sessFlagKnown != 0 {
		d.fail("session flags")
	}
	out.Clean = flags&sessFlagClean != 0
	out.ProtocolVersion = d.byte("protocol version")
	exp := d.uvarint("expiry interval")
	if exp > NeverExpire {
		d.fail("expiry interval")
	}
	out.ExpiryInterval = uint32(exp)
	out.DisconnectedAt = d.varint("disconnected at")
	out.ClientID = d.str("client id")
	out.User = d.str("user")
	if n := d.count("subscription count", subMinEncodedBytes); n > 0 {
		out.Subscriptions = make([]Subscription, n)
		for i := range out.Subscriptions {
			sub := &out.Subscriptions[i]
			sub.Filter = d.str("filter")
			sub.QoS = d.byte("qos")
			f := d.byte("subscription flags")
			id := d.uvarint("subscription identifier")
			if sub.QoS > 2 || f&^subFlagKnown != 0 || f>>subFlagRHShift > 2 || id > 0xFFFFFFF {
				d.fail("subscription")
			}
			sub.NoLocal = f&subFlagNoLocal != 0
			sub.RetainAsPublished = f&subFlagRAP != 0
			sub.RetainHandling = f >> subFlagRHShift
			sub.Identifier = uint32(id)
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	*ss = out
	return nil
}

// PutSession stores (or replaces) a session record durably.
func (s *Store) PutSession(ctx context.Context, ss *Session) error {
	if err := checkSID(ss.ClientID); err != nil {
		return err
	}
	v, err := ss.MarshalBinary()
	if err != nil {
		return err
	}
	return s.write(ctx, []kv{{key: sessionKey(ss.ClientID), val: v}})
}

// GetSession returns a session record, or ErrNotFound.
func (s *Store) GetSession(clientID string) (*Session, error) {
	if err := checkSID(clientID); err != nil {
		return nil, err
	}
	ss := new(Session)
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(sessionKey(clientID))
		if err != nil {
			return err
		}
		return item.Value(ss.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: session %q", ErrNotFound, clientID)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get session %q: %w", clientID, err)
	}
	return ss, nil
}

// ListSessions calls fn for every session record in client ID byte order,
// streaming from disk (no more than one record in memory at a time). It
// stops at the first error fn returns and returns it. fn runs inside a
// read transaction: it may call the Store, but a long fn delays Close.
func (s *Store) ListSessions(fn func(*Session) error) error {
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famSession}, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			ss := new(Session)
			if err := it.Item().Value(ss.UnmarshalBinary); err != nil {
				id, _ := sidFromKey(it.Item().Key())
				return fmt.Errorf("storage: session %q: %w", id, err)
			}
			if err := fn(ss); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSession removes a session: its record, its whole queue and its
// inflight markers. The record and the queue counters go first in one
// durable write (from then on the queue reads as empty); the entries are
// then deleted in bounded chunks, so memory stays flat however long the
// queue. A crash midway leaves only unreachable entries, which the next
// DeleteSession of the same ID removes.
func (s *Store) DeleteSession(ctx context.Context, clientID string) error {
	if err := checkSID(clientID); err != nil {
		return err
	}
	w := make(waiter, 1)
	first := &truncateOp{s: s, id: clientID, done: func(err error) { w <- err }}
	if err := s.submit(first); err != nil {
		return err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil {
		return err
	}
	p := &purgeOp{s: s, id: clientID, below: first.below, done: func(err error) { w <- err }}
	for _, fam := range []byte{famQueue, famInflight, famPacket} {
		p.fam = fam
		p.from = sidPrefix(fam, clientID, 0)
		for p.from != nil {
			if err := s.submit(p); err != nil {
				return err
			}
			if err := w.wait(ctx.Done(), ctx.Err); err != nil {
				return err
			}
		}
	}
	return nil
}

// truncateOp deletes the session record and empties the queue counters:
// every entry below the returned bound is now unreachable garbage.
type truncateOp struct {
	s     *Store
	id    string
	done  func(error)
	below uint64
}

func (o *truncateOp) apply(b *batch) error {
	st, err := b.queue(o.id)
	if err != nil {
		return err
	}
	b.del(sessionKey(o.id))
	if st.mem != nil {
		b.clearMem(st.mem)
	}
	o.below = st.work.next
	st.work.head, st.work.count, st.work.bytes, st.work.dense = st.work.next, 0, 0, true
	return nil
}

func (o *truncateOp) finish(err error) { o.done(err) }

// purgeChunk bounds the keys one purge op deletes (and holds in memory).
const purgeChunk = 1000

// purgeOp deletes up to purgeChunk keys of one family of a session with a
// seq below the truncation bound, resuming at from; it sets from to nil
// when the family is done. The last op forgets the counters if the queue
// stayed empty.
type purgeOp struct {
	s     *Store
	id    string
	fam   byte
	below uint64
	from  []byte
	next  []byte
	done  func(error)
}

func (o *purgeOp) apply(b *batch) error {
	o.next = nil
	prefix := sidPrefix(o.fam, o.id, 0)
	var keys [][]byte
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
	for it.Seek(o.from); it.Valid() && len(keys) < purgeChunk; it.Next() {
		item := it.Item()
		var seq uint64
		if o.fam == famPacket {
			if err := item.Value(func(v []byte) error {
				var err error
				seq, err = decodeSeq(v)
				return err
			}); err != nil {
				seq = 0 // corrupt mapping: delete it
			}
		} else {
			seq = seqFromKey(item.Key())
		}
		if o.fam == famQueue && seq >= o.below {
			break // keys are in seq order: the rest is the new queue
		}
		if seq < o.below {
			keys = append(keys, item.KeyCopy(nil))
		}
	}
	if len(keys) == purgeChunk && it.Valid() {
		o.next = keys[len(keys)-1] // more may follow: resume after it
	}
	it.Close()
	for _, k := range keys {
		b.del(k)
	}
	if o.next == nil && o.fam == famPacket {
		st, err := b.queue(o.id)
		if err != nil {
			return err
		}
		if st.work.count == 0 && st.work.head == st.work.next && st.work.next == o.below {
			st.work.forget = true
		}
	}
	return nil
}

func (o *purgeOp) finish(err error) {
	if err == nil {
		o.from = nil
		if o.next != nil {
			o.from = append(o.next, 0) // resume just after the last key
		}
	}
	o.done(err)
}

// DeleteExpiredSessions deletes every session that has expired at now
// (Session.ExpiredAt), with its queue, and returns their client IDs. It
// scans the session records in pages, so memory is bounded by the number
// of expired sessions, not of all sessions.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) ([]string, error) {
	var deleted []string
	var from []byte
	for {
		var page []string
		var last []byte
		err := s.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famSession}, PrefetchValues: true, PrefetchSize: 16})
			defer it.Close()
			seek := []byte{famSession}
			if from != nil {
				seek = from
			}
			for it.Seek(seek); it.Valid() && len(page) < purgeChunk; it.Next() {
				last = it.Item().KeyCopy(last[:0])
				var ss Session
				if err := it.Item().Value(ss.UnmarshalBinary); err != nil {
					s.log.Warn().Err(err).Bytes("key", it.Item().Key()).Msg("skip corrupt session record")
					continue
				}
				if ss.ExpiredAt(now) {
					page = append(page, ss.ClientID)
				}
			}
			if !it.Valid() {
				last = nil
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("storage: scan sessions: %w", err)
		}
		for _, id := range page {
			if err := s.DeleteSession(ctx, id); err != nil {
				return deleted, err
			}
			deleted = append(deleted, id)
		}
		if last == nil {
			return deleted, nil
		}
		from = append(bytes.Clone(last), 0)
	}
}

// writeOp is a plain durable write of a few keys (session records,
// retained messages).
type writeOp struct {
	entries []kv
	done    func(error)
}

func (o *writeOp) apply(b *batch) error {
	for _, e := range o.entries {
		if e.del {
			b.del(e.key)
		} else {
			b.set(e.key, e.val)
		}
	}
	return nil
}

func (o *writeOp) finish(err error) { o.done(err) }

func (s *Store) write(ctx context.Context, entries []kv) error {
	w := make(waiter, 1)
	if err := s.writeAsync(entries, func(err error) { w <- err }); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

func (s *Store) writeAsync(entries []kv, done func(error)) error {
	return s.submit(&writeOp{entries: entries, done: done})
}

// DeleteOrphanQueues deletes every queue that has no session record: the
// queues of clean sessions (which are never stored) left behind when the
// process stopped without closing them. Call it at start, before clients
// connect. It returns the client IDs of the queues deleted.
func (s *Store) DeleteOrphanQueues(ctx context.Context) ([]string, error) {
	var deleted []string
	seek := []byte{famCounters}
	for {
		var page []string
		var next []byte
		err := s.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famCounters}})
			defer it.Close()
			for it.Seek(seek); it.Valid(); it.Next() {
				if len(page) == purgeChunk {
					next = it.Item().KeyCopy(nil)
					return nil
				}
				id, ok := sidFromKey(it.Item().Key())
				if !ok {
					continue
				}
				if _, err := txn.Get(sessionKey(id)); errors.Is(err, badger.ErrKeyNotFound) {
					page = append(page, id)
				} else if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("storage: scan queues: %w", err)
		}
		for _, id := range page {
			if err := s.DeleteSession(ctx, id); err != nil {
				return deleted, err
			}
			deleted = append(deleted, id)
		}
		if next == nil {
			return deleted, nil
		}
		seek = next
	}
}
