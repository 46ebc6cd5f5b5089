package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// TLS client-certificate modes accepted by Config.TLSClientAuth.
const (
	ClientAuthNone     = "none"     // no client certificate asked for
	ClientAuthOptional = "optional" // verified against the CA when the client sends one
	ClientAuthRequire  = "require"  // the handshake fails without a valid client certificate
)

// Log formats accepted by Config.LogFormat.
const (
	LogFormatConsole = "console"
	LogFormatJSON    = "json"
)

// Config is everything a hub needs to start. The command line, the
// environment and the YAML file all fill this one struct (see options.go);
// Default gives the values a newcomer gets.
type Config struct {
	DataDir string // where the node keeps its data

	MQTTAddr string // plain MQTT over TCP; empty disables
	WSAddr   string // MQTT over WebSocket; empty disables
	WSPath   string // HTTP path of the WebSocket endpoint
	TLSAddr  string // MQTT over TLS; used only when TLSCert and TLSKey are set
	HTTPAddr string // health, readiness and metrics; empty disables

	TLSCert       string // PEM certificate chain for the TLS listener (WebSocket stays plain: put wss behind a proxy for now)
	TLSKey        string // PEM private key matching TLSCert
	TLSClientCA   string // PEM CA bundle used to verify client certificates
	TLSClientAuth string // none, optional or require

	AllowAnonymous bool   // let clients in without credentials (development only)
	ACLFile        string // topic rules in mosquitto's acl_file syntax for topics outside the hub's namespaces

	JWTHMACSecretFile       string // HS256 secret: JWT passwords are accepted when any JWT key is set
	JWTRSAPublicKeyFile     string // RS256 public key (PEM)
	JWTEd25519PublicKeyFile string // EdDSA public key (PEM)
	JWTIssuer               string // required iss claim, when set
	JWTAudience             string // required aud claim, when set
	Pprof                   bool   // serve Go's /debug/pprof profiles on the HTTP listener

	LogLevel  string // trace, debug, info, warn, error
	LogFormat string // console or json

	ConnectTimeout   time.Duration // a connection must send CONNECT within this time
	MaxKeepalive     time.Duration // cap on the keep-alive a client may ask for, whole seconds (0: no cap)
	MaxPacketSize    ByteSize      // largest packet accepted, checked before allocation
	MaxConnectSize   ByteSize      // largest CONNECT accepted (capped by MaxPacketSize), read whole before mochi sees it
	MaxClients       int           // connected clients at once
	MaxSessionExpiry time.Duration // cap on the session expiry a client may ask for
	MaxMessageExpiry time.Duration // cap on message expiry, and the expiry of messages without one
	ReceiveMaximum   int           // QoS 1/2 messages a v5 client may have unacknowledged towards us
	MaxInflight      int           // QoS 1/2 messages in flight towards one client
	MaxPendingWrites int           // packets queued for one client's writer before messages to it are dropped
	ReadBufferSize   ByteSize      // per-connection read buffer
	WriteBufferSize  ByteSize      // per-connection write batching threshold
	TopicAliasMax    int           // topic aliases a v5 client may use
	ShutdownTimeout  time.Duration // how long a graceful shutdown waits for clients and storage

	MaxConnectionsPerIP int      // connections open at once from one IP (0: no limit)
	ConnectRate         float64  // new connections per second from one IP, token bucket (0: no limit)
	PublishRate         float64  // PUBLISH packets per second per client, token bucket (0: no limit)
	PublishBytesRate    ByteSize // PUBLISH payload bytes per second per client, token bucket (0: no limit)
	UserPublishRate     float64  // PUBLISH packets per second per user over all its connections (0: no limit)
	UserPublishBurst    int      // PUBLISH packets one user may send at once before UserPublishRate applies
	MaxSubscriptions    int      // subscriptions one client may hold (0: no limit)
	MaxSessionsPerUser  int      // persistent sessions one user may hold (0: no limit)
	MaxChecksPerIP      int      // password checks in flight at once from one IP (0: no limit)
	MaxChecksPerUser    int      // password checks in flight at once for one user name (0: no limit)
	MaxTopicLength      int      // bytes in a topic name or filter
	MaxTopicLevels      int      // levels in a topic name or filter

	Envelope        string        // messaging: stamp messages in u/ and g/ only; all: every message
	DedupeWindow    time.Duration // a repeated message id from one sender within this is acknowledged, not delivered again
	ReceiptWindow   time.Duration // read receipts are accepted for a message this long after it was sent
	MaxGroupMembers int           // members one group may have

	Durability         string        // sync: fsync before acknowledging; interval: fsync every SyncInterval
	SyncInterval       time.Duration // fsync period under interval durability (the loss window)
	QueueMaxMessages   int           // messages one offline queue may hold
	QueueMaxBytes      ByteSize      // bytes one offline queue may hold
	CleanQueueMaxBytes ByteSize      // bytes one clean session's queue (in memory) may hold
	QueueMaxAge        time.Duration // queued messages older than this are dropped (0: no limit)
	QueuePolicy        string        // refuse-new or drop-oldest, when a queue is full

	// passwordCheck replaces the bcrypt comparison of logins when set
	// (tests that hold or count checks: export_test.go).
	passwordCheck func(hash, password []byte) bool
}

// Envelope, durability and queue policy values.
const (
	EnvelopeMessaging  = "messaging"
	EnvelopeAll        = "all"
	DurabilitySync     = "sync"
	DurabilityInterval = "interval"
	QueueRefuseNew     = "refuse-new"
	QueueDropOldest    = "drop-oldest"
)

// Default returns the configuration used when nothing else is given.
func Default() Config {
	return Config{
		DataDir:            "./data",
		MQTTAddr:           ":1883",
		WSAddr:             ":8083",
		WSPath:             "/mqtt",
		TLSAddr:            ":8883",
		HTTPAddr:           ":8080",
		TLSClientAuth:      ClientAuthNone,
		LogLevel:           "info",
		LogFormat:          LogFormatConsole,
		ConnectTimeout:     10 * time.Second,
		MaxPacketSize:      1 * MiB,
		MaxConnectSize:     8 * KiB,
		MaxClients:         100_000,
		MaxSessionExpiry:   7 * 24 * time.Hour,
		MaxMessageExpiry:   7 * 24 * time.Hour,
		ReceiveMaximum:     1024,
		MaxInflight:        8192,
		MaxPendingWrites:   256,
		ReadBufferSize:     1 * KiB,
		WriteBufferSize:    2 * KiB,
		TopicAliasMax:      1024,
		ShutdownTimeout:    10 * time.Second,
		Envelope:           EnvelopeMessaging,
		DedupeWindow:       5 * time.Minute,
		ReceiptWindow:      30 * 24 * time.Hour,
		MaxGroupMembers:    1024,
		UserPublishRate:    50,
		UserPublishBurst:   1000,
		MaxSessionsPerUser: 100,
		MaxChecksPerIP:     4,
		MaxChecksPerUser:   2,
		MaxTopicLength:     4096,
		MaxTopicLevels:     32,
		Durability:         DurabilitySync,
		SyncInterval:       100 * time.Millisecond,
		QueueMaxMessages:   100_000,
		QueueMaxBytes:      256 * MiB,
		CleanQueueMaxBytes: 16 * MiB,
		QueuePolicy:        QueueRefuseNew,
	}
}

// TLSEnabled reports whether the TLS listener is configured.
func (c Config) TLSEnabled() bool { return c.TLSAddr != "" && c.TLSCert != "" && c.TLSKey != "" }

// Validate checks the whole configuration and returns every problem found,
// joined, so that an operator fixes them in one go.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.DataDir == "" {
		bad("data-dir: must not be empty")
	}
	addrs := map[string]string{}
	for _, a := range []struct{ name, addr string }{
		{"mqtt-addr", c.MQTTAddr}, {"ws-addr", c.WSAddr}, {"tls-addr", c.TLSAddr}, {"http-addr", c.HTTPAddr},
	} {
		if a.addr == "" || (a.name == "tls-addr" && !c.TLSEnabled()) {
			continue
		}
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			bad("%s: %q is not host:port: %v", a.name, a.addr, err)
			continue
		}
		if port != "0" {
			key := host + ":" + port
			if other, dup := addrs[key]; dup {
				bad("%s: %q is already used by %s", a.name, a.addr, other)
			}
			addrs[key] = a.name
		}
	}
	if c.WSAddr != "" && !strings.HasPrefix(c.WSPath, "/") {
		bad("ws-path: %q must start with /", c.WSPath)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert and tls-key: both must be set, or neither")
	}
	for _, f := range []struct{ name, path string }{
		{"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}, {"tls-client-ca", c.TLSClientCA}, {"acl-file", c.ACLFile},
		{"jwt-hmac-secret-file", c.JWTHMACSecretFile}, {"jwt-rsa-public-key-file", c.JWTRSAPublicKeyFile},
		{"jwt-ed25519-public-key-file", c.JWTEd25519PublicKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad("%s: %v", f.name, err)
		}
	}
	switch c.TLSClientAuth {
	case ClientAuthNone:
	case ClientAuthOptional, ClientAuthRequire:
		if c.TLSClientCA == "" {
			bad("tls-client-auth: %q needs tls-client-ca", c.TLSClientAuth)
		}
	default:
		bad("tls-client-auth: %q is not one of none, optional, require", c.TLSClientAuth)
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		bad("log-level: %q is not one of trace, debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != LogFormatConsole && c.LogFormat != LogFormatJSON {
		bad("log-format: %q is not console or json", c.LogFormat)
	}
	positive := []struct {
		name string
		ok   bool
	}{
		{"connect-timeout", c.ConnectTimeout > 0},
		{"max-clients", c.MaxClients > 0},
		{"max-session-expiry", c.MaxSessionExpiry > 0},
		{"max-message-expiry", c.MaxMessageExpiry > 0},
		{"max-pending-writes", c.MaxPendingWrites > 0},
		{"shutdown-timeout", c.ShutdownTimeout > 0},
	}
	for _, p := range positive {
		if !p.ok {
			bad("%s: must be greater than zero", p.name)
		}
	}
	// MQTT encodes the remaining length in at most four bytes.
	if c.MaxPacketSize < 64 || c.MaxPacketSize > 268_435_455 {
		bad("max-packet-size: %s must be between 64B and 256MiB", c.MaxPacketSize)
	}
	if c.MaxKeepalive < 0 || c.MaxKeepalive > 65535*time.Second || c.MaxKeepalive%time.Second != 0 {
		bad("max-keepalive: %s must be whole seconds between 0 (no cap) and 65535s", c.MaxKeepalive)
	}
	if c.MaxConnectSize < 256 || c.MaxConnectSize > 268_435_455 {
		bad("max-connect-size: %s must be between 256B and 256MiB", c.MaxConnectSize)
	}
	if c.MaxSessionExpiry > time.Duration(1<<32-1)*time.Second {
		bad("max-session-expiry: %s is beyond MQTT's 136 years", c.MaxSessionExpiry)
	}
	if c.ReceiveMaximum < 1 || c.ReceiveMaximum > 65535 {
		bad("receive-maximum: %d must be between 1 and 65535", c.ReceiveMaximum)
	}
	if c.MaxInflight < 1 || c.MaxInflight > 65535 {
		bad("max-inflight: %d must be between 1 and 65535", c.MaxInflight)
	}
	if c.TopicAliasMax < 0 || c.TopicAliasMax > 65535 {
		bad("topic-alias-max: %d must be between 0 and 65535", c.TopicAliasMax)
	}
	if c.ReadBufferSize < 256 || c.ReadBufferSize > 16*MiB {
		bad("read-buffer-size: %s must be between 256B and 16MiB", c.ReadBufferSize)
	}
	if c.WriteBufferSize < 256 || c.WriteBufferSize > 16*MiB {
		bad("write-buffer-size: %s must be between 256B and 16MiB", c.WriteBufferSize)
	}
	if c.MaxConnectionsPerIP < 0 || c.ConnectRate < 0 || c.PublishRate < 0 || c.PublishBytesRate < 0 || c.MaxSubscriptions < 0 || c.UserPublishRate < 0 || c.MaxSessionsPerUser < 0 ||
		c.MaxChecksPerIP < 0 || c.MaxChecksPerUser < 0 {
		bad("max-connections-per-ip, connect-rate, publish-rate, publish-bytes-rate, max-subscriptions, user-publish-rate, max-sessions-per-user, max-password-checks-per-ip, max-password-checks-per-user: must not be negative (0 means no limit)")
	}
	if c.UserPublishRate > 0 && c.UserPublishBurst < 1 {
		bad("user-publish-burst: %d must be at least 1 when user-publish-rate is set", c.UserPublishBurst)
	}
	if c.Envelope != EnvelopeMessaging && c.Envelope != EnvelopeAll {
		bad("envelope: %q must be %s or %s", c.Envelope, EnvelopeMessaging, EnvelopeAll)
	}
	if c.DedupeWindow < 0 {
		bad("dedupe-window: must not be negative (0 turns deduplication off)")
	}
	if c.ReceiptWindow < time.Second {
		bad("receipt-window: %s must be at least 1s", c.ReceiptWindow)
	}
	if c.MaxGroupMembers < 2 || c.MaxGroupMembers > 100_000 {
		bad("max-group-members: %d must be between 2 and 100000", c.MaxGroupMembers)
	}
	if c.MaxTopicLength < 1 || c.MaxTopicLength > 65535 {
		bad("max-topic-length: %d must be between 1 and 65535", c.MaxTopicLength)
	}
	if c.MaxTopicLevels < 1 {
		bad("max-topic-levels: %d must be at least 1", c.MaxTopicLevels)
	}
	if c.Durability != DurabilitySync && c.Durability != DurabilityInterval {
		bad("durability: %q is not sync or interval", c.Durability)
	}
	if c.Durability == DurabilityInterval && c.SyncInterval <= 0 {
		bad("sync-interval: must be greater than zero with interval durability")
	}
	if c.QueuePolicy != QueueRefuseNew && c.QueuePolicy != QueueDropOldest {
		bad("queue-policy: %q is not refuse-new or drop-oldest", c.QueuePolicy)
	}
	if c.CleanQueueMaxBytes <= 0 {
		bad("clean-queue-max-bytes: must be positive")
	}
	if c.QueueMaxMessages <= 0 || c.QueueMaxBytes <= 0 || c.QueueMaxAge < 0 {
		bad("queue-max-messages, queue-max-bytes: must be greater than zero; queue-max-age: not negative")
	}
	if c.MQTTAddr == "" && c.WSAddr == "" && !c.TLSEnabled() {
		bad("no MQTT listener: set at least one of mqtt-addr, ws-addr, or tls-addr with tls-cert and tls-key")
	}
	return errors.Join(errs...)
}
