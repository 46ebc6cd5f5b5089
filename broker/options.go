package broker

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the name of every environment variable the hub reads:
// --max-packet-size is MQHUB_MAX_PACKET_SIZE.
const EnvPrefix = "MQHUB_"

// ConfigFlag names the flag (and MQHUB_CONFIG variable) giving the YAML file.
const ConfigFlag = "config"

// BindFlags registers one flag per option on fs, bound to c's fields, with
// c's current values as defaults. The flag names are also the YAML keys and,
// upper-cased with EnvPrefix, the environment variables.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.String(ConfigFlag, "", "YAML file with options (keys are the flag names); flags and MQHUB_* variables override it")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory holding the node's data")
	fs.StringVar(&c.MQTTAddr, "mqtt-addr", c.MQTTAddr, "MQTT over TCP listen address (empty disables)")
	fs.StringVar(&c.WSAddr, "ws-addr", c.WSAddr, "MQTT over WebSocket listen address (empty disables)")
	fs.StringVar(&c.WSPath, "ws-path", c.WSPath, "HTTP path of the WebSocket endpoint")
	fs.StringVar(&c.TLSAddr, "tls-addr", c.TLSAddr, "MQTT over TLS listen address, active when tls-cert and tls-key are set (empty disables)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP address for /healthz, /readyz and /metrics (empty disables)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate chain for the TLS listener")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key for tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "PEM CA bundle that client certificates must chain to")
	fs.StringVar(&c.TLSClientAuth, "tls-client-auth", c.TLSClientAuth, "client certificates on the TLS listener: none, optional or require")
	fs.BoolVar(&c.AllowAnonymous, "allow-anonymous", c.AllowAnonymous, "let clients connect without credentials (development and tutorials only)")
	fs.StringVar(&c.ACLFile, "acl-file", c.ACLFile, "topic rules in mosquitto's acl_file syntax for topics outside the hub's own namespaces (empty: those topics are open to every admitted client)")
	fs.StringVar(&c.JWTHMACSecretFile, "jwt-hmac-secret-file", c.JWTHMACSecretFile, "file with the HS256 secret (32 bytes or more) for JWT passwords")
	fs.StringVar(&c.JWTRSAPublicKeyFile, "jwt-rsa-public-key-file", c.JWTRSAPublicKeyFile, "PEM RSA public key for RS256 JWT passwords")
	fs.StringVar(&c.JWTEd25519PublicKeyFile, "jwt-ed25519-public-key-file", c.JWTEd25519PublicKeyFile, "PEM Ed25519 public key for EdDSA JWT passwords")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", c.JWTIssuer, "iss claim a JWT must carry (empty: not checked)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", c.JWTAudience, "aud claim a JWT must carry (empty: not checked)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve Go profiles under /debug/pprof on the HTTP listener (for diagnosing; keep that listener private)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: trace, debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: console or json")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", c.ConnectTimeout, "close a connection that has not sent CONNECT within this time")
	fs.DurationVar(&c.MaxKeepalive, "max-keepalive", c.MaxKeepalive, "cap on the keep-alive a client may ask for, whole seconds; asking for more or for none (0) gets this (0: no cap)")
	fs.Var(&c.MaxPacketSize, "max-packet-size", "largest MQTT packet accepted (e.g. 1MiB); larger ones are refused before they are read")
	fs.Var(&c.MaxConnectSize, "max-connect-size", "largest CONNECT accepted (credentials, will and properties included; at most max-packet-size); a larger one is refused from its fixed header, and a CONNECT costs memory only as its bytes arrive")
	fs.IntVar(&c.MaxClients, "max-clients", c.MaxClients, "maximum connected clients")
	fs.DurationVar(&c.MaxSessionExpiry, "max-session-expiry", c.MaxSessionExpiry, "cap on the session expiry a client may ask for")
	fs.DurationVar(&c.MaxMessageExpiry, "max-message-expiry", c.MaxMessageExpiry, "cap on message expiry, and the expiry given to messages without one")
	fs.IntVar(&c.ReceiveMaximum, "receive-maximum", c.ReceiveMaximum, "QoS 1/2 publishes a v5 client may have unacknowledged towards the hub")
	fs.IntVar(&c.MaxInflight, "max-inflight", c.MaxInflight, "QoS 1/2 messages in flight towards one client")
	fs.IntVar(&c.MaxPendingWrites, "max-pending-writes", c.MaxPendingWrites, "packets queued for one client's writer; beyond it a message to that client is dropped and counted")
	fs.Var(&c.ReadBufferSize, "read-buffer-size", "per-connection read buffer")
	fs.Var(&c.WriteBufferSize, "write-buffer-size", "per-connection write batching threshold")
	fs.IntVar(&c.TopicAliasMax, "topic-alias-max", c.TopicAliasMax, "topic aliases a v5 client may use (0 disables)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful shutdown waits for clients and storage")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", c.MaxConnectionsPerIP, "connections open at once from one IP address, checked at accept (0: no limit)")
	fs.Float64Var(&c.ConnectRate, "connect-rate", c.ConnectRate, "new connections per second from one IP address, with a burst of twice that, checked at accept (0: no limit)")
	fs.Float64Var(&c.PublishRate, "publish-rate", c.PublishRate, "PUBLISH packets per second per client, with a burst of twice that (0: no limit)")
	fs.Var(&c.PublishBytesRate, "publish-bytes-rate", "PUBLISH payload bytes per second per client, with a burst of twice that (0: no limit)")
	fs.Float64Var(&c.UserPublishRate, "user-publish-rate", c.UserPublishRate, "PUBLISH packets per second per user, over all its connections; admins and anonymous clients are exempt (0: no limit)")
	fs.IntVar(&c.UserPublishBurst, "user-publish-burst", c.UserPublishBurst, "PUBLISH packets one user may send at once (an app flushing its outbox) before user-publish-rate applies")
	fs.IntVar(&c.MaxSubscriptions, "max-subscriptions", c.MaxSubscriptions, "subscriptions one client may hold (0: no limit)")
	fs.IntVar(&c.MaxSessionsPerUser, "max-sessions-per-user", c.MaxSessionsPerUser, "persistent sessions one user may hold, stored ones included; a CONNECT that would create one more gets 0x97 quota exceeded (0: no limit)")
	fs.IntVar(&c.MaxChecksPerIP, "max-password-checks-per-ip", c.MaxChecksPerIP, "password checks in flight at once from one IP address (MQTT and HTTP logins); more are refused unchecked with 0x9F / HTTP 429 (0: no limit)")
	fs.IntVar(&c.MaxChecksPerUser, "max-password-checks-per-user", c.MaxChecksPerUser, "password checks in flight at once for one user name, from any address; more are refused unchecked with 0x9F / HTTP 429 (0: no limit)")
	fs.IntVar(&c.MaxTopicLength, "max-topic-length", c.MaxTopicLength, "bytes in a topic name or filter")
	fs.IntVar(&c.MaxTopicLevels, "max-topic-levels", c.MaxTopicLevels, "levels in a topic name or filter")
	fs.StringVar(&c.Envelope, "envelope", c.Envelope, "messaging: stamp id/from/ts on messages in the hub's namespaces (u/, g/) and relay other topics as published; all: stamp every message")
	fs.DurationVar(&c.DedupeWindow, "dedupe-window", c.DedupeWindow, "a PUBLISH repeating the id user property of an earlier one from the same sender within this is acknowledged but not delivered again (0: off)")
	fs.DurationVar(&c.ReceiptWindow, "receipt-window", c.ReceiptWindow, "read receipts are accepted for a message this long after it was sent (the hub keeps a small record per message until then)")
	fs.IntVar(&c.MaxGroupMembers, "max-group-members", c.MaxGroupMembers, "members one group may have")
	fs.StringVar(&c.Durability, "durability", c.Durability, "sync: a QoS 1/2 message is fsynced before it is acknowledged; interval: fsync every sync-interval (faster, loses up to that window on power loss)")
	fs.DurationVar(&c.SyncInterval, "sync-interval", c.SyncInterval, "fsync period with interval durability")
	fs.IntVar(&c.QueueMaxMessages, "queue-max-messages", c.QueueMaxMessages, "messages one persistent session's queue may hold")
	fs.Var(&c.QueueMaxBytes, "queue-max-bytes", "bytes one persistent session's queue may hold")
	fs.Var(&c.CleanQueueMaxBytes, "clean-queue-max-bytes", "bytes one clean session's queue may hold (kept in memory; queue-policy applies)")
	fs.DurationVar(&c.QueueMaxAge, "queue-max-age", c.QueueMaxAge, "drop queued messages older than this (0: keep until they expire)")
	fs.StringVar(&c.QueuePolicy, "queue-policy", c.QueuePolicy, "when a queue is full: refuse-new (the publisher gets 0x97 quota exceeded) or drop-oldest")
}

// Resolve completes a flag set bound with BindFlags after it parsed the
// command line: options not given as flags are taken from the environment
// (MQHUB_*), then from the YAML file named by --config or MQHUB_CONFIG.
// It returns every problem found, including those of Config.Validate.
func Resolve(fs *pflag.FlagSet, c *Config, environ []string) error {
	explicit := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { explicit[f.Name] = true })
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}

	var errs []error
	path, _ := fs.GetString(ConfigFlag)
	if !explicit[ConfigFlag] {
		if v, ok := env[EnvName(ConfigFlag)]; ok {
			path = v
		}
	}
	if path != "" {
		fileValues, err := readConfigFile(path)
		if err != nil {
			errs = append(errs, err)
		}
		for _, key := range sortedKeys(fileValues) {
			name := strings.ReplaceAll(key, "_", "-")
			f := fs.Lookup(name)
			if f == nil || name == ConfigFlag {
				errs = append(errs, fmt.Errorf("%s: unknown option %q", path, key))
				continue
			}
			if explicit[name] {
				continue
			}
			if err := fs.Set(name, fileValues[key]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", path, key, err))
			}
		}
	}

	fs.VisitAll(func(f *pflag.Flag) {
		v, ok := env[EnvName(f.Name)]
		if !ok || explicit[f.Name] || f.Name == ConfigFlag {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
		}
	})

	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// EnvName is the environment variable read for the option named flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// readConfigFile reads a flat YAML mapping of option names to scalars.
func readConfigFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	values := make(map[string]string, len(raw))
	var errs []error
	for k, v := range raw {
		switch v.(type) {
		case map[string]any, []any:
			errs = append(errs, fmt.Errorf("%s: %s: want a single value", path, k))
		case nil:
			values[k] = ""
		default:
			values[k] = fmt.Sprint(v)
		}
	}
	return values, errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
