package hooks

import (
	"slices"
	"strconv"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/xid"

	"github.com/mqhub/mqhub/hooks/offline"
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
	opts   EnvelopeOptions
	dedupe *dedupe // nil: deduplication off
}

// NewEnvelope returns the envelope hook.
func NewEnvelope(opts EnvelopeOptions) *Envelope {
	if opts.MaxRemembered <= 0 {
		opts.MaxRemembered = 200_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Envelope{opts: opts}
	if opts.DedupeWindow > 0 {
		h.dedupe = newDedupe(opts.DedupeWindow, opts.MaxRemembered)
	}
	return h
}

// ID implements mqtt.Hook.
func (h *Envelope) ID() string { return "envelope" }

// Provides implements mqtt.Hook.
func (h *Envelope) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketEncode:
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

// Admit is the envelope's rule on the entry path (offline.Rule): it
// stamps the envelope; a repeated ID of a message accepted before is
// acknowledged and dropped (offline.ErrIgnore). An ID enters the dedupe
// record only once its message is accepted, so a refused message can be
// retried with the same ID. The hub's own messages are not stamped.
func (h *Envelope) Admit(in *offline.Inbound) error {
	if in.Origin == offline.FromHub {
		return nil
	}
	pk := &in.Packet
	stamp := h.opts.AllTopics || isNamespaced(pk.TopicName)
	if !stamp && !hasUserProperty(pk.Properties.User, PropFrom, PropTS, PropID) {
		return nil // plain MQTT, relayed as published
	}
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
	sender := in.User
	if sender == "" {
		sender = "\x00" + in.Client.ID // anonymous: the client ID is all we know
	}
	if id != "" && h.dedupe != nil {
		key := dedupeKey{sender, id}
		r, rec := h.dedupe.reserve(key, now)
		if r == duplicate {
			return offline.ErrIgnore
		}
		in.OnOutcome(func(accepted bool) { h.dedupe.settle(key, rec, accepted) })
	}
	if !stamp {
		pk.Properties.User = props
		return nil
	}
	if id == "" {
		id = xid.NewWithTime(now).String()
	}
	pk.Properties.User = append(props,
		packets.UserProperty{Key: PropID, Val: id},
		packets.UserProperty{Key: PropFrom, Val: in.User},
		packets.UserProperty{Key: PropTS, Val: strconv.FormatInt(now.UnixMilli(), 10)},
	)
	return nil
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

var _ mqtt.Hook = (*Envelope)(nil)
