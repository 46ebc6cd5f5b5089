package hooks

import (
	"sync"
	"time"
)

// failureTracker remembers recent failed logins per IP to slow guessing:
// past freeFailures within the window, each failure adds a delay to the
// next refusal (a few typos cost nothing).
type failureTracker struct {
	mu     sync.Mutex
	window time.Duration
	recent map[string][]time.Time
}

// delay records a failure from ip and returns how long to hold its answer.
func (f *failureTracker) delay(ip string, step, maxDelay time.Duration) time.Duration {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.recent[ip][:0]
	for _, t := range f.recent[ip] {
		if now.Sub(t) < f.window {
			kept = append(kept, t)
		}
	}
	if len(kept) >= 64 {
		kept = kept[1:] // bounded memory per IP
	}
	kept = append(kept, now)
	f.recent[ip] = kept
	if len(f.recent) > 10_000 { // bounded memory overall: forget the quiet ones
		for k, ts := range f.recent {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= f.window {
				delete(f.recent, k)
			}
		}
	}
	return min(time.Duration(max(len(kept)-freeFailures, 0))*step, maxDelay)
}

// freeFailures is how many failed logins per IP and window go unpunished.
const freeFailures = 5
