package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/eclipse/paho.golang/paho"
)

// fanoutScenario is a group or broadcast: one publisher, many subscribers of
// one topic. It measures how fast the broker multiplies a message and how
// long the last copy takes to arrive. "fanout" runs at QoS 0 unless --qos
// says otherwise; "fanout-qos1" at QoS 1, where every copy is acknowledged.
func fanoutScenario(qos byte) Scenario {
	name := "fanout"
	if qos > 0 {
		name = fmt.Sprintf("fanout-qos%d", qos)
	}
	return Scenario{
		Name:    name,
		Summary: fmt.Sprintf("1 publisher -> N subscribers (default 1000) of one topic at QoS %d; deliveries/s, latency quantiles", qos),
		Key:     []string{"deliveries_per_s", "p50_us", "p99_us", "max_us", "lost"},
		Defaults: func(o *Options) {
			if o.QoS < 0 || qos > 0 {
				o.QoS = int(qos)
			}
			if o.Clients == 0 {
				o.Clients = 1000
			}
			if o.Duration == 0 && o.Count == 0 {
				o.Duration = defaultDuration
			}
			if o.Rate == 0 {
				o.Rate = 20
			}
		},
		run: runFanout,
	}
}

func runFanout(ctx context.Context, o Options) (map[string]float64, error) {
	run := newRunID()
	topic := "bench/" + run + "/fan"
	qos := byte(o.QoS)
	lat := newLatencyRecorder()
	// One stream per subscriber: each receives the publisher's full
	// sequence, so loss and duplicates are counted per copy.
	streams := newStreamSet()
	var deliveries atomic.Int64
	var last lastArrival
	subs, _, err := connectMany(ctx, o, o.Clients, func(i int) clientSpec {
		return clientSpec{
			id: fmt.Sprintf("%s-sub-%d", run, i), cleanStart: true,
			onMessage: func(p *paho.Publish) {
				h, err := DecodePayload(p.Payload)
				if err != nil {
					streams.addForeign()
					return
				}
				lat.record(h.SentNanos)
				streams.add(uint32(i), h.Seq)
				deliveries.Add(1)
				last.mark()
			},
		}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(subs, nil)
	if err := subscribeAll(ctx, o, subs, func(int) string { return topic }, qos); err != nil {
		return nil, err
	}
	pub, _, err := connectClient(ctx, o, clientSpec{id: run + "-pub", cleanStart: true})
	if err != nil {
		return nil, err
	}
	defer closeClient(pub, nil)

	s := &sender{client: pub, topic: topic, qos: qos, workers: 1, rate: o.sendRate(), count: o.Count, size: o.PayloadSize}
	window, cancel := sendWindow(ctx, o)
	defer cancel()
	bar := sendProgress(o, o.scenarioDesc("fanout"), []*sender{s})
	start := monoNow()
	runSenders(window, ctx, []*sender{s})
	sendElapsed := monoNow() - start
	bar.finish()

	sent := s.sent.Load()
	want := sent * uint64(o.Clients)
	waitDrained(ctx, o.Drain, o.DrainIdle,
		func() bool { u, _, _, _ := streams.totals(); return u >= want },
		deliveries.Load)
	perSub := make(map[uint32]uint64, o.Clients)
	for i := range o.Clients {
		perSub[uint32(i)] = sent
	}
	unique, dups, ooo, foreign := streams.totals()
	figs := map[string]float64{
		"subscribers":      float64(o.Clients),
		"sent":             float64(sent),
		"publish_errors":   float64(s.failed.Load()),
		"sent_per_s":       perSecond(sent, durationOf(sendElapsed)),
		"expected":         float64(want),
		"delivered":        float64(unique),
		"deliveries_per_s": perSecond(unique, last.since(start)),
		"lost":             float64(streams.lost(perSub)),
		"duplicates":       float64(dups),
		"out_of_order":     float64(ooo),
		"order_breaks":     float64(streams.orderBreaks()),
		"foreign":          float64(foreign),
	}
	lat.figures(figs)
	return figs, nil
}
