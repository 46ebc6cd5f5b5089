package hooks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/storage"
)

// UserStore is what Auth needs of the user store (storage.Store).
type UserStore interface {
	GetUser(name string) (*storage.User, error)
	ClaimClientID(ctx context.Context, clientID, user string) (owner string, err error)
}

// TLSConn is implemented by the hub's connections that arrived over TLS.
type TLSConn interface {
	TLSState() (tls.ConnectionState, bool)
}

// Identity is who a connected client is, once authenticated.
type Identity struct {
	User  string // empty for an anonymous client
	Admin bool
}

// AuthOptions configures Auth.
type AuthOptions struct {
	Server *mqtt.Server // used to send refusing CONNACKs
	// Users checks user names and passwords and owns client IDs; nil turns
	// password logins off.
	Users UserStore
	// JWT verifies passwords that are JSON Web Tokens; nil turns JWT
	// logins off.
	JWT *JWTVerifier
	// Groups answers group membership for g/ topics; nil keeps g/ closed.
	Groups Membership
	// ACL decides topics outside the hub's own namespaces; nil leaves them
	// open to every admitted client. SetACL replaces it while the hub runs.
	ACL *ACLFile
	// AllowAnonymous admits clients without credentials (development).
	AllowAnonymous bool
	Logger         zerolog.Logger
	// FailureDelay is how long the CONNACK of a failed login is held per
	// recent failure from the same IP, up to MaxFailureDelay (defaults
	// 200 ms and 3 s): guessing passwords gets slow.
	FailureDelay, MaxFailureDelay time.Duration
	// ClaimTimeout bounds the durable write that binds a client ID to its
	// first user (default 5 s).
	ClaimTimeout time.Duration
	// MaxChecksPerIP and MaxChecksPerUser bound the password checks in
	// flight at once from one IP and for one user name (0: no bound);
	// logins over them are refused at once, without a check: MQTT with
	// CONNACK 0x9F connection rate exceeded, HTTP with ErrLoginBusy.
	MaxChecksPerIP, MaxChecksPerUser int
	// CheckPassword compares a password with its bcrypt hash; nil is
	// storage.CheckPassword. Tests replace it to hold or count checks.
	CheckPassword func(hash, password []byte) bool
}

// AuthStats counts the password checks and the logins refused before one.
type AuthStats struct {
	PasswordChecks atomic.Int64 // bcrypt comparisons run (unknown users' included)
	ChecksPerIP    atomic.Int64 // logins refused: MaxChecksPerIP checks in flight from the IP
	ChecksPerUser  atomic.Int64 // logins refused: MaxChecksPerUser checks in flight for the user name
}

// Auth authenticates clients (user store passwords, JWTs, TLS client
// certificates, or anonymous when allowed), binds client IDs to users,
// and decides topic access: the hub's namespaces first (namespace.go),
// then the ACL file. It refuses a CONNECT with the right reason code
// itself, since mochi only knows "bad user name or password".
type Auth struct {
	mqtt.HookBase
	opts       AuthOptions
	acl        atomic.Pointer[ACLFile] // the current rules; opts.ACL at start
	log        zerolog.Logger
	sampled    zerolog.Logger // for refusals a client can repeat at will
	identities sync.Map       // *mqtt.Client -> Identity
	admins     sync.Map       // user -> bool, for sessions whose client is offline
	failures   failureTracker
	gate       loginGate
	stats      AuthStats
}

// NewAuth returns the authentication and authorization hook.
func NewAuth(opts AuthOptions) *Auth {
	if opts.FailureDelay <= 0 {
		opts.FailureDelay = 200 * time.Millisecond
	}
	if opts.MaxFailureDelay <= 0 {
		opts.MaxFailureDelay = 3 * time.Second
	}
	if opts.ClaimTimeout <= 0 {
		opts.ClaimTimeout = 5 * time.Second
	}
	if opts.CheckPassword == nil {
		opts.CheckPassword = storage.CheckPassword
	}
	log := opts.Logger.With().Str("component", "auth").Logger()
	h := &Auth{
		opts: opts,
		log:  log,
		sampled: log.Sample(&zerolog.BurstSampler{
			Burst: 20, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 100},
		}),
		failures: failureTracker{window: time.Minute, recent: map[string][]time.Time{}},
		gate:     loginGate{perIP: opts.MaxChecksPerIP, perUser: opts.MaxChecksPerUser},
	}
	h.acl.Store(opts.ACL)
	return h
}

// SetACL replaces the ACL file's rules (a reload): every check from now on,
// including the send-time checks of messages already queued, uses them.
func (h *Auth) SetACL(acl *ACLFile) { h.acl.Store(acl) }

// Stats returns the password check counters.
func (h *Auth) Stats() *AuthStats { return &h.stats }

// ID implements mqtt.Hook.
func (h *Auth) ID() string { return "auth" }

// Provides implements mqtt.Hook.
func (h *Auth) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect:
		return true
	}
	return false
}

// refusal is a failed CONNECT: the reason code and what the log says;
// held when the refusal's failure delay was already waited.
type refusal struct {
	code packets.Code
	why  string
	held bool
}

// OnConnect authenticates the client and checks what it asks for before
// the session is touched: a refused client can neither take over another
// user's session nor read its queue.
func (h *Auth) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	id, r := h.authenticate(cl, pk)
	if r == nil {
		r = h.authorizeConnect(cl, pk, id)
	}
	if r != nil {
		if r.code == packets.ErrBadUsernameOrPassword && !r.held {
			h.hold(context.Background(), remoteIP(cl.Net.Remote)) // holds only this connection's goroutine
		}
		log := h.log
		if r.code == packets.ErrConnectionRateExceeded {
			log = h.sampled // a guesser's parallel flood: one line each would drown the log
		}
		log.Info().Str("client_id", cl.ID).Str("user", string(pk.Connect.Username)).Str("remote", cl.Net.Remote).
			Str("reason", r.code.Reason).Str("detail", r.why).Msg("connection refused")
		return refuseConnect(h.opts.Server, cl, r.code)
	}
	cl.Properties.Username = []byte(id.User)
	h.identities.Store(cl, id)
	if id.User != "" {
		h.admins.Store(id.User, id.Admin)
	}
	return nil
}

// OnConnectAuthenticate admits what OnConnect let through.
func (h *Auth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	_, ok := h.identities.Load(cl)
	return ok
}

// OnDisconnect forgets the connection's identity.
func (h *Auth) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.identities.Delete(cl)
}

// authenticate finds who the client is.
func (h *Auth) authenticate(cl *mqtt.Client, pk packets.Packet) (Identity, *refusal) {
	username := string(pk.Connect.Username)
	password := pk.Connect.Password
	hasCredentials := pk.Connect.UsernameFlag || pk.Connect.PasswordFlag

	if tc, ok := cl.Net.Conn.(TLSConn); ok {
		if state, ok := tc.TLSState(); ok && len(state.VerifiedChains) > 0 {
			user := certificateUser(state)
			if user == "" || !validName(user) {
				return Identity{}, &refusal{code: packets.ErrNotAuthorized, why: "client certificate names no usable user"}
			}
			if username != "" && username != user {
				return Identity{}, &refusal{code: packets.ErrBadUsernameOrPassword, why: "user name differs from the client certificate"}
			}
			return h.identity(user), nil
		}
	}

	if !hasCredentials {
		if h.opts.AllowAnonymous {
			return Identity{}, nil
		}
		return Identity{}, &refusal{code: packets.ErrNotAuthorized, why: "no credentials and anonymous access is off"}
	}
	return h.credentials(context.Background(), cl.Net.Remote, username, password)
}

// Login checks a user name and password, or a JWT given as the password
// (the user name may then be empty), from remote (host:port), as a CONNECT
// would: a refusal is held as long as a CONNECT's would be (or until ctx
// ends), and MQTT and HTTP failures from one IP count together, so an
// attacker gains nothing by switching protocols. The HTTP API
// authenticates with it. A refusal's error text is safe to show.
func (h *Auth) Login(ctx context.Context, remote, username string, password []byte) (Identity, error) {
	id, r := h.credentials(ctx, remote, username, password)
	return id, h.loginError(ctx, remote, r)
}

// PasswordLogin is Login for a user name and password of the user store
// only (no JWT): the admin API's HTTP Basic.
func (h *Auth) PasswordLogin(ctx context.Context, remote, username string, password []byte) (Identity, error) {
	id, r := h.password(ctx, remote, username, password)
	return id, h.loginError(ctx, remote, r)
}

// loginError holds a failed login not held yet and turns its refusal into
// one of the login errors.
func (h *Auth) loginError(ctx context.Context, remote string, r *refusal) error {
	switch {
	case r == nil:
		return nil
	case r.code == packets.ErrServerUnavailable:
		return fmt.Errorf("%w: %s", ErrAuthUnavailable, r.why)
	case r.code == packets.ErrConnectionRateExceeded:
		return fmt.Errorf("%w: %s", ErrLoginBusy, r.why)
	}
	if !r.held {
		h.hold(ctx, remoteIP(remote))
	}
	return fmt.Errorf("%w: %s", ErrLoginFailed, r.why)
}

// Login errors.
var (
	ErrLoginFailed     = errors.New("login failed")
	ErrAuthUnavailable = errors.New("authentication unavailable")
	// ErrLoginBusy: too many password checks in flight from the IP or for
	// the user name; nothing was checked, retry later.
	ErrLoginBusy = errors.New("too many logins in progress")
)

// hold records a failed login from ip and waits as long as the recent
// failures from ip call for (nothing for the first few), or until ctx
// ends.
func (h *Auth) hold(ctx context.Context, ip string) {
	d := h.failures.delay(ip, h.opts.FailureDelay, h.opts.MaxFailureDelay)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// credentials checks a password or a JWT.
func (h *Auth) credentials(ctx context.Context, remote, username string, password []byte) (Identity, *refusal) {
	if h.opts.JWT != nil && LooksLikeJWT(password) {
		user, err := h.opts.JWT.Verify(string(password))
		if err != nil {
			return Identity{}, &refusal{code: packets.ErrBadUsernameOrPassword, why: err.Error()}
		}
		if username != "" && username != user {
			return Identity{}, &refusal{code: packets.ErrBadUsernameOrPassword, why: "user name differs from the token's subject"}
		}
		return h.identity(user), nil
	}
	return h.password(ctx, remote, username, password)
}

// password checks a user name and password against the user store, within
// the bounds of the login gate; a wrong one is held (its delay waited)
// before the IP's place is given back.
func (h *Auth) password(ctx context.Context, remote, username string, password []byte) (Identity, *refusal) {
	if h.opts.Users == nil || !validName(username) || len(password) == 0 {
		return Identity{}, &refusal{code: packets.ErrBadUsernameOrPassword, why: "unknown user or wrong password"}
	}
	ip := remoteIP(remote)
	switch h.gate.enter(ip, username) {
	case gateIP:
		h.stats.ChecksPerIP.Add(1)
		return Identity{}, &refusal{code: packets.ErrConnectionRateExceeded, why: "too many password checks in progress " + gateIP}
	case gateUser:
		h.stats.ChecksPerUser.Add(1)
		return Identity{}, &refusal{code: packets.ErrConnectionRateExceeded, why: "too many password checks in progress " + gateUser}
	}
	defer h.gate.leaveIP(ip)
	id, r := h.checkPassword(username, password)
	h.gate.leaveUser(username)
	if r != nil && r.code == packets.ErrBadUsernameOrPassword {
		h.hold(ctx, ip)
		r.held = true
	}
	return id, r
}

// checkPassword runs the password check itself.
func (h *Auth) checkPassword(username string, password []byte) (Identity, *refusal) {
	h.stats.PasswordChecks.Add(1)
	u, err := h.opts.Users.GetUser(username)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			h.log.Error().Err(err).Str("user", username).Msg("user store lookup failed")
			return Identity{}, &refusal{code: packets.ErrServerUnavailable, why: "user store unavailable"}
		}
		h.opts.CheckPassword(dummyHash, password) // same time as a wrong password
		return Identity{}, &refusal{code: packets.ErrBadUsernameOrPassword, why: "unknown user or wrong password"}
	}
	if !h.opts.CheckPassword(u.PasswordHash, password) {
		return Identity{}, &refusal{code: packets.ErrBadUsernameOrPassword, why: "unknown user or wrong password"}
	}
	return Identity{User: u.Name, Admin: u.Admin}, nil
}

// identity completes a user authenticated by certificate or token with
// the admin flag of the user store, when the user is known there.
func (h *Auth) identity(user string) Identity {
	id := Identity{User: user}
	if h.opts.Users != nil {
		if u, err := h.opts.Users.GetUser(user); err == nil {
			id.Admin = u.Admin
		}
	}
	return id
}

// authorizeConnect checks the client ID and the will of an authenticated
// client.
func (h *Auth) authorizeConnect(cl *mqtt.Client, pk packets.Packet, id Identity) *refusal {
	if strings.ContainsAny(cl.ID, "+#/") || strings.ContainsRune(cl.ID, 0) {
		return &refusal{code: packets.ErrClientIdentifierNotValid, why: "client ID holds a wildcard or a level separator"}
	}
	if id.User != "" && h.opts.Users != nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.ClaimTimeout)
		owner, err := h.opts.Users.ClaimClientID(ctx, cl.ID, id.User)
		cancel()
		if err != nil {
			h.log.Error().Err(err).Str("client_id", cl.ID).Str("user", id.User).Msg("client ID ownership not recorded")
			return &refusal{code: packets.ErrServerUnavailable, why: "client ID ownership not recorded"}
		}
		if owner != id.User {
			return &refusal{code: packets.ErrClientIdentifierNotValid, why: "client ID belongs to another user"}
		}
	}
	if pk.Connect.WillFlag && !h.allowed(id, cl.ID, pk.Connect.WillTopic, true) {
		return &refusal{code: packets.ErrNotAuthorized, why: "will topic not allowed"}
	}
	return nil
}

// OnACLCheck decides a subscription (read, topic is the filter) of a
// connected client, and each delivery mochi makes itself. Publishes
// (write) are decided by Admit on the entry path instead: mochi checks
// the topic before resolving a topic alias, so a PUBLISH by alias would
// be checked against an empty topic.
func (h *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline || write {
		return true // the hub's own publishers; publishes: see Admit
	}
	v, ok := h.identities.Load(cl)
	if !ok {
		return false
	}
	return h.allowed(v.(Identity), cl.ID, topic, write)
}

// Admit is the access rule of the entry path (offline.Rule): whether the
// sender may publish to the topic (its namespace, the groups it belongs
// to now, the ACL file), checked on the topic a topic alias stands for,
// and for a will as its user at the moment the will is sent.
func (h *Auth) Admit(in *offline.Inbound) error {
	if in.Origin == offline.FromHub {
		return nil
	}
	var id Identity
	if v, ok := h.identities.Load(in.Client); ok {
		id = v.(Identity)
	} else if in.User != "" {
		id = Identity{User: in.User, Admin: h.isAdmin(in.User)}
	}
	if h.allowed(id, in.Client.ID, in.Packet.TopicName, true) {
		return nil
	}
	h.sampled.Info().Str("client_id", in.Client.ID).Str("user", id.User).Str("topic", in.Packet.TopicName).
		Str("origin", in.Origin.String()).Msg("publish refused: topic not allowed")
	return packets.ErrNotAuthorized
}

// CanRead reports whether a session may receive a message on topic; the
// offline hook asks before queueing and before sending, so revoked access
// stops queued messages too.
func (h *Auth) CanRead(user, clientID, topic string) bool {
	return h.allowed(Identity{User: user, Admin: h.isAdmin(user)}, clientID, topic, false)
}

// IsAdmin reports whether user has the admin flag (see isAdmin).
func (h *Auth) IsAdmin(user string) bool { return h.isAdmin(user) }

// isAdmin reports the admin flag of a user, from a cache kept current by
// logins and ForgetUser, else from the user store.
func (h *Auth) isAdmin(user string) bool {
	if user == "" {
		return false
	}
	if v, ok := h.admins.Load(user); ok {
		return v.(bool)
	}
	admin := false
	if h.opts.Users != nil {
		if u, err := h.opts.Users.GetUser(user); err == nil {
			admin = u.Admin
		}
	}
	h.admins.Store(user, admin)
	return admin
}

// ForgetUser drops what Auth remembers of a user (its admin flag), after
// the user was changed or deleted through the admin API.
func (h *Auth) ForgetUser(user string) { h.admins.Delete(user) }

func (h *Auth) allowed(id Identity, clientID, topic string, write bool) bool {
	if !write {
		if _, inner, shared := splitShared(topic); shared {
			topic = inner
		}
	}
	if id.User == "" {
		// Anonymous clients exist only with --allow-anonymous, a
		// development mode: an open broker, as mosquitto with
		// allow_anonymous and no ACL, except that the hub's own topics
		// stay the hub's to publish.
		if write && hubOnly(topic) {
			return false
		}
		acl := h.acl.Load()
		if acl == nil || isNamespaced(topic) {
			return true
		}
		return acl.Allows("", clientID, topic, write)
	}
	if allowed, reserved := namespaceAccess(id.User, id.Admin, topic, write, h.opts.Groups); reserved {
		return allowed
	}
	acl := h.acl.Load()
	if acl == nil || id.Admin {
		return true
	}
	return acl.Allows(id.User, clientID, topic, write)
}

// certificateUser maps a verified client certificate to a user: its
// common name, else its first DNS or e-mail name.
func certificateUser(state tls.ConnectionState) string {
	cert := state.PeerCertificates[0]
	switch {
	case cert.Subject.CommonName != "":
		return cert.Subject.CommonName
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	case len(cert.EmailAddresses) > 0:
		return cert.EmailAddresses[0]
	}
	return ""
}

// validName refuses user names that could widen ACL patterns (%u).
func validName(name string) bool { return storage.CheckUserName(name) == nil }

func remoteIP(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		return strings.Trim(remote[:i], "[]")
	}
	return remote
}

// dummyHash is compared against when the user does not exist, so that an
// unknown user takes as long to refuse as a wrong password.
var dummyHash, _ = storage.HashPassword([]byte("mqhub-timing-equaliser"))

var _ mqtt.Hook = (*Auth)(nil)
