package hooks_test

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/hooks/offline"
)

// benchClient returns a connected-looking MQTT 5 client of user: what the
// hooks read from it is the user name and the protocol version.
func benchClient(id, user string) *mqtt.Client {
	cl := mqtt.New(nil).NewClient(nil, "tcp", id, false)
	cl.Properties.Username = []byte(user)
	cl.Properties.ProtocolVersion = 5
	return cl
}

// benchPublish is a QoS 1 direct message of 64 bytes, with a message id
// when id is not empty.
func benchPublish(topic, id string) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     make([]byte, 64),
	}
	if id != "" {
		pk.Properties.User = []packets.UserProperty{{Key: hooks.PropID, Val: id}}
	}
	return pk
}

// BenchmarkEnvelopeStamp is the envelope on every client PUBLISH: the hub
// assigns the id (an xid) or keeps the client's, and with deduplication on
// remembers it (distinct ids, more than MaxRemembered of them, so the
// bounded memory is in its steady state: one insert and one eviction per
// message) or finds it repeated (a retry after a lost PUBACK).
func BenchmarkEnvelopeStamp(b *testing.B) {
	const distinct = 250_000 // > the default MaxRemembered (200,000)
	ids := make([]string, distinct)
	for i := range ids {
		ids[i] = fmt.Sprintf("01JDQ8Z6W3%016d", i) // ULID-sized
	}
	cl := benchClient("alice-phone", "alice")
	one := func(id string) []packets.Packet { return []packets.Packet{benchPublish("u/bob/inbox", id)} }
	each := make([]packets.Packet, distinct)
	for i, id := range ids {
		each[i] = benchPublish("u/bob/inbox", id)
	}
	for _, bc := range []struct {
		name   string
		dedupe time.Duration
		pks    []packets.Packet // published in turn
	}{
		{"hub id", 0, one("")},
		{"client id", 0, one(ids[0])},
		{"client id, dedupe", 5 * time.Minute, each},
		{"repeated id, dedupe", 5 * time.Minute, one(ids[0])},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := hooks.NewEnvelope(hooks.EnvelopeOptions{DedupeWindow: bc.dedupe})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				in := &offline.Inbound{Origin: offline.FromClient, Client: cl, User: "alice", Packet: bc.pks[i%len(bc.pks)]}
				if h.Admit(in) == nil {
					in.Settle(true)
				}
				i++
			}
		})
	}
}
