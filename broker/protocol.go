package broker

import (
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// protocolHook answers the MQTT 5 faults that mochi's decoder lets
// through. It runs first: a faulty packet reaches no other hook.
//
//   - In OnPacketRead, a packet the frame scanner found faulty (frames.go)
//     ends the session: DISCONNECT 0x81 malformed packet or 0x82 protocol
//     error for MQTT 5. Mochi's read loop sends no DISCONNECT for an error
//     of this hook, and drops nothing but by ending the connection, so the
//     hook answers and closes itself.
//
// A payload announced as UTF-8 that is not is refused by a rule of the
// entry path instead (hooks.PayloadFormat), so that its 0x99 leaves in
// the order of the PUBLISHes.
type protocolHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *protocolHook) ID() string { return "protocol" }

func (h *protocolHook) Provides(b byte) bool {
	return b == mqtt.OnPacketRead
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

var _ mqtt.Hook = (*protocolHook)(nil)
