package bench

import "sync"

// maxTrackedSeq bounds the bitset a stream may grow to (32 MiB of bits), so a
// corrupt or hostile sequence number cannot make the generator allocate
// without limit.
const maxTrackedSeq = 1 << 28

// seqTracker records which sequence numbers of one stream arrived. It is not
// safe for concurrent use; streamSet adds the locking.
type seqTracker struct {
	seen       []uint64 // bitset indexed by seq
	unique     uint64
	dups       uint64
	outOfOrder uint64 // arrivals below the highest seq already seen
	breaks     uint64 // arrivals below the previous arrival
	maxSeq     uint64
	lastSeq    uint64
	any        bool
}

// add records seq and reports whether it was new. Two reorder counts are
// kept because they answer different questions: outOfOrder counts arrivals
// below the highest sequence seen so far (what an in-order consumer would
// have to buffer), breaks counts the times the stream stepped backwards
// (how many reorder events there were). One early straggler makes the first
// large and the second 1.
func (t *seqTracker) add(seq uint64) bool {
	if seq >= maxTrackedSeq {
		return false
	}
	w := seq / 64
	if w >= uint64(len(t.seen)) {
		t.seen = append(t.seen, make([]uint64, w+1-uint64(len(t.seen)))...)
	}
	bit := uint64(1) << (seq % 64)
	if t.any && seq < t.lastSeq {
		t.breaks++
	}
	t.lastSeq = seq
	if t.seen[w]&bit != 0 {
		t.dups++
		return false
	}
	t.seen[w] |= bit
	t.unique++
	if t.any && seq < t.maxSeq {
		t.outOfOrder++
	}
	if !t.any || seq > t.maxSeq {
		t.maxSeq = seq
	}
	t.any = true
	return true
}

// streamSet tracks many streams, each keyed by its stream id. It is safe for
// concurrent use.
type streamSet struct {
	mu      sync.Mutex
	streams map[uint32]*seqTracker
	unique  uint64
	dups    uint64
	ooo     uint64
	breaks  uint64
	foreign uint64
}

func newStreamSet() *streamSet {
	return &streamSet{streams: make(map[uint32]*seqTracker)}
}

// add records one arrival.
func (s *streamSet) add(stream uint32, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq >= maxTrackedSeq {
		s.foreign++
		return
	}
	t := s.streams[stream]
	if t == nil {
		t = &seqTracker{}
		s.streams[stream] = t
	}
	beforeDups, beforeOOO, beforeBreaks := t.dups, t.outOfOrder, t.breaks
	if t.add(seq) {
		s.unique++
	}
	s.dups += t.dups - beforeDups
	s.ooo += t.outOfOrder - beforeOOO
	s.breaks += t.breaks - beforeBreaks
}

// orderBreaks returns how many times any stream stepped backwards.
func (s *streamSet) orderBreaks() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.breaks
}

// addForeign counts a message that did not carry a bench payload.
func (s *streamSet) addForeign() {
	s.mu.Lock()
	s.foreign++
	s.mu.Unlock()
}

// totals returns the unique, duplicate, out-of-order and foreign counts.
func (s *streamSet) totals() (unique, dups, ooo, foreign uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unique, s.dups, s.ooo, s.foreign
}

// lost returns how many of the sent messages never arrived, given the count
// sent per stream. A stream that received more than was counted as sent (a
// publish that timed out locally yet reached the broker) does not offset
// loss on another stream.
func (s *streamSet) lost(sent map[uint32]uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost uint64
	for id, n := range sent {
		var got uint64
		if t := s.streams[id]; t != nil {
			got = t.unique
		}
		if n > got {
			lost += n - got
		}
	}
	return lost
}
