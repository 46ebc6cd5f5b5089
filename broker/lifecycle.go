package broker

import (
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// lifecycleHook follows each connection through mochi: it ties the mochi
// client to our trackedConn (for panic cleanup) and writes the one log line
// per connect and per disconnect.
type lifecycleHook struct {
	mqtt.HookBase
	log zerolog.Logger
}

func (h *lifecycleHook) ID() string { return "lifecycle" }

func (h *lifecycleHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnect runs once CONNECT is decoded, before authentication.
func (h *lifecycleHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if tc, ok := cl.Net.Conn.(*trackedConn); ok {
		tc.client.Store(cl)
	}
	return nil
}

// OnSessionEstablished runs after CONNACK was sent.
func (h *lifecycleHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if tc, ok := cl.Net.Conn.(*trackedConn); ok {
		tc.established.Store(true)
	}
	h.log.Info().
		Str("client_id", cl.ID).
		Str("user", string(cl.Properties.Username)).
		Str("remote", cl.Net.Remote).
		Str("listener", cl.Net.Listener).
		Uint8("protocol", cl.Properties.ProtocolVersion).
		Bool("clean", cl.Properties.Clean).
		Uint16("keepalive", cl.State.Keepalive).
		Msg("client connected")
}

// OnDisconnect runs when the connection of an established session ends.
func (h *lifecycleHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	reason := "client sent DISCONNECT"
	if cause := cl.StopCause(); cause != nil && !errors.Is(cause, packets.CodeDisconnect) {
		reason = cause.Error()
	} else if err != nil {
		reason = err.Error()
	}
	h.log.Info().
		Str("client_id", cl.ID).
		Str("user", string(cl.Properties.Username)).
		Str("remote", cl.Net.Remote).
		Str("reason", reason).
		Bool("session_kept", !expire).
		Msg("client disconnected")
}
