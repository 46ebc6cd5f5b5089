package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func connect(t *testing.T, b *broker.Broker, id string) *testutil.Client {
	t.Helper()
	return testutil.Connect(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: id, CleanStart: true})
}

func TestPublishSubscribeRoundTrip(t *testing.T) {
	b := testutil.StartHub(t)
	for _, tc := range []struct {
		name         string
		pubQoS       byte
		subQoS       byte
		wantDelivery byte
	}{
		{"qos0", 0, 0, 0},
		{"qos1", 1, 1, 1},
		{"qos2", 2, 2, 2},
		{"downgraded to subscription qos", 2, 1, 1},
		{"published qos caps delivery", 0, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := connect(t, b, "sub-"+tc.name)
			sub.Subscribe(t, "rt/"+tc.name+"/+", tc.subQoS)
			pub := connect(t, b, "pub-"+tc.name)
			payload := []byte("hello " + tc.name)
			pub.Publish(t, &paho.Publish{Topic: "rt/" + tc.name + "/x", QoS: tc.pubQoS, Payload: payload,
				Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}})
			m := sub.Next(t, 5*time.Second)
			if !bytes.Equal(m.Payload, payload) || m.QoS != tc.wantDelivery || m.Topic != "rt/"+tc.name+"/x" {
				t.Fatalf("got topic %q qos %d payload %q, want qos %d payload %q", m.Topic, m.QoS, m.Payload, tc.wantDelivery, payload)
			}
			if got := m.Properties.User.Get("k"); got != "v" {
				t.Fatalf("user property k = %q, want v", got)
			}
		})
	}
}

func TestRetainedMessageReachesLaterSubscriber(t *testing.T) {
	b := testutil.StartHub(t)
	pub := connect(t, b, "pub")
	pub.Publish(t, &paho.Publish{Topic: "status/lamp", QoS: 1, Retain: true, Payload: []byte("on")})

	sub := connect(t, b, "sub")
	sub.Subscribe(t, "status/#", 1)
	m := sub.Next(t, 5*time.Second)
	if !m.Retain || string(m.Payload) != "on" {
		t.Fatalf("got retain=%v payload %q, want the retained 'on'", m.Retain, m.Payload)
	}

	// An empty retained payload clears it. Mochi acknowledges before it
	// delivers, so the clearing message itself may still reach the new
	// subscriber live (retain flag off); a retained copy must not.
	pub.Publish(t, &paho.Publish{Topic: "status/lamp", QoS: 1, Retain: true})
	later := connect(t, b, "later")
	later.Subscribe(t, "status/#", 1)
	pub.Publish(t, &paho.Publish{Topic: "status/probe", QoS: 1, Payload: []byte("probe")})
	for {
		m := later.Next(t, 5*time.Second)
		if m.Retain {
			t.Fatalf("cleared retained message still delivered: %q on %q", m.Payload, m.Topic)
		}
		if string(m.Payload) == "probe" {
			break
		}
	}
}

func TestWillSentOnAbruptDisconnect(t *testing.T) {
	b := testutil.StartHub(t)
	sub := connect(t, b, "watcher")
	sub.Subscribe(t, "wills/#", 1)

	conn := testutil.Dial(t, b.MQTTAddr())
	c, _, err := testutil.TryConnect(conn, &paho.Connect{
		ClientID: "dying", CleanStart: true, WillMessage: &paho.WillMessage{Topic: "wills/dying", QoS: 1, Payload: []byte("gone")},
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close() // no DISCONNECT: the hub must send the will
	<-c.Done()
	if m := sub.Next(t, 5*time.Second); string(m.Payload) != "gone" || m.Topic != "wills/dying" {
		t.Fatalf("got %q on %q, want the will", m.Payload, m.Topic)
	}
}

func TestShutdownDisconnectsV5ClientsWithReason(t *testing.T) {
	b := testutil.StartHub(t)
	c := connect(t, b, "stays")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case d := <-c.Disconnects:
		if d.ReasonCode != 0x8B {
			t.Fatalf("disconnect reason 0x%02x, want 0x8B server shutting down", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT received on shutdown")
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if err := b.Start(ctx); err == nil {
		t.Fatal("start after shutdown succeeded")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	b := testutil.StartHub(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + b.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		if path == "/metrics" && !bytes.Contains(body, []byte("mqhub_clients_connected")) {
			t.Fatalf("/metrics lacks mqhub_clients_connected")
		}
	}
}

func TestAnonymousRefusedByDefault(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.AllowAnonymous = false })
	_, ack, err := testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "anon", CleanStart: true})
	if err == nil {
		t.Fatal("anonymous client admitted")
	}
	if ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("connack %+v, want reason 0x87 not authorized", ack)
	}
	_, ack, err = testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "alice", CleanStart: true,
		UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("secret")})
	if err == nil || ack == nil || ack.ReasonCode != 0x86 {
		t.Fatalf("connack %+v, err %v: want reason 0x86 bad user name or password (no user store yet)", ack, err)
	}
}

func TestStartFailsWhenAddressTaken(t *testing.T) {
	first := testutil.StartHub(t)
	cfg := testutil.TestConfig(t)
	cfg.MQTTAddr = first.MQTTAddr()
	b, err := broker.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(context.Background())
	if err == nil {
		t.Fatal("second hub bound a taken address")
	}
	if want := fmt.Sprintf("listen tcp on %s", first.MQTTAddr()); !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not name the address", err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown after failed start: %v", err)
	}
}

func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}
