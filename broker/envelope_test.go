package broker_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/broker"
)

func TestEnvelopeStampsSender(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-env")
	bob.Subscribe(t, "u/bob/inbox", 1)
	alice := h.mustLogin(t, "alice", "alice-env")

	before := time.Now().UnixMilli()
	alice.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("hi"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{
			{Key: "from", Value: "root"}, {Key: "ts", Value: "1"}, {Key: "id", Value: "01HX-alice-1"}, {Key: "app", Value: "kept"},
		}}})
	m := bob.Next(t, 5*time.Second)
	props := m.Properties.User
	if got := props.Get("from"); got != "alice" {
		t.Fatalf("from = %q, want alice (a forged from must be replaced)", got)
	}
	if got := props.Get("id"); got != "01HX-alice-1" {
		t.Fatalf("id = %q, want the client's", got)
	}
	if ts, err := strconv.ParseInt(props.Get("ts"), 10, 64); err != nil || ts < before || ts > time.Now().UnixMilli() {
		t.Fatalf("ts = %q, want the accept time in ms", props.Get("ts"))
	}
	if got := props.Get("app"); got != "kept" {
		t.Fatalf("the client's own property was lost: %+v", props)
	}
	for _, key := range []string{"from", "ts", "id"} {
		n := 0
		for _, p := range props {
			if p.Key == key {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d %q properties, want exactly one: %+v", n, key, props)
		}
	}
	if string(m.Payload) != "hi" {
		t.Fatalf("payload %q changed", m.Payload)
	}

	// Without an id the hub assigns one, a different one each time.
	alice.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("a")})
	alice.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("b")})
	first, second := bob.Next(t, 5*time.Second).Properties.User.Get("id"), bob.Next(t, 5*time.Second).Properties.User.Get("id")
	if first == "" || first == second {
		t.Fatalf("assigned ids %q and %q: want two distinct ones", first, second)
	}
}

// Outside the hub's namespaces a message is relayed as published, as any
// MQTT broker does, except that nobody may claim a sender or accept time;
// with --envelope all it is stamped like a chat message.
func TestEnvelopeScope(t *testing.T) {
	publish := &paho.Publish{Topic: "shared/plain", QoS: 1, Payload: []byte("p"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{
			{Key: "from", Value: "root"}, {Key: "ts", Value: "1"}, {Key: "id", Value: "client-id-1"}, {Key: "app", Value: "kept"},
		}}}
	for _, tc := range []struct {
		scope   string
		stamped bool
	}{{broker.EnvelopeMessaging, false}, {broker.EnvelopeAll, true}} {
		t.Run(tc.scope, func(t *testing.T) {
			h := startSecureHub(t, testACL, func(c *broker.Config) { c.Envelope = tc.scope })
			alice := h.mustLogin(t, "alice", "alice-scope")
			alice.Subscribe(t, "shared/#", 1)
			alice.Publish(t, publish)
			alice.Publish(t, &paho.Publish{Topic: "shared/bare", QoS: 1, Payload: []byte("b")})

			props := alice.Next(t, 5*time.Second).Properties.User
			wantFrom := ""
			if tc.stamped {
				wantFrom = "alice"
			}
			if props.Get("from") != wantFrom || props.Get("id") != "client-id-1" || props.Get("app") != "kept" {
				t.Errorf("properties %+v: want from %q, the client's id and app", props, wantFrom)
			}
			if ts := props.Get("ts"); (ts != "") != tc.stamped || ts == "1" {
				t.Errorf("ts = %q: want it stamped: %v, never the client's", ts, tc.stamped)
			}
			bare := alice.Next(t, 5*time.Second).Properties
			if n := len(bare.User); (n == 3) != tc.stamped || (n != 0 && n != 3) {
				t.Errorf("a message without properties arrived with %+v (stamped: %v)", bare.User, tc.stamped)
			}
		})
	}
}

func TestRepeatedIDAcknowledgedNotDeliveredAgain(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-dup")
	bob.Subscribe(t, "u/bob/inbox", 1)
	alice := h.mustLogin(t, "alice", "alice-dup")
	withID := func(payload, id string) *paho.Publish {
		return &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte(payload),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "id", Value: id}}}}
	}
	alice.Publish(t, withID("original", "m-1"))
	alice.Publish(t, withID("retry after a lost PUBACK", "m-1")) // acknowledged: Publish fails on a refusal
	// The same id from another sender is another message.
	root := h.mustLogin(t, "root", "root-dup")
	root.Publish(t, withID("from root", "m-1"))

	for _, want := range []string{"original", "from root"} {
		if m := bob.Next(t, 5*time.Second); string(m.Payload) != want {
			t.Fatalf("got %q, want %q (the retry must not be delivered)", m.Payload, want)
		}
	}
}
