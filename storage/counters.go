package storage

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// counters are the only per-session queue state kept in memory: a few
// words, whatever the queue length. They are persisted under c|sid in the
// same transaction as the queue writes they describe, so they are always
// consistent with the entries on disk and Open never scans a queue.
type counters struct {
	next  uint64 // sequence number the next Enqueue gets (starts at 1)
	head  uint64 // no entry below head exists (a lower bound, not exact)
	count uint64 // entries present
	bytes int64  // encoded bytes of the entries present
	// forget deletes the counter record and the in-memory state once the
	// queue is empty after DeleteSession; the next use starts at seq 1.
	forget bool
	// markers: inflight markers (MarkSent) may exist on disk. Not
	// persisted: found at load, set by MarkSent, cleared when the queue
	// empties. Without markers an acknowledgement and a read skip the
	// marker lookups: a third of the store's work in a drain of QoS 1
	// messages, whose packet IDs are kept in memory.
	markers bool
	// dense: every seq in [head, next) is present, so an entry in that
	// range needs no lookup to be known to exist (AckEntriesAsync). Not
	// persisted: true at load when count equals next-head, cleared by a
	// removal above the head, set again when the queue empties.
	dense bool
}

// qstate is one session's queue state. work is owned by the commit
// goroutine; pub is what readers see (under Store.mu), copied from work
// after each durable commit. pub.next-1 is the committed watermark.
type qstate struct {
	id   string
	work counters
	pub  counters
	mem  *memQueue // the entries of a volatile queue (memqueue.go); nil: on disk
}

const countersVersion = 1

func (c counters) marshal() []byte {
	e := enc{b: make([]byte, 0, 32)}
	e.byte(countersVersion)
	e.uvarint(c.next)
	e.uvarint(c.head)
	e.uvarint(c.count)
	e.varint(c.bytes)
	return e.b
}

func (c *counters) unmarshal(b []byte) error {
	d := dec{b: b}
	if v := d.byte("counters version"); d.err == nil && v != countersVersion {
		return fmt.Errorf("%w: counters version %d", ErrUnsupportedVersion, v)
	}
	out := counters{next: d.uvarint("next"), head: d.uvarint("head"), count: d.uvarint("count"), bytes: d.varint("bytes")}
	if err := d.end(); err != nil {
		return err
	}
	if out.next == 0 || out.head == 0 || out.head > out.next {
		return fmt.Errorf("%w: counters next=%d head=%d", ErrCorrupt, out.next, out.head)
	}
	*c = out
	return nil
}

// state returns the queue state of a session, loading its counter record
// on first use. The lock is held across the load so the commit goroutine
// and readers never build two states for one session.
func (s *Store) state(id string) (*qstate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.queues[id]; ok {
		return st, nil
	}
	c := counters{next: 1, head: 1, dense: true}
	if _, ok := s.volatile[id]; ok {
		// A volatile queue starts empty and stays in memory, counters
		// included (memqueue.go).
		st := &qstate{id: id, work: c, pub: c, mem: newMemQueue()}
		s.queues[id] = st
		return st, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(countersKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := item.Value(c.unmarshal); err != nil {
			return err
		}
		c.dense = c.count == c.next-c.head
		it := txn.NewIterator(badger.IteratorOptions{Prefix: sidPrefix(famInflight, id, 0)})
		defer it.Close()
		it.Rewind()
		c.markers = it.Valid()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: load queue counters of %q: %w", id, err)
	}
	st := &qstate{id: id, work: c, pub: c}
	s.queues[id] = st
	return st, nil
}

// published returns a copy of the readers' view of a session's counters.
func (s *Store) published(id string) (counters, error) {
	st, err := s.state(id)
	if err != nil {
		return counters{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.pub, nil
}
