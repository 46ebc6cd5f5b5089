package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/internal/version"
	"github.com/mqhub/mqhub/storage"
)

// Listener IDs, as they appear in logs.
const (
	ListenerTCP = "tcp"
	ListenerTLS = "tls"
	ListenerWS  = "ws"
)

// ErrClosed is returned by Start after Shutdown.
var ErrClosed = errors.New("broker: shut down")

// Broker is one mqhub node.
type Broker struct {
	cfg       Config
	log       zerolog.Logger
	sampled   zerolog.Logger // for per-connection error paths a client can trigger at will
	mochi     *mqtt.Server
	hooks     []mqtt.Hook
	metrics   *metrics
	store     *storage.Store
	auth      *hooks.Auth
	limits    *hooks.Limits
	directory *hooks.Directory // groups, block lists, privacy settings
	presence  *hooks.Presence
	offline   *offline.Hook
	sessions  *hooks.UserSessions // persistent sessions per user
	conns     conns
	ready     atomic.Bool

	tcp, tls *streamListener
	tlsFiles *tlsFiles // the TLS listener's certificate and CA, for Reload
	ws       *wsListener
	httpLn   net.Listener
	httpSrv  *http.Server
	httpDone chan struct{}
	// served and httpServing are written by Start and read by Shutdown,
	// which callers must not run concurrently with Start.
	served, httpServing bool

	reloadMu                sync.Mutex // one Reload at a time
	startOnce, shutdownOnce sync.Once
	shutdownErr             error
	closed                  atomic.Bool
}

// New builds a node from cfg. Nothing listens until Start.
func New(cfg Config, log zerolog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data-dir: %w", err)
	}
	b := &Broker{
		cfg: cfg,
		log: log.With().Str("component", "broker").Logger(),
		sampled: log.With().Str("component", "broker").Logger().Sample(&zerolog.BurstSampler{
			Burst: 20, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 100},
		}),
		httpDone: make(chan struct{}),
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(cfg.MaxClients)
	caps.MaximumSessionExpiryInterval = uint32(cfg.MaxSessionExpiry / time.Second)
	caps.MaximumMessageExpiryInterval = int64(cfg.MaxMessageExpiry / time.Second)
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.ReceiveMaximum = uint16(cfg.ReceiveMaximum)
	caps.MaximumInflight = uint16(cfg.MaxInflight)
	caps.MaximumClientWritesPending = int32(cfg.MaxPendingWrites)
	caps.TopicAliasMaximum = uint16(cfg.TopicAliasMax)
	// Mochi otherwise copies a PUBLISH's properties (user properties, the
	// envelope) into its PUBACK, and with them writes the reason byte it
	// keeps there, 0x01 (its "granted QoS 1"), which is no PUBACK reason.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	b.mochi = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  int(cfg.ReadBufferSize),
		ClientNetWriteBufferSize: int(cfg.WriteBufferSize),
		Logger:                   mochiLogger(log),
	})
	b.mochi.Info.Version = version.String() // $SYS/broker/version: mqhub's, not mochi's
	b.metrics = newMetrics(b.mochi)

	// The store tells the offline hook when new queue entries can be read,
	// which is before their fsync: delivery to online subscribers does not
	// wait for the disk, only the publisher's PUBACK does.
	var delivery atomic.Pointer[offline.Hook]
	store, err := storage.Open(storage.Options{
		Dir:               filepath.Join(cfg.DataDir, "store"),
		Logger:            log,
		Durability:        storage.Durability(cfg.Durability),
		SyncInterval:      cfg.SyncInterval,
		VisibleBeforeSync: true,
		OnVisible: func(sessions []string) {
			if h := delivery.Load(); h != nil {
				h.Visible(sessions)
			}
		},
		OnAppended: func(session string, seq uint64, m *storage.Message, size int64) {
			if h := delivery.Load(); h != nil {
				h.Appended(session, seq, m, size)
			}
		},
		MemoryQueueMaxBytes: int64(cfg.CleanQueueMaxBytes),
		Queue: storage.QueueLimits{
			MaxMessages: cfg.QueueMaxMessages,
			MaxBytes:    int64(cfg.QueueMaxBytes),
			MaxAge:      cfg.QueueMaxAge,
			Policy:      storage.Policy(cfg.QueuePolicy),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	b.store = store
	b.metrics.registerStore(store.Stats())
	b.offline = offline.New(offline.Options{
		Server:      b.mochi,
		Store:       store,
		Logger:      log,
		MaxInflight: cfg.MaxInflight,
	})
	delivery.Store(b.offline)
	b.metrics.registerOffline(b.offline.Stats())

	directory, err := hooks.NewDirectory(store, cfg.MaxGroupMembers)
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("load groups and block lists: %w", err)
	}
	b.directory = directory
	// Groups take only users the hub knows, whatever their login: JWT and
	// certificate users have no user record but own client IDs.
	directory.RequireKnownUsers(store.KnownUser)
	auth, err := newAuth(cfg, b.mochi, store, directory, log)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	b.auth = auth
	b.metrics.registerAuth(auth.Stats())
	receipts := hooks.NewReceipts(hooks.ReceiptsOptions{
		Sent: store, Groups: directory, Router: b.offline, Window: cfg.ReceiptWindow, Logger: log,
	})
	b.presence = hooks.NewPresence(hooks.PresenceOptions{Server: b.mochi, Settings: directory.Settings, Retained: store, Logger: log})
	directory.OnSettings(b.presence.Refresh)
	b.metrics.registerMessaging(receipts.Stats(), b.presence.Online)
	limits := hooks.NewLimits(hooks.LimitsOptions{
		Server: b.mochi, MaxConnectionsPerIP: cfg.MaxConnectionsPerIP, ConnectRate: cfg.ConnectRate,
		PublishRate: cfg.PublishRate, PublishBytesRate: int64(cfg.PublishBytesRate), MaxSubscriptions: cfg.MaxSubscriptions,
		UserPublishRate: cfg.UserPublishRate, UserPublishBurst: cfg.UserPublishBurst, Exempt: auth.IsAdmin,
		MaxTopicLength: cfg.MaxTopicLength, MaxTopicLevels: cfg.MaxTopicLevels, Sessions: store, Logger: log,
	})
	b.metrics.registerLimits(limits.Stats())
	b.limits = limits
	b.sessions = hooks.NewUserSessions(hooks.UserSessionsOptions{
		Server: b.mochi, Max: cfg.MaxSessionsPerUser, Sessions: store, Stats: limits.Stats(), Logger: log,
	})
	envelope := hooks.NewEnvelope(hooks.EnvelopeOptions{DedupeWindow: cfg.DedupeWindow, AllTopics: cfg.Envelope == EnvelopeAll})
	b.offline.SetRules(offline.Rules{
		// The entry path: every message, whatever way it came in, meets
		// these in this order (docs/architecture.md): access on the
		// resolved topic, limits, a UTF-8 payload when announced, no
		// retained conversations, the envelope (whose id the receipts
		// read), then receipts.
		Admit:        []offline.Rule{auth.Admit, limits.Admit, hooks.PayloadFormat, hooks.NotRetained, envelope.Admit, receipts.Admit},
		CanRead:      auth.CanRead,
		Blocked:      directory.Blocked,
		Ephemeral:    hooks.IsTyping,
		Copies:       hooks.SyncCopies,
		Acknowledged: receipts.Delivered,
		Acknowledges: receipts.WantsDelivered,
	})
	// Order matters: protocol refuses faulty packets before anyone sees
	// them; auth identifies a client before the others see it (and the
	// sessions cap counts for it); presence stops (and flushes) before the
	// offline hook.
	keepalive := &hooks.KeepaliveCap{Max: uint16(cfg.MaxKeepalive / time.Second)}
	for _, h := range []mqtt.Hook{&lifecycleHook{log: b.log}, &protocolHook{b: b}, limits, auth, b.sessions, keepalive, envelope, receipts, b.presence, b.offline} {
		if err := b.mochi.AddHook(h, nil); err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("add hook %s: %w", h.ID(), err)
		}
		b.hooks = append(b.hooks, h)
	}

	// Every listener hands its connections to establish, not to mochi.
	guard := func(id string, c net.Conn, _ listeners.EstablishFn) error { return b.establish(id, c) }
	if cfg.MQTTAddr != "" {
		b.tcp = newStreamListener(ListenerTCP, cfg.MQTTAddr, nil, guard, b.log)
	}
	if cfg.TLSEnabled() {
		tf, err := newTLSFiles(cfg)
		if err != nil {
			_ = store.Close()
			return nil, err
		}
		b.tlsFiles = tf
		b.tls = newStreamListener(ListenerTLS, cfg.TLSAddr, tf.listenerConfig(), guard, b.log)
	}
	if cfg.WSAddr != "" {
		b.ws = newWSListener(ListenerWS, cfg.WSAddr, cfg.WSPath, nil, cfg.ConnectTimeout, guard, b.log)
	}
	if limits.PerIP() { // per-IP limits apply at accept, before a byte is read
		for _, l := range []*streamListener{b.tcp, b.tls} {
			if l != nil {
				l.admit = b.admit
			}
		}
		if b.ws != nil {
			b.ws.admit = b.admit
		}
	}
	if cfg.HTTPAddr != "" {
		b.httpSrv = &http.Server{Handler: b.newHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	return b, nil
}

// Start binds every configured listener and starts serving. If any address
// cannot be bound, nothing is left listening and the error names them all.
func (b *Broker) Start(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	var err error
	b.startOnce.Do(func() { err = b.start() })
	return err
}

func (b *Broker) start() error {
	var errs []error
	for _, l := range b.mqttListeners() {
		if err := b.mochi.AddListener(l); err != nil {
			errs = append(errs, fmt.Errorf("listen %s on %s: %w", l.ID(), l.Address(), err))
		}
	}
	if b.httpSrv != nil {
		ln, err := net.Listen("tcp", b.cfg.HTTPAddr)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen http on %s: %w", b.cfg.HTTPAddr, err))
		}
		b.httpLn = ln
	}
	if len(errs) == 0 {
		if err := b.offline.Restore(context.Background()); err != nil {
			errs = append(errs, err)
		} else if err := b.sessions.Load(); err != nil {
			errs = append(errs, err)
		} else {
			b.presence.Restore()
		}
	}
	if len(errs) == 0 {
		if err := b.mochi.Serve(); err != nil {
			errs = append(errs, fmt.Errorf("start mqtt server: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		b.closeListeners()
		if b.httpLn != nil {
			_ = b.httpLn.Close()
			b.httpLn = nil
		}
		return err
	}
	if b.httpLn != nil {
		b.httpServing = true
		go b.serveHTTP(b.httpLn)
	}
	b.served = true
	b.ready.Store(true)
	b.log.Info().
		Str("mqtt", b.MQTTAddr()).Str("tls", b.TLSAddr()).Str("ws", b.WSAddr()).Str("http", b.HTTPAddr()).
		Str("data_dir", b.cfg.DataDir).Bool("allow_anonymous", b.cfg.AllowAnonymous).Str("version", version.String()).
		Msg("mqhub serving")
	return nil
}

// Shutdown stops the node gracefully: it stops accepting connections, sends
// DISCONNECT "server shutting down" (0x8B) to MQTT 5 clients and closes the
// others, waits for connections to end (closing any left when ctx ends),
// then stops the hooks (which flush storage) and the HTTP endpoints. It is
// safe to call more than once; later calls return the first result.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.shutdownOnce.Do(func() {
		b.closed.Store(true)
		b.shutdownErr = b.shutdown(ctx)
	})
	return b.shutdownErr
}

func (b *Broker) shutdown(ctx context.Context) error {
	if !b.served {
		// Start failed or never ran: no listener, client or HTTP server
		// to stop, and nothing to announce (the caller reports Start's
		// error). Release the hooks and the store.
		return errors.Join(b.mochi.Close(), b.store.Close())
	}
	b.ready.Store(false)
	b.log.Info().Msg("shutting down")
	b.closeListeners()
	for _, cl := range b.mochi.Clients.GetAll() {
		if cl.Net.Inline || cl.Closed() {
			continue
		}
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.mochi.DisconnectClient(cl, packets.ErrServerShuttingDown)
		} else {
			cl.Stop(packets.ErrServerShuttingDown) // 3.1.1 has no server DISCONNECT
		}
	}
	var errs []error
	drained := make(chan struct{})
	go func() { b.conns.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("connections still open at the shutdown deadline, closed them: %w", ctx.Err()))
		b.conns.closeAll()
		<-drained // reads now fail at once
	}
	if err := b.mochi.Close(); err != nil { // stops the hooks: no more writes to the store
		errs = append(errs, err)
	}
	if err := b.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	if b.httpServing {
		if err := b.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			_ = b.httpSrv.Close()
		}
		<-b.httpDone
	}
	err := errors.Join(errs...)
	if err != nil {
		b.log.Warn().Err(err).Msg("shutdown finished with errors")
	} else {
		b.log.Info().Msg("shutdown complete")
	}
	return err
}

// closeListeners stops accepting on every MQTT listener.
func (b *Broker) closeListeners() {
	noClients := func(string) {}
	for _, l := range b.mqttListeners() {
		l.Close(noClients)
	}
}

func (b *Broker) mqttListeners() []listeners.Listener {
	var ls []listeners.Listener
	if b.tcp != nil {
		ls = append(ls, b.tcp)
	}
	if b.tls != nil {
		ls = append(ls, b.tls)
	}
	if b.ws != nil {
		ls = append(ls, b.ws)
	}
	return ls
}

// newAuth builds the authentication and authorization hook: the user
// store, the JWT keys and the ACL file named in cfg.
func newAuth(cfg Config, server *mqtt.Server, store *storage.Store, groups hooks.Membership, log zerolog.Logger) (*hooks.Auth, error) {
	verifier, err := hooks.NewJWTVerifier(hooks.JWTOptions{
		HMACSecretFile:       cfg.JWTHMACSecretFile,
		RSAPublicKeyFile:     cfg.JWTRSAPublicKeyFile,
		Ed25519PublicKeyFile: cfg.JWTEd25519PublicKeyFile,
		Issuer:               cfg.JWTIssuer,
		Audience:             cfg.JWTAudience,
	})
	if err != nil {
		return nil, fmt.Errorf("jwt keys: %w", err)
	}
	var acl *hooks.ACLFile
	if cfg.ACLFile != "" {
		if acl, err = loadACL(cfg.ACLFile); err != nil {
			return nil, err
		}
	}
	return hooks.NewAuth(hooks.AuthOptions{
		Server:         server,
		Users:          store,
		JWT:            verifier,
		ACL:            acl,
		Groups:         groups,
		AllowAnonymous: cfg.AllowAnonymous,
		Logger:         log,
		MaxChecksPerIP: cfg.MaxChecksPerIP, MaxChecksPerUser: cfg.MaxChecksPerUser,
		CheckPassword: cfg.passwordCheck,
	}), nil
}

// loadACL reads and parses the ACL file at path.
func loadACL(path string) (*hooks.ACLFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl-file: %w", err)
	}
	defer f.Close()
	acl, err := hooks.ParseACLFile(f)
	if err != nil {
		return nil, fmt.Errorf("acl-file %s:\n%w", path, err)
	}
	return acl, nil
}

// MQTTAddr is the bound TCP address, or "" when disabled.
func (b *Broker) MQTTAddr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// TLSAddr is the bound TLS address, or "" when disabled.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// WSAddr is the bound WebSocket address, or "" when disabled.
func (b *Broker) WSAddr() string {
	if b.ws == nil {
		return ""
	}
	return b.ws.Address()
}

// HTTPAddr is the bound HTTP address, or "" when disabled.
func (b *Broker) HTTPAddr() string {
	if b.httpLn == nil {
		return ""
	}
	return b.httpLn.Addr().String()
}

// Store is the node's store, for the admin API and tests (users, for one).
func (b *Broker) Store() *storage.Store { return b.store }

// Config returns the configuration the node runs with.
func (b *Broker) Config() Config { return b.cfg }

// DecoderPanics counts connections closed because a packet crashed the
// decoder since start.
func (b *Broker) DecoderPanics() int64 { return b.metrics.panics.Load() }
