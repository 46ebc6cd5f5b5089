package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// limitRefusals reads one series of mqhub_limit_refusals_total.
func limitRefusals(t *testing.T, b *broker.Broker, limit string) int {
	t.Helper()
	v := metric(t, b, `mqhub_limit_refusals_total{limit="`+limit+`"}`)
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("mqhub_limit_refusals_total{limit=%q} = %q", limit, v)
	}
	return n
}

// limSubscribe sends one SUBSCRIBE with the filters and returns the SUBACK
// reason codes, refusals included.
func limSubscribe(t *testing.T, c *testutil.Client, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Client.Subscribe(ctx, s)
	if ack == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return ack.Reasons
}

// limPublish publishes at QoS 1 or 2 and returns the reason code of the
// PUBACK or PUBREC.
func limPublish(t *testing.T, c *testutil.Client, topic string, qos byte, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Client.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if resp == nil {
		t.Fatalf("publish to %q: %v", topic, err)
	}
	return resp.ReasonCode
}

// limPublishQoS0 sends n QoS 0 messages, the last of which must be
// refused, and returns the reason code of the DISCONNECT that follows. It
// sends no more: data the hub has not read when it closes the connection
// makes the kernel reset it, and the client may lose the DISCONNECT.
func limPublishQoS0(t *testing.T, c *testutil.Client, topic string, n int) byte {
	t.Helper()
	for range n {
		if _, err := c.Client.Publish(context.Background(), &paho.Publish{Topic: topic, Payload: []byte("x")}); err != nil {
			break // the connection is gone
		}
	}
	select {
	case d := <-c.Disconnects:
		return d.ReasonCode
	case <-time.After(5 * time.Second):
		t.Fatalf("no DISCONNECT after %d QoS 0 messages", n)
		return 0
	}
}

// limConnectV311 sends an MQTT 3.1.1 CONNECT and returns the CONNACK
// return code; the connection is closed when the test ends.
func limConnectV311(t *testing.T, addr, clientID string) (net.Conn, byte) {
	t.Helper()
	conn := testutil.Dial(t, addr)
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(connectBytes(4, clientID)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		t.Fatalf("read 3.1.1 CONNACK: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if ack[0] != 0x20 || ack[1] != 2 {
		t.Fatalf("not a 3.1.1 CONNACK: % x", ack)
	}
	return conn, ack[3]
}

// refusedAtAccept fails unless the hub closes a new connection to addr
// before sending anything, without being sent anything.
func refusedAtAccept(t *testing.T, addr string) {
	t.Helper()
	conn := testutil.Dial(t, addr)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(make([]byte, 16))
	var ne net.Error
	if n > 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not refused at accept: read %d bytes, %v", n, err)
	}
}

// sendConnect writes a CONNECT (MQTT 5, with credentials when user is not
// empty) on a raw connection and returns the CONNACK reason code.
func sendConnect(t *testing.T, conn net.Conn, clientID, user, password string) byte {
	t.Helper()
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.CleanStart, c.KeepAlive = "MQTT", 5, clientID, true, 30
	if user != "" {
		c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, user, true, []byte(password)
	}
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	ca, ok := ack.Content.(*packets.Connack)
	if !ok {
		t.Fatalf("got %v, want CONNACK", ack)
	}
	return ca.ReasonCode
}

func TestLimitConnectionsPerIP(t *testing.T) {
	h := startSecureHub(t, testACL, func(c *broker.Config) { c.MaxConnectionsPerIP = 2 })

	// A connection refused by authentication gives its place back when
	// the hub closes it: with a limit of 2, a leak would refuse bob below.
	guess := testutil.Dial(t, h.MQTTAddr())
	if code := sendConnect(t, guess, "guess-1", "alice", "wrong"); code != 0x86 {
		t.Fatalf("wrong password: CONNACK 0x%02x, want 0x86", code)
	}
	waitClosed(t, guess, 5*time.Second)

	// Two places: a session and a socket that has sent nothing yet, which
	// holds its place like any other.
	h.mustLogin(t, "alice", "alice-1")
	silent := testutil.Dial(t, h.MQTTAddr())
	// The third is closed at accept, on every listener, before a byte is
	// read: no CONNECT is decoded, no CONNACK sent.
	refusedAtAccept(t, h.MQTTAddr())
	if _, _, err := dialWS(wsURL(h.Broker, h.Config().WSPath)); err == nil {
		t.Fatal("WebSocket upgrade over the limit succeeded")
	}
	// The silent socket ends (a first packet that is not CONNECT); its place
	// is free once the hub closed it.
	if _, err := silent.Write([]byte{0xe0, 0x00}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, silent, 5*time.Second)
	h.mustLogin(t, "bob", "bob-1")
	refusedAtAccept(t, h.MQTTAddr())

	if got := limitRefusals(t, h.Broker, "connections_per_ip"); got != 3 {
		t.Fatalf("connections_per_ip refusals = %d, want 3", got)
	}
	if got := metric(t, h.Broker, `mqhub_connection_errors_total{reason="connections_per_ip"}`); got != "3" {
		t.Fatalf(`connection_errors{reason="connections_per_ip"} = %q, want 3`, got)
	}
}

func TestLimitConnectRate(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.ConnectRate = 1 })
	connect(t, b, "rate-1")
	connect(t, b, "rate-2") // the bucket holds 2
	// The bucket refills one per second: a few fast attempts meet an empty
	// one even on a loaded machine. A refused one is closed at accept,
	// without a CONNACK.
	refused := false
	for i := range 5 {
		c, ack, err := testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: fmt.Sprintf("rate-x%d", i), CleanStart: true})
		if err == nil {
			t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); <-c.Done() })
			continue
		}
		if ack != nil {
			t.Fatalf("connack %+v (%v), want the connection closed at accept", ack, err)
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("no connection refused for its rate")
	}
	if got := limitRefusals(t, b, "connect_rate"); got != 1 {
		t.Fatalf("connect_rate refusals = %d, want 1", got)
	}
	if got := metric(t, b, `mqhub_connection_errors_total{reason="connect_rate"}`); got != "1" {
		t.Fatalf(`connection_errors{reason="connect_rate"} = %q, want 1`, got)
	}
}

func TestLimitPublishRate(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.PublishRate = 5; c.LogLevel = "info" })
	sub := connect(t, b, "rate-sub")
	sub.Subscribe(t, "rate/#", 1)

	// QoS 1: the bucket holds 10; past it, PUBACK 0x96 and no delivery.
	c := connect(t, b, "rate-pub")
	start := time.Now()
	accepted, code := 0, byte(0)
	for range 40 {
		if code = limPublish(t, c, "rate/q1", 1, []byte("m")); code != 0 {
			break
		}
		accepted++
	}
	if code != 0x96 {
		t.Fatalf("PUBACK reason 0x%02x after %d messages, want 0x96 message rate too high", code, accepted)
	}
	if most := 10 + int(time.Since(start).Seconds()*5) + 1; accepted < 10 || accepted > most {
		t.Fatalf("%d messages accepted before the refusal, want between 10 and %d", accepted, most)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := len(sub.Messages); n != accepted {
			return fmt.Errorf("subscriber has %d messages, want the %d accepted", n, accepted)
		}
		return nil
	})

	// QoS 2: PUBREC 0x96, not mochi's PUBACK.
	for range 20 {
		if code = limPublish(t, c, "rate/q2", 2, []byte("m")); code != 0 {
			break
		}
	}
	if code != 0x96 {
		t.Fatalf("PUBREC reason 0x%02x, want 0x96", code)
	}

	// QoS 0 has no acknowledgement to refuse with: DISCONNECT 0x96.
	// The client did not end the connection: its will is sent.
	q0 := testutil.Connect(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "rate-q0", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "rate/will", QoS: 1, Payload: []byte("gone")}})
	if code := limPublishQoS0(t, q0, "rate/q0", 11); code != 0x96 { // the bucket holds 10
		t.Fatalf("DISCONNECT reason 0x%02x, want 0x96", code)
	}
	for m := sub.Next(t, 5*time.Second); m.Topic != "rate/will"; m = sub.Next(t, 5*time.Second) {
		if !strings.HasPrefix(m.Topic, "rate/q") {
			t.Fatalf("unexpected message on %q", m.Topic)
		}
	}

	// 3.1.1 has no reason codes: the connection is closed.
	conn, rc := limConnectV311(t, b.MQTTAddr(), "rate-v3")
	if rc != 0 {
		t.Fatalf("3.1.1 CONNACK return code %d", rc)
	}
	var flood bytes.Buffer
	for range 40 {
		flood.Write([]byte{0x30, 2 + 6 + 1, 0, 6, 'r', 'a', 't', 'e', '/', 'x', 'm'})
	}
	if _, err := conn.Write(flood.Bytes()); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, 5*time.Second)

	if got := limitRefusals(t, b, "publish_rate"); got != 4 {
		t.Fatalf("publish_rate refusals = %d, want 4 (QoS 1, QoS 2, QoS 0, 3.1.1)", got)
	}
}

func TestLimitPublishBytesRate(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.PublishBytesRate = 1000; c.LogLevel = "info" })
	c := connect(t, b, "bytes-pub")
	payload := bytes.Repeat([]byte("b"), 800)
	// The bucket holds 2000 bytes: two messages, then a refusal (the third
	// would need 400 ms of refill).
	for i := range 2 {
		if code := limPublish(t, c, "bytes/t", 1, payload); code != 0 {
			t.Fatalf("message %d refused: 0x%02x", i+1, code)
		}
	}
	code := byte(0)
	for range 5 {
		if code = limPublish(t, c, "bytes/t", 1, payload); code != 0 {
			break
		}
	}
	if code != 0x96 {
		t.Fatalf("PUBACK reason 0x%02x, want 0x96", code)
	}

	// A message larger than the bucket passes when the bucket is full, and
	// empties it.
	big := connect(t, b, "bytes-big")
	if code := limPublish(t, big, "bytes/big", 1, bytes.Repeat([]byte("B"), 3000)); code != 0 {
		t.Fatalf("message larger than the bucket refused on a full bucket: 0x%02x", code)
	}
	if code := limPublish(t, big, "bytes/big", 1, payload); code != 0x96 {
		t.Fatalf("PUBACK reason 0x%02x after the bucket was emptied, want 0x96", code)
	}
	if got := limitRefusals(t, b, "publish_bytes_rate"); got != 2 {
		t.Fatalf("publish_bytes_rate refusals = %d, want 2", got)
	}
}

func TestLimitSubscriptions(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.MaxSubscriptions = 2; c.LogLevel = "info" })
	props := &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](300)}
	c, _, err := testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "subs", Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	want := func(got []byte, want ...byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Fatalf("SUBACK reasons % x, want % x", got, want)
		}
	}
	want(limSubscribe(t, c, "s/a", "s/b"), 1, 1)
	want(limSubscribe(t, c, "s/c"), 0x97)
	want(limSubscribe(t, c, "s/a", "s/c"), 1, 0x97) // replacing one is no new subscription
	if _, err := c.Client.Unsubscribe(context.Background(), &paho.Unsubscribe{Topics: []string{"s/b"}}); err != nil {
		t.Fatal(err)
	}
	want(limSubscribe(t, c, "s/c", "s/d"), 1, 0x97)

	// A resumed persistent session still holds its two subscriptions,
	// although mochi no longer lists them on the client.
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	back, ack, err := testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "subs", Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = back.Disconnect(&paho.Disconnect{}); <-back.Done() })
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	want(limSubscribe(t, back, "s/e"), 0x97)
	want(limSubscribe(t, back, "s/a"), 1)

	// The refused filters get nothing; the granted ones do. (Only now: a
	// message still in flight when the client left would be re-sent with a
	// packet ID that mochi, which shares one ID space between both
	// directions, would refuse a SUBSCRIBE for, with 0x91.)
	pub := connect(t, b, "subs-pub")
	for _, topic := range []string{"s/b", "s/d", "s/e", "s/c"} {
		pub.Publish(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
	}
	if m := back.Next(t, 5*time.Second); m.Topic != "s/c" {
		t.Fatalf("got a message on %q, want only s/c", m.Topic)
	}

	if got := limitRefusals(t, b, "subscriptions"); got != 4 {
		t.Fatalf("subscriptions refusals = %d, want 4", got)
	}
}

func TestLimitTopicLengthAndLevels(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.MaxTopicLevels = 4; c.MaxTopicLength = 32; c.LogLevel = "info" })
	deep, long := "a/b/c/d/e", "t/"+strings.Repeat("x", 31)
	c := connect(t, b, "topics")

	// a/#/c is mochi's own refusal, not a limit's.
	if got := limSubscribe(t, c, "a/b/c/d", deep, "$share/g/a/b/c/d", long, "a/#/c"); !bytes.Equal(got, []byte{1, 0x8F, 1, 0x8F, 0x8F}) {
		t.Fatalf("SUBACK reasons % x, want 01 8f 01 8f 8f", got)
	}
	for _, tc := range []struct {
		topic string
		qos   byte
	}{{deep, 1}, {deep, 2}, {long, 1}} {
		if code := limPublish(t, c, tc.topic, tc.qos, []byte("x")); code != 0x90 {
			t.Fatalf("publish to %q at QoS %d: reason 0x%02x, want 0x90 topic name invalid", tc.topic, tc.qos, code)
		}
	}
	if code := limPublish(t, c, "a/b/c/d", 1, []byte("x")); code != 0 {
		t.Fatalf("publish within the limits refused: 0x%02x", code)
	}
	if code := limPublishQoS0(t, c, deep, 1); code != 0x90 {
		t.Fatalf("DISCONNECT reason 0x%02x, want 0x90", code)
	}

	// A will topic over the limits refuses the CONNECT.
	_, ack, err := testutil.TryConnect(testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "will", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: deep, Payload: []byte("bye")}})
	if err == nil || ack == nil || ack.ReasonCode != 0x90 {
		t.Fatalf("connack %+v (%v), want 0x90", ack, err)
	}

	if got := limitRefusals(t, b, "topic_levels"); got != 5 {
		t.Fatalf("topic_levels refusals = %d, want 5 (filter, QoS 1, QoS 2, QoS 0, will)", got)
	}
	if got := limitRefusals(t, b, "topic_length"); got != 2 {
		t.Fatalf("topic_length refusals = %d, want 2", got)
	}
}
