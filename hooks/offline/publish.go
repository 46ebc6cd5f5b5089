package offline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// route is a message and the queue writes that store it.
type route struct {
	pk     packets.Packet
	writes []write
}

// hubListener names the inline client that publishes the hub's own
// messages through RouteAsync.
const hubListener = "mqhub-hub"

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
	routes, online := h.routes(cl, pk)
	if len(routes) == 0 {
		return pk, nil
	}
	if pk.FixedHeader.Qos == 1 && !cl.Net.Inline {
		h.pipelineOf(cl).add(pk, routes, online)
		return pk, packets.ErrRejectPacket // mochi neither acknowledges nor delivers: the pipeline will
	}
	if err := h.enqueue(cl, routes); err != nil {
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
	writes, online := h.plan(cl, pk, "")
	if len(writes) > 0 {
		if err := h.enqueue(cl, []route{{pk, writes}}); err != nil {
			h.stats.Refused.Add(1)
			h.sampled.Warn().Err(err).Str("client_id", cl.ID).Str("topic", pk.TopicName).Msg("will not queued")
			return
		}
	}
	for _, sd := range online {
		sd.kick()
	}
}

// routes plans a publish and the copies the rules add to it (Rules.Copies).
func (h *Hook) routes(cl *mqtt.Client, pk packets.Packet) (routes []route, online []*sender) {
	writes, online := h.plan(cl, pk, "")
	if len(writes) > 0 {
		routes = append(routes, route{pk, writes})
	}
	if h.rules.Copies == nil || cl.Net.Inline {
		return routes, online
	}
	for _, c := range h.rules.Copies(cl, pk) {
		w, o := h.plan(cl, c, cl.ID)
		if len(w) > 0 {
			routes = append(routes, route{c, w})
		}
		online = append(online, o...)
	}
	return routes, online
}

// plan finds the sessions a message goes to; exclude, when set, is a
// client ID that does not get it. QoS 0 and ephemeral messages are handed
// to the online sessions here and never queued; for QoS 1/2 it returns the
// queue writes (sessions split by the retain flag they see, in chunks) and
// the senders to wake once the message is stored.
func (h *Hook) plan(cl *mqtt.Client, pk packets.Packet, exclude string) (writes []write, online []*sender) {
	subscribers := h.index.subscribers(pk.TopicName)
	if len(subscribers) == 0 {
		return nil, nil
	}
	qos := pk.FixedHeader.Qos
	if qos > 0 && h.rules.Ephemeral != nil && h.rules.Ephemeral(pk.TopicName) {
		qos = 0
	}
	sender := ""
	if !cl.Net.Inline && h.rules.Blocked != nil {
		sender = string(cl.Properties.Username)
	}
	var plain, retained []string
	var live *packets.Packet // the QoS 0 packet sent to online sessions
	for _, id := range subscribers {
		s := h.sessionOf(id)
		if s == nil || id == exclude {
			continue
		}
		deliver, keepRetain := s.wants(pk.TopicName, cl.ID)
		if !deliver || !h.mayRead(s, pk.TopicName) {
			continue
		}
		if sender != "" && h.rules.Blocked(s.user(), sender) {
			continue
		}
		if qos == 0 {
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

// startWrites submits the queue writes of messages; done is called once
// per write, possibly on the store's commit goroutine, so it must not
// block.
func (h *Hook) startWrites(cl *mqtt.Client, routes []route, done func(error)) {
	for _, r := range routes {
		h.startRoute(cl, r, done)
	}
}

func (h *Hook) startRoute(cl *mqtt.Client, r route, done func(error)) {
	for _, w := range r.writes {
		n := int64(len(w.ids))
		err := h.store.EnqueueAsync(w.ids, toMessage(cl, r.pk, w.retain), func(_ []uint64, err error) {
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

// countWrites is the number of queue writes of routes.
func countWrites(routes []route) int {
	n := 0
	for _, r := range routes {
		n += len(r.writes)
	}
	return n
}

// enqueue writes the messages and waits until every write committed (they
// join the same group commit).
func (h *Hook) enqueue(cl *mqtt.Client, routes []route) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	n := countWrites(routes)
	results := make(chan error, n)
	h.startWrites(cl, routes, func(err error) { results <- err })
	var errs []error
	for range n {
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

// RouteAsync delivers a message the hub publishes itself (a receipt) to
// the sessions subscribed to its topic, queueing it like any QoS 1/2
// message. done is called once, when every queue write is durable or one
// failed, possibly on the store's commit goroutine: it must not block.
// Mochi's own subscribers (shared subscriptions) do not get it.
func (h *Hook) RouteAsync(pk packets.Packet, done func(error)) {
	writes, online := h.plan(h.hub, pk, "")
	if len(writes) == 0 {
		done(nil)
		return
	}
	var (
		remaining atomic.Int32
		mu        sync.Mutex
		first     error
	)
	remaining.Store(int32(len(writes)))
	h.startRoute(h.hub, route{pk, writes}, func(err error) {
		if err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
		if remaining.Add(-1) > 0 {
			return
		}
		for _, sd := range online {
			sd.kick()
		}
		mu.Lock()
		err = first
		mu.Unlock()
		done(err)
	})
}
