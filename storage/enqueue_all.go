package storage

import (
	"errors"
	"fmt"
	"slices"
)

// Delivery is one message and the sessions whose queues it goes to.
type Delivery struct {
	Sessions []string
	Message  *Message
}

// EnqueueAllAsync appends each delivery's message to its sessions' queues
// in one write, all or nothing: when any queue cannot take its message
// (full under PolicyRefuseNew, or the message is larger than the queue may
// hold), nothing is stored and done gets an error wrapping ErrQueueFull.
// This is what a publish needs: it is accepted for all its destinations
// (the message, and the sync copies for the sender's other devices) or
// for none, and its acknowledgement says which.
//
// done is called exactly once, as for EnqueueAsync, on the commit
// goroutine. The whole write must fit one Badger transaction (about ten
// thousand sessions with the default memtable); larger ones fail with
// ErrTooLarge: split them with EnqueueAsync. Messages must not be
// modified after the call (Options.OnAppended shares them).
func (s *Store) EnqueueAllAsync(deliveries []Delivery, done func(error)) error {
	if done == nil {
		done = func(error) {}
	}
	o := &enqueueAllOp{s: s, done: done, items: make([]*enqueueOp, 0, len(deliveries))}
	for _, d := range deliveries {
		if len(d.Sessions) == 0 {
			return fmt.Errorf("%w: enqueue to no session", ErrInvalid)
		}
		for _, id := range d.Sessions {
			if err := checkSID(id); err != nil {
				return err
			}
		}
		if d.Message.Created == 0 {
			d.Message.Created = s.opts.Now().UnixNano()
		}
		val, err := d.Message.MarshalBinary()
		if err != nil {
			return err
		}
		o.items = append(o.items, &enqueueOp{s: s, sessions: d.Sessions, msg: d.Message, val: val})
	}
	if len(o.items) == 0 {
		return fmt.Errorf("%w: enqueue of nothing", ErrInvalid)
	}
	return s.submit(o)
}

// enqueueAllOp is a group of enqueues that succeed or fail together.
type enqueueAllOp struct {
	s     *Store
	items []*enqueueOp
	done  func(error)

	refused []string // sessions whose queue could not take its message
}

func (o *enqueueAllOp) apply(b *batch) error {
	o.refused = o.refused[:0]
	for _, it := range o.items {
		if err := it.apply(b); err != nil {
			return err
		}
		o.refused = append(o.refused, it.refused...)
	}
	if len(o.refused) > 0 {
		// The batch undoes what the items staged; nothing is written.
		return fmt.Errorf("%w: %d session(s) cannot take the message", ErrQueueFull, len(o.refused))
	}
	return nil
}

func (o *enqueueAllOp) finish(err error) {
	if err != nil {
		if errors.Is(err, ErrQueueFull) {
			o.s.stats.RefusedFull.Add(uint64(len(o.refused)))
			o.s.dropLog.Warn().Strs("client_ids", slices.Compact(slices.Sorted(slices.Values(o.refused)))).
				Msg("queue full: refused new message for every destination")
		}
		o.done(err)
		return
	}
	for _, it := range o.items {
		it.done = func([]uint64, error) {}
		it.finish(nil)
	}
	o.done(nil)
}

// appended reports each queue a message was stored in (Options.OnAppended).
func (o *enqueueAllOp) appended(fn func(session string, seq uint64, m *Message, size int64)) {
	for _, it := range o.items {
		it.appended(fn)
	}
}

func (o *enqueueAllOp) volatile() bool {
	for _, it := range o.items {
		if !it.volatile() {
			return false
		}
	}
	return true
}

// Room reports whether every listed queue can take m now: an error
// wrapping ErrQueueFull, naming how many cannot, if one would refuse it
// (full under PolicyRefuseNew, or m larger than the queue may hold). With
// EnqueueAdmittedAsync it gives a publish to more sessions than one
// transaction holds the all-or-nothing answer of EnqueueAllAsync, written
// in parts that become visible one by one. Room reads the published
// counters, so writes still in flight are not seen: queues may overshoot
// their limit by what is being written at the same moment.
func (s *Store) Room(sessions []string, m *Message) error {
	val, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	size := int64(len(val))
	full := 0
	for _, id := range sessions {
		st, err := s.state(id)
		if err != nil {
			return err
		}
		lim := s.limitsOf(st)
		s.mu.Lock()
		c := st.pub
		s.mu.Unlock()
		tooBig := lim.MaxBytes > 0 && size > lim.MaxBytes
		if tooBig || (lim.Policy == PolicyRefuseNew && overLimit(lim, c, size)) {
			full++
		}
	}
	if full > 0 {
		s.stats.RefusedFull.Add(uint64(full))
		return fmt.Errorf("%w: %d of %d sessions cannot take the message", ErrQueueFull, full, len(sessions))
	}
	return nil
}

// EnqueueAdmittedAsync is EnqueueAsync for sessions Room admitted: a
// queue that filled meanwhile under PolicyRefuseNew takes the message
// anyway, so that no part of an admitted publish is refused.
func (s *Store) EnqueueAdmittedAsync(sessions []string, m *Message, done func(seqs []uint64, err error)) error {
	return s.enqueueAsync(sessions, m, true, done)
}
