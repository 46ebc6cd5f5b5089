package hooks

import (
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/hooks/offline"
)

// PayloadFormat is a rule of the entry path (offline.Rule): a payload its
// publisher announced as UTF-8 (payload format indicator 1) must be
// [MQTT-3.3.2-4]. One that is not is refused with 0x99 payload format
// invalid (QoS 0: dropped), as mosquitto and EMQX do; the connection
// stays. The hub's own messages are its own to get right.
func PayloadFormat(in *offline.Inbound) error {
	pk := &in.Packet
	if in.Origin == offline.FromHub || !pk.Properties.PayloadFormatFlag || pk.Properties.PayloadFormat != 1 || utf8.Valid(pk.Payload) {
		return nil
	}
	return packets.ErrPayloadFormatInvalid
}
