package hooks

import (
	"bytes"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// Access decides who may connect and what they may read and write.
//
// Until the user store lands, the only way in is anonymous access, which
// is off by default (as in mosquitto 2): without AllowAnonymous every
// CONNECT is refused with "not authorized", and the refusal is logged once.
type Access struct {
	mqtt.HookBase
	allowAnonymous bool
	log            zerolog.Logger
}

// AccessOptions configures Access.
type AccessOptions struct {
	AllowAnonymous bool
	Logger         zerolog.Logger
}

// NewAccess returns the access hook.
func NewAccess(opts AccessOptions) *Access {
	return &Access{
		allowAnonymous: opts.AllowAnonymous,
		log:            opts.Logger.With().Str("component", "access").Logger(),
	}
}

// ID implements mqtt.Hook.
func (h *Access) ID() string { return "access" }

// Provides implements mqtt.Hook.
func (h *Access) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// OnConnectAuthenticate admits a client when anonymous access is on.
func (h *Access) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.allowAnonymous {
		return true
	}
	h.log.Info().
		Str("client_id", cl.ID).
		Str("user", string(pk.Connect.Username)).
		Str("remote", cl.Net.Remote).
		Msg("connection refused: no user store yet and anonymous access is off (start with --allow-anonymous)")
	return false
}

// OnACLCheck allows every topic to an admitted client: topic rules arrive
// with the ACL issue.
func (h *Access) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return h.allowAnonymous
}

var _ mqtt.Hook = (*Access)(nil)
