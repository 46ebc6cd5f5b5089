package storage

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Read returns up to max entries of a session's queue with Seq > afterSeq,
// in order, read from disk. It never returns an entry above the committed
// watermark (see doc.go). Entries whose message expiry deadline or MaxAge
// has passed are skipped, and deleted and counted in the background.
func (s *Store) Read(session string, afterSeq uint64, max int) ([]Entry, error) {
	if err := checkSID(session); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	c, err := s.published(session)
	if err != nil {
		return nil, err
	}
	last := c.next - 1
	start := afterSeq + 1
	start = maxU64(start, c.head)
	if start > last {
		return nil, nil
	}
	now := s.opts.Now()
	nowUnix := now.Unix()
	var ageCut int64
	if s.opts.Queue.MaxAge > 0 {
		ageCut = now.Add(-s.opts.Queue.MaxAge).UnixNano()
	}
	var out []Entry
	var drop dropOp
	if mq := s.memQueueOf(session); mq != nil {
		out, drop = s.readMem(mq, session, start, last, max, nowUnix, ageCut)
	} else {
		marksFree := s.isVolatile(session) || !c.markers
		err = s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{
				Prefix: sidPrefix(famQueue, session, 0), PrefetchValues: true, PrefetchSize: min(max, 64),
			})
			defer it.Close()
			// A volatile queue has no inflight markers (its session cannot
			// resume), nor has a queue that never had MarkSent: one
			// iterator less per read.
			var inf *badger.Iterator
			if !marksFree {
				inf = txn.NewIterator(badger.IteratorOptions{Prefix: sidPrefix(famInflight, session, 0)})
				defer inf.Close()
				inf.Seek(inflightKey(session, start))
			}
			for it.Seek(queueKey(session, start)); it.Valid() && len(out) < max; it.Next() {
				item := it.Item()
				seq := seqFromKey(item.Key())
				if seq > last {
					break
				}
				e := Entry{Seq: seq, Size: item.ValueSize()}
				if err := item.Value(e.Message.UnmarshalBinary); err != nil {
					if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupportedVersion) {
						s.log.Error().Err(err).Str("client_id", session).Uint64("seq", seq).Msg("corrupt queue entry deleted")
						drop.corrupt = append(drop.corrupt, seq)
						continue
					}
					return err
				}
				if e.Message.Expired(nowUnix) {
					drop.expired = append(drop.expired, seq)
					continue
				}
				if ageCut != 0 && e.Message.Created <= ageCut {
					drop.aged = append(drop.aged, seq)
					continue
				}
				for ; inf != nil && inf.Valid() && seqFromKey(inf.Item().Key()) < seq; inf.Next() {
				}
				if inf != nil && inf.Valid() && seqFromKey(inf.Item().Key()) == seq {
					if err := inf.Item().Value(func(v []byte) error {
						var err error
						e.PacketID, err = decodeInflight(v)
						return err
					}); err != nil {
						return err
					}
				}
				out = append(out, e)
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read queue of %q: %w", session, err)
	}
	if len(drop.expired)+len(drop.aged)+len(drop.corrupt) > 0 {
		drop.s, drop.id = s, session
		// Best effort: if this fails the entries are skipped again next time.
		_ = s.submit(&drop)
	}
	return out, nil
}

// memQueueOf returns the memory queue of a session, or nil for a queue on
// disk.
func (s *Store) memQueueOf(session string) *memQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.queues[session]; ok {
		return st.mem
	}
	return nil
}

// readMem is Read for a memory queue: the same entries a queue on disk
// would give, the same expired, aged and corrupt ones left out and dropped.
func (s *Store) readMem(mq *memQueue, session string, start, last uint64, max int, nowUnix, ageCut int64) ([]Entry, dropOp) {
	var out []Entry
	var drop dropOp
	seqs, vals := mq.read(start, last, max)
	for i, v := range vals {
		e := Entry{Seq: seqs[i], Size: int64(len(v))}
		if err := e.Message.UnmarshalBinary(v); err != nil {
			s.log.Error().Err(err).Str("client_id", session).Uint64("seq", e.Seq).Msg("corrupt queue entry deleted")
			drop.corrupt = append(drop.corrupt, e.Seq)
			continue
		}
		if e.Message.Expired(nowUnix) {
			drop.expired = append(drop.expired, e.Seq)
			continue
		}
		if ageCut != 0 && e.Message.Created <= ageCut {
			drop.aged = append(drop.aged, e.Seq)
			continue
		}
		out = append(out, e)
	}
	return out, drop
}

func maxU64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// dropOp deletes entries a Read found expired, aged out or corrupt. It
// rechecks expiry, since a session deleted and recreated meanwhile may
// reuse the sequence numbers.
type dropOp struct {
	s                      *Store
	id                     string
	expired, aged, corrupt []uint64
	nExpired, nAged        int
}

func (o *dropOp) apply(b *batch) error {
	o.nExpired, o.nAged = 0, 0
	st, err := b.queue(o.id)
	if err != nil {
		return err
	}
	rm := func(seqs []uint64, check func(created, expires int64) bool, n *int) error {
		for _, seq := range seqs {
			e, ok, err := b.entry(st, seq)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			var created, expires int64
			perr := e.value(func(v []byte) error { created, expires, err = peekTimes(v); return err })
			if check != nil && (perr != nil || !check(created, expires)) {
				continue
			}
			if err := b.removeEntry(st, seq, e.size()); err != nil {
				return err
			}
			if n != nil {
				*n++
			}
		}
		return nil
	}
	nowUnix := b.now.Unix()
	if err := rm(o.expired, func(_, e int64) bool { return e != 0 && e <= nowUnix }, &o.nExpired); err != nil {
		return err
	}
	cut := b.now.Add(-o.s.opts.Queue.MaxAge).UnixNano()
	if err := rm(o.aged, func(c, _ int64) bool { return c <= cut }, &o.nAged); err != nil {
		return err
	}
	return rm(o.corrupt, nil, nil)
}

func (o *dropOp) finish(err error) {
	if err != nil {
		o.s.log.Warn().Err(err).Str("client_id", o.id).Msg("delete expired queue entries")
		return
	}
	o.s.stats.Expired.Add(uint64(o.nExpired))
	o.s.stats.AgedOut.Add(uint64(o.nAged))
	if o.nExpired+o.nAged > 0 {
		o.s.dropLog.Info().Str("client_id", o.id).Int("expired", o.nExpired).Int("aged_out", o.nAged).Msg("dropped expired queued messages")
	}
}
