package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2.3]. Mochi maps only some v5
// reason codes to these (and "bad user name or password" to 5, "not
// authorized"), so hooks that refuse a connection pick the v3 code
// themselves.
var (
	v3IdentifierRejected  = packets.Code{Code: 0x02, Reason: "identifier rejected"}
	v3ServerUnavailable   = packets.Code{Code: 0x03, Reason: "server unavailable"}
	v3BadUsernamePassword = packets.Code{Code: 0x04, Reason: "bad user name or password"}
	v3NotAuthorized       = packets.Code{Code: 0x05, Reason: "not authorized"}
	v5ToV3ConnackRefusals = map[byte]packets.Code{
		packets.ErrClientIdentifierNotValid.Code: v3IdentifierRejected,
		packets.ErrServerUnavailable.Code:        v3ServerUnavailable,
		packets.ErrServerBusy.Code:               v3ServerUnavailable,
		packets.ErrBadUsernameOrPassword.Code:    v3BadUsernamePassword,
		packets.ErrNotAuthorized.Code:            v3NotAuthorized,
		packets.ErrBanned.Code:                   v3NotAuthorized,
		packets.ErrConnectionRateExceeded.Code:   v3ServerUnavailable,
		packets.ErrQuotaExceeded.Code:            v3ServerUnavailable,
	}
)

// refuseConnect sends the CONNACK refusing cl with the v5 reason code, or
// its 3.1.1 equivalent, and returns the reason as the error that makes
// mochi close the connection (an OnConnect error ends it without a CONNACK
// of mochi's own).
func refuseConnect(server *mqtt.Server, cl *mqtt.Client, reason packets.Code) error {
	code := reason
	if cl.Properties.ProtocolVersion < 5 {
		if v3, ok := v5ToV3ConnackRefusals[reason.Code]; ok {
			code = v3
		} else {
			code = v3ServerUnavailable
		}
	}
	_ = server.SendConnack(cl, code, false, nil)
	return reason
}
