package hooks

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/storage"
)

// Receipt statuses (docs/protocol.md).
const (
	StatusDelivered = "delivered"
	StatusRead      = "read"
)

// maxReadIDs bounds the message IDs of one read receipt.
const maxReadIDs = 1000

// Receipt is the JSON payload of a message on u/{user}/receipts, as the
// hub delivers it. A delivered receipt names one message (ID); a read
// receipt names many (IDs).
type Receipt struct {
	Status string   `json:"status"`
	ID     string   `json:"id,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	By     string   `json:"by"`
	Device string   `json:"device,omitempty"` // delivered only: the client ID that acknowledged
	Group  string   `json:"group,omitempty"`  // delivered only: the group the message went to
	TS     int64    `json:"ts"`               // Unix milliseconds
}

// SentLog records which topic each message went to (storage.Store), so
// that a read receipt can be checked against it.
type SentLog interface {
	RecordSentAsync(sender, id, topic string, ttl time.Duration, done func(error)) error
	SentTopic(sender, id string) (string, error)
}

// Router queues a message the hub publishes itself (offline.Hook).
type Router interface {
	RouteAsync(pk packets.Packet, done func(error))
}

// ReceiptsOptions configures Receipts.
type ReceiptsOptions struct {
	Sent   SentLog
	Groups Membership
	Router Router
	// Window is how long after sending a message read receipts for it are
	// accepted (default 30 days): the sent record expires then.
	Window time.Duration
	Logger zerolog.Logger
	Now    func() time.Time
}

// Receipts implements the receipts of the messaging flow:
//
//   - every direct or group message a user publishes is recorded (sender,
//     id -> topic) for Window;
//   - when a device acknowledges a queued direct or group message
//     (offline.Rules.Acknowledged), a `delivered` receipt goes to the
//     sender's u/{sender}/receipts, stored before the entry leaves the
//     device's queue, so it survives a crash (at least once);
//   - a `read` receipt a reader publishes to u/{sender}/receipts keeps only
//     the IDs of messages that were addressed to the reader (its inbox or
//     a group it belongs to), gets `by` and `ts` stamped, and is routed.
//
// It runs after the envelope (which sets `id`) and before the offline hook
// (which stores what this hook rewrote).
type Receipts struct {
	mqtt.HookBase
	opts    ReceiptsOptions
	sampled zerolog.Logger
	stats   ReceiptsStats
}

// ReceiptsStats counts receipts, for metrics.
type ReceiptsStats struct {
	Delivered   atomic.Int64 // delivered receipts routed (one per recipient device)
	Read        atomic.Int64 // read receipts routed
	ReadRefused atomic.Int64 // read receipts refused: malformed, or naming nothing addressed to the reader
	ReadDropped atomic.Int64 // ids dropped from routed read receipts (not addressed to the reader)
	// DeliveredDropped counts delivered receipts some of the sender's
	// devices did not get because their queue was full.
	DeliveredDropped atomic.Int64
}

// Stats returns the hook's counters.
func (h *Receipts) Stats() *ReceiptsStats { return &h.stats }

// NewReceipts returns the receipts hook.
func NewReceipts(opts ReceiptsOptions) *Receipts {
	if opts.Window <= 0 {
		opts.Window = 30 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With().Str("component", "receipts").Logger()
	return &Receipts{
		opts:    opts,
		sampled: log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 1000}}),
	}
}

// ID implements mqtt.Hook.
func (h *Receipts) ID() string { return "receipts" }

// Provides implements mqtt.Hook.
func (h *Receipts) Provides(b byte) bool {
	switch b {
	}
	return false
}

// Admit is the receipts' rule on the entry path (offline.Rule): it
// records sent messages and checks and rewrites read receipts, whether
// they come as a PUBLISH or as a will.
func (h *Receipts) Admit(in *offline.Inbound) error {
	user := in.User
	if in.Origin == offline.FromHub || user == "" {
		return nil
	}
	if owner, sub, ok := userTopic(in.Packet.TopicName); ok {
		switch sub {
		case subtopicInbox:
			h.recordSent(in.Client, in.Packet, user)
		case subtopicReceipts:
			return h.read(in, owner, user)
		}
		return nil
	}
	if _, ok := groupTopic(in.Packet.TopicName); ok {
		h.recordSent(in.Client, in.Packet, user)
	}
	return nil
}

// recordSent submits the sent record before the offline hook submits the
// message itself: the store commits in order, so a message that is
// durable has its record too.
func (h *Receipts) recordSent(cl *mqtt.Client, pk packets.Packet, user string) {
	id := userProperty(pk.Properties.User, PropID)
	if id == "" {
		return
	}
	err := h.opts.Sent.RecordSentAsync(user, id, pk.TopicName, h.opts.Window, func(err error) {
		if err != nil {
			h.sampled.Warn().Err(err).Str("user", user).Str("id", id).Msg("sent message not recorded: read receipts for it will be refused")
		}
	})
	if err != nil {
		h.sampled.Warn().Err(err).Str("client_id", cl.ID).Str("user", user).Str("id", id).Msg("sent message not recorded: read receipts for it will be refused")
	}
}

// read checks a read receipt from reader for sender's messages and
// rewrites it as the hub delivers it.
func (h *Receipts) read(msg *offline.Inbound, sender, reader string) error {
	cl, pk := msg.Client, &msg.Packet
	var in struct {
		Status string   `json:"status"`
		IDs    []string `json:"ids"`
	}
	if err := json.Unmarshal(pk.Payload, &in); err != nil || in.Status != StatusRead || len(in.IDs) == 0 || len(in.IDs) > maxReadIDs {
		h.sampled.Info().Str("client_id", cl.ID).Str("user", reader).Str("topic", pk.TopicName).
			Msg(`receipt refused: the payload must be {"status":"read","ids":[...]} with 1 to 1000 ids`)
		h.stats.ReadRefused.Add(1)
		return refuseReceipt(msg, packets.ErrPayloadFormatInvalid)
	}
	valid := make([]string, 0, len(in.IDs))
	for _, id := range in.IDs {
		if sender != reader && h.addressedTo(sender, id, reader) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		h.sampled.Warn().Str("client_id", cl.ID).Str("user", reader).Str("topic", pk.TopicName).Int("ids", len(in.IDs)).
			Msg("read receipt refused: none of its messages was addressed to the reader")
		h.stats.ReadRefused.Add(1)
		return refuseReceipt(msg, packets.ErrNotAuthorized)
	}
	payload, err := json.Marshal(Receipt{Status: StatusRead, IDs: valid, By: reader, TS: h.opts.Now().UnixMilli()})
	if err != nil {
		return err
	}
	h.stats.Read.Add(1)
	h.stats.ReadDropped.Add(int64(len(in.IDs) - len(valid)))
	pk.Payload = payload
	pk.Properties.ContentType = "application/json"
	pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = 1, true
	pk.FixedHeader.Retain = false
	return nil
}

// addressedTo reports whether sender's message id went to reader: to the
// reader's inbox, or to a group the reader belongs to.
func (h *Receipts) addressedTo(sender, id, reader string) bool {
	topic, err := h.opts.Sent.SentTopic(sender, id)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			h.sampled.Error().Err(err).Str("user", sender).Str("id", id).Msg("sent record lookup failed")
		}
		return false
	}
	if owner, sub, ok := userTopic(topic); ok {
		return sub == subtopicInbox && owner == reader
	}
	group, ok := groupTopic(topic)
	return ok && h.opts.Groups != nil && h.opts.Groups.IsMember(group, reader)
}

// Delivered is offline.Rules.Acknowledged: a device of user acknowledged m.
// For a direct or group message from another user it routes a delivered
// receipt to the sender, calls done once that is durable and returns true;
// for anything else it returns false.
func (h *Receipts) Delivered(clientID, user string, m *storage.Message, done func(error)) bool {
	id, group, ok := receiptFor(m)
	if !ok || user == "" || m.User == user {
		return false
	}
	if owner, _, direct := userTopic(m.Topic); direct && owner != user {
		return false
	}
	sender := m.User
	r := Receipt{Status: StatusDelivered, ID: id, By: user, Device: clientID, Group: group, TS: h.opts.Now().UnixMilli()}
	payload, err := json.Marshal(r)
	if err != nil {
		done(err)
		return true
	}
	h.stats.Delivered.Add(1)
	route := func(err error) {
		if errors.Is(err, storage.ErrQueueFull) {
			// The recipient's acknowledgement must take the message out of
			// her queue whatever happens to the receipt: a receipt the
			// sender's devices have no room for is dropped for them (the
			// others got it), counted, and never holds her queue hostage.
			h.stats.DeliveredDropped.Add(1)
			h.sampled.Warn().Err(err).Str("user", sender).Str("id", id).Str("by", user).
				Msg("delivered receipt dropped for devices whose queue is full")
			err = nil
		}
		done(err)
	}
	h.opts.Router.RouteAsync(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "u/" + sender + "/" + subtopicReceipts,
		Payload:     payload,
		Properties: packets.Properties{
			ContentType:   "application/json",
			PayloadFormat: 1, PayloadFormatFlag: true,
		},
	}, route)
	return true
}

// WantsDelivered is offline.Rules.Acknowledges: whether Delivered may
// write a receipt for m, so that the sender keeps only those messages
// while they are in flight.
func (h *Receipts) WantsDelivered(m *storage.Message) bool {
	_, _, ok := receiptFor(m)
	return ok
}

// receiptFor reports whether m is a message a delivered receipt is written
// for (a direct message to an inbox, or a group message, with an id and a
// sender), and its id and group.
func receiptFor(m *storage.Message) (id, group string, ok bool) {
	for _, p := range m.UserProperties {
		if p.Key == PropID {
			id = p.Value
			break
		}
	}
	if id == "" || m.User == "" {
		return "", "", false
	}
	if _, sub, direct := userTopic(m.Topic); direct {
		return id, "", sub == subtopicInbox
	}
	group, ok = groupTopic(m.Topic)
	return id, group, ok
}

// userProperty returns the first value of a user property, or "".
func userProperty(props []packets.UserProperty, key string) string {
	for _, p := range props {
		if p.Key == key {
			return p.Val
		}
	}
	return ""
}

// refuseReceipt refuses a read receipt with code. MQTT 3.1.1, which has no
// reason codes, gets it acknowledged and dropped: closing the connection
// over a bad receipt would only make the client send it again.
func refuseReceipt(in *offline.Inbound, code packets.Code) error {
	if in.Origin == offline.FromClient && in.Client.Properties.ProtocolVersion < 5 {
		return offline.ErrIgnore
	}
	return code
}

var _ mqtt.Hook = (*Receipts)(nil)
