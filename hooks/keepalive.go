package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// KeepaliveCap is the hook that bounds the keep-alive a client may ask for
// (--max-keepalive), so that a dead connection that sends nothing is found
// within 1.5 times the cap, not after the hours a client may ask for, or
// never (keep-alive 0).
//
// A client asking for more than Max, or for 0 (no keep-alive), gets Max.
// An MQTT 5 client is told in the CONNACK's Server Keep Alive property
// [MQTT-3.2.2-21], which it must then use. MQTT 3.1.1 has no way to tell
// the client, so the hub only applies the cap to its read deadline: such a
// client that stays silent longer than 1.5 times the cap is disconnected
// and reconnects. (mosquitto refuses such a 3.1.1 CONNECT instead; a client
// that can never connect is worse than one that reconnects when idle.)
//
// Mochi sets the connection's deadline from cl.State.Keepalive right after
// OnConnect and adds the property when cl.State.ServerKeepalive is set.
type KeepaliveCap struct {
	mqtt.HookBase
	Max uint16 // seconds; 0 leaves the client's keep-alive as asked
}

// ID implements mqtt.Hook.
func (h *KeepaliveCap) ID() string { return "keepalive-cap" }

// Provides implements mqtt.Hook.
func (h *KeepaliveCap) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect lowers the keep-alive the client asked for to Max.
func (h *KeepaliveCap) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if ka := cl.State.Keepalive; h.Max == 0 || (ka != 0 && ka <= h.Max) {
		return nil
	}
	cl.State.Keepalive = h.Max
	cl.State.ServerKeepalive = cl.Properties.ProtocolVersion == 5
	return nil
}

var _ mqtt.Hook = (*KeepaliveCap)(nil)
