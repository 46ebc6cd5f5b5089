package bench

import (
	"context"
	"time"
)

// pacer spaces sends at a fixed rate. After a stall it catches up (sends
// back to back) instead of skipping slots, so the sent count stays
// rate × time and a slow broker shows up as latency, not as a lower rate.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        int64
}

// newPacer returns a pacer for rate messages per second; rate <= 0 means
// as fast as possible.
func newPacer(rate float64) *pacer {
	p := &pacer{start: time.Now()}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// wait blocks until the next send slot or until ctx is done.
func (p *pacer) wait(ctx context.Context) error {
	if p.interval == 0 {
		return ctx.Err()
	}
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
