package hooks

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/storage"
)

// Presence statuses (docs/protocol.md).
const (
	PresenceOnline  = "online"
	PresenceOffline = "offline"
)

// PresenceState is the retained JSON payload of presence/{user}.
type PresenceState struct {
	Status   string `json:"status"`
	LastSeen int64  `json:"last_seen,omitempty"` // Unix milliseconds; offline only, unless the user hides it
}

// PresenceOptions configures Presence.
type PresenceOptions struct {
	Server *mqtt.Server
	// Settings gives a user's privacy settings (Directory.Settings); nil
	// shows last seen for everyone.
	Settings func(user string) storage.Settings
	// Retained reads the retained presence messages (storage.Store), which
	// live in the store, not in mochi's memory.
	Retained RetainedReader
	Logger   zerolog.Logger
	Now      func() time.Time
}

// RetainedReader reads retained messages (storage.Store).
type RetainedReader interface {
	MatchRetained(filter string, fn func(*storage.Message) error) error
}

// Presence maintains the retained presence/{user}: `online` while at least
// one device of the user is connected, `offline` with `last_seen` when the
// last one disconnects (with DISCONNECT or not: a dropped socket or a
// missed keepalive counts the same). Updates are published at QoS 0: the
// retained message is the state, and a device that subscribes gets it at
// once, while stale flips are never queued for offline devices.
//
// Connects and disconnects only mark the user; one goroutine publishes the
// latest state of each marked user, so a flapping device costs no more
// than one publish per state change the worker sees, and no client's
// goroutine waits on a publish.
type Presence struct {
	mqtt.HookBase
	opts   PresenceOptions
	log    zerolog.Logger
	client *mqtt.Client // the inline publisher
	online atomic.Int64 // users with at least one device connected

	mu        sync.Mutex
	conns     map[string]map[*mqtt.Client]struct{} // user -> connected clients
	lastSeen  map[string]int64                     // user -> last disconnect (ms), until published
	published map[string]string                    // user -> last status published, while online
	dirty     []string                             // users to publish, in order
	marked    map[string]bool
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	started   bool
}

// NewPresence returns the presence hook. Call Restore once the retained
// messages are loaded and before clients connect; it starts the worker.
func NewPresence(opts PresenceOptions) *Presence {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Presence{
		opts:      opts,
		log:       opts.Logger.With().Str("component", "presence").Logger(),
		client:    opts.Server.NewClient(nil, "mqhub-presence", "", true),
		conns:     map[string]map[*mqtt.Client]struct{}{},
		lastSeen:  map[string]int64{},
		published: map[string]string{},
		marked:    map[string]bool{},
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// ID implements mqtt.Hook.
func (h *Presence) ID() string { return "presence" }

// Provides implements mqtt.Hook.
func (h *Presence) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnStopped:
		return true
	}
	return false
}

// Restore marks offline every user the retained presence still shows
// online: the process stopped without publishing it (a crash). Their last
// seen is now, the latest it can have been. Then it starts the worker.
func (h *Presence) Restore() {
	now := h.opts.Now().UnixMilli()
	h.mu.Lock()
	err := h.opts.Retained.MatchRetained("presence/+", func(m *storage.Message) error {
		var st PresenceState
		user := strings.TrimPrefix(m.Topic, "presence/")
		if json.Unmarshal(m.Payload, &st) == nil && st.Status == PresenceOnline {
			h.lastSeen[user] = now
			h.published[user] = PresenceOnline
			h.markLocked(user)
		}
		return nil
	})
	if err != nil {
		h.log.Error().Err(err).Msg("retained presence not read: users online at the last stop may still show online")
	}
	h.started = true
	h.mu.Unlock()
	go h.run()
}

// OnSessionEstablish counts a connected device of its user. It runs before
// CONNACK: counting after it (OnSessionEstablished) would let a device
// that connects and then sees another device of the user disconnect
// publish a false offline. A connection that fails before it is
// established gets no OnDisconnect from mochi: the listener calls
// ConnectionEnded for it.
func (h *Presence) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	user := string(cl.Properties.Username)
	if user == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.conns[user]
	if set == nil {
		set = map[*mqtt.Client]struct{}{}
		h.conns[user] = set
		h.online.Add(1)
	}
	set[cl] = struct{}{}
	h.markLocked(user)
}

// OnDisconnect uncounts the device; the last one sets last seen.
func (h *Presence) OnDisconnect(cl *mqtt.Client, err error, expire bool) { h.ConnectionEnded(cl) }

// ConnectionEnded uncounts a device whose connection ended, if it was
// counted; the last one of its user sets last seen.
func (h *Presence) ConnectionEnded(cl *mqtt.Client) {
	user := string(cl.Properties.Username)
	if user == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.conns[user]
	if _, ok := set[cl]; !ok {
		return
	}
	delete(set, cl)
	if len(set) == 0 {
		delete(h.conns, user)
		h.online.Add(-1)
		h.lastSeen[user] = h.opts.Now().UnixMilli()
	}
	h.markLocked(user)
}

// Online returns the number of users with at least one device connected.
func (h *Presence) Online() int64 { return h.online.Load() }

// Refresh applies a user's new privacy settings (Directory.OnSettings): a
// user who hides last seen while offline gets the retained presence
// republished without it. Showing it again takes effect at the next
// disconnect (the hub does not keep last seen of offline users).
func (h *Presence) Refresh(user string, st storage.Settings) {
	if !st.HideLastSeen {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns[user] != nil || !h.started {
		return
	}
	err := h.opts.Retained.MatchRetained("presence/"+user, func(m *storage.Message) error {
		var cur PresenceState
		if json.Unmarshal(m.Payload, &cur) == nil && cur.Status == PresenceOffline && cur.LastSeen != 0 {
			h.lastSeen[user] = cur.LastSeen
			h.markLocked(user)
		}
		return nil
	})
	if err != nil {
		h.log.Error().Err(err).Str("user", user).Msg("retained presence not read: last seen not hidden yet")
	}
}

// OnStopped publishes what is pending (the offline state of the clients
// disconnected by the shutdown) and stops the worker.
func (h *Presence) OnStopped() {
	h.mu.Lock()
	started := h.started
	h.mu.Unlock()
	if !started {
		return
	}
	close(h.stop)
	<-h.done
}

func (h *Presence) markLocked(user string) {
	if !h.marked[user] {
		h.marked[user] = true
		h.dirty = append(h.dirty, user)
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run publishes marked users until OnStopped, then once more.
func (h *Presence) run() {
	defer close(h.done)
	for {
		select {
		case <-h.wake:
			h.flush()
		case <-h.stop:
			h.flush()
			return
		}
	}
}

func (h *Presence) flush() {
	for {
		h.mu.Lock()
		if len(h.dirty) == 0 {
			h.mu.Unlock()
			return
		}
		user := h.dirty[0]
		h.dirty = h.dirty[1:]
		delete(h.marked, user)
		st := PresenceState{Status: PresenceOnline}
		if h.conns[user] == nil {
			st = PresenceState{Status: PresenceOffline, LastSeen: h.lastSeen[user]}
		}
		prev, seen := h.published[user]
		h.mu.Unlock()

		if st.Status == PresenceOnline && prev == PresenceOnline {
			continue // a second device, or a reconnect the worker did not see go down
		}
		if st.Status == PresenceOffline && !seen && st.LastSeen == 0 {
			continue
		}
		lastSeen := st.LastSeen
		if st.Status == PresenceOffline && h.opts.Settings != nil && h.opts.Settings(user).HideLastSeen {
			st.LastSeen = 0
		}
		h.publish(user, st)

		h.mu.Lock()
		if st.Status == PresenceOnline {
			h.published[user] = PresenceOnline
		} else if h.conns[user] == nil && h.lastSeen[user] == lastSeen {
			// Forget offline users (memory stays bounded by those online),
			// unless the user came and went again meanwhile: that newer
			// last seen is marked and published next.
			delete(h.published, user)
			delete(h.lastSeen, user)
		}
		h.mu.Unlock()
	}
}

func (h *Presence) publish(user string, st PresenceState) {
	payload, err := json.Marshal(st)
	if err != nil {
		h.log.Error().Err(err).Str("user", user).Msg("presence not encoded")
		return
	}
	err = h.opts.Server.InjectPacket(h.client, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
		TopicName:   "presence/" + user,
		Payload:     payload,
		Properties: packets.Properties{
			ContentType:   "application/json",
			PayloadFormat: 1, PayloadFormatFlag: true,
		},
	})
	if err != nil {
		h.log.Warn().Err(err).Str("user", user).Str("status", st.Status).Msg("presence not published")
		return
	}
	h.log.Debug().Str("user", user).Str("status", st.Status).Msg("presence published")
}

var _ mqtt.Hook = (*Presence)(nil)
