package hooks

import (
	"slices"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/xid"
)

// Envelope user properties (docs/security.md; docs/protocol.md will be the
// authority once the messaging flow lands).
const (
	PropID   = "id"   // message ID: the client's, else one assigned by the hub
	PropFrom = "from" // the authenticated sender, always set by the hub
	PropTS   = "ts"   // accept time, Unix milliseconds, set by the hub
)

// EnvelopeOptions configures Envelope.
type EnvelopeOptions struct {
	// AllTopics stamps every message. Otherwise only messages in the
	// hub's namespaces (u/, g/) are stamped, and other topics are relayed
	// as published, as any MQTT broker does: the envelope is about 60
	// bytes of user properties per delivery, which plain MQTT traffic
	// (sensors, a fan-in) pays for without using it. A client-set `from`
	// or `ts` is removed from them either way, so that nobody can speak
	// for someone else.
	AllTopics bool
	// DedupeWindow is how long a message ID from one sender is
	// remembered: a PUBLISH repeating it within the window is acknowledged
	// but not delivered again (a retry after a lost PUBACK). 0 turns
	// deduplication off.
	DedupeWindow time.Duration
	// MaxRemembered bounds the IDs remembered at once (default 200,000,
	// about 25 MB); beyond it the oldest are forgotten early. Only IDs
	// chosen by clients are remembered.
	MaxRemembered int
	Now           func() time.Time
}

// Envelope stamps the metadata of client PUBLISHes (those in the hub's
// namespaces, or all: EnvelopeOptions.AllTopics) into MQTT 5 user
// properties: `from` (the authenticated user; a value the client set is
// replaced, so nobody can speak for someone else), `ts` (accept time) and
// `id` (kept when the client chose one, assigned otherwise). The payload is
// never touched; MQTT 3.1.1 subscribers receive it without properties.
//
// It runs after auth (which sets the user) and before the offline hook
// (which stores the message as stamped).
type Envelope struct {
	mqtt.HookBase
	opts EnvelopeOptions

	mu    sync.Mutex
	seen  map[dedupeKey]time.Time
	order []dedupeEntry // insertion order, for expiry and the size bound
}

type dedupeKey struct{ sender, id string }

type dedupeEntry struct {
	key dedupeKey
	at  time.Time
}

// NewEnvelope returns the envelope hook.
func NewEnvelope(opts EnvelopeOptions) *Envelope {
	if opts.MaxRemembered <= 0 {
		opts.MaxRemembered = 200_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Envelope{opts: opts, seen: map[dedupeKey]time.Time{}}
}

// ID implements mqtt.Hook.
func (h *Envelope) ID() string { return "envelope" }

// Provides implements mqtt.Hook.
func (h *Envelope) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPacketEncode:
		return true
	}
	return false
}

// OnPacketEncode keeps the envelope on PUBLISH packets to clients that set
// Request Problem Information to 0 (paho.golang does whenever a client
// sets connect properties). Mochi then strips user properties from every
// packet, but the rule it follows [MQTT-3.1.2-29] exempts PUBLISH: only
// acknowledgements lose their reason strings and user properties.
func (h *Envelope) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Publish {
		pk.Mods.DisallowProblemInfo = false
	}
	return pk
}

// OnPublish stamps the envelope; a repeated ID is acknowledged and dropped
// (packets.CodeSuccessIgnore: mochi acknowledges, nothing is delivered and
// the hooks after this one do not run).
func (h *Envelope) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the hub's own messages, or a stored one coming back
	}
	stamp := h.opts.AllTopics || isNamespaced(pk.TopicName)
	if !stamp && !hasUserProperty(pk.Properties.User, PropFrom, PropTS, PropID) {
		return pk, nil // plain MQTT, relayed as published
	}
	user := string(cl.Properties.Username)
	now := h.opts.Now()
	id := ""
	props := make([]packets.UserProperty, 0, len(pk.Properties.User)+3)
	for _, p := range pk.Properties.User {
		switch p.Key {
		case PropFrom, PropTS:
			continue // the hub's to say
		case PropID:
			if id == "" && p.Val != "" && len(p.Val) <= 128 {
				id = p.Val
			}
			if stamp {
				continue // set below
			}
		}
		props = append(props, p)
	}
	sender := user
	if sender == "" {
		sender = "\x00" + cl.ID // anonymous: the client ID is all we know
	}
	if id != "" && h.repeated(dedupeKey{sender, id}, now) {
		return pk, packets.CodeSuccessIgnore
	}
	if !stamp {
		pk.Properties.User = props
		return pk, nil
	}
	if id == "" {
		id = xid.NewWithTime(now).String()
	}
	props = append(props,
		packets.UserProperty{Key: PropID, Val: id},
		packets.UserProperty{Key: PropFrom, Val: user},
		packets.UserProperty{Key: PropTS, Val: strconv.FormatInt(now.UnixMilli(), 10)},
	)
	pk.Properties.User = props
	return pk, nil
}

// hasUserProperty reports whether props holds any of keys.
func hasUserProperty(props []packets.UserProperty, keys ...string) bool {
	for _, p := range props {
		if slices.Contains(keys, p.Key) {
			return true
		}
	}
	return false
}

// repeated records a sender's message ID and reports whether it was seen
// within the window.
func (h *Envelope) repeated(key dedupeKey, now time.Time) bool {
	if h.opts.DedupeWindow <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cut := now.Add(-h.opts.DedupeWindow)
	for len(h.order) > 0 && (h.order[0].at.Before(cut) || len(h.order) > h.opts.MaxRemembered) {
		old := h.order[0]
		if h.seen[old.key].Equal(old.at) {
			delete(h.seen, old.key)
		}
		h.order[0] = dedupeEntry{}
		h.order = h.order[1:]
	}
	if at, ok := h.seen[key]; ok && !at.Before(cut) {
		return true
	}
	h.seen[key] = now
	h.order = append(h.order, dedupeEntry{key, now})
	return false
}

var _ mqtt.Hook = (*Envelope)(nil)
