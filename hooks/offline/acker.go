package offline

import (
	"sync"

	"github.com/mqhub/mqhub/storage"
)

// acker removes acknowledged entries from their queues on a goroutine of
// its own. Rules.Acknowledged reports completion from the store's commit
// goroutine, which must never wait to submit a write itself; the acker
// takes the removal off it and batches removals per session.
type acker struct {
	h       *Hook
	mu      sync.Mutex
	pending map[string][]storage.AckRef // session -> entries to remove
	kicker  kicker
}

func (a *acker) add(session string, r storage.AckRef) {
	a.mu.Lock()
	if a.pending == nil {
		a.pending = map[string][]storage.AckRef{}
	}
	a.pending[session] = append(a.pending[session], r)
	a.mu.Unlock()
	a.kicker.kick(&a.h.senders, a.flush)
}

func (a *acker) flush() {
	a.mu.Lock()
	pending := a.pending
	a.pending = nil
	a.mu.Unlock()
	for session, refs := range pending {
		err := a.h.store.AckEntriesAsync(session, refs, func(err error) {
			if err != nil {
				a.h.sampled.Error().Err(err).Str("client_id", session).Msg("acknowledged entries not removed; they will be sent again")
			}
		})
		if err != nil {
			a.h.sampled.Error().Err(err).Str("client_id", session).Msg("acknowledged entries not removed; they will be sent again")
		}
	}
}
