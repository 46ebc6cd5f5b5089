package hooks_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/storage"
)

// BenchmarkReadReceiptCheck is the hub's work on a read receipt (Receipts
// .Admit): parse it, look up every id's sent record in a real store
// (one Badger read transaction each; the 1,000 records are still in the
// memtable, as a hub's recent messages are), keep those sent to the reader
// and write the rewritten payload. Direct messages only, so no Membership
// is involved. ns/id is the cost per message named.
func BenchmarkReadReceiptCheck(b *testing.B) {
	store, err := storage.Open(storage.Options{Dir: b.TempDir(), Logger: zerolog.Nop(), GCInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	const sent = 1000
	ids := make([]string, sent)
	var wg sync.WaitGroup
	errs := make(chan error, sent)
	for i := range ids {
		ids[i] = fmt.Sprintf("01JDQ8Z6W3%016d", i)
		wg.Add(1)
		err := store.RecordSentAsync("alice", ids[i], "u/bob/inbox", time.Hour, func(err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	h := hooks.NewReceipts(hooks.ReceiptsOptions{Sent: store, Logger: zerolog.Nop()})
	bob := benchClient("bob-phone", "bob")
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("%d ids", n), func(b *testing.B) {
			payload, err := json.Marshal(map[string]any{"status": "read", "ids": ids[:n]})
			if err != nil {
				b.Fatal(err)
			}
			pk := benchPublish("u/alice/receipts", "")
			pk.Payload = payload
			in := &offline.Inbound{Origin: offline.FromClient, Client: bob, User: "bob", Packet: pk}
			err = h.Admit(in)
			out := in.Packet
			if err != nil {
				b.Fatalf("receipt refused: %v", err)
			}
			var r hooks.Receipt
			if err := json.Unmarshal(out.Payload, &r); err != nil || len(r.IDs) != n || r.By != "bob" {
				b.Fatalf("rewritten receipt %s (%v)", out.Payload, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = h.Admit(&offline.Inbound{Origin: offline.FromClient, Client: bob, User: "bob", Packet: pk})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/id")
		})
	}
}

// routeNow is a Router whose writes are durable at once: BenchmarkDelivered
// measures building the receipt, not storing it.
type routeNow struct{}

func (routeNow) RouteAsync(_ packets.Packet, done func(error)) { done(nil) }

// BenchmarkDelivered is the delivered receipt built when a device
// acknowledges a queued message (Receipts.Delivered, the offline hook's
// Acknowledged): find the id, check the topic, marshal the JSON receipt.
func BenchmarkDelivered(b *testing.B) {
	h := hooks.NewReceipts(hooks.ReceiptsOptions{Router: routeNow{}, Logger: zerolog.Nop()})
	for _, bc := range []struct{ name, topic string }{
		{"direct", "u/bob/inbox"},
		{"group", "g/team"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := &storage.Message{
				Topic: bc.topic, Payload: make([]byte, 64), QoS: 1, User: "alice", ClientID: "alice-phone",
				UserProperties: []storage.UserProperty{
					{Key: hooks.PropID, Value: "01JDQ8Z6W30000000000000000"},
					{Key: hooks.PropFrom, Value: "alice"},
					{Key: hooks.PropTS, Value: "1764270000123"},
				},
			}
			var failed error
			done := func(err error) { failed = err }
			b.ReportAllocs()
			for b.Loop() {
				h.Delivered("bob-phone", "bob", m, done)
			}
			if failed != nil {
				b.Fatal(failed)
			}
		})
	}
}
