package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/storage"
)

// Reasons a connection ended abnormally, the label values of
// mqhub_connection_errors_total.
const (
	reasonConnectTimeout = "connect_timeout" // no CONNECT within the deadline
	reasonPanic          = "decoder_panic"   // a packet crashed the decoder; contained
	reasonTooLarge       = "packet_too_large"
	reasonMalformed      = "malformed_packet"
	reasonProtocolError  = "protocol_error"     // MQTT 5 protocol errors mochi lets through (frames.go)
	reasonConnectRate    = "connect_rate"       // refused at accept: the IP opens connections too fast
	reasonConnsPerIP     = "connections_per_ip" // refused at accept: too many open from the IP
	reasonRefused        = "connect_refused"    // CONNACK with an error code
	reasonTLSHandshake   = "tls_handshake"
	reasonAuthFailed     = "auth_refused" // bad credentials, not authorized, client ID of another user
)

// metrics are the node's Prometheus figures. Each Broker has its own
// registry so that several brokers can live in one test process.
type metrics struct {
	registry         *prometheus.Registry
	connectionErrors *prometheus.CounterVec
	connections      prometheus.Counter
	panics           atomic.Int64 // also kept plainly for tests and logs
}

func newMetrics(server *mqtt.Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connectionErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqhub_connection_errors_total",
			Help: "Connections closed by the hub because of a client error, by reason.",
		}, []string{"reason"}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqhub_connections_accepted_total",
			Help: "Network connections accepted on the MQTT listeners.",
		}),
	}
	for _, r := range []string{
		reasonConnectTimeout, reasonPanic, reasonTooLarge, reasonMalformed, reasonProtocolError,
		reasonRefused, reasonTLSHandshake, reasonAuthFailed, reasonConnectRate, reasonConnsPerIP,
	} {
		m.connectionErrors.WithLabelValues(r) // export zeros so dashboards see the series
	}
	info := server.Info
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connectionErrors,
		m.connections,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mqhub_clients_connected",
			Help: "MQTT clients connected now.",
		}, func() float64 { return float64(atomic.LoadInt64(&info.ClientsConnected)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mqhub_messages_received_total",
			Help: "PUBLISH packets received from clients.",
		}, func() float64 { return float64(atomic.LoadInt64(&info.MessagesReceived)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mqhub_messages_sent_total",
			Help: "PUBLISH packets sent to clients.",
		}, func() float64 { return float64(atomic.LoadInt64(&info.MessagesSent)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mqhub_messages_dropped_total",
			Help: "Messages dropped because a client's pending writes were full.",
		}, func() float64 { return float64(atomic.LoadInt64(&info.MessagesDropped)) }),
	)
	return m
}

// registerOffline exports the delivery counters of the offline hook.
func (m *metrics) registerOffline(st *offline.Stats) {
	counterFuncs(m.registry, []counter[int64]{
		{"mqhub_queue_enqueued_total", "Queue entries written (one per session per QoS 1/2 message).", st.Enqueued.Load},
		{"mqhub_queue_delivered_total", "Queue entries acknowledged by the receiving client.", st.Delivered.Load},
		{"mqhub_queue_resent_total", "Queue entries re-sent with DUP after a reconnect or restart.", st.Resent.Load},
		{"mqhub_publishes_refused_total", "QoS 1/2 publishes refused because a queue was full or the store failed.", st.Refused.Load},
		{"mqhub_qos0_dropped_total", "QoS 0 messages dropped for a congested subscriber.", st.QoS0Dropped.Load},
		{"mqhub_queue_too_large_total", "Queue entries dropped as larger than the client's maximum packet size.", st.TooLarge.Load},
		{"mqhub_sessions_expired_total", "Persistent sessions deleted because their expiry passed.", st.ExpiredTotal.Load},
		{"mqhub_queue_revoked_total", "Queued messages dropped because the session may no longer read their topic.", st.Revoked.Load},
		{"mqhub_queue_expired_by_cap_total", "Queued messages published without an expiry dropped as older than max-message-expiry.", st.CapExpired.Load},
		{"mqhub_wills_sent_total", "Wills published through the entry path.", st.WillsSent.Load},
		{"mqhub_wills_refused_total", "Wills not published: refused by the messaging rules or not stored.", st.WillsRefused.Load},
	})
}

// registerMessaging exports the receipts counters and the users online.
func (m *metrics) registerMessaging(st *hooks.ReceiptsStats, online func() int64) {
	counterFuncs(m.registry, []counter[int64]{
		{"mqhub_receipts_delivered_total", "Delivered receipts routed, one per recipient device.", st.Delivered.Load},
		{"mqhub_receipts_read_total", "Read receipts routed.", st.Read.Load},
		{"mqhub_receipts_read_refused_total", "Read receipts refused: malformed, or naming no message addressed to the reader.", st.ReadRefused.Load},
		{"mqhub_receipts_read_ids_dropped_total", "Message ids dropped from routed read receipts, as not addressed to the reader.", st.ReadDropped.Load},
		{"mqhub_receipts_delivered_dropped_total", "Delivered receipts some of the sender's devices did not get because their queue was full.", st.DeliveredDropped.Load},
	})
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqhub_users_online", Help: "Users with at least one device connected.",
	}, func() float64 { return float64(online()) }))
}

// limitRefusalsHelp is the help of mqhub_limit_refusals_total, whose
// series come from the limits hooks and from the auth hook.
const limitRefusalsHelp = "CONNECTs, logins, PUBLISHes and topic filters refused by a configured limit, by limit."

// registerLimits exports the refusals of the limits hook, one series per
// limit.
func (m *metrics) registerLimits(st *hooks.LimitsStats) {
	for _, c := range []struct {
		limit string
		v     func() int64
	}{
		{"connections_per_ip", st.ConnectionsPerIP.Load},
		{"connect_rate", st.ConnectRate.Load},
		{"publish_rate", st.PublishRate.Load},
		{"publish_bytes_rate", st.PublishBytesRate.Load},
		{"user_publish_rate", st.UserPublishRate.Load},
		{"sessions_per_user", st.SessionsPerUser.Load},
		{"subscriptions", st.Subscriptions.Load},
		{"topic_length", st.TopicLength.Load},
		{"topic_levels", st.TopicLevels.Load},
	} {
		counterFunc(m.registry, prometheus.CounterOpts{
			Name:        "mqhub_limit_refusals_total",
			Help:        limitRefusalsHelp,
			ConstLabels: prometheus.Labels{"limit": c.limit},
		}, c.v)
	}
}

// registerAuth exports the password checks and the logins refused
// before one (with the limits' refusals).
func (m *metrics) registerAuth(st *hooks.AuthStats) {
	counterFuncs(m.registry, []counter[int64]{
		{"mqhub_password_checks_total", "Password checks (bcrypt) run for logins over MQTT and HTTP.", st.PasswordChecks.Load},
	})
	for _, c := range []struct {
		limit string
		v     func() int64
	}{
		{"password_checks_per_ip", st.ChecksPerIP.Load},
		{"password_checks_per_user", st.ChecksPerUser.Load},
	} {
		counterFunc(m.registry, prometheus.CounterOpts{
			Name:        "mqhub_limit_refusals_total",
			Help:        limitRefusalsHelp,
			ConstLabels: prometheus.Labels{"limit": c.limit},
		}, c.v)
	}
}

// registerStore exports the store's counters: drops by queue policy and
// expiry, and the group commits.
func (m *metrics) registerStore(st *storage.Stats) {
	counterFuncs(m.registry, []counter[uint64]{
		{"mqhub_queue_dropped_oldest_total", "Queued messages deleted to make room under the drop-oldest policy.", st.DroppedOldest.Load},
		{"mqhub_queue_expired_total", "Queued messages deleted because their message expiry passed.", st.Expired.Load},
		{"mqhub_queue_aged_out_total", "Queued messages deleted because they were older than queue-max-age.", st.AgedOut.Load},
		{"mqhub_store_commits_total", "Group commits written to the store.", st.Batches.Load},
		{"mqhub_store_syncs_total", "fsyncs of the store.", st.Syncs.Load},
		{"mqhub_store_commit_errors_total", "Failed commits or fsyncs of the store.", st.CommitErrors.Load},
	})
}

// counter names a counter read from an atomic of another package.
type counter[T int64 | uint64] struct {
	name, help string
	v          func() T
}

// counterFuncs registers counterFunc for each counter.
func counterFuncs[T int64 | uint64](reg *prometheus.Registry, cs []counter[T]) {
	for _, c := range cs {
		counterFunc(reg, prometheus.CounterOpts{Name: c.name, Help: c.help}, c.v)
	}
}

// counterFunc registers a counter whose value is read from an atomic
// counter of another package when scraped.
func counterFunc[T int64 | uint64](reg *prometheus.Registry, opts prometheus.CounterOpts, v func() T) {
	reg.MustRegister(prometheus.NewCounterFunc(opts, func() float64 { return float64(v()) }))
}

func (m *metrics) connectionError(reason string) {
	m.connectionErrors.WithLabelValues(reason).Inc()
	if reason == reasonPanic {
		m.panics.Add(1)
	}
}
