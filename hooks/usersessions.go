package hooks

import (
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/storage"
)

// SessionLister is what UserSessions needs of the store.
type SessionLister interface {
	ListSessions(fn func(*storage.Session) error) error
	GetSession(clientID string) (*storage.Session, error)
}

// UserSessionsOptions configures UserSessions.
type UserSessionsOptions struct {
	Server *mqtt.Server // used to send refusing CONNACKs
	// Max is the persistent sessions one user may hold; 0 is no limit.
	Max      int
	Sessions SessionLister
	// Stats receives the refusals (SessionsPerUser), so that they are
	// exported with the other limits.
	Stats  *LimitsStats
	Logger zerolog.Logger
}

// UserSessions is the hook that caps the persistent sessions of each user:
// every one of them gets a copy of each message to the user, on disk, so
// a user holding hundreds would multiply the hub's writes and storage. A
// CONNECT that would create one more session than Max is refused with
// CONNACK 0x97 quota exceeded (3.1.1: 3 server unavailable); resuming or
// replacing a session the user holds, and clean sessions, are always
// allowed.
//
// The count is kept in memory: loaded from the store at start (Load), then
// followed through the session's life as the offline hook lives it
// (created at session establishment, deleted by a clean start, at the end
// of a connection whose session expiry is 0, or when it expires). If the
// two ever disagree, the store decides: before refusing, sessions with no
// connection are looked up there, and those it no longer has stop counting.
// It must come after the auth hook, which names the user.
type UserSessions struct {
	mqtt.HookBase
	opts UserSessionsOptions
	log  zerolog.Logger // sampled: clients trigger refusals at will

	mu    sync.Mutex
	users map[string]*heldSessions
}

// heldSessions are one user's persistent sessions and the CONNECTs admitted
// to create one, not yet established (so that concurrent CONNECTs cannot
// all take the last place).
type heldSessions struct {
	held    map[string]*mqtt.Client // client ID -> its latest connection (nil: none since start)
	pending map[*mqtt.Client]struct{}
}

// NewUserSessions returns the hook; call Load before clients connect.
func NewUserSessions(opts UserSessionsOptions) *UserSessions {
	if opts.Stats == nil {
		opts.Stats = &LimitsStats{}
	}
	log := opts.Logger.With().Str("component", "limits").Logger()
	return &UserSessions{
		opts: opts,
		log: log.Sample(&zerolog.BurstSampler{
			Burst: 20, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 100},
		}),
		users: map[string]*heldSessions{},
	}
}

// ID implements mqtt.Hook.
func (h *UserSessions) ID() string { return "user-sessions" }

// Provides implements mqtt.Hook.
func (h *UserSessions) Provides(b byte) bool {
	if h.opts.Max <= 0 {
		return false
	}
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// Load counts the persistent sessions in the store, per user. Call it
// after expired sessions were deleted and before clients connect.
func (h *UserSessions) Load() error {
	if h.opts.Max <= 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.opts.Sessions.ListSessions(func(rec *storage.Session) error {
		if !rec.Clean && rec.User != "" {
			h.of(rec.User).held[rec.ClientID] = nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count sessions per user: %w", err)
	}
	return nil
}

// of returns user's entry, made if missing; h.mu is held.
func (h *UserSessions) of(user string) *heldSessions {
	us := h.users[user]
	if us == nil {
		us = &heldSessions{held: map[string]*mqtt.Client{}, pending: map[*mqtt.Client]struct{}{}}
		h.users[user] = us
	}
	return us
}

// forgetIfEmpty drops user's entry when it holds nothing; h.mu is held.
func (h *UserSessions) forgetIfEmpty(user string, us *heldSessions) {
	if len(us.held) == 0 && len(us.pending) == 0 {
		delete(h.users, user)
	}
}

// persistentSession reports whether cl's session outlives its connection
// (MQTT 5 session expiry > 0, 3.1.1 clean session false).
func persistentSession(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnConnect refuses a CONNECT that would give its user one persistent
// session more than Max, and holds a place for an admitted one.
func (h *UserSessions) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(cl.Properties.Username)
	if cl.Net.Inline || user == "" || !persistentSession(cl) {
		return nil
	}
	h.mu.Lock()
	us := h.of(user)
	if _, ok := us.held[cl.ID]; ok {
		h.mu.Unlock()
		return nil // resumes (or, with clean start, replaces) a session it holds
	}
	for c := range us.pending {
		if c.Closed() { // refused later, or gone before its session started
			delete(us.pending, c)
		}
	}
	if len(us.held)+len(us.pending) >= h.opts.Max {
		h.reconcile(us)
	}
	n := len(us.held) + len(us.pending)
	if n < h.opts.Max {
		us.pending[cl] = struct{}{}
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	h.opts.Stats.SessionsPerUser.Add(1)
	h.log.Info().Str("client_id", cl.ID).Str("user", user).Str("remote", cl.Net.Remote).
		Str("reason", packets.ErrQuotaExceeded.Reason).Int("sessions", n).Int("max", h.opts.Max).
		Msg("connection refused: the user holds the most persistent sessions allowed")
	return refuseConnect(h.opts.Server, cl, packets.ErrQuotaExceeded)
}

// reconcile stops counting the sessions without a connection that the
// store no longer has (a CONNACK that failed after the session was
// counted, say); h.mu is held. At most Max lookups, on the refusal path
// only.
func (h *UserSessions) reconcile(us *heldSessions) {
	for id, c := range us.held {
		if c != nil && !c.Closed() {
			continue
		}
		_, err := h.opts.Sessions.GetSession(id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			delete(us.held, id)
		case err != nil:
			h.log.Warn().Err(err).Str("client_id", id).Msg("session record not read; still counted")
		}
	}
}

// OnSessionEstablish follows the session of an admitted connection: a
// clean start discards the one the client ID had, a persistent session is
// held from now, and a session resumed with expiry 0 ends with this
// connection.
func (h *UserSessions) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	user := string(cl.Properties.Username)
	if cl.Net.Inline || user == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	us := h.of(user)
	delete(us.pending, cl)
	if pk.Connect.Clean {
		delete(us.held, cl.ID)
	}
	if _, held := us.held[cl.ID]; held || persistentSession(cl) {
		us.held[cl.ID] = cl
	}
	h.forgetIfEmpty(user, us)
}

// OnDisconnect stops counting a session that ends with its connection.
// A connection taken over by a newer one of the same client ID is no
// longer the session's and changes nothing.
func (h *UserSessions) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if expire {
		h.drop(cl, func(c *mqtt.Client) bool { return c == cl })
	}
}

// OnClientExpired stops counting a session whose expiry passed.
func (h *UserSessions) OnClientExpired(cl *mqtt.Client) {
	h.drop(cl, func(c *mqtt.Client) bool { return c == nil || c.Closed() })
}

// drop stops counting cl's session if its latest connection passes ok.
func (h *UserSessions) drop(cl *mqtt.Client, ok func(*mqtt.Client) bool) {
	user := string(cl.Properties.Username)
	h.mu.Lock()
	defer h.mu.Unlock()
	us := h.users[user]
	if us == nil {
		return
	}
	if c, held := us.held[cl.ID]; held && ok(c) {
		delete(us.held, cl.ID)
		h.forgetIfEmpty(user, us)
	}
}

var _ mqtt.Hook = (*UserSessions)(nil)
