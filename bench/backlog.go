package bench

import (
	"context"
	"sync/atomic"
	"time"
)

// backlog is generator-side flow control for throughput scenarios. QoS 0
// has no flow control at all and a QoS 1 PUBACK only says the broker took
// the message, so unthrottled publishers measure how much a broker can
// buffer (mosquitto grew to 300 MB in 3 s) rather than how fast it
// delivers. Bounding sent-but-not-received keeps the broker saturated with
// a bounded queue, so the figure is the sustainable rate.
type backlog struct {
	limit     int64
	out       atomic.Int64 // sent
	in        atomic.Int64 // received
	stalls    atomic.Int64 // waits that gave up after backlogMaxWait
	maxWaitNs int64
}

// backlogMaxWait bounds one wait. A broker that drops messages (QoS 0 under
// overload) would otherwise leave the backlog full for ever; giving up
// lets the run continue, and the stalls figure shows it happened.
const backlogMaxWait = 100 * time.Millisecond

// backlogPoll is how often a blocked publisher looks again.
const backlogPoll = 100 * time.Microsecond

func newBacklog(limit int) *backlog {
	if limit <= 0 {
		return nil
	}
	return &backlog{limit: int64(limit), maxWaitNs: int64(backlogMaxWait)}
}

// sent records one message sent.
func (b *backlog) sent() {
	if b != nil {
		b.out.Add(1)
	}
}

// received records one message received.
func (b *backlog) received() {
	if b != nil {
		b.in.Add(1)
	}
}

// wait blocks while the backlog is full, for at most backlogMaxWait.
func (b *backlog) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	if b.out.Load()-b.in.Load() < b.limit {
		return ctx.Err()
	}
	deadline := time.Now().Add(time.Duration(b.maxWaitNs))
	t := time.NewTicker(backlogPoll)
	defer t.Stop()
	for b.out.Load()-b.in.Load() >= b.limit {
		if time.Now().After(deadline) {
			b.stalls.Add(1)
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return ctx.Err()
}

// stallCount returns how many waits gave up.
func (b *backlog) stallCount() int64 {
	if b == nil {
		return 0
	}
	return b.stalls.Load()
}
