package offline

import (
	"context"
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/storage"
)

// maxSessionsPerWrite bounds the sessions of one queue write, so that a
// message for a large group stays within one Badger transaction.
const maxSessionsPerWrite = 256

// write is one queue write of a message: the sessions it goes to, all
// seeing the same retain flag.
type write struct {
	ids    []string
	retain bool
}

// OnPublish runs on the publisher's read goroutine before mochi sends
// PUBACK/PUBREC. A QoS 1/2 message for our sessions is appended to their
// queues before it is acknowledged; if it cannot be stored, the publisher
// is refused (MQTT 5: PUBACK/PUBREC with a reason code; 3.1.1, which has
// none: the connection is closed, so the client re-sends after
// reconnecting).
//
// A QoS 1 publish from a client is pipelined (pipeline.go): the reader
// goes on while the write commits, and the PUBACK follows it. QoS 2 and
// server-side publishes wait for the commit here.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline && cl.Net.Listener == relayListener {
		return pk, nil // a stored message coming back from the pipeline
	}
	writes, online := h.plan(cl, pk)
	if len(writes) == 0 {
		return pk, nil
	}
	if pk.FixedHeader.Qos == 1 && !cl.Net.Inline {
		h.pipelineOf(cl).add(pk, writes, online)
		return pk, packets.ErrRejectPacket // mochi neither acknowledges nor delivers: the pipeline will
	}
	if err := h.enqueue(cl, pk, writes); err != nil {
		return pk, h.refuse(cl, pk, err)
	}
	for _, sd := range online {
		sd.kick()
	}
	return pk, nil
}

// OnWillSent routes a will to our sessions: mochi publishes wills straight
// to its own index, without OnPublish.
func (h *Hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	// Mochi keeps a delayed will's send time in Expiry; the message itself
	// expires like any other.
	pk.Expiry = 0
	if max := h.server.Options.Capabilities.MaximumMessageExpiryInterval; max > 0 {
		pk.Expiry = time.Now().Unix() + max
	}
	writes, online := h.plan(cl, pk)
	if len(writes) > 0 {
		if err := h.enqueue(cl, pk, writes); err != nil {
			h.stats.Refused.Add(1)
			h.sampled.Warn().Err(err).Str("client_id", cl.ID).Str("topic", pk.TopicName).Msg("will not queued")
			return
		}
	}
	for _, sd := range online {
		sd.kick()
	}
}

// plan finds the sessions a message goes to. QoS 0 messages are handed to
// the online ones here and never queued; for QoS 1/2 it returns the queue
// writes (sessions split by the retain flag they see, in chunks) and the
// senders to wake once the message is stored.
func (h *Hook) plan(cl *mqtt.Client, pk packets.Packet) (writes []write, online []*sender) {
	subs := h.index.Subscribers(pk.TopicName)
	if len(subs.Subscriptions) == 0 {
		return nil, nil
	}
	var plain, retained []string
	var live *packets.Packet // the QoS 0 packet sent to online sessions
	for id := range subs.Subscriptions {
		s := h.sessionOf(id)
		if s == nil {
			continue
		}
		deliver, keepRetain := s.wants(pk.TopicName, cl.ID)
		if !deliver || !h.mayRead(s, pk.TopicName) {
			continue
		}
		if pk.FixedHeader.Qos == 0 {
			if sd := s.online(); sd != nil {
				if live == nil {
					p := toPacket(toMessage(cl, pk, false), 0, nil) // once per message, shared read-only
					live = &p
				}
				out := *live
				out.FixedHeader.Retain = pk.FixedHeader.Retain && keepRetain
				_, out.Properties.SubscriptionIdentifier = s.delivery(pk.TopicName, 0)
				sd.pushQoS0(out)
			}
			continue // QoS 0 is not queued for offline sessions
		}
		s.queued.Store(true)
		if pk.FixedHeader.Retain && keepRetain {
			retained = append(retained, id)
		} else {
			plain = append(plain, id)
		}
		if sd := s.online(); sd != nil {
			online = append(online, sd)
		}
	}
	for _, group := range []write{{plain, false}, {retained, true}} {
		for len(group.ids) > 0 {
			n := min(len(group.ids), maxSessionsPerWrite)
			writes = append(writes, write{group.ids[:n], group.retain})
			group.ids = group.ids[n:]
		}
	}
	return writes, online
}

// startWrites submits the queue writes of one message; done is called once
// per write, possibly on the store's commit goroutine, so it must not
// block.
func (h *Hook) startWrites(cl *mqtt.Client, pk packets.Packet, writes []write, done func(error)) {
	for _, w := range writes {
		n := int64(len(w.ids))
		err := h.store.EnqueueAsync(w.ids, toMessage(cl, pk, w.retain), func(_ []uint64, err error) {
			if err == nil {
				h.stats.Enqueued.Add(n)
			}
			done(err)
		})
		if err != nil {
			done(err)
		}
	}
}

// enqueue writes the message and waits until every write committed (they
// join the same group commit).
func (h *Hook) enqueue(cl *mqtt.Client, pk packets.Packet, writes []write) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	results := make(chan error, len(writes))
	h.startWrites(cl, pk, writes, func(err error) { results <- err })
	var errs []error
	for range writes {
		select {
		case err := <-results:
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
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
		_ = cl.WritePacket(hooks.PublishRefusal(pk, code))
	default:
		cl.Stop(code)
	}
	return packets.ErrRejectPacket
}
