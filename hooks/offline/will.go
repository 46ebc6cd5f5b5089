package offline

import (
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Wills are the hub's, not mochi's: mochi publishes a will straight to its
// own subscribers, past every OnPublish rule (a will could forge a read
// receipt, stay retained in an inbox, or reach a group its client had
// left), and its delayed wills race its session expiry (a will whose delay
// is at least the session expiry was lost in about half the runs). The
// hook takes a connection's will from mochi when the session starts and,
// when the connection ends without a normal DISCONNECT, publishes it
// through the entry path as its client's user at that moment, when the
// delay ends or the session ends, whichever comes first [MQTT-3.1.2-8];
// a new connection of the session before then cancels it [MQTT-3.1.3-9].

// takeWill moves a new connection's will from mochi to the hook, and
// cancels a delayed will of an earlier connection of the session.
func (h *Hook) takeWill(cl *mqtt.Client) {
	h.cancelWill(cl.ID)
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		return
	}
	w := cl.Properties.Will
	// Mochi reads the will only from this client's goroutine (sendLWT
	// after its read loop), which is the one running this hook.
	cl.Properties.Will = mqtt.Will{}
	h.mu.Lock()
	h.wills[cl] = w
	h.mu.Unlock()
}

// cancelWill stops the delayed will of a client ID, if one is waiting.
func (h *Hook) cancelWill(clientID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.delayedWills[clientID]; ok {
		t.Stop()
		delete(h.delayedWills, clientID)
	}
}

// endWill handles the will of a connection that ended: dropped after a
// normal DISCONNECT [MQTT-3.14.4-3], else published now or after its
// delay. expire: the session ends with the connection.
func (h *Hook) endWill(cl *mqtt.Client, err error, expire bool) {
	h.mu.Lock()
	w, ok := h.wills[cl]
	delete(h.wills, cl)
	h.mu.Unlock()
	cause := err
	if cause == nil {
		cause = cl.StopCause()
	}
	if !ok || cause == nil || errors.Is(cause, packets.CodeDisconnect) {
		return
	}
	delay := time.Duration(w.WillDelayInterval) * time.Second
	if cl.Properties.ProtocolVersion == 5 && !expire {
		// The session ends at its expiry: the will goes then at the latest.
		delay = min(delay, time.Duration(cl.Properties.Props.SessionExpiryInterval)*time.Second)
	}
	if expire || delay <= 0 {
		h.publishWill(cl, w)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped || h.reconnected(cl) {
		return
	}
	if t, ok := h.delayedWills[cl.ID]; ok {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		h.mu.Lock()
		if h.delayedWills[cl.ID] != t || h.stopped {
			h.mu.Unlock()
			return // cancelled by a new connection, or shutting down
		}
		delete(h.delayedWills, cl.ID)
		h.mu.Unlock()
		if h.reconnected(cl) {
			return // a takeover: the new connection started before this one's end was seen
		}
		if !h.senders.start() {
			return // shutting down
		}
		defer h.senders.done()
		h.publishWill(cl, w)
	})
	h.delayedWills[cl.ID] = t
}

// reconnected reports whether a newer connection of cl's session is up.
func (h *Hook) reconnected(cl *mqtt.Client) bool {
	current, ok := h.server.Clients.Get(cl.ID)
	return ok && current != cl && !current.Closed()
}

// stopWills cancels the delayed wills; shutdown does not wait for them.
func (h *Hook) stopWills() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, t := range h.delayedWills {
		t.Stop()
		delete(h.delayedWills, id)
	}
}

// publishWill sends a will through the entry path, as a PUBLISH of its
// client's user at this moment would be: the same rules, the same
// queues. Nobody is there to be told of a refusal: it is logged and
// counted.
func (h *Hook) publishWill(cl *mqtt.Client, w mqtt.Will) {
	in := &Inbound{
		Origin: FromWill,
		Client: cl,
		User:   string(cl.Properties.Username),
		Packet: packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: w.Qos, Retain: w.Retain},
			TopicName:   w.TopicName,
			Payload:     w.Payload,
			Properties:  packets.Properties{User: w.User},
			Origin:      cl.ID,
			Created:     time.Now().Unix(),
		},
	}
	h.setExpiry(&in.Packet, time.Now())
	if err := h.admit(in); err != nil {
		in.Settle(false)
		h.stats.WillsRefused.Add(1) // the rule logged why
		return
	}
	pk := in.Packet
	relay := h.server.NewClient(nil, relayListener, cl.ID, true)
	relay.Properties.ProtocolVersion = cl.Properties.ProtocolVersion
	relay.Properties.Username = cl.Properties.Username
	needRelay := pk.FixedHeader.Retain || h.mochiSubscribed(pk.TopicName)
	routes, online := h.routes(cl, pk)
	if len(routes) == 0 {
		in.Settle(true)
		h.stats.WillsSent.Add(1)
		h.relay(relay, pk)
		return
	}
	h.startWrites(cl, routes, func(err error) {
		if err != nil {
			in.Settle(false)
			h.stats.WillsRefused.Add(1)
			h.stats.Refused.Add(1)
			h.sampled.Warn().Err(err).Str("client_id", cl.ID).Str("user", in.User).Str("topic", pk.TopicName).
				Msg("will not sent: not stored")
			return
		}
		in.Settle(true)
		h.stats.WillsSent.Add(1)
		for _, sd := range online {
			sd.kick()
		}
		if needRelay && h.senders.start() {
			// Off the commit goroutine: mochi's publish path writes
			// retained messages to the store.
			go func() {
				defer h.senders.done()
				h.relay(relay, pk)
			}()
		}
	})
}
