package offline

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// relayListener names the inline clients that re-inject a stored message
// into mochi, so that OnPublish lets them through.
const relayListener = "mqhub-relay"

// maxPipelined bounds the QoS 1 publishes of one connection waiting for
// their group commit; a publisher beyond it waits (back-pressure).
const maxPipelined = 1024

// pipeline holds the QoS 1 publishes of one connection while their writes
// commit, so that the connection's reader is not blocked for an fsync per
// message: many of its publishes share one group commit. When a write is
// durable the pipeline does what mochi would have done, in the order the
// publishes arrived: it hands the message to mochi for mochi's own
// subscribers and retained storage, when there are any (through an inline
// relay client), wakes the sessions' senders, and sends PUBACK.
type pipeline struct {
	h     *Hook
	cl    *mqtt.Client
	relay *mqtt.Client
	slots chan struct{} // one per publish in the pipeline

	mu      sync.Mutex
	pending []*pipelined

	kicker kicker
}

type pipelined struct {
	in        *Inbound // nil for an answer decided on arrival
	pk        packets.Packet
	online    []*sender
	remaining atomic.Int32 // writes not yet committed
	mu        sync.Mutex
	err       error
	decided   bool // err is the answer, known on arrival (answer)
}

func (h *Hook) pipelineOf(cl *mqtt.Client) *pipeline {
	if p, ok := h.pipelines.Load(cl); ok {
		return p.(*pipeline)
	}
	relay := h.server.NewClient(nil, relayListener, cl.ID, true)
	relay.Properties.ProtocolVersion = cl.Properties.ProtocolVersion
	relay.Properties.Username = cl.Properties.Username
	p := &pipeline{h: h, cl: cl, relay: relay, slots: make(chan struct{}, maxPipelined)}
	actual, _ := h.pipelines.LoadOrStore(cl, p)
	return actual.(*pipeline)
}

// pipelineBusy reports whether a connection has QoS 1 publishes waiting
// for, or getting, their PUBACK. Only the connection's reader adds to a
// pipeline, so when the reader sees none, an answer it writes at once is
// in order.
func (h *Hook) pipelineBusy(cl *mqtt.Client) bool {
	p, ok := h.pipelines.Load(cl)
	return ok && len(p.(*pipeline).slots) > 0
}

// add starts the durable writes of one publish; PUBACK follows when they
// commit, and in.settle learns the outcome. A publish with nothing to
// store (routes empty) is answered in its turn. It blocks only while
// maxPipelined publishes are waiting.
func (p *pipeline) add(in *Inbound, routes []route, online []*sender) {
	e := &pipelined{in: in, pk: in.Packet, online: online}
	if len(routes) > 0 {
		e.remaining.Store(1)
	}
	p.push(e)
	if len(routes) == 0 {
		p.kick()
		return
	}
	p.h.startWrites(p.cl, routes, func(err error) { p.written(e, err) })
}

// answer queues the answer to a publish decided on arrival (a refusal, a
// duplicate), so that it leaves after the PUBACKs of earlier publishes.
func (p *pipeline) answer(pk packets.Packet, err error) {
	p.push(&pipelined{pk: pk, err: err, decided: true})
	p.kick()
}

func (p *pipeline) push(e *pipelined) {
	p.slots <- struct{}{}
	p.mu.Lock()
	p.pending = append(p.pending, e)
	p.mu.Unlock()
}

// written records the outcome of the publish's write; it may run on the
// store's commit goroutine, so it only records and kicks.
func (p *pipeline) written(e *pipelined, err error) {
	if err != nil {
		e.mu.Lock()
		e.err = err
		e.mu.Unlock()
	}
	if e.remaining.Add(-1) == 0 {
		p.kick()
	}
}

func (p *pipeline) kick() { p.kicker.kick(&p.h.senders, p.drain) }

// drain completes the committed publishes at the head, in arrival order:
// a later publish never gets its PUBACK before an earlier one [MQTT-4.6.0-2].
// The PUBACKs of one run go out in as few writes as possible.
func (p *pipeline) drain() {
	defer holdWrites(p.cl)()
	for {
		p.mu.Lock()
		if len(p.pending) == 0 || p.pending[0].remaining.Load() > 0 {
			p.mu.Unlock()
			return
		}
		e := p.pending[0]
		p.pending[0] = nil
		p.pending = p.pending[1:]
		p.mu.Unlock()
		p.complete(e)
		<-p.slots
	}
}

func (p *pipeline) complete(e *pipelined) {
	e.mu.Lock()
	err := e.err
	e.mu.Unlock()
	if e.decided {
		_ = p.h.tell(p.cl, e.pk, err)
		return
	}
	if err != nil {
		e.in.Settle(false)
		_ = p.h.refuse(p.cl, e.pk, err)
		return
	}
	e.in.Settle(true)
	pk := e.pk
	p.h.relay(p.relay, pk)
	for _, sd := range e.online {
		sd.kick()
	}
	_ = p.cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    pk.PacketID,
		ReasonCode:  packets.CodeSuccess.Code,
	})
}

// relay hands a stored message to mochi, when it has something to do with
// it (a retained message to keep, or subscribers of its own: shared and
// inline ones), through an inline client that OnPublish lets through.
func (h *Hook) relay(relay *mqtt.Client, pk packets.Packet) {
	if !pk.FixedHeader.Retain && !h.mochiSubscribed(pk.TopicName) {
		return
	}
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false // already resolved
	if err := h.server.InjectPacket(relay, pk); err != nil {
		h.sampled.Warn().Err(err).Str("client_id", relay.ID).Str("topic", pk.TopicName).Msg("stored message not handed to other subscribers")
	}
	// The message was counted when it arrived; the relay must not count it twice.
	atomic.AddInt64(&h.server.Info.MessagesReceived, -1)
	atomic.AddInt64(&h.server.Info.PacketsReceived, -1)
}

// mochiSubscribed reports whether mochi's own index (shared and inline
// subscriptions; ours live in h.index) has a subscriber for topic: only
// then, or for a retained message, is a stored message handed to mochi.
// Skipping mochi's publish path otherwise saves a packet copy and a run of
// every hook per message.
func (h *Hook) mochiSubscribed(topic string) bool {
	subs := h.server.Topics.Subscribers(topic)
	return len(subs.Subscriptions)+len(subs.Shared)+len(subs.InlineSubscriptions) > 0
}

// forget drops the pipeline of a closed connection once nothing waits in
// it; a publish still committing completes (delivery included) but its
// PUBACK has no connection to go to, and the client re-sends it.
func (h *Hook) forgetPipeline(cl *mqtt.Client) {
	h.pipelines.Delete(cl)
}
