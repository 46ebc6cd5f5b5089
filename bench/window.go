package bench

import (
	"context"
	"sync/atomic"
	"time"
)

// sendWindow returns the context that bounds a sending phase: o.Duration
// when set, otherwise only ctx (the count bounds the phase then).
func sendWindow(ctx context.Context, o Options) (context.Context, context.CancelFunc) {
	if o.Duration > 0 {
		return context.WithTimeout(ctx, o.Duration)
	}
	return context.WithCancel(ctx)
}

// sendProgress shows the progress of a sending phase: elapsed time against
// o.Duration when the phase is time-bounded, else messages sent against the
// total count.
func sendProgress(o Options, desc string, senders []*sender) *progress {
	if o.Duration > 0 {
		start := time.Now()
		return startProgress(o.Progress, desc+" (ms)", o.Duration.Milliseconds(),
			func() int64 { return time.Since(start).Milliseconds() })
	}
	return startProgress(o.Progress, desc+" (msgs)", int64(o.Count)*int64(len(senders)),
		func() int64 { return sentSoFar(senders) })
}

// perSecond returns n/d in events per second, 0 for an empty interval.
func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// lastArrival records the monotonic time of the latest delivery, so rates
// are computed over the time messages actually flowed rather than including
// the idle tail of a drain wait.
type lastArrival struct{ nanos atomic.Int64 }

// mark records an arrival now.
func (l *lastArrival) mark() { l.nanos.Store(monoNow()) }

// since returns the time from start (epoch nanos) to the last arrival.
func (l *lastArrival) since(startNanos int64) time.Duration {
	n := l.nanos.Load()
	if n == 0 || n < startNanos {
		return 0
	}
	return time.Duration(n - startNanos)
}

// defaultDuration is the sending phase of time-bounded scenarios when
// neither a duration nor a count is given: long enough for a stable rate,
// short enough that compare's 36 runs fit in minutes.
const defaultDuration = 5 * time.Second

// durationOf converts a difference of epoch nanoseconds.
func durationOf(nanos int64) time.Duration { return time.Duration(nanos) }

// scenarioDesc is the progress bar title.
func (o Options) scenarioDesc(name string) string { return name + " " + o.Target }
