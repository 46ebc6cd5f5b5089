package storage

// A volatile queue belongs to a session that ends with its connection (an
// MQTT clean session, or session expiry 0). The process dying ends that
// session as surely as a disconnect, so nothing written to its queue has
// to survive a crash: its entries and counters are kept in memory
// (memqueue.go) when the queue is marked before its first use, batches
// made only of writes to volatile queues are not fsynced, and their
// publishers are acknowledged without waiting for the disk. Messages that
// also go to a persistent session are fsynced as before. Brokers keep
// clean sessions in memory for the same reason; the queue limits bound
// that memory, and the delivery path stays the same.

// SetVolatile marks the queue of session volatile (or not any more). The
// offline hook calls it when a new session starts; a volatile session's
// queue is deleted when the session ends, and SetVolatile(session, false)
// then forgets the mark. A volatile queue has no inflight markers: Read and
// Ack do not look for them, so MarkSent must not be used on it, and a
// queue that has markers must not be made volatile.
func (s *Store) SetVolatile(session string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.volatile[session] = struct{}{}
	} else {
		delete(s.volatile, session)
	}
}

func (s *Store) isVolatile(session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.volatile[session]
	return ok
}

// volatileOp is implemented by ops that may need no fsync: volatile
// reports, after apply, whether every queue they wrote is volatile.
type volatileOp interface {
	volatile() bool
}

func (o *enqueueOp) volatile() bool {
	for _, id := range o.sessions {
		if !o.s.isVolatile(id) {
			return false
		}
	}
	return true
}

func (o *ackOp) volatile() bool { return o.s.isVolatile(o.id) }
