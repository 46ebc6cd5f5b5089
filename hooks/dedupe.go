package hooks

import (
	"sync"
	"time"
)

// dedupe remembers the message IDs each sender had accepted within a
// window, so that a retry after a lost PUBACK is acknowledged and not
// delivered twice. An ID enters the record only once its message was
// accepted: a message refused (queue full, not allowed) may be retried
// with the same ID and is then delivered. While the first copy is being
// stored, a retry waits for its outcome instead of guessing.
type dedupe struct {
	window time.Duration
	max    int // IDs remembered at once; beyond it the oldest are forgotten early
	wait   time.Duration

	mu    sync.Mutex
	seen  map[dedupeKey]*dedupeRecord
	order []dedupeEntry // insertion order, for expiry and the size bound
}

type dedupeKey struct{ sender, id string }

type dedupeRecord struct {
	at      time.Time
	pending chan struct{} // non-nil while the message is being stored; closed at its outcome
}

type dedupeEntry struct {
	key dedupeKey
	rec *dedupeRecord
}

// reservation is the outcome of reserve.
type reservation int

const (
	reserved  reservation = iota // new: the caller reports the outcome with settle
	duplicate                    // accepted before, within the window
)

func newDedupe(window time.Duration, max int) *dedupe {
	return &dedupe{window: window, max: max, wait: 10 * time.Second, seen: map[dedupeKey]*dedupeRecord{}}
}

// reserve records key as being accepted at now, or reports that it was.
// When a first copy is still being stored it waits (bounded) for its
// outcome.
func (d *dedupe) reserve(key dedupeKey, now time.Time) (reservation, *dedupeRecord) {
	var deadline <-chan time.Time // set on the first wait
	for {
		d.mu.Lock()
		d.expire(now)
		rec, ok := d.seen[key]
		switch {
		case ok && rec.pending == nil:
			d.mu.Unlock()
			return duplicate, nil
		case ok:
			pending := rec.pending
			d.mu.Unlock()
			if deadline == nil {
				t := time.NewTimer(d.wait)
				defer t.Stop()
				deadline = t.C
			}
			select {
			case <-pending:
				continue
			case <-deadline:
				// The first copy's store is stuck: this retry is not
				// told it succeeded, and not delivered twice.
				return duplicate, nil
			}
		}
		rec = &dedupeRecord{at: now, pending: make(chan struct{})}
		d.seen[key] = rec
		d.order = append(d.order, dedupeEntry{key, rec})
		d.mu.Unlock()
		return reserved, rec
	}
}

// settle ends a reservation: an accepted message's ID stays for the
// window, a refused one's is forgotten.
func (d *dedupe) settle(key dedupeKey, rec *dedupeRecord, accepted bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !accepted && d.seen[key] == rec {
		delete(d.seen, key)
	}
	close(rec.pending)
	rec.pending = nil
}

// expire forgets IDs older than the window, and the oldest beyond max.
func (d *dedupe) expire(now time.Time) {
	cut := now.Add(-d.window)
	for len(d.order) > 0 && (d.order[0].rec.at.Before(cut) || len(d.order) > d.max) {
		old := d.order[0]
		if old.rec.pending != nil {
			break // being stored now: it expires after its outcome
		}
		if d.seen[old.key] == old.rec {
			delete(d.seen, old.key)
		}
		d.order[0] = dedupeEntry{}
		d.order = d.order[1:]
	}
}
