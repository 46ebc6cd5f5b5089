package broker_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// Regression tests for issue 12, each written as the attack.

// readAnswer returns the next packet the hub sends on conn, or nil when it
// closes the connection first.
func readAnswer(t *testing.T, conn net.Conn) *packets.ControlPacket {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	defer conn.SetReadDeadline(time.Time{})
	cp, err := packets.ReadPacket(conn)
	if err != nil {
		return nil
	}
	return cp
}

func rawConnectAs(t *testing.T, h *secureHub, user, clientID string) net.Conn {
	t.Helper()
	return rawConnect(t, h.MQTTAddr(), &packets.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(user + "-pw")})
}

func TestTopicAliasNeverSetIsAProtocolError(t *testing.T) {
	h := startSecureHub(t, testACL)
	for _, tc := range []struct {
		name  string
		alias uint16
		code  byte
	}{
		{"alias never set", 7, 0x82},
		{"alias 0", 0, 0x94},
		{"alias over the maximum", 60000, 0x94},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rawConnectAs(t, h, "alice", "alice-"+strconv.Itoa(int(tc.alias)))
			p := &packets.Publish{QoS: 1, PacketID: 1, Payload: []byte("x"),
				Properties: &packets.Properties{TopicAlias: ptr(tc.alias)}}
			if tc.alias == 0 {
				p.Topic = "u/bob/inbox"
			}
			if _, err := p.WriteTo(conn); err != nil {
				t.Fatal(err)
			}
			cp := readAnswer(t, conn)
			d, ok := cp.Content.(*packets.Disconnect)
			if cp == nil || !ok || d.ReasonCode != tc.code {
				t.Fatalf("answer %v, want DISCONNECT 0x%02x", cp, tc.code)
			}
			waitClosed(t, conn, wait)
		})
	}
}

func TestSysPublishAnswered(t *testing.T) {
	h := startSecureHub(t, testACL)
	conn := rawConnectAs(t, h, "alice", "alice-sys")
	if code := rawPublish(t, conn, &packets.Publish{Topic: "$SYS/x", QoS: 1, PacketID: 3, Payload: []byte("x")}); code != 0x87 {
		t.Fatalf("QoS 1 publish to $SYS: answer %d, want PUBACK 0x87", code)
	}
	if code := rawPublish(t, conn, &packets.Publish{Topic: "$SYS/x", QoS: 2, PacketID: 4, Payload: []byte("x")}); code != 0x87 {
		t.Fatalf("QoS 2 publish to $SYS: answer %d, want PUBREC 0x87", code)
	}
}

// TestRefused311PublishClosesWithoutDisconnect: MQTT 3.1.1 has no
// DISCONNECT from the server; a refused QoS 1 publish closes the
// connection [MQTT-3.3.5-2].
func TestRefused311PublishClosesWithoutDisconnect(t *testing.T) {
	h := startSecureHub(t, testACL)
	for _, topic := range []string{"news/forged", "$SYS/x", "presence/bob"} {
		conn := connectV311(t, h.MQTTAddr(), "alice-311", "alice", "alice-pw")
		str := []byte{0, byte(len(topic))}
		body := append(append(str, topic...), 0, 9, 'x')
		if _, err := conn.Write(append([]byte{0x32, byte(len(body))}, body...)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		got, err := io.ReadAll(conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: connection still open", topic)
		}
		if len(got) > 0 {
			t.Fatalf("%s: 3.1.1 client got % x, want the connection closed without a packet", topic, got)
		}
	}
}

func TestUnsubackSaysTheSubscriptionExisted(t *testing.T) {
	h := startSecureHub(t, testACL)
	c := h.mustLogin(t, "alice", "alice-phone")
	c.Subscribe(t, "u/alice/inbox", 1)
	ctx, cancel := ctxTimeout()
	defer cancel()
	ack, err := c.Client.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"u/alice/inbox", "u/alice/never"}})
	if err != nil && ack == nil {
		t.Fatal(err)
	}
	if len(ack.Reasons) != 2 || ack.Reasons[0] != 0x00 || ack.Reasons[1] != 0x11 {
		t.Fatalf("UNSUBACK reasons %v, want [0x00 0x11]", ack.Reasons)
	}
}

// TestWillWhenSessionEndsBeforeDelay: a will whose delay is at least the
// session expiry is published when the session ends [MQTT-3.1.2-8], every
// time (mochi lost it in about half the runs).
func TestWillWhenSessionEndsBeforeDelay(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-phone")
	bob.Subscribe(t, "u/bob/inbox", 1)
	for i, tc := range []struct{ delay, expiry uint32 }{{5, 2}, {2, 2}, {5, 1}, {1, 1}} {
		willer := rawConnect(t, h.MQTTAddr(), &packets.Connect{ClientID: "alice-will-" + strconv.Itoa(i), CleanStart: true, KeepAlive: 30,
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("alice-pw"),
			Properties: &packets.Properties{SessionExpiryInterval: ptr(tc.expiry)},
			WillFlag:   true, WillTopic: "u/bob/inbox", WillMessage: []byte("will-" + strconv.Itoa(i)), WillQOS: 1,
			WillProperties: &packets.Properties{WillDelayInterval: ptr(tc.delay)}})
		gone := time.Now()
		_ = willer.Close()
		m := bob.Next(t, time.Duration(tc.expiry)*time.Second+2*wait)
		if string(m.Payload) != "will-"+strconv.Itoa(i) || m.Properties.User.Get("from") != "alice" {
			t.Fatalf("delay %d expiry %d: got %q from %q", tc.delay, tc.expiry, m.Payload, m.Properties.User.Get("from"))
		}
		if waited := time.Since(gone); waited > time.Duration(tc.delay)*time.Second+time.Second && tc.expiry < tc.delay {
			t.Fatalf("delay %d expiry %d: will after %s, want it when the session ended", tc.delay, tc.expiry, waited)
		}
	}
}

// TestRetryAfterQueueFullIsDelivered: a publish refused with 0x97 did not
// enter the dedupe record; its retry with the same id, once there is
// room, is delivered.
func TestRetryAfterQueueFullIsDelivered(t *testing.T) {
	h := startSecureHub(t, testACL, func(c *broker.Config) { c.QueueMaxMessages = 3 })
	bob := h.device(t, "bob", "bob-phone", "u/bob/inbox")
	offline(t, bob)
	alice := h.mustLogin(t, "alice", "alice-phone")
	for i := 1; i <= 3; i++ {
		if code := send(t, alice, "u/bob/inbox", "m"+strconv.Itoa(i), "hi"); code != 0 {
			t.Fatalf("m%d: 0x%02x", i, code)
		}
	}
	if code := send(t, alice, "u/bob/inbox", "m4", "hi"); code != 0x97 {
		t.Fatalf("m4 to a full queue: 0x%02x, want 0x97", code)
	}
	bob = h.device(t, "bob", "bob-phone")
	for i := 1; i <= 3; i++ {
		wantMessage(t, next(t, bob, "u/bob/inbox"), "m"+strconv.Itoa(i), "alice", "hi")
	}
	testutil.Eventually(t, wait, func() error {
		if n, _ := h.Store().Len("bob-phone"); n > 0 {
			return fmt.Errorf("%d entries left", n)
		}
		return nil
	})
	if code := send(t, alice, "u/bob/inbox", "m4", "hi"); code != 0 {
		t.Fatalf("retry of m4: 0x%02x", code)
	}
	wantMessage(t, next(t, bob, "u/bob/inbox"), "m4", "alice", "hi")
}

// TestPublishRefusedForAllOrNone: when the sender's own offline device
// cannot take the sync copy, the publish is refused and the recipient
// does not get it either.
func TestPublishRefusedForAllOrNone(t *testing.T) {
	h := startSecureHub(t, testACL, func(c *broker.Config) { c.QueueMaxMessages = 2 })
	laptop := h.device(t, "alice", "alice-laptop", "u/alice/sync")
	offline(t, laptop)
	bob := h.mustLogin(t, "bob", "bob-phone")
	bob.Subscribe(t, "u/bob/inbox", 1)
	alice := h.mustLogin(t, "alice", "alice-phone")
	for i := 1; i <= 2; i++ {
		if code := send(t, alice, "u/bob/inbox", "m"+strconv.Itoa(i), "hi"); code != 0 {
			t.Fatalf("m%d: 0x%02x", i, code)
		}
		wantMessage(t, next(t, bob, "u/bob/inbox"), "m"+strconv.Itoa(i), "alice", "hi")
	}
	if code := send(t, alice, "u/bob/inbox", "m3", "refused"); code != 0x97 {
		t.Fatalf("m3 with the laptop's queue full: 0x%02x, want 0x97", code)
	}
	h.root(t).Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("marker")})
	if m := next(t, bob, "u/bob/inbox"); string(m.Payload) != "marker" {
		t.Fatalf("bob got %q, a message its publisher was told was refused", m.Payload)
	}
}

func (h *secureHub) root(t *testing.T) *testutil.Client {
	t.Helper()
	return h.mustLogin(t, "root", "root-"+strconv.FormatInt(time.Now().UnixNano(), 36))
}

// TestAcknowledgementAlwaysEmptiesTheQueue: when the delivered receipt
// cannot be queued for the sender (her queue is full), the recipient's
// PUBACK still takes the message out of her queue; the receipt is
// dropped and counted.
func TestAcknowledgementAlwaysEmptiesTheQueue(t *testing.T) {
	h := startSecureHub(t, testACL, func(c *broker.Config) { c.QueueMaxMessages = 2 })
	laptop := h.device(t, "alice", "alice-laptop", "u/alice/sync", "u/alice/receipts")
	offline(t, laptop)
	bob := h.device(t, "bob", "bob-phone", "u/bob/inbox")
	offline(t, bob)
	alice := h.mustLogin(t, "alice", "alice-phone")
	for i := 1; i <= 2; i++ { // the laptop's queue is now full of sync copies
		if code := send(t, alice, "u/bob/inbox", "m"+strconv.Itoa(i), "hi"); code != 0 {
			t.Fatalf("m%d: 0x%02x", i, code)
		}
	}
	bob = h.device(t, "bob", "bob-phone")
	for i := 1; i <= 2; i++ {
		wantMessage(t, next(t, bob, "u/bob/inbox"), "m"+strconv.Itoa(i), "alice", "hi")
	}
	testutil.Eventually(t, wait, func() error {
		if n, _ := h.Store().Len("bob-phone"); n > 0 {
			return fmt.Errorf("bob's queue holds %d acknowledged entries", n)
		}
		if got := metric(t, h.Broker, "mqhub_receipts_delivered_dropped_total"); got != "2" {
			return fmt.Errorf("delivered receipts dropped = %s, want 2", got)
		}
		return nil
	})
	offline(t, bob)
	bob = h.device(t, "bob", "bob-phone")
	h.root(t).Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("marker")})
	if m := next(t, bob, "u/bob/inbox"); string(m.Payload) != "marker" {
		t.Fatalf("bob got %q again after acknowledging it", m.Payload)
	}
}

// TestNoExpiryUnlessPublished: a message without a Message Expiry
// Interval is delivered without one [MQTT-3.3.2-5]; one with an interval
// keeps it (capped by the server's maximum).
func TestNoExpiryUnlessPublished(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-phone")
	bob.Subscribe(t, "u/bob/inbox", 1)
	alice := h.mustLogin(t, "alice", "alice-phone")
	alice.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("forever")})
	if m := next(t, bob, "u/bob/inbox"); m.Properties.MessageExpiry != nil {
		t.Fatalf("message without expiry delivered with Message Expiry %d", *m.Properties.MessageExpiry)
	}
	alice.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("soon"),
		Properties: &paho.PublishProperties{MessageExpiry: ptr[uint32](60)}})
	if m := next(t, bob, "u/bob/inbox"); m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry > 60 {
		t.Fatalf("message with expiry 60 delivered with %v", m.Properties.MessageExpiry)
	}
}

// TestPubacksInPublishOrder: PUBACKs leave in the order of their
// PUBLISHes [MQTT-4.6.0-2], whichever part of the hub decided them: a
// stored message (waits for its commit), one with no subscriber, a
// refused one, a duplicate.
func TestPubacksInPublishOrder(t *testing.T) {
	h := startSecureHub(t, testACL, func(c *broker.Config) { c.Durability = "sync" })
	bob := h.device(t, "bob", "bob-phone", "u/bob/inbox")
	offline(t, bob)
	conn := rawConnectAs(t, h, "alice", "alice-order")
	var batch []byte
	add := func(p *packets.Publish) {
		cp := packets.NewControlPacket(packets.PUBLISH)
		cp.Content = p
		var b writerBuf
		if _, err := cp.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, b...)
	}
	id := func(v string) *packets.Properties {
		return &packets.Properties{User: []packets.User{{Key: "id", Value: v}}}
	}
	const rounds = 20
	for r := range rounds {
		base := uint16(r*4 + 1)
		add(&packets.Publish{Topic: "u/bob/inbox", QoS: 1, PacketID: base, Payload: []byte("stored"), Properties: id("o" + strconv.Itoa(r))})
		add(&packets.Publish{Topic: "nobody/listens", QoS: 1, PacketID: base + 1, Payload: []byte("x")})
		add(&packets.Publish{Topic: "news/forged", QoS: 1, PacketID: base + 2, Payload: []byte("x")})
		add(&packets.Publish{Topic: "u/bob/inbox", QoS: 1, PacketID: base + 3, Payload: []byte("again"), Properties: id("o" + strconv.Itoa(r))})
	}
	if _, err := conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	for want := uint16(1); want <= rounds*4; want++ {
		cp := readAnswer(t, conn)
		ack, ok := cp.Content.(*packets.Puback)
		if cp == nil || !ok {
			t.Fatalf("answer %v, want PUBACK %d", cp, want)
		}
		if ack.PacketID != want {
			t.Fatalf("PUBACK for packet %d, want %d first (in publish order)", ack.PacketID, want)
		}
	}
}

// writerBuf collects what a packet writes.
type writerBuf []byte

func (b *writerBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// TestBlockHoldsForSharedSubscriptions: alice blocked eve; subscribing to
// her inbox through a shared subscription does not let eve's messages in.
func TestBlockHoldsForSharedSubscriptions(t *testing.T) {
	h := startSecureHub(t, testACL)
	apiAddUser(t, h, "eve")
	wantStatus(t, apiAs(t, h, "alice", "PUT", "/v1/me/blocks/eve", nil), 204)
	alice := h.mustLogin(t, "alice", "alice-phone")
	alice.Subscribe(t, "$share/x/u/alice/inbox", 1)
	eve := h.mustLogin(t, "eve", "eve-phone")
	eve.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 0, Payload: []byte("qos0 from eve")})
	eve.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte("qos1 from eve")})
	h.root(t).Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte("marker")})
	if m := alice.Next(t, wait); string(m.Payload) != "marker" {
		t.Fatalf("alice got %q from a user she blocked", m.Payload)
	}
}

// TestSharedSubscriptionsOnTheHubPath: a shared subscription's messages go
// through the hub's queues: one member of the group gets each, in turn
// among the connected ones, and a persistent member that is offline gets
// them from its queue when it comes back.
func TestSharedSubscriptionsOnTheHubPath(t *testing.T) {
	h := startSecureHub(t, testACL)
	a := h.mustLogin(t, "alice", "alice-a")
	a.Subscribe(t, "$share/x/u/alice/inbox", 1)
	b := h.mustLogin(t, "alice", "alice-b")
	b.Subscribe(t, "$share/x/u/alice/inbox", 1)
	root := h.root(t)
	const n = 10
	for i := range n {
		root.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte("m" + strconv.Itoa(i))})
	}
	got := map[string]int{}
	for range n {
		select {
		case <-a.Messages:
			got["a"]++
		case <-b.Messages:
			got["b"]++
		case <-time.After(wait):
			t.Fatalf("got %v of %d messages", got, n)
		}
	}
	if got["a"] == 0 || got["b"] == 0 {
		t.Fatalf("one member got everything: %v", got)
	}
	select {
	case m := <-a.Messages:
		t.Fatalf("a message delivered twice: %q", m.Payload)
	case m := <-b.Messages:
		t.Fatalf("a message delivered twice: %q", m.Payload)
	default:
	}

	c := h.device(t, "alice", "alice-c") // persistent; a shared subscription may not have No Local
	c.Subscribe(t, "$share/y/u/alice/inbox", 1)
	offline(t, c)
	root.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte("while away")})
	c = h.device(t, "alice", "alice-c")
	if m := next(t, c, "u/alice/inbox"); string(m.Payload) != "while away" || m.Properties.User.Get("from") != "root" {
		t.Fatalf("offline member got %q (%v)", m.Payload, m.Properties.User)
	}
}

// TestBlockHoldsForRetainedOnSubscribe: what a blocked user retained is
// not sent to the blocker when she subscribes.
func TestBlockHoldsForRetainedOnSubscribe(t *testing.T) {
	h := startSecureHub(t, testACL+"pattern readwrite open/#\n")
	apiAddUser(t, h, "eve")
	wantStatus(t, apiAs(t, h, "alice", "PUT", "/v1/me/blocks/eve", nil), 204)
	h.mustLogin(t, "eve", "eve-phone").Publish(t, &paho.Publish{Topic: "open/eve", QoS: 1, Retain: true, Payload: []byte("from eve")})
	h.root(t).Publish(t, &paho.Publish{Topic: "open/root", QoS: 1, Retain: true, Payload: []byte("from root")})
	alice := h.mustLogin(t, "alice", "alice-phone")
	alice.Subscribe(t, "open/#", 1)
	if m := alice.Next(t, wait); string(m.Payload) != "from root" {
		t.Fatalf("alice got %q retained by a user she blocked", m.Payload)
	}
	h.root(t).Publish(t, &paho.Publish{Topic: "open/marker", QoS: 1, Payload: []byte("marker")})
	if m := alice.Next(t, wait); string(m.Payload) != "marker" {
		t.Fatalf("alice got %q, want the marker", m.Payload)
	}
}
