package offline

import (
	"context"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

// Retained messages live in the store only, not in memory: the set may be
// large (100,000 device status topics), and a subscription reads just the
// part under its filter's literal prefix (storage.MatchRetained). Mochi
// keeps every retained message in its topic index; the hook takes each one
// out again as soon as it is stored, so mochi's own retained delivery on
// subscribe finds nothing and the hook's (sendRetained) is the only one.

// OnRetainMessage stores a retained message (or its removal) as mochi
// updates its in-memory index, before the publisher's PUBACK, and then
// removes it from that index. A message the store refused stays in mochi's
// memory (and reaches new subscribers only through mochi) until restart.
func (h *Hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	var err error
	if len(pk.Payload) == 0 {
		err = h.store.DeleteRetained(ctx, pk.TopicName)
	} else {
		err = h.store.PutRetained(ctx, toMessage(cl, pk, true))
	}
	if err != nil {
		h.sampled.Error().Err(err).Str("topic", pk.TopicName).Msg("retained message not stored; it is kept in memory until restart")
		return
	}
	h.server.Topics.RetainMessage(packets.Packet{TopicName: pk.TopicName}) // empty: removes it
}

// OnRetainedExpired removes a retained message whose expiry passed.
func (h *Hook) OnRetainedExpired(topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	if err := h.store.DeleteRetained(ctx, topic); err != nil {
		h.sampled.Error().Err(err).Str("topic", topic).Msg("expired retained message not deleted")
	}
}

// sendRetained queues for session s the retained messages matching a new
// subscription [MQTT-3.8.4-4], read from the store, unless its Retain
// Handling says not to [MQTT-3.3.1-10] [MQTT-3.3.1-11]. They go through the
// session's queue like any message, with the retain flag set: in order,
// within the client's Receive Maximum, the QoS capped by the
// subscription's. The access rules apply per topic (a filter such as g/+
// matches topics the session may not read), and so do block lists.
func (h *Hook) sendRetained(cl *mqtt.Client, s *session, sub packets.Subscription, existed bool) {
	if sub.RetainHandling == 2 || sub.RetainHandling == 1 && existed {
		return
	}
	queued := 0
	err := h.store.MatchRetained(sub.Filter, func(m *storage.Message) error {
		if (sub.NoLocal && m.ClientID == cl.ID) || !h.mayRead(s, m.Topic) {
			return nil
		}
		if h.rules.Blocked != nil && m.User != "" && h.rules.Blocked(s.user(), m.User) {
			return nil // a block covers what the blocked user retained, too
		}
		m.Retain = true
		s.queued.Store(true)
		queued++
		return h.store.EnqueueAsync([]string{s.id}, m, func(_ []uint64, err error) {
			if err != nil {
				h.sampled.Warn().Err(err).Str("client_id", s.id).Str("topic", m.Topic).Msg("retained message not queued for a new subscription")
			}
		})
	})
	if err != nil {
		h.sampled.Error().Err(err).Str("client_id", s.id).Str("filter", sub.Filter).Int("queued", queued).Msg("retained messages not all queued for a new subscription")
	}
}
