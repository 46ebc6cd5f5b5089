package broker

import (
	"fmt"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/hooks"
)

// protocolHook answers the MQTT 5 faults that mochi's decoder lets
// through. It runs first: a faulty packet reaches no other hook.
//
//   - In OnPacketRead, a packet the frame scanner found faulty (frames.go)
//     ends the session: DISCONNECT 0x81 malformed packet or 0x82 protocol
//     error for MQTT 5. Mochi's read loop sends no DISCONNECT for an error
//     of this hook, and drops nothing but by ending the connection, so the
//     hook answers and closes itself.
//   - In OnPublish, a payload announced as UTF-8 (payload format indicator
//     1) that is not [MQTT-3.3.2-4]: QoS 1/2 are answered PUBACK/PUBREC
//     0x99 payload format invalid and QoS 0 is dropped, as mosquitto and
//     EMQX do; the connection stays.
type protocolHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *protocolHook) ID() string { return "protocol" }

func (h *protocolHook) Provides(b byte) bool {
	return b == mqtt.OnPacketRead || b == mqtt.OnPublish
}

// OnPacketRead acts on the scanner's verdict for this packet.
func (h *protocolHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	tc, ok := cl.Net.Conn.(*trackedConn)
	if !ok {
		return pk, nil
	}
	n := tc.decoded
	tc.decoded++
	ferr := tc.scan.fault(n)
	if ferr == nil {
		return pk, nil
	}
	h.b.closeForFault(cl, tc, ferr)
	// Only ErrRejectPacket stops mochi (it ignores other errors of this
	// hook); from here it ends the read loop.
	return pk, fmt.Errorf("%w: %w", packets.ErrRejectPacket, ferr)
}

// OnPublish refuses a payload that its format indicator calls UTF-8 and
// is not.
func (h *protocolHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !pk.Properties.PayloadFormatFlag || pk.Properties.PayloadFormat != 1 || utf8.Valid(pk.Payload) {
		return pk, nil
	}
	if pk.FixedHeader.Qos > 0 {
		_ = cl.WritePacket(hooks.PublishRefusal(pk, packets.ErrPayloadFormatInvalid))
	}
	h.b.sampled.Info().Str("client_id", cl.ID).Str("user", string(cl.Properties.Username)).
		Str("remote", cl.Net.Remote).Str("topic", pk.TopicName).Uint8("qos", pk.FixedHeader.Qos).
		Msg("publish refused: payload format indicator 1 with a payload that is not UTF-8")
	return pk, packets.ErrRejectPacket
}

var _ mqtt.Hook = (*protocolHook)(nil)
