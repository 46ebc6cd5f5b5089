package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// maxLatencyMicros is the largest latency the histogram holds (60 s); slower
// deliveries are clamped to it rather than dropped, so they still show in
// max and p999.
const maxLatencyMicros = 60_000_000

// latencyRecorder is an HDR histogram of end-to-end latencies in
// microseconds, safe for concurrent use.
type latencyRecorder struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newLatencyRecorder() *latencyRecorder {
	// 3 significant digits: 0.1% error at any magnitude, which is what
	// makes p999 of a mostly-fast distribution trustworthy.
	return &latencyRecorder{h: hdrhistogram.New(1, maxLatencyMicros, 3)}
}

// record adds one latency given the send time in epoch nanoseconds.
func (l *latencyRecorder) record(sentNanos int64) {
	us := (monoNow() - sentNanos) / int64(time.Microsecond)
	us = min(max(us, 1), maxLatencyMicros)
	l.mu.Lock()
	_ = l.h.RecordValue(us) // cannot fail: us is clamped to the range
	l.mu.Unlock()
}

// figures adds the latency quantiles to f, all in microseconds.
func (l *latencyRecorder) figures(f map[string]float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f["latency_samples"] = float64(l.h.TotalCount())
	if l.h.TotalCount() == 0 {
		return
	}
	f["p50_us"] = float64(l.h.ValueAtQuantile(50))
	f["p90_us"] = float64(l.h.ValueAtQuantile(90))
	f["p99_us"] = float64(l.h.ValueAtQuantile(99))
	f["p999_us"] = float64(l.h.ValueAtQuantile(99.9))
	f["max_us"] = float64(l.h.Max())
	f["mean_us"] = l.h.Mean()
}
