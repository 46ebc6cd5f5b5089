package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/eclipse/paho.golang/paho"
)

// p2pScenario is the messaging hub's everyday pattern: user pairs sending
// each other direct messages on u/{peer}/inbox at QoS 1 and a modest rate.
// What matters here is end-to-end latency, not throughput.
func p2pScenario() Scenario {
	return Scenario{
		Name:    "p2p-latency",
		Summary: "N user pairs exchange QoS 1 messages on u/{peer}/inbox at a fixed rate; latency quantiles",
		Key:     []string{"p50_us", "p99_us", "p999_us", "max_us", "lost"},
		Defaults: func(o *Options) {
			o.QoS = 1
			if o.Clients == 0 {
				o.Clients = 50
			}
			if o.Duration == 0 && o.Count == 0 {
				o.Duration = defaultDuration
			}
			if o.Rate == 0 {
				o.Rate = 20
			}
		},
		run: runP2P,
	}
}

func runP2P(ctx context.Context, o Options) (map[string]float64, error) {
	run := newRunID()
	users := 2 * o.Clients
	user := func(i int) string { return fmt.Sprintf("%s-u%d", run, i) }
	peer := func(i int) int { return i ^ 1 } // 0<->1, 2<->3, ...
	streams := newStreamSet()
	lat := newLatencyRecorder()
	var arrivals atomic.Int64
	var last lastArrival
	onMessage := func(p *paho.Publish) {
		h, err := DecodePayload(p.Payload)
		if err != nil {
			streams.addForeign()
			return
		}
		lat.record(h.SentNanos)
		streams.add(h.Stream, h.Seq)
		arrivals.Add(1)
		last.mark()
	}
	clients, _, err := connectMany(ctx, o, users, func(i int) clientSpec {
		return clientSpec{id: user(i), cleanStart: true, onMessage: onMessage}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(clients, nil)
	if err := subscribeAll(ctx, o, clients, func(i int) string { return "u/" + user(i) + "/inbox" }, 1); err != nil {
		return nil, err
	}

	senders := make([]*sender, users)
	for i, c := range clients {
		// One worker: a user's messages stay in order, as a chat
		// client's would.
		senders[i] = &sender{
			client: c, topic: "u/" + user(peer(i)) + "/inbox", stream: uint32(i), qos: 1,
			workers: 1, rate: o.sendRate(), count: o.Count, size: o.PayloadSize,
		}
	}
	window, cancel := sendWindow(ctx, o)
	defer cancel()
	bar := sendProgress(o, o.scenarioDesc("p2p-latency"), senders)
	start := monoNow()
	runSenders(window, ctx, senders)
	sendElapsed := monoNow() - start
	bar.finish()

	sent, failed, perStream := senderTotals(senders)
	waitDrained(ctx, o.Drain, o.DrainIdle,
		func() bool { u, _, _, _ := streams.totals(); return u >= sent },
		arrivals.Load)
	unique, dups, ooo, foreign := streams.totals()
	figs := map[string]float64{
		"pairs":          float64(o.Clients),
		"sent":           float64(sent),
		"publish_errors": float64(failed),
		"sent_per_s":     perSecond(sent, durationOf(sendElapsed)),
		"received":       float64(unique),
		"recv_per_s":     perSecond(unique, last.since(start)),
		"lost":           float64(streams.lost(perStream)),
		"duplicates":     float64(dups),
		"out_of_order":   float64(ooo),
		"order_breaks":   float64(streams.orderBreaks()),
		"foreign":        float64(foreign),
	}
	lat.figures(figs)
	return figs, nil
}
