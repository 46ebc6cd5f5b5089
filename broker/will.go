package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// willSender publishes the will of a session whose read loop panicked: mochi
// sends wills from code that the panic skipped. It publishes through a
// server-side client, so it checks the will topic against the ACL itself
// (mochi's own will path does not: issue #503).
type willSender struct {
	server  *mqtt.Server
	hub     *mqtt.Client // inline client used to inject the will
	allowed func(cl *mqtt.Client, topic string) bool
	log     zerolog.Logger

	mu      sync.Mutex
	pending map[string]*time.Timer // delayed wills by client ID
	closed  bool
}

func newWillSender(server *mqtt.Server, allowed func(*mqtt.Client, string) bool, log zerolog.Logger) *willSender {
	return &willSender{
		server:  server,
		hub:     server.NewClient(nil, mqtt.LocalListener, "$mqhub-will", true),
		allowed: allowed,
		log:     log,
		pending: map[string]*time.Timer{},
	}
}

// send publishes cl's will now, or after its will delay unless the client
// reconnects first [MQTT-3.1.3-9].
func (w *willSender) send(cl *mqtt.Client) {
	if !atomic.CompareAndSwapUint32(&cl.Properties.Will.Flag, 1, 0) {
		return
	}
	will := cl.Properties.Will
	if !w.allowed(cl, will.TopicName) {
		w.log.Warn().Str("client_id", cl.ID).Str("topic", will.TopicName).Msg("will not sent: topic not allowed for this client")
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: will.Qos, Retain: will.Retain},
		TopicName:   will.TopicName,
		Payload:     will.Payload,
		Properties:  packets.Properties{User: will.User},
		PacketID:    1, // required by validation for QoS > 0; inline publishes are not acknowledged
	}
	if will.WillDelayInterval == 0 {
		w.publish(cl.ID, pk)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if t, ok := w.pending[cl.ID]; ok {
		t.Stop()
	}
	w.pending[cl.ID] = time.AfterFunc(time.Duration(will.WillDelayInterval)*time.Second, func() {
		w.mu.Lock()
		delete(w.pending, cl.ID)
		w.mu.Unlock()
		if current, ok := w.server.Clients.Get(cl.ID); ok && current != cl && !current.Closed() {
			return // reconnected within the delay
		}
		w.publish(cl.ID, pk)
	})
}

func (w *willSender) publish(clientID string, pk packets.Packet) {
	if err := w.server.InjectPacket(w.hub, pk); err != nil {
		w.log.Warn().Err(err).Str("client_id", clientID).Str("topic", pk.TopicName).Msg("will not sent")
	}
}

// stop cancels delayed wills; shutdown does not wait for them, as mochi
// does not either.
func (w *willSender) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for id, t := range w.pending {
		t.Stop()
		delete(w.pending, id)
	}
}
