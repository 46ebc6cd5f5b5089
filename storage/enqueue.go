package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Enqueue appends m to the queue of every listed session in one durable
// write and returns each session's sequence number, in the order of
// sessions (a repeated session gets the seq of its first occurrence). It
// returns once the write is durable under the store's Durability.
//
// If a session's queue is full under PolicyRefuseNew, that session gets
// seq 0 and the error wraps ErrQueueFull; the message is still stored for
// every session with a non-zero seq. Any other error means nothing was
// stored. If ctx ends first, Enqueue returns ctx.Err() but the write may
// still happen. A zero m.Created is set to now.
func (s *Store) Enqueue(ctx context.Context, sessions []string, m *Message) ([]uint64, error) {
	var seqs []uint64
	w := make(waiter, 1)
	err := s.EnqueueAsync(sessions, m, func(r []uint64, err error) {
		seqs = r
		w <- err
	})
	if err != nil {
		return nil, err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil && !errors.Is(err, ErrQueueFull) {
		return nil, err
	} else {
		return seqs, err
	}
}

// EnqueueAsync is Enqueue without waiting: done is called exactly once
// with Enqueue's results when the write is durable or has failed, so a
// caller can hold its PUBACK without blocking its read loop. done runs on
// the store's commit goroutine: it must return quickly and must not call
// the Store (hand the result to a channel or goroutine instead).
// m must not be modified after the call (Options.OnAppended shares it).
// EnqueueAsync itself returns an error, and never calls done, when the
// call is invalid or the store is closed or failed; it blocks while the
// store's bounded request queue is full.
func (s *Store) EnqueueAsync(sessions []string, m *Message, done func(seqs []uint64, err error)) error {
	return s.enqueueAsync(sessions, m, false, done)
}

func (s *Store) enqueueAsync(sessions []string, m *Message, admitted bool, done func(seqs []uint64, err error)) error {
	if done == nil {
		done = func([]uint64, error) {}
	}
	if len(sessions) == 0 {
		return fmt.Errorf("%w: enqueue to no session", ErrInvalid)
	}
	for _, id := range sessions {
		if err := checkSID(id); err != nil {
			return err
		}
	}
	if m.Created == 0 {
		m.Created = s.opts.Now().UnixNano()
	}
	val, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	o := &enqueueOp{s: s, sessions: sessions, admitted: admitted, msg: m, val: val, done: done}
	return s.submit(o)
}

type enqueueOp struct {
	s        *Store
	sessions []string
	admitted bool     // Room admitted it: a full queue under refuse-new takes it anyway
	msg      *Message // for Options.OnAppended
	val      []byte
	done     func([]uint64, error)

	seqs    []uint64
	stored  int
	refused []string
	dropped int
	aged    int
}

func (o *enqueueOp) apply(b *batch) error {
	o.seqs = make([]uint64, len(o.sessions))
	o.refused, o.stored, o.dropped, o.aged = o.refused[:0], 0, 0, 0
	for i, id := range o.sessions {
		if j := slices.Index(o.sessions[:i], id); j >= 0 {
			o.seqs[i] = o.seqs[j]
			continue
		}
		r, err := b.append(id, o.val, o.admitted)
		if err != nil {
			return err
		}
		o.dropped += r.dropped
		o.aged += r.aged
		if r.seq == 0 {
			o.refused = append(o.refused, id)
			continue
		}
		o.seqs[i] = r.seq
		o.stored++
	}
	return nil
}

// appendResult is what appending one entry to one queue did.
type appendResult struct {
	seq     uint64 // the entry's sequence number; 0: refused, the queue is full
	dropped int    // oldest entries dropped for room (PolicyDropOldest)
	aged    int    // entries dropped as older than MaxAge
}

// append stages val as the next entry of session id's queue, under the
// queue's limits and policy.
func (b *batch) append(id string, val []byte, admitted bool) (appendResult, error) {
	var r appendResult
	size := int64(len(val))
	st, err := b.queue(id)
	if err != nil {
		return r, err
	}
	lim := b.s.limitsOf(st)
	if lim.MaxAge > 0 {
		if r.aged, err = b.dropAged(st); err != nil {
			return r, err
		}
	}
	for overLimit(lim, st.work, size) {
		if lim.Policy == PolicyRefuseNew || st.work.count == 0 {
			break
		}
		found, err := b.dropHead(st)
		if err != nil {
			return r, err
		}
		if !found {
			break
		}
		r.dropped++
	}
	if overLimit(lim, st.work, size) && !(admitted && lim.Policy == PolicyRefuseNew) {
		return r, nil
	}
	r.seq = st.work.next
	st.work.next++
	st.work.count++
	st.work.bytes += size
	st.work.forget = false
	b.putEntry(st, r.seq, val)
	return r, nil
}

// appended reports each queue the message was stored in, once per queue.
func (o *enqueueOp) appended(fn func(session string, seq uint64, m *Message, size int64)) {
	for i, id := range o.sessions {
		if o.seqs[i] == 0 || slices.Index(o.sessions[:i], id) >= 0 {
			continue // refused, or the same session named twice
		}
		fn(id, o.seqs[i], o.msg, int64(len(o.val)))
	}
}

// limitsOf is the limits of a queue: a memory queue's bytes are bounded
// by MemoryQueueMaxBytes too.
func (s *Store) limitsOf(st *qstate) QueueLimits {
	lim := s.opts.Queue
	if m := s.opts.MemoryQueueMaxBytes; st.mem != nil && m > 0 && (lim.MaxBytes == 0 || m < lim.MaxBytes) {
		lim.MaxBytes = m
	}
	return lim
}

func overLimit(lim QueueLimits, c counters, size int64) bool {
	return (lim.MaxMessages > 0 && c.count+1 > uint64(lim.MaxMessages)) ||
		(lim.MaxBytes > 0 && c.bytes+size > lim.MaxBytes)
}

func (o *enqueueOp) finish(err error) {
	if err != nil {
		o.done(nil, err)
		return
	}
	st := &o.s.stats
	st.Enqueued.Add(uint64(o.stored))
	if o.dropped > 0 {
		st.DroppedOldest.Add(uint64(o.dropped))
		o.s.dropLog.Warn().Int("dropped", o.dropped).Strs("client_ids", o.sessions).Msg("queue full: dropped oldest messages")
	}
	if o.aged > 0 {
		st.AgedOut.Add(uint64(o.aged))
	}
	if len(o.refused) > 0 {
		st.RefusedFull.Add(uint64(len(o.refused)))
		o.s.dropLog.Warn().Strs("client_ids", o.refused).Msg("queue full: refused new message")
		o.done(o.seqs, fmt.Errorf("%w: %d of %d sessions", ErrQueueFull, len(o.refused), len(o.sessions)))
		return
	}
	o.done(o.seqs, nil)
}
