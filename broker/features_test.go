package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/internal/testutil"
)

// These tests pin the MQTT 5 features the hub inherits from mochi, so that
// taking parts of delivery over (the storage issue) cannot lose them.

func ptr[T any](v T) *T { return &v }

func TestSubscriptionIdentifierDelivered(t *testing.T) {
	b := testutil.StartHub(t)
	sub := connect(t, b, "sub")
	ctx, cancel := ctxTimeout()
	defer cancel()
	if _, err := sub.Client.Subscribe(ctx, &paho.Subscribe{
		Properties:    &paho.SubscribeProperties{SubscriptionIdentifier: ptr(42)},
		Subscriptions: []paho.SubscribeOptions{{Topic: "ids/#", QoS: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, b, "pub")
	pub.Publish(t, &paho.Publish{Topic: "ids/a", QoS: 1, Payload: []byte("x")})
	m := sub.Next(t, 5*time.Second)
	if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 42 {
		t.Fatalf("subscription identifier %+v, want 42", m.Properties)
	}
}

// '#' matches its parent level too [MQTT-4.7.1-2], also after '+': "+/#"
// gets a message on "a", as from mosquitto (mochi's own index does not
// match it).
func TestMultiLevelWildcardMatchesParent(t *testing.T) {
	b := testutil.StartHub(t)
	sub := connect(t, b, "sub")
	sub.Subscribe(t, "+/#", 1)
	sub.Subscribe(t, "sport/#", 1)
	pub := connect(t, b, "pub")
	for _, topic := range []string{"a", "sport"} {
		for _, qos := range []byte{0, 1} {
			pub.Publish(t, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(topic)})
			m := sub.Next(t, 5*time.Second)
			if m.Topic != topic || string(m.Payload) != topic {
				t.Fatalf("QoS %d on %q: got %q %q", qos, topic, m.Topic, m.Payload)
			}
		}
	}
	pub.Publish(t, &paho.Publish{Topic: "sport/last", QoS: 1, Payload: []byte("last")})
	pub.Publish(t, &paho.Publish{Topic: "end", QoS: 1, Payload: []byte("end")})
	// In order from one publisher: one copy of sport/last although it
	// matches both filters, then end.
	for _, want := range []string{"sport/last", "end"} {
		if m := sub.Next(t, 5*time.Second); m.Topic != want {
			t.Fatalf("got %q, want %q", m.Topic, want)
		}
	}
}

func TestInboundTopicAlias(t *testing.T) {
	b := testutil.StartHub(t)
	sub := connect(t, b, "sub")
	sub.Subscribe(t, "alias/target", 1)
	pub := connect(t, b, "pub")
	pub.Publish(t, &paho.Publish{Topic: "alias/target", QoS: 1, Payload: []byte("first"), Properties: &paho.PublishProperties{TopicAlias: ptr[uint16](3)}})
	pub.Publish(t, &paho.Publish{QoS: 1, Payload: []byte("second"), Properties: &paho.PublishProperties{TopicAlias: ptr[uint16](3)}})
	for _, want := range []string{"first", "second"} {
		if m := sub.Next(t, 5*time.Second); string(m.Payload) != want || m.Topic != "alias/target" {
			t.Fatalf("got %q on %q, want %q on alias/target", m.Payload, m.Topic, want)
		}
	}
}

func TestSharedSubscriptionSplitsMessages(t *testing.T) {
	b := testutil.StartHub(t)
	workers := []*testutil.Client{connect(t, b, "w1"), connect(t, b, "w2")}
	for _, w := range workers {
		w.Subscribe(t, "$share/pool/jobs", 1)
	}
	pub := connect(t, b, "pub")
	const n = 20
	for i := range n {
		pub.Publish(t, &paho.Publish{Topic: "jobs", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	seen := map[string]int{}
	for len(seen) < n {
		select {
		case m := <-workers[0].Messages:
			seen[string(m.Payload)]++
		case m := <-workers[1].Messages:
			seen[string(m.Payload)]++
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d jobs delivered", len(seen), n)
		}
	}
	for job, count := range seen {
		if count != 1 {
			t.Fatalf("job %s delivered %d times", job, count)
		}
	}
}

func TestPersistentSessionResumesWithQueuedMessage(t *testing.T) {
	b := testutil.StartHub(t)
	props := &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](300)}
	first, _, err := testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "phone", Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	first.Subscribe(t, "u/phone/inbox", 1)
	if err := first.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	<-first.Done()

	pub := connect(t, b, "sender")
	pub.Publish(t, &paho.Publish{Topic: "u/phone/inbox", QoS: 1, Payload: []byte("while away"),
		Properties: &paho.PublishProperties{MessageExpiry: ptr[uint32](3600)}})

	conn := testutil.Dial(t, b.MQTTAddr())
	back, ack, err := testutil.TryConnect(conn, &paho.Connect{ClientID: "phone", Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = back.Disconnect(&paho.Disconnect{}); <-back.Done() })
	if !ack.SessionPresent {
		t.Fatal("session not present on reconnect")
	}
	m := back.Next(t, 5*time.Second)
	if string(m.Payload) != "while away" {
		t.Fatalf("got %q", m.Payload)
	}
	if m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry == 0 || *m.Properties.MessageExpiry > 3600 {
		t.Fatalf("message expiry %v, want the remaining part of 3600 s", m.Properties.MessageExpiry)
	}
}

func TestWillDelayCancelledByReconnect(t *testing.T) {
	b := testutil.StartHub(t)
	watcher := connect(t, b, "watcher")
	watcher.Subscribe(t, "wills/#", 1)

	will := &paho.Connect{
		ClientID:       "flaky",
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](60)},
		WillMessage:    &paho.WillMessage{Topic: "wills/flaky", QoS: 1, Payload: []byte("gone")},
		WillProperties: &paho.WillProperties{WillDelayInterval: ptr[uint32](2)},
	}
	conn := testutil.Dial(t, b.MQTTAddr())
	c, _, err := testutil.TryConnect(conn, will)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	<-c.Done()
	// Back within the delay: the will must not be sent [MQTT-3.1.3-9].
	again := testutil.Connect(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "flaky", Properties: will.Properties})

	// Let the delay pass (mochi checks delayed wills every second), then a
	// probe on the same topic must be the first thing the watcher sees.
	<-time.After(3500 * time.Millisecond)
	again.Publish(t, &paho.Publish{Topic: "wills/probe", QoS: 1, Payload: []byte("probe")})
	if m := watcher.Next(t, 5*time.Second); string(m.Payload) != "probe" {
		t.Fatalf("got %q on %q: the will was sent although the client came back", m.Payload, m.Topic)
	}

	// Gone for good: the will arrives after the delay.
	will.ClientID = "flaky-for-good"
	conn = testutil.Dial(t, b.MQTTAddr())
	if c, _, err = testutil.TryConnect(conn, will); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	<-c.Done()
	if m := watcher.Next(t, 10*time.Second); string(m.Payload) != "gone" {
		t.Fatalf("got %q, want the delayed will", m.Payload)
	}
}
