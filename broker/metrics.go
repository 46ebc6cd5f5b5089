package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reasons a connection ended abnormally, the label values of
// mqhub_connection_errors_total.
const (
	reasonConnectTimeout = "connect_timeout" // no CONNECT within the deadline
	reasonPanic          = "decoder_panic"   // a packet crashed the decoder; contained
	reasonTooLarge       = "packet_too_large"
	reasonMalformed      = "malformed_packet"
	reasonRefused        = "connect_refused" // CONNACK with an error code
	reasonTLSHandshake   = "tls_handshake"
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
	for _, r := range []string{reasonConnectTimeout, reasonPanic, reasonTooLarge, reasonMalformed, reasonRefused, reasonTLSHandshake} {
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

func (m *metrics) connectionError(reason string) {
	m.connectionErrors.WithLabelValues(reason).Inc()
	if reason == reasonPanic {
		m.panics.Add(1)
	}
}
