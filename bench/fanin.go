package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/eclipse/paho.golang/paho"
)

// faninScenario returns fanin-qos0 or fanin-qos1: N publishers, each on its
// own topic bench/RUN/in/{i}, and one subscriber on bench/RUN/in/#. It
// measures how fast a broker funnels many streams into one connection and
// whether it loses or duplicates on the way.
func faninScenario(qos byte) Scenario {
	return Scenario{
		Name:    fmt.Sprintf("fanin-qos%d", qos),
		Summary: fmt.Sprintf("N publishers -> 1 wildcard subscriber at QoS %d; msgs/s, loss, duplicates", qos),
		Key:     []string{"recv_per_s", "sent_per_s", "lost", "duplicates"},
		Defaults: func(o *Options) {
			o.QoS = int(qos)
			if o.Clients == 0 {
				o.Clients = 10
			}
			if o.Duration == 0 && o.Count == 0 {
				o.Duration = defaultDuration
			}
			if o.Rate == 0 {
				o.Rate = -1 // throughput test: as fast as the broker takes it
			}
			if o.MaxBacklog == 0 {
				o.MaxBacklog = defaultMaxBacklog
			}
		},
		run: func(ctx context.Context, o Options) (map[string]float64, error) {
			return runFanin(ctx, o, qos)
		},
	}
}

func runFanin(ctx context.Context, o Options, qos byte) (map[string]float64, error) {
	run := newRunID()
	prefix := "bench/" + run + "/in/"
	streams := newStreamSet()
	gate := newBacklog(o.MaxBacklog)
	var arrivals atomic.Int64
	var last lastArrival
	sub, _, err := connectClient(ctx, o, clientSpec{
		id:         run + "-sub",
		cleanStart: true,
		onMessage: func(p *paho.Publish) {
			h, err := DecodePayload(p.Payload)
			if err != nil {
				streams.addForeign()
				return
			}
			streams.add(h.Stream, h.Seq)
			arrivals.Add(1)
			gate.received()
			last.mark()
		},
	})
	if err != nil {
		return nil, err
	}
	defer closeClient(sub, nil)
	if err := subscribe(ctx, sub, prefix+"#", qos); err != nil {
		return nil, err
	}

	pubs, _, err := connectMany(ctx, o, o.Clients, func(i int) clientSpec {
		return clientSpec{id: fmt.Sprintf("%s-pub-%d", run, i), cleanStart: true}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(pubs, nil)

	senders := make([]*sender, len(pubs))
	for i, c := range pubs {
		workers := 1
		if qos > 0 {
			// A blocking QoS 1 publish waits a round trip; a window of
			// concurrent publishes measures the broker, not the RTT.
			workers = o.Inflight
		}
		senders[i] = &sender{
			client: c, topic: fmt.Sprintf("%s%d", prefix, i), stream: uint32(i), qos: qos,
			workers: workers, rate: o.sendRate(), count: o.Count, size: o.PayloadSize, gate: gate,
		}
	}

	figs, ooo := sendAndDrain(ctx, o, o.scenarioDesc(fmt.Sprintf("fanin-qos%d", qos)), senders, streams, arrivals.Load, &last)
	figs["publishers"] = float64(o.Clients)
	figs["backlog_stalls"] = float64(gate.stallCount())
	if qos == 0 || o.Inflight == 1 {
		// With several QoS 1 publishes in flight per publisher, the
		// stream is reordered on our side already; only a single
		// in-order sender makes reordering the broker's doing.
		figs["out_of_order"] = float64(ooo)
		figs["order_breaks"] = float64(streams.orderBreaks())
	}
	return figs, nil
}

// defaultMaxBacklog keeps about 150 ms of mosquitto's fan-in rate queued:
// enough to keep the broker busy, little enough that the queue stays small.
const defaultMaxBacklog = 20000
