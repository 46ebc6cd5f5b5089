package offline

import (
	"errors"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The entry path: every message that enters the hub, whatever way it came
// (a client's PUBLISH, by topic name or by topic alias; a will, at once or
// after its delay; a message the hub makes itself), is handed to accept,
// which runs the messaging rules (Rules.Admit) over it once, in order, and
// only then routes it. A new way in is a caller of accept, never a copy of
// it. Mochi's own checks before OnPublish (its ACL check runs on the topic
// before the alias is resolved) are not relied on: the access rule is one
// of the Admit rules.

// Origin says how a message entered the hub.
type Origin uint8

const (
	// FromClient is a client's PUBLISH, its topic alias resolved.
	FromClient Origin = iota
	// FromWill is a will, published in the name of its client and user
	// when its connection ended (or its delay passed).
	FromWill
	// FromHub is a message the hub makes itself (receipts, presence).
	FromHub
)

func (o Origin) String() string {
	switch o {
	case FromClient:
		return "publish"
	case FromWill:
		return "will"
	}
	return "hub"
}

// ErrIgnore is returned by a rule for a message that is acknowledged as
// success and delivered to no one: a repeated message id (the retry of a
// message already accepted), or a refusal a client cannot be told
// (MQTT 3.1.1 has no reason codes).
var ErrIgnore = errors.New("acknowledged, not delivered")

// Inbound is a message entering the hub and who sends it.
type Inbound struct {
	Origin Origin
	// Client is the publishing client: for a will, the connection that
	// ended; for the hub's messages, an inline client.
	Client *mqtt.Client
	// User is the authenticated user the message is sent as ("" for an
	// anonymous client or the hub).
	User string
	// Packet is the message; rules may rewrite it.
	Packet  packets.Packet
	outcome []func(accepted bool)
}

// OnOutcome registers fn to learn, once, whether the message was accepted
// (stored for every destination, or handed to them) or refused. A rule
// that records something only for accepted messages (the dedupe window)
// commits or rolls back there.
func (in *Inbound) OnOutcome(fn func(accepted bool)) { in.outcome = append(in.outcome, fn) }

// settle reports the outcome to the rules that asked.
func (in *Inbound) Settle(accepted bool) {
	for _, fn := range in.outcome {
		fn(accepted)
	}
	in.outcome = nil
}

// Rule checks, and may rewrite, a message entering the hub. It returns
// nil to pass the message on, ErrIgnore, or a packets.Code refusing it
// with that reason.
type Rule func(in *Inbound) error

// admit runs the rules over in, in order; the first error stops them.
func (h *Hook) admit(in *Inbound) error {
	for _, rule := range h.rules.Admit {
		if err := rule(in); err != nil {
			return err
		}
	}
	return nil
}

// setExpiry sets the message's absolute expiry from the interval its
// publisher gave, capped by the server's maximum. A message without an
// interval has none [MQTT-3.3.2-5]: it is delivered without the property,
// and the hub enforces the cap itself (expiredByCap).
func (h *Hook) setExpiry(pk *packets.Packet, now time.Time) {
	pk.Expiry = 0
	interval := int64(pk.Properties.MessageExpiryInterval)
	if interval == 0 {
		return
	}
	if max := h.server.Options.Capabilities.MaximumMessageExpiryInterval; max > 0 && interval > max {
		interval = max
	}
	pk.Expiry = now.Unix() + interval
}

// expiredByCap reports whether a message published without an expiry
// interval has been kept longer than the server's maximum message expiry.
func (h *Hook) expiredByCap(expiresAt, createdNanos int64, now time.Time) bool {
	max := h.server.Options.Capabilities.MaximumMessageExpiryInterval
	return expiresAt == 0 && max > 0 && createdNanos > 0 && now.UnixNano()-createdNanos > max*int64(time.Second)
}

// refusalCode is the reason code of a refusal: the packets.Code a rule
// returned, else unspecified error.
func refusalCode(err error) packets.Code {
	var code packets.Code
	if errors.As(err, &code) {
		return code
	}
	return packets.ErrUnspecifiedError
}

// publishRefusal is the MQTT 5 answer refusing a QoS 1 or 2 PUBLISH with a
// reason code: PUBACK for QoS 1, PUBREC for QoS 2.
func publishRefusal(pk packets.Packet, code packets.Code) packets.Packet {
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: code.Reason},
	}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	return ack
}

// frontDoor runs on a client's PUBLISH before mochi looks at it. It
// resolves a topic alias, so that mochi and the rules see the topic the
// alias stands for, and answers what mochi would drop without a word:
// an alias that was never set (protocol error), a topic name with
// wildcards (topic name invalid), and topics clients may not publish to
// ($SYS, $share: not authorized, so that a QoS 1 publisher is not left
// waiting for a PUBACK). The returned error ends the connection.
func (h *Hook) frontDoor(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.Properties.TopicAliasFlag {
		alias := pk.Properties.TopicAlias
		if alias == 0 || alias > h.server.Options.Capabilities.TopicAliasMaximum {
			return pk, h.protocolError(cl, packets.ErrTopicAliasInvalid)
		}
		if pk.TopicName == "" {
			// Set with an empty topic returns the alias' topic, or ""
			// for an alias the client never set.
			if pk.TopicName = cl.State.TopicAliases.Inbound.Set(alias, ""); pk.TopicName == "" {
				return pk, h.protocolError(cl, packets.ErrProtocolViolationInvalidTopic)
			}
		}
	}
	switch {
	case strings.ContainsAny(pk.TopicName, "+#"):
		return pk, h.protocolError(cl, packets.ErrTopicNameInvalid) // [MQTT-3.3.2-2]
	case pk.TopicName == "":
		return pk, h.protocolError(cl, packets.ErrProtocolViolationNoTopic)
	case !mqtt.IsValidFilter(pk.TopicName, true):
		// $SYS and $share: mochi drops them silently.
		h.sampled.Info().Str("client_id", cl.ID).Str("user", string(cl.Properties.Username)).Str("topic", pk.TopicName).
			Msg("publish refused: topic not allowed")
		_ = h.answer(cl, pk, packets.ErrNotAuthorized)
	}
	return pk, nil
}

// protocolError ends a connection over a packet it must not send: MQTT 5
// gets DISCONNECT with the reason first. The returned error makes mochi
// stop reading.
func (h *Hook) protocolError(cl *mqtt.Client, code packets.Code) error {
	h.sampled.Info().Str("client_id", cl.ID).Str("user", string(cl.Properties.Username)).Str("reason", code.Reason).
		Msg("client disconnected: protocol error")
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.server.DisconnectClient(cl, code)
	} else {
		cl.Stop(code)
	}
	return packets.ErrRejectPacket
}
