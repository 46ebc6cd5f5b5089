package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Typing keeps typing indicators (u/{user}/typing, g/{group}/typing)
// ephemeral: they are never retained, and the offline hook delivers them
// at QoS 0 to connected devices only (IsTyping is its Rules.Ephemeral).
// A QoS 1/2 publish there is acknowledged as usual.
type Typing struct {
	mqtt.HookBase
}

// ID implements mqtt.Hook.
func (h *Typing) ID() string { return "typing" }

// Provides implements mqtt.Hook.
func (h *Typing) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish:
		return true
	}
	return false
}

// OnPublish drops the retain flag of a typing indicator.
func (h *Typing) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && IsTyping(pk.TopicName) {
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

var _ mqtt.Hook = (*Typing)(nil)
