package bench

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/eclipse/paho.golang/paho"
)

// sender publishes one stream of bench payloads on one topic.
type sender struct {
	client  *paho.Client
	topic   string
	stream  uint32
	qos     byte
	workers int     // concurrent publishes (QoS 1 window); 1 keeps order
	rate    float64 // per stream, 0 = as fast as possible
	count   int     // 0 = until the send window closes
	size    int
	gate    *backlog // nil = no generator-side flow control

	next   atomic.Uint64 // next sequence number to hand out
	sent   atomic.Uint64 // publishes that completed (PUBACK for QoS 1)
	failed atomic.Uint64 // publishes that returned an error
}

// run publishes until window ends or count messages were handed out. Each
// publish itself runs under ctx (the hard timeout), not window, so a QoS 1
// publish in flight when the window closes still gets its PUBACK counted.
func (s *sender) run(window, ctx context.Context) {
	workers := max(s.workers, 1)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			p := newPacer(s.rate / float64(workers))
			for {
				if p.wait(window) != nil || s.gate.wait(window) != nil {
					return
				}
				seq := s.next.Add(1) - 1
				if s.count > 0 && seq >= uint64(s.count) {
					return
				}
				payload := EncodePayload(PayloadHeader{Stream: s.stream, Seq: seq, SentNanos: monoNow()}, s.size)
				_, err := s.client.Publish(ctx, &paho.Publish{Topic: s.topic, QoS: s.qos, Payload: payload})
				if err != nil {
					s.failed.Add(1)
					if ctx.Err() != nil {
						return
					}
					continue
				}
				s.sent.Add(1)
				s.gate.sent()
			}
		})
	}
	wg.Wait()
}

// runSenders runs every sender concurrently and waits for all of them.
func runSenders(window, ctx context.Context, senders []*sender) {
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() { s.run(window, ctx) })
	}
	wg.Wait()
}

// senderTotals sums what the senders did and returns the per-stream sent
// counts that streamSet.lost needs.
func senderTotals(senders []*sender) (sent, failed uint64, perStream map[uint32]uint64) {
	perStream = make(map[uint32]uint64, len(senders))
	for _, s := range senders {
		n := s.sent.Load()
		sent += n
		failed += s.failed.Load()
		perStream[s.stream] += n
	}
	return sent, failed, perStream
}

// sentSoFar returns the running total, for progress bars.
func sentSoFar(senders []*sender) int64 {
	var n uint64
	for _, s := range senders {
		n += s.sent.Load()
	}
	return int64(n)
}

// sendAndDrain is the common part of the stream scenarios: it runs the
// senders for the send window with a progress bar, waits for the receivers
// to catch up (or to stall), and returns the figures every stream scenario
// reports, plus the out-of-order count for those that can attribute it.
func sendAndDrain(ctx context.Context, o Options, desc string, senders []*sender, streams *streamSet, arrivals func() int64, last *lastArrival) (figs map[string]float64, ooo uint64) {
	window, cancel := sendWindow(ctx, o)
	defer cancel()
	bar := sendProgress(o, desc, senders)
	start := monoNow()
	runSenders(window, ctx, senders)
	sendElapsed := monoNow() - start
	bar.finish()

	sent, failed, perStream := senderTotals(senders)
	waitDrained(ctx, o.Drain, o.DrainIdle,
		func() bool { u, _, _, _ := streams.totals(); return u >= sent },
		arrivals)
	unique, dups, ooo, foreign := streams.totals()
	return map[string]float64{
		"sent":           float64(sent),
		"publish_errors": float64(failed),
		"sent_per_s":     perSecond(sent, durationOf(sendElapsed)),
		"received":       float64(unique),
		"recv_per_s":     perSecond(unique, last.since(start)),
		"lost":           float64(streams.lost(perStream)),
		"duplicates":     float64(dups),
		"foreign":        float64(foreign),
	}, ooo
}
