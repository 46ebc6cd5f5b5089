package offline

import (
	"context"
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

// OnPublish runs on the publisher's read goroutine before mochi sends
// PUBACK/PUBREC. A QoS 1/2 message for persistent sessions is appended to
// their queues and OnPublish returns only when that is durable; if it
// cannot be stored, the publisher is refused (MQTT 5: PUBACK/PUBREC with a
// reason code; 3.1.1, which has none: the connection is closed, so the
// client re-sends after reconnecting). Concurrent publishers share group
// commits in the store.
//
// A QoS 1 publish from a client is pipelined instead (pipeline.go): the
// reader goes on while the write commits, and the PUBACK follows it.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline && cl.Net.Listener == relayListener {
		return pk, nil // a stored message coming back from the pipeline
	}
	plain, retained, online := h.plan(cl, pk)
	if len(plain)+len(retained) == 0 {
		return pk, nil
	}
	if pk.FixedHeader.Qos == 1 && !cl.Net.Inline {
		h.pipelineOf(cl).add(pk, plain, retained, online)
		return pk, packets.ErrRejectPacket // mochi neither acknowledges nor delivers: the pipeline will
	}
	if err := h.enqueue(cl, pk, plain, retained); err != nil {
		return pk, h.refuse(cl, pk, err)
	}
	for _, sd := range online {
		sd.kick()
	}
	return pk, nil
}

// OnWillSent routes a will to persistent sessions: mochi publishes wills
// straight to its own index, without OnPublish.
func (h *Hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if err := h.route(cl, pk); err != nil {
		h.stats.Refused.Add(1)
		h.sampled.Warn().Err(err).Str("client_id", cl.ID).Str("topic", pk.TopicName).Msg("will not queued for persistent sessions")
	}
}

// route delivers a message to the persistent sessions subscribed to its
// topic: QoS 0 to the online ones at once, QoS 1/2 through their queues.
func (h *Hook) route(cl *mqtt.Client, pk packets.Packet) error {
	plain, retained, online := h.plan(cl, pk)
	if len(plain)+len(retained) == 0 {
		return nil
	}
	if err := h.enqueue(cl, pk, plain, retained); err != nil {
		return err
	}
	for _, sd := range online {
		sd.kick()
	}
	return nil
}

// plan finds the persistent sessions a message goes to. QoS 0 messages are
// handed to the online ones here and never queued; for QoS 1/2 it returns
// the sessions whose queues get the message, split by the retain flag
// they see, and the senders to wake once it is stored.
func (h *Hook) plan(cl *mqtt.Client, pk packets.Packet) (plain, retained []string, online []*sender) {
	subs := h.index.Subscribers(pk.TopicName)
	if len(subs.Subscriptions) == 0 {
		return nil, nil, nil
	}
	for id := range subs.Subscriptions {
		s := h.sessionOf(id)
		if s == nil {
			continue
		}
		deliver, keepRetain := s.wants(pk.TopicName, cl.ID)
		if !deliver {
			continue
		}
		if pk.FixedHeader.Qos == 0 {
			if sd := s.online(); sd != nil {
				out := toPacket(toMessage(cl, pk, pk.FixedHeader.Retain && keepRetain), 0, nil)
				_, out.Properties.SubscriptionIdentifier = s.delivery(pk.TopicName, 0)
				sd.pushQoS0(out)
			}
			continue // QoS 0 is not queued for offline sessions
		}
		if pk.FixedHeader.Retain && keepRetain {
			retained = append(retained, id)
		} else {
			plain = append(plain, id)
		}
		if sd := s.online(); sd != nil {
			online = append(online, sd)
		}
	}
	return plain, retained, online
}

// enqueue writes the message for both groups of sessions; the two writes
// join the same group commit.
func (h *Hook) enqueue(cl *mqtt.Client, pk packets.Packet, plain, retained []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	results := make(chan error, 2)
	pending := 0
	for _, group := range []struct {
		ids    []string
		retain bool
	}{{plain, false}, {retained, true}} {
		if len(group.ids) == 0 {
			continue
		}
		n := len(group.ids)
		err := h.store.EnqueueAsync(group.ids, toMessage(cl, pk, group.retain), func(_ []uint64, err error) {
			if err == nil {
				h.stats.Enqueued.Add(int64(n))
			}
			results <- err
		})
		if err != nil {
			results <- err
		}
		pending++
	}
	var errs []error
	for range pending {
		select {
		case err := <-results:
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			pending = 0
		}
	}
	return errors.Join(errs...)
}

// refuse answers a publish that could not be stored and returns the error
// that stops mochi from acknowledging or delivering it.
func (h *Hook) refuse(cl *mqtt.Client, pk packets.Packet, err error) error {
	h.stats.Refused.Add(1)
	code := packets.ErrUnspecifiedError
	if errors.Is(err, storage.ErrQueueFull) {
		code = packets.ErrQuotaExceeded
	}
	h.sampled.Warn().Err(err).Str("client_id", cl.ID).Str("user", string(cl.Properties.Username)).
		Str("topic", pk.TopicName).Str("reason", code.Reason).Msg("publish refused: not stored")
	switch {
	case cl.Net.Inline:
		// A server-side publisher: the error is its to handle.
	case cl.Properties.ProtocolVersion == 5:
		ack := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID:    pk.PacketID,
			ReasonCode:  code.Code,
			Properties:  packets.Properties{ReasonString: code.Reason},
		}
		if pk.FixedHeader.Qos == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		_ = cl.WritePacket(ack)
	default:
		cl.Stop(code)
	}
	return packets.ErrRejectPacket
}
