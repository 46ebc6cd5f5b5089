package offline

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

// OnRetainMessage stores a retained message (or its removal) as mochi
// updates its in-memory index, before the publisher's PUBACK: for QoS 1/2
// the write is durable first; QoS 0, which promises nothing, is written in
// the background.
func (h *Hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	m := toMessage(cl, pk, true)
	var err error
	switch {
	case len(pk.Payload) == 0 && r == 0:
		return // clearing a topic that had nothing retained
	case len(pk.Payload) == 0:
		ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
		err = h.store.DeleteRetained(ctx, pk.TopicName)
		cancel()
	case pk.FixedHeader.Qos == 0:
		err = h.store.PutRetainedAsync(m, func(err error) { h.retainFailed(pk.TopicName, err) })
	default:
		ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
		err = h.store.PutRetained(ctx, m)
		cancel()
	}
	h.retainFailed(pk.TopicName, err)
}

func (h *Hook) retainFailed(topic string, err error) {
	if err != nil {
		h.sampled.Error().Err(err).Str("topic", topic).Msg("retained message not stored; it is kept in memory until restart")
	}
}

// OnRetainedExpired removes a retained message whose expiry passed.
func (h *Hook) OnRetainedExpired(topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	h.retainFailed(topic, h.store.DeleteRetained(ctx, topic))
}

// restoreRetained loads the stored retained messages into mochi's index,
// skipping those that expired while the hub was down.
func (h *Hook) restoreRetained() (int, error) {
	n := 0
	err := h.store.EachRetained(func(m *storage.Message) error {
		if m.ExpiresAt != 0 && m.ExpiresAt <= time.Now().Unix() {
			return nil
		}
		pk := toPacket(m, m.QoS, nil)
		pk.FixedHeader.Retain = true
		pk.ProtocolVersion = 5 // keeps the expiry of MQTT 5 messages enforced by mochi
		h.server.Topics.RetainMessage(pk)
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("restore retained messages: %w", err)
	}
	return n, nil
}
