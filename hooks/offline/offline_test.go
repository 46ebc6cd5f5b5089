package offline_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ptr[T any](v T) *T { return &v }

// persistent connects a device with a session that outlives its
// connection (clean start false, expiry one hour).
func persistent(t *testing.T, addr, id string, options ...func(*paho.ClientConfig)) (*testutil.Client, *paho.Connack) {
	t.Helper()
	c, ack, err := testutil.TryConnect(testutil.Dial(t, addr), &paho.Connect{
		ClientID:   id,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](3600)},
	}, options...)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c, ack
}

func disconnect(t *testing.T, c *testutil.Client) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not stop")
	}
}

func TestQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *broker.Config) { c.DataDir = dir; c.LogLevel = "info" }
	first := testutil.StartHub(t, withDir)

	phone, _ := persistent(t, first.MQTTAddr(), "phone")
	phone.Subscribe(t, "u/phone/inbox", 1)
	disconnect(t, phone)

	sender := testutil.Connect(t, testutil.Dial(t, first.MQTTAddr()), &paho.Connect{ClientID: "sender", CleanStart: true})
	const n = 50
	for i := range n {
		sender.Publish(t, &paho.Publish{Topic: "u/phone/inbox", QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := testutil.StartHub(t, withDir)
	phone, ack := persistent(t, second.MQTTAddr(), "phone")
	defer disconnect(t, phone)
	if !ack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	for i := range n {
		m := phone.Next(t, 5*time.Second)
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %d: got %q", i, m.Payload)
		}
	}
}

// rawSession drives a persistent MQTT 5 session with raw packets, to see
// packet IDs and DUP flags and to leave messages unacknowledged.
type rawSession struct {
	t    *testing.T
	conn net.Conn
}

func dialRaw(t *testing.T, addr, id string, receiveMax uint16) *rawSession {
	t.Helper()
	conn := testutil.Dial(t, addr)
	t.Cleanup(func() { conn.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive = "MQTT", 5, id, 30
	c.Properties = &packets.Properties{SessionExpiryInterval: ptr[uint32](3600), ReceiveMaximum: &receiveMax}
	r := &rawSession{t: t, conn: conn}
	r.write(cp)
	if ack, ok := r.read().Content.(*packets.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("connect refused: %+v", ack)
	}
	return r
}

func (r *rawSession) write(cp *packets.ControlPacket) {
	r.t.Helper()
	if _, err := cp.WriteTo(r.conn); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawSession) read() *packets.ControlPacket {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	cp, err := packets.ReadPacket(r.conn)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return cp
}

func (r *rawSession) subscribe(filter string, qos byte) {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.SUBSCRIBE)
	s := cp.Content.(*packets.Subscribe)
	s.PacketID = 1
	s.Subscriptions = []packets.SubOptions{{Topic: filter, QoS: qos}}
	r.write(cp)
	if _, ok := r.read().Content.(*packets.Suback); !ok {
		r.t.Fatal("no SUBACK")
	}
}

func (r *rawSession) nextPublish() *packets.Publish {
	r.t.Helper()
	for {
		cp := r.read()
		if p, ok := cp.Content.(*packets.Publish); ok {
			return p
		}
	}
}

func (r *rawSession) puback(id uint16) {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.PUBACK)
	cp.Content.(*packets.Puback).PacketID = id
	r.write(cp)
}

func TestUnacknowledgedMessagesResentWithDup(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" })
	raw := dialRaw(t, hub.MQTTAddr(), "tablet", 5)
	raw.subscribe("u/tablet/inbox", 1)

	sender := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "sender", CleanStart: true})
	const n = 8
	for i := range n {
		sender.Publish(t, &paho.Publish{Topic: "u/tablet/inbox", QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	// Receive Maximum 5: five arrive, none is acknowledged.
	firstIDs := make([]uint16, 5)
	for i := range 5 {
		p := raw.nextPublish()
		if string(p.Payload) != strconv.Itoa(i) || p.Duplicate {
			t.Fatalf("first delivery %d: payload %q dup %v", i, p.Payload, p.Duplicate)
		}
		firstIDs[i] = p.PacketID
	}
	raw.conn.Close()

	again := dialRaw(t, hub.MQTTAddr(), "tablet", 5)
	for i := range n {
		p := again.nextPublish()
		if string(p.Payload) != strconv.Itoa(i) {
			t.Fatalf("after reconnect, message %d: got %q", i, p.Payload)
		}
		if resent := i < 5; p.Duplicate != resent || (resent && p.PacketID != firstIDs[i]) {
			t.Fatalf("message %d: dup=%v id=%d, want dup=%v id=%d", i, p.Duplicate, p.PacketID, resent, firstIDs[i%5])
		}
		again.puback(p.PacketID)
	}
}

func TestFullQueueRefusesWithQuotaExceeded(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info"; c.QueueMaxMessages = 3 })
	phone, _ := persistent(t, hub.MQTTAddr(), "phone")
	phone.Subscribe(t, "u/phone/inbox", 1)
	disconnect(t, phone)

	sender := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "sender", CleanStart: true})
	for i := range 3 {
		sender.Publish(t, &paho.Publish{Topic: "u/phone/inbox", QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := sender.Client.Publish(ctx, &paho.Publish{Topic: "u/phone/inbox", QoS: 1, Payload: []byte("one too many")})
	if resp == nil || resp.ReasonCode != 0x97 {
		t.Fatalf("publish over the limit: response %+v, err %v; want reason 0x97 quota exceeded", resp, err)
	}
	// The three accepted messages are all there.
	phone, _ = persistent(t, hub.MQTTAddr(), "phone")
	defer disconnect(t, phone)
	for i := range 3 {
		if m := phone.Next(t, 5*time.Second); string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("got %q, want %d", m.Payload, i)
		}
	}
}

func TestSlowConsumerLosesNothing(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" })
	acks := make(chan *paho.Publish, 10_000)
	slow, _ := persistent(t, hub.MQTTAddr(), "slow", func(cfg *paho.ClientConfig) {
		cfg.EnableManualAcknowledgment = true
	})
	defer disconnect(t, slow)
	slow.Subscribe(t, "feed/#", 1)

	// The consumer acknowledges one message at a time, after the previous
	// acknowledgement went out, while the publisher sends as fast as it can.
	const n = 2000
	done := make(chan error, 1)
	go func() {
		for i := range n {
			select {
			case m := <-slow.Messages:
				if string(m.Payload) != strconv.Itoa(i) {
					done <- fmt.Errorf("message %d: got %q", i, m.Payload)
					return
				}
				if err := slow.Ack(m); err != nil {
					done <- err
					return
				}
				acks <- m
			case <-time.After(20 * time.Second):
				done <- fmt.Errorf("only %d of %d messages arrived", i, n)
				return
			}
		}
		done <- nil
	}()
	sender := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "sender", CleanStart: true})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := sender.Client.Publish(ctx, &paho.Publish{Topic: "feed/a", QoS: 1, Payload: []byte(strconv.Itoa(i))})
			cancel()
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(acks) != n {
		t.Fatalf("%d acknowledged, want %d", len(acks), n)
	}
}

// TestOfflineDrainInOrder queues messages from several publishers for many
// offline sessions, reconnects them all and checks every message arrives,
// once, in each publisher's order.
func TestOfflineDrainInOrder(t *testing.T) {
	sessions, perSession, publishers := 1000, 100, 10
	if testing.Short() {
		sessions, perSession = 100, 20
	}
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "warn"; c.Durability = broker.DurabilityInterval })
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%04d", i)
		c, _ := persistent(t, hub.MQTTAddr(), ids[i])
		c.Subscribe(t, "u/"+ids[i]+"/inbox", 1)
		disconnect(t, c)
	}

	// Publisher p sends its k-th message to every session before its
	// k+1-th, so each session receives p's messages numbered 0, 1, 2, ...
	var wg sync.WaitGroup
	for p := range publishers {
		pub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: fmt.Sprintf("pub-%d", p), CleanStart: true})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := p; k < perSession; k += publishers {
				for _, id := range ids {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					_, err := pub.Client.Publish(ctx, &paho.Publish{Topic: "u/" + id + "/inbox", QoS: 1, Payload: fmt.Appendf(nil, "%d:%d", p, k)})
					cancel()
					if err != nil {
						t.Errorf("publisher %d: %v", p, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	var drain sync.WaitGroup
	errs := make(chan error, sessions)
	for _, id := range ids {
		c, ack := persistent(t, hub.MQTTAddr(), id)
		if !ack.SessionPresent {
			t.Fatalf("%s: session not present", id)
		}
		drain.Add(1)
		go func() {
			defer drain.Done()
			defer func() { _ = c.Disconnect(&paho.Disconnect{}); <-c.Done() }()
			last := map[string]int{}
			for range perSession {
				select {
				case m := <-c.Messages:
					pub, k, _ := strings.Cut(string(m.Payload), ":")
					n, _ := strconv.Atoi(k)
					if prev, seen := last[pub]; seen && n <= prev {
						errs <- fmt.Errorf("%s: publisher %s message %d after %d (duplicate or out of order)", id, pub, n, prev)
						return
					}
					last[pub] = n
				case <-time.After(30 * time.Second):
					errs <- fmt.Errorf("%s: drain stalled", id)
					return
				}
			}
			select {
			case m := <-c.Messages:
				errs <- fmt.Errorf("%s: extra message %q", id, m.Payload)
			default:
			}
		}()
	}
	drain.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRetainedMessagesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *broker.Config) { c.DataDir = dir; c.LogLevel = "info" }
	first := testutil.StartHub(t, withDir)
	pub := testutil.Connect(t, testutil.Dial(t, first.MQTTAddr()), &paho.Connect{ClientID: "lamp", CleanStart: true})
	// QoS 0 first: the PUBACKs of the QoS 1 publishes after it show the hub
	// has processed it (a QoS 0 message still unread at shutdown may be lost).
	pub.Publish(t, &paho.Publish{Topic: "status/fan", QoS: 0, Retain: true, Payload: []byte("off"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "room", Value: "hall"}}}})
	pub.Publish(t, &paho.Publish{Topic: "status/lamp", QoS: 1, Retain: true, Payload: []byte("on")})
	pub.Publish(t, &paho.Publish{Topic: "status/door", QoS: 1, Retain: true, Payload: []byte("open")})
	pub.Publish(t, &paho.Publish{Topic: "status/door", QoS: 1, Retain: true}) // cleared
	disconnect(t, pub)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := testutil.StartHub(t, withDir)
	sub := testutil.Connect(t, testutil.Dial(t, second.MQTTAddr()), &paho.Connect{ClientID: "viewer", CleanStart: true})
	sub.Subscribe(t, "status/#", 1)
	got := map[string]string{}
	for range 2 {
		m := sub.Next(t, 5*time.Second)
		if !m.Retain {
			t.Fatalf("%s delivered without the retain flag", m.Topic)
		}
		got[m.Topic] = string(m.Payload)
		if m.Topic == "status/fan" && m.Properties.User.Get("room") != "hall" {
			t.Fatalf("user property lost: %+v", m.Properties.User)
		}
	}
	if got["status/lamp"] != "on" || got["status/fan"] != "off" || len(got) != 2 {
		t.Fatalf("retained after restart: %v", got)
	}
	select {
	case m := <-sub.Messages:
		t.Fatalf("unexpected %q on %q (the cleared door?)", m.Payload, m.Topic)
	default:
	}
}

// TestCleanSubscriberUnderLoad is fan-in at QoS 1 to a clean-session
// subscriber with a small Receive Maximum. On mochi's own delivery path
// this loses messages beyond the subscriber's pending writes, and can
// deadlock (Inflight.NextImmediate read-locks twice against a publisher's
// Inflight.Set), after which publishers never get their PUBACK.
func TestCleanSubscriberUnderLoad(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "warn"; c.Durability = broker.DurabilityInterval })
	rm := uint16(64)
	sub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{
		ClientID: "sink", CleanStart: true, Properties: &paho.ConnectProperties{ReceiveMaximum: &rm},
	})
	sub.Subscribe(t, "load/#", 1)

	const publishers, each, inflight = 8, 1500, 16
	var wg sync.WaitGroup
	for p := range publishers {
		pub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: fmt.Sprint("pub-", p), CleanStart: true})
		sem := make(chan struct{}, inflight)
		for k := range each {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if _, err := pub.Client.Publish(ctx, &paho.Publish{Topic: fmt.Sprint("load/", p), QoS: 1, Payload: fmt.Appendf(nil, "%d:%d", p, k)}); err != nil {
					t.Errorf("publisher %d message %d: %v", p, k, err)
				}
			}()
		}
	}
	seen := map[string]bool{}
	for len(seen) < publishers*each {
		select {
		case m := <-sub.Messages:
			if seen[string(m.Payload)] {
				t.Fatalf("duplicate %s", m.Payload)
			}
			seen[string(m.Payload)] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d messages arrived", len(seen), publishers*each)
		}
	}
	wg.Wait()
}

// TestQoS0BackPressure checks the QoS 0 back-pressure: a subscriber that
// keeps up gets every message of a fast fan-in (publishers wait for it
// instead of its messages being dropped), and one that never reads costs
// its publishers a bounded wait, after which its messages are dropped and
// counted.
func TestQoS0BackPressure(t *testing.T) {
	fanIn := func(t *testing.T, hub *broker.Broker, publishers, each, size int) {
		t.Helper()
		var wg sync.WaitGroup
		for p := range publishers {
			pub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: fmt.Sprint("pub-", p), CleanStart: true})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range each {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := pub.Client.Publish(ctx, &paho.Publish{Topic: fmt.Sprint("fan/", p), QoS: 0, Payload: bytes.Repeat([]byte{'x'}, size)})
					cancel()
					if err != nil {
						t.Errorf("publisher %d message %d: %v", p, k, err)
						return
					}
				}
			}()
		}
		t.Cleanup(wg.Wait)
	}

	t.Run("subscriber keeping up loses nothing", func(t *testing.T) {
		hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "warn" })
		sub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "sink", CleanStart: true})
		sub.Subscribe(t, "fan/#", 0)
		const publishers, each = 4, 5000
		fanIn(t, hub, publishers, each, 64)
		for n := 0; n < publishers*each; n++ {
			select {
			case <-sub.Messages:
			case <-time.After(20 * time.Second):
				t.Fatalf("subscriber got %d of %d QoS 0 messages; dropped %s, mochi dropped %s", n, publishers*each, metric(t, hub, "mqhub_qos0_dropped_total"), metric(t, hub, "mqhub_messages_dropped_total"))
			}
		}
	})

	t.Run("stuck subscriber does not stall publishers", func(t *testing.T) {
		hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "warn" })
		stuck := dialRaw(t, hub.MQTTAddr(), "stuck", 10) // never reads its socket
		stuck.subscribe("fan/#", 0)
		done := make(chan struct{})
		go func() {
			defer close(done)
			// 40 MB: far beyond what the socket buffers hold.
			fanIn(t, hub, 4, 5000, 2048)
		}()
		<-done
		testutil.Eventually(t, 20*time.Second, func() error {
			if dropped := metric(t, hub, "mqhub_qos0_dropped_total"); dropped == "0" || dropped == "" {
				return fmt.Errorf("mqhub_qos0_dropped_total = %q", dropped)
			}
			return nil
		})
	})
}

func metric(t *testing.T, hub *broker.Broker, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + hub.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestExpiredSessionDeletedWithItsQueue(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" })
	c, _, err := testutil.TryConnect(testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{
		ClientID: "brief", Properties: &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(t, "u/brief/inbox", 1)
	disconnect(t, c)
	sender := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "sender", CleanStart: true})
	sender.Publish(t, &paho.Publish{Topic: "u/brief/inbox", QoS: 1, Payload: []byte("too late")})

	// Mochi checks session expiry every second.
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := metric(t, hub, "mqhub_sessions_expired_total"); got != "1" {
			return fmt.Errorf("mqhub_sessions_expired_total = %q", got)
		}
		return nil
	})
	back, ack := persistent(t, hub.MQTTAddr(), "brief")
	defer disconnect(t, back)
	if ack.SessionPresent {
		t.Fatal("expired session still present")
	}
	back.Subscribe(t, "u/brief/inbox", 1)
	sender.Publish(t, &paho.Publish{Topic: "u/brief/inbox", QoS: 1, Payload: []byte("fresh")})
	if m := back.Next(t, 5*time.Second); string(m.Payload) != "fresh" {
		t.Fatalf("got %q: the expired session's queue survived", m.Payload)
	}
}

func TestExpiredMessageNotDelivered(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" })
	phone, _ := persistent(t, hub.MQTTAddr(), "phone")
	phone.Subscribe(t, "u/phone/inbox", 1)
	disconnect(t, phone)
	sender := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "sender", CleanStart: true})
	sender.Publish(t, &paho.Publish{Topic: "u/phone/inbox", QoS: 1, Payload: []byte("ephemeral"),
		Properties: &paho.PublishProperties{MessageExpiry: ptr[uint32](1)}})
	sender.Publish(t, &paho.Publish{Topic: "u/phone/inbox", QoS: 1, Payload: []byte("lasting")})

	<-time.After(2100 * time.Millisecond) // the expiry interval has to pass: nothing to poll for
	phone, _ = persistent(t, hub.MQTTAddr(), "phone")
	defer disconnect(t, phone)
	if m := phone.Next(t, 5*time.Second); string(m.Payload) != "lasting" {
		t.Fatalf("got %q, want the expired message skipped", m.Payload)
	}
}

// subscribeWith subscribes with full options or fails the test.
func subscribeWith(t *testing.T, c *testutil.Client, opts paho.SubscribeOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{opts}}); err != nil {
		t.Fatalf("subscribe %q: %v", opts.Topic, err)
	}
}

// TestRetainedFromStore: retained messages are served from the store on
// subscribe, through the session's queue: only the topics under the
// filter, each once, with the retain flag, the QoS capped by the
// subscription's, and Retain Handling honoured.
func TestRetainedFromStore(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info"; c.Durability = broker.DurabilityInterval })
	pub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "devices", CleanStart: true})
	const n = 300
	for i := range n {
		pub.Publish(t, &paho.Publish{Topic: fmt.Sprintf("devices/%d/status", i), QoS: 1, Retain: true, Payload: []byte(strconv.Itoa(i))})
	}
	pub.Publish(t, &paho.Publish{Topic: "devices/0/config", QoS: 1, Retain: true, Payload: []byte("not a status")})

	sub := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "dashboard", CleanStart: true})
	subscribeWith(t, sub, paho.SubscribeOptions{Topic: "devices/+/status", QoS: 0})
	seen := map[string]bool{}
	for range n {
		m := sub.Next(t, 5*time.Second)
		if !m.Retain || m.QoS != 0 || !strings.HasSuffix(m.Topic, "/status") || seen[m.Topic] {
			t.Fatalf("got %q on %q (retain %v, qos %d, seen before %v)", m.Payload, m.Topic, m.Retain, m.QoS, seen[m.Topic])
		}
		seen[m.Topic] = true
	}

	// Retain Handling 1 (only for a new subscription) and 2 (never): a
	// live message is the next thing the client sees.
	subscribeWith(t, sub, paho.SubscribeOptions{Topic: "devices/+/status", QoS: 1, RetainHandling: 1})
	subscribeWith(t, sub, paho.SubscribeOptions{Topic: "devices/0/#", QoS: 1, RetainHandling: 2})
	pub.Publish(t, &paho.Publish{Topic: "devices/0/status", QoS: 1, Payload: []byte("live")})
	if m := sub.Next(t, 5*time.Second); string(m.Payload) != "live" || m.Retain {
		t.Fatalf("got %q on %q (retain %v), want the live message", m.Payload, m.Topic, m.Retain)
	}
	// Retain Handling 1 on a new filter sends the retained one.
	subscribeWith(t, sub, paho.SubscribeOptions{Topic: "devices/0/config", QoS: 1, RetainHandling: 1})
	if m := sub.Next(t, 5*time.Second); string(m.Payload) != "not a status" || !m.Retain || m.QoS != 1 {
		t.Fatalf("got %q on %q (retain %v, qos %d), want the retained config", m.Payload, m.Topic, m.Retain, m.QoS)
	}
}
