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
// is off by default (as in mosquitto 2). Without AllowAnonymous every
// CONNECT is refused: without credentials as "not authorized" (0x87, or 5
// for 3.1.1), with credentials as "bad user name or password" (0x86, or 4)
// since no user can exist yet. The refusal is logged once, here.
type Access struct {
	mqtt.HookBase
	server         *mqtt.Server
	allowAnonymous bool
	log            zerolog.Logger
}

// AccessOptions configures Access.
type AccessOptions struct {
	Server         *mqtt.Server // used to send refusing CONNACKs
	AllowAnonymous bool
	Logger         zerolog.Logger
}

// NewAccess returns the access hook.
func NewAccess(opts AccessOptions) *Access {
	return &Access{
		server:         opts.Server,
		allowAnonymous: opts.AllowAnonymous,
		log:            opts.Logger.With().Str("component", "access").Logger(),
	}
}

// ID implements mqtt.Hook.
func (h *Access) ID() string { return "access" }

// Provides implements mqtt.Hook.
func (h *Access) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// OnConnect refuses the connection with the right CONNACK code unless
// anonymous access is on. It runs before mochi's own authentication step,
// which could only answer "bad user name or password".
func (h *Access) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if h.allowAnonymous {
		return nil
	}
	reason := packets.ErrNotAuthorized
	if pk.Connect.UsernameFlag || pk.Connect.PasswordFlag {
		reason = packets.ErrBadUsernameOrPassword
	}
	h.log.Info().
		Str("client_id", cl.ID).
		Str("user", string(pk.Connect.Username)).
		Str("remote", cl.Net.Remote).
		Str("reason", reason.Reason).
		Msg("connection refused: no user store yet and anonymous access is off (start with --allow-anonymous)")
	return refuseConnect(h.server, cl, reason)
}

// OnConnectAuthenticate admits what OnConnect let through.
func (h *Access) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return h.allowAnonymous
}

// OnACLCheck allows every topic to an admitted client: topic rules arrive
// with the ACL issue.
func (h *Access) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return h.allowAnonymous
}

var _ mqtt.Hook = (*Access)(nil)
