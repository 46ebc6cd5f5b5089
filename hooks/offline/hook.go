package offline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/storage"
)

// Options configures the hook.
type Options struct {
	Server *mqtt.Server
	Store  *storage.Store
	Logger zerolog.Logger
	// MaxInflight caps unacknowledged messages per session, below the
	// client's own Receive Maximum (default 1024).
	MaxInflight int
	// WriteTimeout bounds how long a publisher waits for its message to be
	// durable before it gets an error (default 10 s).
	WriteTimeout time.Duration
	// Rules are the access and messaging rules; they may also be set
	// later with SetRules.
	Rules
}

// Rules are what the hook asks of the access and messaging hooks, which
// are created after it (they route through it). Every field may be nil.
type Rules struct {
	// Admit are the messaging rules every message entering the hub meets,
	// in order, whatever its way in (entry.go): access, limits, the
	// envelope, receipts. The first error stops the message.
	Admit []Rule
	// CanRead, when set, is asked before a message is queued for a session
	// and again before it is sent, so that revoked access also stops
	// messages already queued. Nil allows everything.
	CanRead func(user, clientID, topic string) bool
	// Blocked, when set, reports whether recipient has blocked sender
	// (user names): a client's message is then not delivered to the
	// recipient's sessions, and the publisher is acknowledged as usual.
	Blocked func(recipient, sender string) bool
	// Ephemeral, when set, names topics whose messages go at QoS 0 to
	// connected sessions only and are never queued (typing indicators).
	Ephemeral func(topic string) bool
	// Copies, when set, returns messages to route along with a client's
	// publish, stored in the same commit before its PUBACK (copies of a
	// direct message for the sender's other devices). A copy never goes
	// to the publishing client itself.
	Copies func(cl *mqtt.Client, pk packets.Packet) []packets.Packet
	// Acknowledged, when set, is called when a client acknowledges a
	// queued message (PUBACK, or PUBCOMP for QoS 2), with the session's
	// client ID and user. It returns false when it has nothing to write:
	// the entry leaves the queue at once. Otherwise it calls done once,
	// possibly on the store's commit goroutine (so done must not block):
	// the entry leaves the queue after done(nil), so that what
	// Acknowledged wrote (a delivered receipt) is durable first; after
	// done(err) it stays and is sent again on the next connection.
	Acknowledged func(clientID, user string, m *storage.Message, done func(error)) bool
	// Acknowledges, when set, reports whether Acknowledged may act on m:
	// the sender keeps a copy of a message in flight only when it does
	// (a drain of 10,000 sessions otherwise holds a million copies). Nil
	// keeps every message for Acknowledged.
	Acknowledges func(m *storage.Message) bool
}

// Stats counts what the hook did, for metrics and tests.
type Stats struct {
	Enqueued     atomic.Int64 // queue entries written (one per session per message)
	Delivered    atomic.Int64 // entries acknowledged by clients
	Resent       atomic.Int64 // entries re-sent with DUP after a reconnect
	Refused      atomic.Int64 // publishes refused because a queue was full or the store failed
	QoS0Dropped  atomic.Int64 // QoS 0 messages dropped for a backed-up online session
	TooLarge     atomic.Int64 // entries dropped as larger than the client's maximum packet size
	Revoked      atomic.Int64 // queued entries dropped because the session may no longer read them
	CapExpired   atomic.Int64 // entries without an expiry dropped as older than the server's maximum message expiry
	Restored     atomic.Int64 // sessions restored from the store at start
	ExpiredTotal atomic.Int64 // sessions deleted because their expiry passed
	WillsSent    atomic.Int64 // wills published (will.go)
	WillsRefused atomic.Int64 // wills the rules refused or the store could not take
}

// Hook is the durable-session hook. Create it with New, add it to the
// server, then call Restore before the server accepts clients.
type Hook struct {
	mqtt.HookBase
	server       *mqtt.Server
	store        *storage.Store
	log          zerolog.Logger
	sampled      zerolog.Logger
	maxInflight  int
	writeTimeout time.Duration
	rules        Rules
	hub          *mqtt.Client // the publisher of RouteAsync's messages
	acks         acker        // entries to remove once their receipts are durable
	index        index        // subscriptions of our sessions
	shares       shares       // their shared subscriptions (shared.go)

	pipelines    sync.Map // *mqtt.Client -> *pipeline, for connections publishing QoS 1
	unsubscribed sync.Map // *mqtt.Client -> unsubscribed, from OnUnsubscribed to its UNSUBACK

	mu       sync.Mutex
	sessions map[string]*session // sessions by client ID: persistent ones and connected clean ones
	stopped  bool
	// wills of connected clients, taken from mochi (will.go), and the
	// timers of delayed wills by client ID.
	wills        map[*mqtt.Client]mqtt.Will
	delayedWills map[string]*time.Timer
	senders      workers // every goroutine the hook starts (kicker.go)

	stats Stats
}

// New returns the hook.
func New(opts Options) *Hook {
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 1024
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	log := opts.Logger.With().Str("component", "offline").Logger()
	h := &Hook{
		server:       opts.Server,
		store:        opts.Store,
		log:          log,
		sampled:      log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 1000}}),
		maxInflight:  opts.MaxInflight,
		writeTimeout: opts.WriteTimeout,
		rules:        opts.Rules,
		hub:          opts.Server.NewClient(nil, hubListener, "", true),
		sessions:     map[string]*session{},
		wills:        map[*mqtt.Client]mqtt.Will{},
		delayedWills: map[string]*time.Timer{},
	}
	h.acks.h = h
	return h
}

// ID implements mqtt.Hook.
func (h *Hook) ID() string { return "offline" }

// Provides implements mqtt.Hook.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPublish, mqtt.OnPacketRead,
		mqtt.OnClientExpired, mqtt.OnStopped, mqtt.OnPacketEncode,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired:
		return true
	}
	return false
}

// Stats returns the hook's counters.
func (h *Hook) Stats() *Stats { return &h.stats }

// Restore loads the persistent sessions from the store: expired ones are
// deleted, the others get their subscriptions back in the index and an
// offline client in mochi, so that a client resuming its session after a
// restart is told the session is present and gets its queue.
func (h *Hook) Restore(ctx context.Context) error {
	expired, err := h.store.DeleteExpiredSessions(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	orphans, err := h.store.DeleteOrphanQueues(ctx)
	if err != nil {
		return fmt.Errorf("delete queues of clean sessions: %w", err)
	}
	h.stats.ExpiredTotal.Add(int64(len(expired)))
	err = h.store.ListSessions(func(rec *storage.Session) error {
		if rec.Clean {
			return nil
		}
		s := restoredSession(rec)
		if rec.DisconnectedAt == 0 {
			// Connected when the process died: its last sends may not have
			// been recorded (marks are written after the PUBLISH).
			last, err := h.store.LastSeq(rec.ClientID)
			if err != nil {
				return err
			}
			s.uncertainUpTo = last
		}
		h.mu.Lock()
		h.sessions[rec.ClientID] = s
		h.mu.Unlock()
		for _, sub := range rec.Subscriptions {
			h.subscribe(rec.ClientID, sub.Filter)
		}
		h.server.Clients.Add(offlineClient(h.server, rec))
		h.stats.Restored.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore sessions: %w", err)
	}
	if n := h.stats.Restored.Load(); n > 0 || len(expired) > 0 || len(orphans) > 0 {
		h.log.Info().Int64("sessions", n).Int("expired_sessions", len(expired)).Int("clean_queues_deleted", len(orphans)).
			Msg("state restored from the store")
	}
	return nil
}

// OnStopped stops every sender and waits for them; the store is closed by
// its owner afterwards.
func (h *Hook) OnStopped() {
	h.mu.Lock()
	h.stopped = true
	var all []*session
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	h.stopWills()
	for _, s := range all {
		s.detach(nil)
	}
	h.senders.stop()
}

// SetRules installs the access and messaging rules once the hooks that
// provide them exist; call it before the server starts.
func (h *Hook) SetRules(r Rules) { h.rules = r }

// mayRead asks the access rules whether a session may receive a topic.
func (h *Hook) mayRead(s *session, topic string) bool {
	if h.rules.CanRead == nil {
		return true
	}
	return h.rules.CanRead(s.user(), s.id, topic)
}

// sessionOf returns the persistent session of a client ID, or nil.
func (h *Hook) sessionOf(id string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id]
}

var _ mqtt.Hook = (*Hook)(nil)
