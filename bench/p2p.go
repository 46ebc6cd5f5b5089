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
		Name:     "p2p-latency",
		Summary:  "N user pairs exchange QoS 1 messages on u/{peer}/inbox at a fixed rate; latency quantiles",
		Key:      []string{"p50_us", "p99_us", "p999_us", "max_us", "lost"},
		Defaults: chatDefaults,
		run:      runP2P,
	}
}

// chatDefaults is the everyday chat load, where latency matters, not
// throughput: 50 pairs, QoS 1, 20 messages per second each.
func chatDefaults(o *Options) {
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
	figs, ooo := sendAndDrain(ctx, o, o.scenarioDesc("p2p-latency"), senders, streams, arrivals.Load, &last)
	figs["pairs"] = float64(o.Clients)
	figs["out_of_order"] = float64(ooo)
	figs["order_breaks"] = float64(streams.orderBreaks())
	lat.figures(figs)
	return figs, nil
}
