package storage

import (
	"errors"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// memQueue holds the entries of a volatile queue (volatile.go) in memory:
// such a queue dies with the process anyway, so writing its entries to
// Badger only to delete them again costs two LSM writes per delivery for
// nothing. Its counters, limits, sequence numbers and expiry work as for a
// queue on disk; only the entries live here. Memory is bounded by the queue
// limits, like a queue of mosquitto's.
//
// The commit goroutine changes entries while it applies ops, recording
// undo steps exactly as for the counters, so a failed op or chunk leaves
// the queue as it was. Readers take mu and see only entries up to the
// published counters; an entry removed by a batch not yet published may
// already be gone for them, which for a queue that cannot resume only
// means that an entry being acknowledged or dropped is not read again.
type memQueue struct {
	mu      sync.Mutex
	entries map[uint64][]byte // seq -> encoded Message
}

func newMemQueue() *memQueue { return &memQueue{entries: map[uint64][]byte{}} }

// memUndo restores one entry of a memory queue, or all of them (a clear).
type memUndo struct {
	q       *memQueue
	seq     uint64
	val     []byte // nil: the entry did not exist
	cleared map[uint64][]byte
}

func (u memUndo) restore() {
	u.q.mu.Lock()
	defer u.q.mu.Unlock()
	switch {
	case u.cleared != nil:
		u.q.entries = u.cleared
	case u.val == nil:
		delete(u.q.entries, u.seq)
	default:
		u.q.entries[u.seq] = u.val
	}
}

// setMem stores (val) or deletes (nil) an entry of a memory queue.
func (b *batch) setMem(q *memQueue, seq uint64, val []byte) {
	q.mu.Lock()
	prev := q.entries[seq]
	if val == nil {
		delete(q.entries, seq)
	} else {
		q.entries[seq] = val
	}
	q.mu.Unlock()
	b.curMemUndo = append(b.curMemUndo, memUndo{q: q, seq: seq, val: prev})
}

// clearMem removes every entry of a memory queue.
func (b *batch) clearMem(q *memQueue) {
	q.mu.Lock()
	old := q.entries
	q.entries = map[uint64][]byte{}
	q.mu.Unlock()
	b.curMemUndo = append(b.curMemUndo, memUndo{q: q, cleared: old})
}

func (q *memQueue) get(seq uint64) ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	v, ok := q.entries[seq]
	return v, ok
}

// first returns the lowest entry in [from, to): by walking the sequence
// numbers or by scanning the entries, whichever is fewer steps.
func (q *memQueue) first(from, to uint64) (uint64, []byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if to-from <= uint64(len(q.entries)) {
		for seq := from; seq < to; seq++ {
			if v, ok := q.entries[seq]; ok {
				return seq, v, true
			}
		}
		return 0, nil, false
	}
	var best uint64
	var val []byte
	for seq, v := range q.entries {
		if seq >= from && seq < to && (val == nil || seq < best) {
			best, val = seq, v
		}
	}
	return best, val, val != nil
}

// entryRef is a queue entry found while applying an op: a Badger item for
// a queue on disk, or the encoded message of a memory queue.
type entryRef struct {
	item *badger.Item
	val  []byte
}

func (e entryRef) size() int64 {
	if e.item != nil {
		return e.item.ValueSize()
	}
	return int64(len(e.val))
}

func (e entryRef) value(fn func([]byte) error) error {
	if e.item != nil {
		return e.item.Value(fn)
	}
	return fn(e.val)
}

// entry finds queue entry seq as of the staged writes.
func (b *batch) entry(st *qstate, seq uint64) (entryRef, bool, error) {
	if st.mem != nil {
		v, ok := st.mem.get(seq)
		return entryRef{val: v}, ok, nil
	}
	item, err := b.get(queueKey(st.id, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return entryRef{}, false, nil
	}
	if err != nil {
		return entryRef{}, false, err
	}
	return entryRef{item: item}, true, nil
}

// putEntry stages a new queue entry.
func (b *batch) putEntry(st *qstate, seq uint64, val []byte) {
	if st.mem != nil {
		b.setMem(st.mem, seq, val)
		return
	}
	b.set(queueKey(st.id, seq), val)
}

// read returns up to max encoded entries of a memory queue with seq in
// [start, last], in order.
func (q *memQueue) read(start, last uint64, max int) (seqs []uint64, vals [][]byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for seq := start; seq <= last && len(vals) < max && len(q.entries) > 0; seq++ {
		if v, ok := q.entries[seq]; ok {
			seqs, vals = append(seqs, seq), append(vals, v)
		}
	}
	return seqs, vals
}
