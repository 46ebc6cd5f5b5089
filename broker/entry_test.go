package broker_test

import (
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
	"github.com/mqhub/mqhub/storage"
)

// The entry path: every way a message enters the hub meets every rule.
// TestEntryPathsMeetEveryRule sends the same attacks from eve through each
// way in (a PUBLISH, a PUBLISH by topic alias, a will at disconnect, a
// delayed will, a will after a contained decoder panic) and checks that
// each rule holds for each: access (ACL and group membership at send
// time), the block list, envelope stamping, conversations never retained,
// read-receipt validation.

// entryMsg is what eve sends.
type entryMsg struct {
	topic   string
	payload string
	from    string // a forged `from` user property, if set
	retain  bool
}

// entryPath sends one message from eve. prepare connects eve's device
// (with the message as its will, for wills); fire makes the hub take the
// message (publish it, drop the connection, crash the decoder). A nil
// fire: the hub refused the will at CONNECT already.
type entryPath struct {
	name    string
	prepare func(t *testing.T, f *entryFixture, m entryMsg) (fire func())
}

type entryFixture struct {
	h          *secureHub
	alice, bob *testutil.Client // alice: u/alice/#; bob: g/team
	root       *testutil.Client // news/#
	wills      int              // wills the hub has finished with so far
	seq        int
}

// newEntryFixture starts a hub whose receivers subscribe with prefix
// before their filters: "" for plain subscriptions, "$share/s/" for
// shared ones.
func newEntryFixture(t *testing.T, prefix string) *entryFixture {
	t.Helper()
	h := startSecureHub(t, testACL)
	apiAddUser(t, h, "eve")
	f := &entryFixture{h: h}
	f.alice = h.mustLogin(t, "alice", "alice-phone")
	f.alice.Subscribe(t, prefix+"u/alice/#", 1)
	created := apiAs(t, h, "alice", "POST", "/v1/groups", map[string]any{"name": "team", "members": []string{"bob", "eve"}})
	wantStatus(t, created, 201)
	f.bob = h.mustLogin(t, "bob", "bob-phone")
	f.bob.Subscribe(t, prefix+"g/team", 1)
	f.root = h.mustLogin(t, "root", "root-phone")
	f.root.Subscribe(t, prefix+"news/#", 1)
	return f
}

// eveConnect opens a raw MQTT 5 connection of eve, with c's will fields.
// It returns nil when the hub refused the CONNECT with 0x87 not
// authorized (a will topic eve may not publish to is refused there
// already).
func (f *entryFixture) eveConnect(t *testing.T, c packets.Connect) net.Conn {
	t.Helper()
	f.seq++
	c.ClientID = "eve-" + strconv.Itoa(f.seq)
	c.CleanStart, c.KeepAlive = true, 30
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "eve", true, []byte("eve-pw")
	c.ProtocolName, c.ProtocolVersion = "MQTT", 5
	conn := testutil.Dial(t, f.h.MQTTAddr())
	t.Cleanup(func() { conn.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	cp.Content = &c
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	ack, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read connack: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	switch ca, _ := ack.Content.(*packets.Connack); {
	case ca != nil && ca.ReasonCode == 0:
		return conn
	case ca != nil && ca.ReasonCode == 0x87 && c.WillFlag:
		return nil
	}
	t.Fatalf("connect refused: %v", ack)
	return nil
}

// rawPublish writes a PUBLISH and returns the reason code of its answer,
// or -1 when the hub closed the connection instead.
func rawPublish(t *testing.T, conn net.Conn, p *packets.Publish) int {
	t.Helper()
	if _, err := p.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	if p.QoS == 0 {
		return 0
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	defer conn.SetReadDeadline(time.Time{})
	for {
		cp, err := packets.ReadPacket(conn)
		if err != nil {
			return -1
		}
		switch pk := cp.Content.(type) {
		case *packets.Puback:
			if pk.PacketID == p.PacketID {
				return int(pk.ReasonCode)
			}
		case *packets.Pubrec:
			if pk.PacketID == p.PacketID {
				return int(pk.ReasonCode)
			}
		case *packets.Disconnect:
			return -1
		}
	}
}

func publishPacket(m entryMsg, id uint16) *packets.Publish {
	p := &packets.Publish{Topic: m.topic, QoS: 1, PacketID: id, Retain: m.retain, Payload: []byte(m.payload),
		Properties: &packets.Properties{}}
	if m.from != "" {
		p.Properties.User = []packets.User{{Key: "from", Value: m.from}, {Key: "ts", Value: "1"}}
	}
	return p
}

func willConnect(m entryMsg, delay uint32) packets.Connect {
	c := packets.Connect{WillFlag: true, WillTopic: m.topic, WillMessage: []byte(m.payload), WillQOS: 1, WillRetain: m.retain,
		WillProperties: &packets.Properties{}}
	if m.from != "" {
		c.WillProperties.User = []packets.User{{Key: "from", Value: m.from}, {Key: "ts", Value: "1"}}
	}
	if delay > 0 {
		c.WillProperties.WillDelayInterval = &delay
		c.Properties = &packets.Properties{SessionExpiryInterval: ptr[uint32](60)}
	}
	return c
}

var entryPaths = []entryPath{
	{"publish", func(t *testing.T, f *entryFixture, m entryMsg) func() {
		conn := f.eveConnect(t, packets.Connect{})
		return func() { rawPublish(t, conn, publishPacket(m, 1)) }
	}},
	{"publish by topic alias", func(t *testing.T, f *entryFixture, m entryMsg) func() {
		conn := f.eveConnect(t, packets.Connect{})
		// The alias is set on the topic with a first message (which the
		// fixture lets through before the rule's setup), then used alone.
		first := publishPacket(entryMsg{topic: m.topic, payload: `{"status":"read","ids":["set-alias"]}`}, 1)
		first.Properties.TopicAlias = ptr[uint16](4)
		rawPublish(t, conn, first)
		return func() {
			p := publishPacket(m, 2)
			p.Topic, p.Properties.TopicAlias = "", ptr[uint16](4)
			rawPublish(t, conn, p)
		}
	}},
	{"will", func(t *testing.T, f *entryFixture, m entryMsg) func() {
		conn := f.eveConnect(t, willConnect(m, 0))
		if conn == nil {
			return nil
		}
		return func() { _ = conn.Close() }
	}},
	{"delayed will", func(t *testing.T, f *entryFixture, m entryMsg) func() {
		conn := f.eveConnect(t, willConnect(m, 1))
		if conn == nil {
			return nil
		}
		return func() { _ = conn.Close() }
	}},
	{"will after a decoder panic", func(t *testing.T, f *entryFixture, m entryMsg) func() {
		conn := f.eveConnect(t, willConnect(m, 0))
		if conn == nil {
			return nil
		}
		return func() {
			if _, err := conn.Write(truncatedSubscribeV5); err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, conn) // until the hub closes it
		}
	}},
}

// entryRule is one rule and how to see that it held.
type entryRule struct {
	name  string
	msg   entryMsg
	setup func(t *testing.T, f *entryFixture) // after eve connected, before the message goes
	// receiver is who would get the message; marker publishes a message
	// it gets after anything eve's message could have caused.
	receiver func(f *entryFixture) *testutil.Client
	marker   func(t *testing.T, f *entryFixture, payload string)
	check    func(t *testing.T, f *entryFixture, got []*paho.Publish)
}

func toAlice(t *testing.T, f *entryFixture, payload string) {
	f.root.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte(payload)})
}

func wantNothing(t *testing.T, _ *entryFixture, got []*paho.Publish) {
	t.Helper()
	if len(got) > 0 {
		t.Fatalf("delivered %q on %q (%v), want nothing", got[0].Payload, got[0].Topic, got[0].Properties.User)
	}
}

func notRetained(topic string) func(t *testing.T, f *entryFixture, got []*paho.Publish) {
	return func(t *testing.T, f *entryFixture, got []*paho.Publish) {
		t.Helper()
		if len(got) != 1 {
			t.Fatalf("got %d messages, want eve's", len(got))
		}
		err := f.h.Store().MatchRetained(topic, func(m *storage.Message) error {
			return fmt.Errorf("%q is retained on %s", m.Payload, m.Topic)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

var entryRules = []entryRule{
	{
		name:     "read receipt validated",
		msg:      entryMsg{topic: "u/alice/receipts", payload: `{"status":"read","ids":["a1"],"by":"bob"}`, from: "bob"},
		receiver: func(f *entryFixture) *testutil.Client { return f.alice },
		marker:   toAlice,
		check:    wantNothing,
	},
	{
		name:     "envelope stamped",
		msg:      entryMsg{topic: "u/alice/inbox", payload: "hi", from: "bob"},
		receiver: func(f *entryFixture) *testutil.Client { return f.alice },
		marker:   toAlice,
		check: func(t *testing.T, _ *entryFixture, got []*paho.Publish) {
			if len(got) != 1 {
				t.Fatalf("got %d messages, want eve's", len(got))
			}
			u := got[0].Properties.User
			if u.Get("from") != "eve" || u.Get("id") == "" || u.Get("ts") == "" || u.Get("ts") == "1" || len(u.GetAll("from")) != 1 {
				t.Fatalf("envelope %v, want from eve with the hub's id and ts", u)
			}
		},
	},
	{
		name:     "inbox never retained",
		msg:      entryMsg{topic: "u/alice/inbox", payload: "sticky", retain: true},
		receiver: func(f *entryFixture) *testutil.Client { return f.alice },
		marker:   toAlice,
		check:    notRetained("u/alice/inbox"),
	},
	{
		name:     "typing never retained",
		msg:      entryMsg{topic: "u/alice/typing", payload: "typing", retain: true},
		receiver: func(f *entryFixture) *testutil.Client { return f.alice },
		marker:   toAlice,
		check:    notRetained("u/alice/typing"),
	},
	{
		name:     "ACL",
		msg:      entryMsg{topic: "news/eve", payload: "fake news"},
		receiver: func(f *entryFixture) *testutil.Client { return f.root },
		marker: func(t *testing.T, f *entryFixture, payload string) {
			f.root.Publish(t, &paho.Publish{Topic: "news/marker", QoS: 1, Payload: []byte(payload)})
		},
		check: wantNothing,
	},
	{
		name: "group membership at send time",
		msg:  entryMsg{topic: "g/team", payload: "still here?"},
		setup: func(t *testing.T, f *entryFixture) {
			wantStatus(t, apiAs(t, f.h, "alice", "DELETE", "/v1/groups/team/members/eve", nil), 200)
			t.Cleanup(func() {
				wantStatus(t, apiAs(t, f.h, "alice", "POST", "/v1/groups/team/members", map[string]any{"users": []string{"eve"}}), 200)
			})
		},
		receiver: func(f *entryFixture) *testutil.Client { return f.bob },
		marker: func(t *testing.T, f *entryFixture, payload string) {
			f.alice.Publish(t, &paho.Publish{Topic: "g/team", QoS: 1, Payload: []byte(payload)})
		},
		check: wantNothing,
	},
	{
		name: "block list",
		msg:  entryMsg{topic: "u/alice/inbox", payload: "let me in"},
		setup: func(t *testing.T, f *entryFixture) {
			wantStatus(t, apiAs(t, f.h, "alice", "PUT", "/v1/me/blocks/eve", nil), 204)
			t.Cleanup(func() { wantStatus(t, apiAs(t, f.h, "alice", "DELETE", "/v1/me/blocks/eve", nil), 204) })
		},
		receiver: func(f *entryFixture) *testutil.Client { return f.alice },
		marker:   toAlice,
		check:    wantNothing,
	},
}

// collectUntil returns the messages c receives before the one with payload marker.
func collectUntil(t *testing.T, c *testutil.Client, marker string) []*paho.Publish {
	t.Helper()
	var got []*paho.Publish
	for {
		m := c.Next(t, wait)
		if string(m.Payload) == marker {
			return got
		}
		got = append(got, m)
	}
}

// willsSettled waits until the hub has published or refused n wills.
func willsSettled(t *testing.T, b *broker.Broker, n int) {
	t.Helper()
	testutil.Eventually(t, 2*wait, func() error {
		sent, _ := strconv.Atoi(metric(t, b, "mqhub_wills_sent_total"))
		refused, _ := strconv.Atoi(metric(t, b, "mqhub_wills_refused_total"))
		if sent+refused < n {
			return fmt.Errorf("%d wills sent, %d refused, want %d in all", sent, refused, n)
		}
		return nil
	})
}

func TestEntryPathsMeetEveryRule(t *testing.T) {
	for _, path := range entryPaths {
		for _, receivers := range []struct{ name, prefix string }{{"subscription", ""}, {"shared subscription", "$share/s/"}} {
			t.Run(path.name+" to "+receivers.name, func(t *testing.T) {
				f := newEntryFixture(t, receivers.prefix)
				for i, rule := range entryRules {
					t.Run(rule.name, func(t *testing.T) {
						fire := path.prepare(t, f, rule.msg)
						if fire == nil {
							return // refused at CONNECT: the rule held before the message existed
						}
						// Whatever preparing delivered (an alias being set) is
						// not what this rule is about.
						ready := fmt.Sprintf("ready-%d", i)
						rule.marker(t, f, ready)
						collectUntil(t, rule.receiver(f), ready)
						if rule.setup != nil {
							rule.setup(t, f)
						}
						fire()
						if path.name != "publish" && path.name != "publish by topic alias" {
							f.wills++
							willsSettled(t, f.h.Broker, f.wills)
						}
						done := fmt.Sprintf("done-%d", i)
						rule.marker(t, f, done)
						rule.check(t, f, collectUntil(t, rule.receiver(f), done))
					})
				}
			})
		}
	}
}
