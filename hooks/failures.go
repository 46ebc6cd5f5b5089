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

// loginGate bounds the password checks in flight per IP and per user
// name. bcrypt is slow on purpose, but without a bound a guesser runs as
// many checks at once as it opens connections: the failure delay above
// holds each answer, not the next guess. A login over the bound is refused
// at once, before any check. The IP's place is held through the refusal's
// delay, so one IP gets at most perIP guesses per delay (3 s once it has
// failed often); the user name's place only through the check, so that a
// guesser from one IP cannot lock a user out by keeping her places taken.
type loginGate struct {
	perIP, perUser int // 0: no bound

	mu    sync.Mutex
	ips   map[string]int // checks in flight (and delays held) per IP
	users map[string]int // checks in flight per user name
}

// Bounds a login can meet, as enter reports them.
const (
	gateFree = ""
	gateIP   = "from the IP"
	gateUser = "for the user"
)

// enter takes a place for a check from ip for user, or says which bound
// is reached (taking nothing).
func (g *loginGate) enter(ip, user string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perIP > 0 && g.ips[ip] >= g.perIP {
		return gateIP
	}
	if g.perUser > 0 && g.users[user] >= g.perUser {
		return gateUser
	}
	if g.ips == nil {
		g.ips, g.users = map[string]int{}, map[string]int{}
	}
	g.ips[ip]++
	g.users[user]++
	return gateFree
}

// leaveUser frees the user name's place once the check is done.
func (g *loginGate) leaveUser(user string) { g.leave(g.users, user) }

// leaveIP frees the IP's place once the answer was held.
func (g *loginGate) leaveIP(ip string) { g.leave(g.ips, ip) }

func (g *loginGate) leave(m map[string]int, key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m[key]--; m[key] <= 0 {
		delete(m, key) // memory follows the logins in flight only
	}
}
