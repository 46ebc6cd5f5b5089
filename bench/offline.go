package bench

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// offlineSessionExpiry is the session expiry the persistent sessions ask
// for: long enough to outlive the run, short enough that a crashed run
// does not leave queues on the broker for long.
const offlineSessionExpiry = 600

// offlinePublishers bounds the publishing connections: every session gets
// its own ordered stream, but streams share a few connections.
const offlinePublishers = 4

// offlineScenario is a phone coming back online: persistent sessions queue
// QoS 1 messages while disconnected and must drain them on reconnect, in
// order, without loss or duplicates.
func offlineScenario() Scenario {
	return Scenario{
		Name:    "offline-drain",
		Summary: "N persistent sessions queue M QoS 1 messages each while offline, then reconnect and drain; drain msgs/s, loss, duplicates, reordering",
		Key:     []string{"drain_per_s", "queue_per_s", "lost", "duplicates", "out_of_order", "order_breaks"},
		Defaults: func(o *Options) {
			o.QoS = 1
			if o.Clients == 0 {
				o.Clients = 10
			}
			if o.Count == 0 {
				o.Count = 5000
			}
			// Count-bounded: the offline queue must hold every message,
			// whatever the time.
			o.Duration = 0
			if o.Rate == 0 {
				o.Rate = -1
			}
		},
		run: runOffline,
	}
}

func runOffline(ctx context.Context, o Options) (map[string]float64, error) {
	run := newRunID()
	id := func(i int) string { return fmt.Sprintf("%s-s%d", run, i) }
	topic := func(i int) string { return fmt.Sprintf("bench/%s/off/%d", run, i) }

	// 1. Create the sessions and their subscriptions, then go offline.
	// Clean start wipes any stale session with the same id.
	subs, _, err := connectMany(ctx, o, o.Clients, func(i int) clientSpec {
		return clientSpec{id: id(i), cleanStart: true, sessionExpiry: offlineSessionExpiry}
	})
	if err != nil {
		return nil, err
	}
	if err := subscribeAll(ctx, o, subs, topic, 1); err != nil {
		closeAll(subs, nil)
		return nil, err
	}
	closeAll(subs, nil)

	// 2. Queue Count messages per session while it is offline. One worker
	// per stream keeps each stream's publishes in order on the wire.
	pubs, _, err := connectMany(ctx, o, min(o.Clients, offlinePublishers), func(i int) clientSpec {
		return clientSpec{id: fmt.Sprintf("%s-pub-%d", run, i), cleanStart: true}
	})
	if err != nil {
		return nil, err
	}
	senders := make([]*sender, o.Clients)
	for i := range o.Clients {
		senders[i] = &sender{
			client: pubs[i%len(pubs)], topic: topic(i), stream: uint32(i), qos: 1,
			workers: 1, rate: o.sendRate(), count: o.Count, size: o.PayloadSize,
		}
	}
	bar := sendProgress(o, o.scenarioDesc("offline-drain")+" queue", senders)
	queueStart := time.Now()
	runSenders(ctx, ctx, senders)
	queueElapsed := time.Since(queueStart)
	bar.finish()
	closeAll(pubs, nil)
	sent, failed, perStream := senderTotals(senders)

	memory, err := queuedMemory(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.QueueOnly {
		figs := map[string]float64{
			"sessions": float64(o.Clients), "per_session": float64(o.Count), "sent": float64(sent),
			"publish_errors": float64(failed), "queue_per_s": perSecond(sent, queueElapsed),
		}
		maps.Copy(figs, memory)
		return figs, nil
	}

	// 3. Reconnect every session without clean start and drain.
	streams := newStreamSet()
	var arrivals atomic.Int64
	var last lastArrival
	drainBar := startProgress(o.Progress, o.scenarioDesc("offline-drain")+" drain (msgs)", int64(sent), arrivals.Load)
	drainStart := monoNow()
	resumed, acks, err := connectMany(ctx, o, o.Clients, func(i int) clientSpec {
		return clientSpec{
			id: id(i), cleanStart: false, sessionExpiry: offlineSessionExpiry,
			onMessage: func(p *paho.Publish) {
				h, err := DecodePayload(p.Payload)
				if err != nil || h.Stream != uint32(i) {
					streams.addForeign()
					return
				}
				streams.add(h.Stream, h.Seq)
				arrivals.Add(1)
				last.mark()
			},
		}
	})
	if err != nil {
		drainBar.finish()
		return nil, err
	}
	// Setting the session expiry to 0 on the way out makes the broker
	// drop the sessions instead of keeping them for offlineSessionExpiry.
	zero := uint32(0)
	defer closeAll(resumed, &paho.DisconnectProperties{SessionExpiryInterval: &zero})
	waitDrained(ctx, o.Drain, o.DrainIdle,
		func() bool { u, _, _, _ := streams.totals(); return u >= sent },
		arrivals.Load)
	drainBar.finish()

	sessionsLost := 0
	for _, ca := range acks {
		if !ca.SessionPresent {
			sessionsLost++
		}
	}
	unique, dups, ooo, foreign := streams.totals()
	drain := last.since(drainStart)
	figs := map[string]float64{
		"sessions":       float64(o.Clients),
		"per_session":    float64(o.Count),
		"sent":           float64(sent),
		"publish_errors": float64(failed),
		"queue_per_s":    perSecond(sent, queueElapsed),
		"received":       float64(unique),
		"drain_s":        drain.Seconds(),
		"drain_per_s":    perSecond(unique, drain),
		"lost":           float64(streams.lost(perStream)),
		"duplicates":     float64(dups),
		"out_of_order":   float64(ooo),
		"order_breaks":   float64(streams.orderBreaks()),
		"foreign":        float64(foreign),
		"sessions_lost":  float64(sessionsLost),
	}
	maps.Copy(figs, memory)
	return figs, nil
}

// queuedMemory reads the broker's memory once the messages are queued and,
// after o.Settle, again.
func queuedMemory(ctx context.Context, o Options) (map[string]float64, error) {
	figs := map[string]float64{}
	if o.PID <= 0 {
		return figs, nil
	}
	read := func(suffix string) error {
		rss, err := ReadRSS(o.PID)
		if err != nil {
			return err
		}
		anon, err := ReadRSSAnon(o.PID)
		if err != nil {
			return err
		}
		figs["rss_"+suffix+"_kb"], figs["rss_anon_"+suffix+"_kb"] = float64(rss), float64(anon)
		return nil
	}
	if err := read("queued"); err != nil {
		return nil, err
	}
	if o.Settle <= 0 {
		return figs, nil
	}
	select {
	case <-time.After(o.Settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return figs, read("settled")
}
