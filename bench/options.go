package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Options configure one scenario run. Zero values mean "the scenario's
// default" (see each scenario's Defaults), so the same struct serves every
// scenario and the compare runner.
type Options struct {
	// Target is the broker's host:port.
	Target string
	// Username and Password are sent in every CONNECT when Username is set.
	Username string
	Password string
	// JWTSecretFile holds the HS256 secret the hub verifies JWT passwords
	// with (mqhub serve --jwt-hmac-secret-file). receipts needs it: it
	// signs one token per user, because receipts only flow between
	// authenticated users and tokens need no user store on the hub.
	JWTSecretFile string
	// Clients is the scenario's main population: publishers (fanin),
	// user pairs (p2p-latency), subscribers (fanout), connections (conns),
	// persistent sessions (offline-drain) or sender/recipient pairs
	// (receipts).
	Clients int
	// Rate is messages per second per sender; 0 means the scenario
	// default, negative means as fast as possible.
	Rate float64
	// Duration bounds the sending phase in time.
	Duration time.Duration
	// Count bounds the sending phase in messages per sender (per session
	// in offline-drain); 0 means bounded by Duration only.
	Count int
	// PayloadSize is the size of each message payload in bytes (at least
	// PayloadHeaderSize).
	PayloadSize int
	// QoS is the QoS level where the scenario lets it vary (fanout); -1
	// means the scenario default.
	QoS int
	// Inflight is how many QoS 1 publishes each sender keeps outstanding
	// in throughput scenarios, and each recipient's read receipts in
	// receipts.
	Inflight int
	// MaxBacklog bounds, in throughput scenarios, how many messages may be
	// sent but not yet received (0 = the scenario default, negative = no
	// bound). See backlog.
	MaxBacklog int
	// PID is the broker's process id; when set, its VmRSS is read before,
	// during and after the run.
	PID int
	// Hold is how long conns keeps its connections open.
	Hold time.Duration
	// Settle is how long offline-drain waits after queueing before it
	// reads the broker's RSS again (rss_settled_kb), so that background
	// work (compaction, the Go scavenger) can finish.
	Settle time.Duration
	// QueueOnly stops offline-drain once the messages are queued (and
	// Settle has passed): for measuring memory against the number queued.
	// The sessions are left on the broker.
	QueueOnly bool
	// KeepAlive is the MQTT keepalive every client announces.
	KeepAlive time.Duration
	// ConnectConcurrency bounds how many connections are being opened at
	// once, so that a connection storm does not overflow the broker's
	// accept backlog and measure SYN retries instead of the broker.
	ConnectConcurrency int
	// Drain bounds how long a scenario waits, after sending stops, for the
	// last messages to arrive; arrivals stalled for DrainIdle end it early.
	Drain     time.Duration
	DrainIdle time.Duration
	// Timeout is the hard limit for the whole run, whatever happens.
	Timeout time.Duration
	// Progress receives a progress bar; nil disables it.
	Progress io.Writer
}

// ErrInvalidOptions is wrapped by every Options validation error.
var ErrInvalidOptions = errors.New("invalid bench options")

// DefaultPayloadSize is the payload size used when Options.PayloadSize is 0.
const DefaultPayloadSize = 64

// withDefaults fills the generic defaults that every scenario shares; the
// scenario's own defaults are applied before this.
func (o Options) withDefaults() Options {
	if o.PayloadSize == 0 {
		o.PayloadSize = DefaultPayloadSize
	}
	if o.Inflight == 0 {
		o.Inflight = 16
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 30 * time.Second
	}
	if o.ConnectConcurrency == 0 {
		o.ConnectConcurrency = 64
	}
	if o.Drain == 0 {
		o.Drain = 10 * time.Second
	}
	if o.DrainIdle == 0 {
		o.DrainIdle = 2 * time.Second
	}
	if o.Timeout == 0 {
		// Generous but finite: connecting thousands of clients and
		// draining take time beyond Duration and Hold.
		o.Timeout = 2*o.Duration + o.Hold + o.Settle + o.Drain + 60*time.Second
		if o.Duration == 0 && o.Count > 0 {
			// A run bounded by count: allow down to 1,000 messages/s
			// (offline-drain of 10,000 x 100 queues a million).
			o.Timeout += time.Duration(o.Count) * time.Duration(max(o.Clients, 1)) * time.Millisecond
		}
	}
	return o
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(o.Target); err != nil {
		errs = append(errs, fmt.Errorf("target %q is not host:port: %w", o.Target, err))
	}
	if o.Clients < 1 {
		errs = append(errs, fmt.Errorf("clients must be at least 1, got %d", o.Clients))
	}
	if o.Duration <= 0 && o.Count <= 0 {
		errs = append(errs, errors.New("one of duration or count must be positive"))
	}
	if o.Duration < 0 || o.Count < 0 || o.Hold < 0 || o.Settle < 0 || o.Timeout < 0 {
		errs = append(errs, errors.New("duration, count, hold and timeout must not be negative"))
	}
	if o.PayloadSize < PayloadHeaderSize {
		errs = append(errs, fmt.Errorf("payload size must be at least %d bytes (the bench header), got %d", PayloadHeaderSize, o.PayloadSize))
	}
	if o.QoS < -1 || o.QoS > 1 {
		errs = append(errs, fmt.Errorf("qos must be 0 or 1, got %d", o.QoS))
	}
	if o.Inflight < 1 || o.ConnectConcurrency < 1 {
		errs = append(errs, errors.New("inflight and connect concurrency must be at least 1"))
	}
	if o.KeepAlive < time.Second || o.KeepAlive > 65535*time.Second {
		errs = append(errs, fmt.Errorf("keepalive must be between 1s and 65535s, got %s", o.KeepAlive))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return nil
}

// sendRate returns the rate to pace senders at: negative means unlimited,
// which the pacer spells as 0.
func (o Options) sendRate() float64 { return max(o.Rate, 0) }
