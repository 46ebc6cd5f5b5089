package offline

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

// maxAtomicSessions bounds the sessions of a publish stored in one
// all-or-nothing write (storage.EnqueueAllAsync). A publish to more (a
// large group, a fan-out) is checked for room in every queue first
// (storage.Room) and then written in parts of maxSessionsPerWrite that
// become visible one by one: in one write the first subscribers waited
// for the last (fan-out to 1,000 at QoS 1: p50 +2 ms, about 8%), and a
// very large group would not fit one Badger transaction. The answer is
// the same: all or nothing, except that queues filling at that very
// moment may overshoot their limit by what is in flight.
const (
	maxAtomicSessions   = 256
	maxSessionsPerWrite = 256
)

// route is a message and the sessions whose queues store it, split by the
// retain flag they see.
type route struct {
	pk              packets.Packet
	plain, retained []string
}

func (r route) sessions() int { return len(r.plain) + len(r.retained) }

// hubListener names the inline client that publishes the hub's own
// messages through RouteAsync.
const hubListener = "mqhub-hub"

// OnPublish runs on the publisher's read goroutine before mochi sends
// PUBACK/PUBREC: it is the entry path of clients' publishes (entry.go),
// topic aliases resolved. The rules run first; then a QoS 1/2 message for
// our sessions is stored for all of them before it is acknowledged; if it
// cannot be, the publisher is refused for every destination (MQTT 5:
// PUBACK/PUBREC with a reason code; 3.1.1, which has none: the connection
// is closed, so the client re-sends after reconnecting).
//
// A QoS 1 publish from a client is pipelined (pipeline.go): the reader
// goes on while the write commits, and the PUBACK follows it, after the
// PUBACKs of the publishes before it whatever decided them. QoS 2 and
// server-side publishes wait for the commit here.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline && cl.Net.Listener == relayListener {
		// A stored message coming back from the pipeline, for mochi's
		// own subscribers and the retained store: mochi set its expiry
		// to the server's maximum when it had none.
		h.setExpiry(&pk, time.Now())
		return pk, nil
	}
	in := &Inbound{Origin: FromClient, Client: cl, User: string(cl.Properties.Username), Packet: pk}
	if cl.Net.Inline {
		in.Origin = FromHub
	}
	h.setExpiry(&in.Packet, time.Now())
	if err := h.admit(in); err != nil {
		in.Settle(false)
		return in.Packet, h.answer(cl, in.Packet, err)
	}
	pk = in.Packet
	routes, online := h.routes(cl, pk)
	if pk.FixedHeader.Qos == 1 && !cl.Net.Inline && (len(routes) > 0 || h.pipelineBusy(cl)) {
		h.pipelineOf(cl).add(in, routes, online)
		return pk, packets.ErrRejectPacket // mochi neither acknowledges nor delivers: the pipeline will
	}
	if len(routes) > 0 {
		if err := h.enqueue(cl, routes); err != nil {
			in.Settle(false)
			return pk, h.refuse(cl, pk, err)
		}
	}
	in.Settle(true)
	for _, sd := range online {
		sd.kick()
	}
	return pk, nil
}

// answer tells a client that its publish will not be delivered, and
// returns the error that stops mochi from doing anything more with it.
// A QoS 1 answer waits its turn behind the connection's pipelined
// publishes [MQTT-4.6.0-2].
func (h *Hook) answer(cl *mqtt.Client, pk packets.Packet, err error) error {
	if pk.FixedHeader.Qos == 1 && !cl.Net.Inline && h.pipelineBusy(cl) {
		h.pipelineOf(cl).answer(pk, err)
		return packets.ErrRejectPacket
	}
	return h.tell(cl, pk, err)
}

// tell answers a publish that will not be delivered, now. ErrIgnore is
// acknowledged as success; a refusal gets its reason code (MQTT 5 QoS
// 1/2), is dropped (QoS 0), or closes the connection (MQTT 3.1.1 QoS 1/2,
// which has no negative acknowledgement [MQTT-3.3.5-2]).
func (h *Hook) tell(cl *mqtt.Client, pk packets.Packet, err error) error {
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	ignore := errors.Is(err, ErrIgnore)
	switch {
	case ignore && pk.FixedHeader.Qos == 2:
		return packets.CodeSuccessIgnore // mochi answers PUBREC and finishes the QoS 2 flow
	case ignore:
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	case cl.Properties.ProtocolVersion < 5:
		cl.Stop(refusalCode(err))
	default:
		_ = cl.WritePacket(publishRefusal(pk, refusalCode(err)))
	}
	return packets.ErrRejectPacket
}

// routes plans a publish and the copies the rules add to it (Rules.Copies).
func (h *Hook) routes(cl *mqtt.Client, pk packets.Packet) (routes []route, online []*sender) {
	r, online := h.plan(cl, pk, "")
	if r.sessions() > 0 {
		routes = append(routes, r)
	}
	if h.rules.Copies == nil || cl.Net.Inline {
		return routes, online
	}
	for _, c := range h.rules.Copies(cl, pk) {
		r, o := h.plan(cl, c, cl.ID)
		if r.sessions() > 0 {
			routes = append(routes, r)
		}
		online = append(online, o...)
	}
	return routes, online
}

// plan finds the sessions a message goes to; exclude, when set, is a
// client ID that does not get it. QoS 0 and ephemeral messages are handed
// to the online sessions here and never queued; for QoS 1/2 it returns the
// route (sessions split by the retain flag they see) and the senders to
// wake once the message is stored.
func (h *Hook) plan(cl *mqtt.Client, pk packets.Packet, exclude string) (r route, online []*sender) {
	r.pk = pk
	subscribers := h.index.subscribers(pk.TopicName)
	groups := h.shares.matching(pk.TopicName)
	if len(subscribers) == 0 && len(groups) == 0 {
		return r, nil
	}
	qos := pk.FixedHeader.Qos
	if qos > 0 && h.rules.Ephemeral != nil && h.rules.Ephemeral(pk.TopicName) {
		qos = 0
	}
	sender := ""
	if !cl.Net.Inline && h.rules.Blocked != nil {
		sender = string(cl.Properties.Username)
	}
	// may reports whether session s may get the message at all.
	may := func(s *session) bool {
		return h.mayRead(s, pk.TopicName) && (sender == "" || !h.rules.Blocked(s.user(), sender))
	}
	var live *packets.Packet // the QoS 0 packet sent to online sessions
	deliver := func(s *session, keepRetain bool) {
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
			return // QoS 0 is not queued for offline sessions
		}
		s.queued.Store(true)
		if pk.FixedHeader.Retain && keepRetain {
			r.retained = append(r.retained, s.id)
		} else {
			r.plain = append(r.plain, s.id)
		}
		if sd := s.online(); sd != nil {
			online = append(online, sd)
		}
	}
	for _, id := range subscribers {
		s := h.sessionOf(id)
		if s == nil || id == exclude {
			continue
		}
		if wanted, keepRetain := s.wants(pk.TopicName, cl.ID); wanted && may(s) {
			deliver(s, keepRetain)
		}
	}
	for _, group := range groups {
		id := h.shares.pick(group, func(id string) (ok, online bool) {
			s := h.sessionOf(id)
			if s == nil || id == exclude || slices.Contains(subscribers, id) || !may(s) {
				return false, false // a plain subscriber of the topic has it already
			}
			online = s.online() != nil
			return online || qos > 0, online
		})
		if s := h.sessionOf(id); id != "" && s != nil {
			deliver(s, s.retainAsPublished(group))
		}
	}
	return r, online
}

// deliveries are the store writes of a route: one per retain flag.
func (r route) deliveries(cl *mqtt.Client) []storage.Delivery {
	var out []storage.Delivery
	if len(r.plain) > 0 {
		out = append(out, storage.Delivery{Sessions: r.plain, Message: toMessage(cl, r.pk, false)})
	}
	if len(r.retained) > 0 {
		out = append(out, storage.Delivery{Sessions: r.retained, Message: toMessage(cl, r.pk, true)})
	}
	return out
}

// startWrites stores the messages of a publish, for all its sessions or
// none: in one write when it goes to at most maxAtomicSessions sessions,
// else in parts once every queue has room. done is called once, possibly
// on the store's commit goroutine, so it must not block.
func (h *Hook) startWrites(cl *mqtt.Client, routes []route, done func(error)) {
	var all []storage.Delivery
	n := 0
	for _, r := range routes {
		all = append(all, r.deliveries(cl)...)
		n += r.sessions()
	}
	if n <= maxAtomicSessions {
		err := h.store.EnqueueAllAsync(all, func(err error) {
			if err == nil {
				h.stats.Enqueued.Add(int64(n))
			}
			done(err)
		})
		if err != nil {
			done(err)
		}
		return
	}
	for _, d := range all {
		if err := h.store.Room(d.Sessions, d.Message); err != nil {
			done(err)
			return
		}
	}
	h.startChunked(all, true, done)
}

// startChunked stores deliveries in writes of maxSessionsPerWrite sessions
// and calls done once with the first error, when all are done. admitted:
// storage.Room found room for all of them.
func (h *Hook) startChunked(all []storage.Delivery, admitted bool, done func(error)) {
	var writes []storage.Delivery
	for _, d := range all {
		for ids := d.Sessions; len(ids) > 0; {
			k := min(len(ids), maxSessionsPerWrite)
			writes = append(writes, storage.Delivery{Sessions: ids[:k], Message: d.Message})
			ids = ids[k:]
		}
	}
	var (
		remaining atomic.Int32
		mu        sync.Mutex
		first     error
	)
	remaining.Store(int32(len(writes)))
	finish := func(err error) {
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
		mu.Lock()
		err = first
		mu.Unlock()
		done(err)
	}
	for _, w := range writes {
		k := int64(len(w.Sessions))
		enqueue := h.store.EnqueueAsync
		if admitted {
			enqueue = h.store.EnqueueAdmittedAsync
		}
		err := enqueue(w.Sessions, w.Message, func(_ []uint64, err error) {
			if err == nil {
				h.stats.Enqueued.Add(k)
			}
			finish(err)
		})
		if err != nil {
			finish(err)
		}
	}
}

// enqueue stores the messages of a publish and waits until the write
// committed.
func (h *Hook) enqueue(cl *mqtt.Client, routes []route) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	result := make(chan error, 1)
	h.startWrites(cl, routes, func(err error) { result <- err })
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
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
	return h.tell(cl, pk, code)
}

// RouteAsync delivers a message the hub publishes itself (a receipt) to
// the sessions subscribed to its topic, queueing it like any QoS 1/2
// message: every queue with room gets it (a full one does not take it
// back from the others). done is called once, when every queue write is
// durable or one failed (the first error), possibly on the store's commit
// goroutine: it must not block. Mochi's own subscribers (shared
// subscriptions) do not get it.
func (h *Hook) RouteAsync(pk packets.Packet, done func(error)) {
	r, online := h.plan(h.hub, pk, "")
	if r.sessions() == 0 {
		done(nil)
		return
	}
	h.startChunked(r.deliveries(h.hub), false, func(err error) {
		for _, sd := range online {
			sd.kick()
		}
		done(err)
	})
}
