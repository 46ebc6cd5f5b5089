package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/storage"
)

// wait bounds every expectation of the messaging tests.
const wait = 5 * time.Second

// device connects a persistent MQTT 5 session (as an app would: clean
// start off, an hour of session expiry) and, the first time, subscribes
// to filters at QoS 1 with No Local, as the SDK does.
func (h *secureHub) device(t *testing.T, user, clientID string, filters ...string) *testutil.Client {
	t.Helper()
	c := h.mustLogin(t, user, clientID, func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](3600)}
	})
	for _, f := range filters {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		ack, err := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1, NoLocal: true}}})
		cancel()
		if err != nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 1 {
			t.Fatalf("%s subscribes %q: %v (suback %+v)", clientID, f, err, ack)
		}
	}
	return c
}

// offline disconnects a device with DISCONNECT, keeping its session.
func offline(t *testing.T, c *testutil.Client) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("client did not stop")
	}
}

// restart waits until every acknowledgement the clients sent has been
// processed (so that nothing is re-sent, as QoS 1 would allow), shuts the
// hub down gracefully and starts it again on the same data directory (new
// ports).
func restart(t *testing.T, h *secureHub, sessions ...string) *secureHub {
	t.Helper()
	testutil.Eventually(t, wait, func() error {
		for _, id := range sessions {
			if n, err := h.Store().Len(id); err != nil || n > 0 {
				return fmt.Errorf("queue of %s: %d entries (%v)", id, n, err)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	dir := h.Config().DataDir
	return startSecureHub(t, testACL, func(c *broker.Config) { c.DataDir = dir })
}

// next returns the next message of c and checks its topic.
func next(t *testing.T, c *testutil.Client, topic string) *paho.Publish {
	t.Helper()
	m := c.Next(t, wait)
	if m.Topic != topic {
		t.Fatalf("%s got %q on %q (props %v), want a message on %q", c.ClientID(), m.Payload, m.Topic, m.Properties.User, topic)
	}
	return m
}

// nextReceipt returns the next message of c, a receipt, decoded.
func nextReceipt(t *testing.T, c *testutil.Client, user string) hooks.Receipt {
	t.Helper()
	m := next(t, c, "u/"+user+"/receipts")
	var r hooks.Receipt
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("receipt %q: %v", m.Payload, err)
	}
	return r
}

func wantDelivered(t *testing.T, r hooks.Receipt, id, by, device string) {
	t.Helper()
	if r.Status != hooks.StatusDelivered || r.ID != id || r.By != by || r.Device != device || r.TS == 0 {
		t.Fatalf("receipt %+v, want delivered %s by %s on %s", r, id, by, device)
	}
}

func wantRead(t *testing.T, r hooks.Receipt, by string, ids ...string) {
	t.Helper()
	if r.Status != hooks.StatusRead || r.By != by || !slices.Equal(r.IDs, ids) || r.TS == 0 {
		t.Fatalf("receipt %+v, want read %v by %s", r, ids, by)
	}
}

// send publishes a QoS 1 message with an id and returns the PUBACK's
// reason code.
func send(t *testing.T, c *testutil.Client, topic, id, payload string) byte {
	t.Helper()
	p := &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}
	if id != "" {
		p.Properties = &paho.PublishProperties{User: paho.UserProperties{{Key: "id", Value: id}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := c.Client.Publish(ctx, p)
	if resp == nil {
		t.Fatalf("publish to %q: %v", topic, err)
	}
	return resp.ReasonCode
}

func wantMessage(t *testing.T, m *paho.Publish, id, from, payload string) {
	t.Helper()
	if got := m.Properties.User.Get("id"); got != id {
		t.Fatalf("message %q: id %q, want %q", m.Payload, got, id)
	}
	if got := m.Properties.User.Get("from"); got != from {
		t.Fatalf("message %q: from %q, want %q", m.Payload, got, from)
	}
	if string(m.Payload) != payload {
		t.Fatalf("payload %q, want %q", m.Payload, payload)
	}
}

// TestMessagingStory is the story of the messaging flow: alice (phone and
// laptop) writes to bob (phone online, tablet offline), with the hub
// restarting in the middle.
func TestMessagingStory(t *testing.T) {
	h := startSecureHub(t, testACL)
	alicePhone := h.device(t, "alice", "alice-phone", "u/alice/#")
	aliceLaptop := h.device(t, "alice", "alice-laptop", "u/alice/#")
	bobPhone := h.device(t, "bob", "bob-phone", "u/bob/#")
	bobTablet := h.device(t, "bob", "bob-tablet", "u/bob/#")
	offline(t, bobTablet)

	// alice types: bob's phone sees it at QoS 0, never retained.
	alicePhone.Publish(t, &paho.Publish{Topic: "u/bob/typing", QoS: 1, Retain: true, Payload: []byte(`{"typing":true}`)})
	typing := next(t, bobPhone, "u/bob/typing")
	if typing.QoS != 0 || typing.Retain || typing.Properties.User.Get("from") != "alice" {
		t.Fatalf("typing indicator: qos %d retain %v from %q", typing.QoS, typing.Retain, typing.Properties.User.Get("from"))
	}

	// Sent (one tick): the PUBACK, even with a forged from.
	p := &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("hi bob"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "id", Value: "m1"}, {Key: "from", Value: "root"}}}}
	alicePhone.Publish(t, p)
	wantMessage(t, next(t, bobPhone, "u/bob/inbox"), "m1", "alice", "hi bob")

	// alice's laptop gets a copy on its sync topic; the phone that sent does not.
	sync := next(t, aliceLaptop, "u/alice/sync")
	wantMessage(t, sync, "m1", "alice", "hi bob")
	if to := sync.Properties.User.Get("to"); to != "u/bob/inbox" {
		t.Fatalf("sync copy: to %q, want u/bob/inbox", to)
	}

	// Delivered (two ticks), on both of alice's devices.
	wantDelivered(t, nextReceipt(t, alicePhone, "alice"), "m1", "bob", "bob-phone")
	wantDelivered(t, nextReceipt(t, aliceLaptop, "alice"), "m1", "bob", "bob-phone")

	// Read (blue ticks): bob's phone says so; the hub stamps who.
	if code := send(t, bobPhone, "u/alice/receipts", "", `{"status":"read","ids":["m1"],"by":"root"}`); code != 0 {
		t.Fatalf("read receipt refused: 0x%02x", code)
	}
	wantRead(t, nextReceipt(t, alicePhone, "alice"), "bob", "m1")
	wantRead(t, nextReceipt(t, aliceLaptop, "alice"), "bob", "m1")

	// The hub restarts with alice's laptop and bob's tablet offline.
	offline(t, aliceLaptop)
	h = restart(t, h, "alice-phone", "alice-laptop", "bob-phone")

	// An hour later, bob's tablet connects: m1 was waiting in its queue.
	bobTablet = h.device(t, "bob", "bob-tablet")
	wantMessage(t, next(t, bobTablet, "u/bob/inbox"), "m1", "alice", "hi bob")

	// alice's devices get the second delivered receipt, queued while
	// they were away.
	alicePhone = h.device(t, "alice", "alice-phone")
	wantDelivered(t, nextReceipt(t, alicePhone, "alice"), "m1", "bob", "bob-tablet")
	aliceLaptop = h.device(t, "alice", "alice-laptop")
	wantDelivered(t, nextReceipt(t, aliceLaptop, "alice"), "m1", "bob", "bob-tablet")

	// Nothing lost or repeated: the next message is the next thing every
	// device sees.
	bobPhone = h.device(t, "bob", "bob-phone")
	if code := send(t, alicePhone, "u/bob/inbox", "m2", "still there?"); code != 0 {
		t.Fatalf("m2 refused: 0x%02x", code)
	}
	wantMessage(t, next(t, bobPhone, "u/bob/inbox"), "m2", "alice", "still there?")
	wantMessage(t, next(t, bobTablet, "u/bob/inbox"), "m2", "alice", "still there?")
	wantMessage(t, next(t, aliceLaptop, "u/alice/sync"), "m2", "alice", "still there?")
	devices := map[string]bool{}
	for range 2 {
		r := nextReceipt(t, alicePhone, "alice")
		wantDelivered(t, r, "m2", "bob", r.Device)
		devices[r.Device] = true
	}
	if !devices["bob-phone"] || !devices["bob-tablet"] {
		t.Fatalf("delivered receipts for m2 from %v, want bob-phone and bob-tablet", devices)
	}
}

// TestReadReceiptSpoofing: a reader can only mark as read what was sent
// to it.
func TestReadReceiptSpoofing(t *testing.T) {
	h := startSecureHub(t, testACL)
	alice := h.device(t, "alice", "alice-phone", "u/alice/#")
	bob := h.device(t, "bob", "bob-phone", "u/bob/#")

	if code := send(t, alice, "u/bob/inbox", "for-bob", "x"); code != 0 {
		t.Fatalf("refused: 0x%02x", code)
	}
	next(t, bob, "u/bob/inbox")
	nextReceipt(t, alice, "alice") // delivered
	if code := send(t, alice, "u/root/inbox", "for-root", "y"); code != 0 {
		t.Fatalf("refused: 0x%02x", code)
	}

	for _, tc := range []struct {
		name, payload string
		code          byte
	}{
		{"a message bob never got", `{"status":"read","ids":["for-root"]}`, 0x87},
		{"an id that does not exist", `{"status":"read","ids":["nope"]}`, 0x87},
		{"receipts are the hub's to say delivered", `{"status":"delivered","ids":["for-bob"]}`, 0x99},
		{"not JSON", `read for-bob`, 0x99},
		{"no ids", `{"status":"read","ids":[]}`, 0x99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := send(t, bob, "u/alice/receipts", "", tc.payload); code != tc.code {
				t.Fatalf("PUBACK 0x%02x, want 0x%02x", code, tc.code)
			}
		})
	}
	// alice cannot mark her own message read for bob either.
	if code := send(t, alice, "u/alice/receipts", "", `{"status":"read","ids":["for-bob"]}`); code != 0x87 {
		t.Fatalf("self receipt: PUBACK 0x%02x, want 0x87", code)
	}

	// A mixed batch keeps only what bob may say; it is the next thing alice sees.
	if code := send(t, bob, "u/alice/receipts", "", `{"status":"read","ids":["for-root","for-bob","nope"]}`); code != 0 {
		t.Fatalf("mixed receipt: PUBACK 0x%02x", code)
	}
	wantRead(t, nextReceipt(t, alice, "alice"), "bob", "for-bob")
	for series, want := range map[string]string{
		"mqhub_receipts_read_total":             "1",
		"mqhub_receipts_read_refused_total":     "6",
		"mqhub_receipts_read_ids_dropped_total": "2",
		"mqhub_receipts_delivered_total":        "1",
		"mqhub_users_online":                    "2",
	} {
		if got := metric(t, h.Broker, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
}

// TestBlockedSenderIsAcknowledgedNotDelivered: bob blocks alice; her
// messages are acknowledged as usual but never reach him, and she gets no
// receipt that would tell.
func TestBlockedSenderIsAcknowledgedNotDelivered(t *testing.T) {
	h := startSecureHub(t, testACL)
	alice := h.device(t, "alice", "alice-phone", "u/alice/#")
	bob := h.device(t, "bob", "bob-phone", "u/bob/#")
	bobTablet := h.device(t, "bob", "bob-tablet", "u/bob/#")
	offline(t, bobTablet)
	root := h.device(t, "root", "root-phone", "u/root/inbox")

	wantStatus(t, adminCall(t, h, "PUT", "/v1/me/blocks/alice", "bob", "bob-pw", nil), 204)
	if code := send(t, alice, "u/bob/inbox", "blocked-1", "let me in"); code != 0 {
		t.Fatalf("a blocked sender must be acknowledged as usual: 0x%02x", code)
	}
	alice.Publish(t, &paho.Publish{Topic: "u/bob/typing", QoS: 0, Payload: []byte("typing")})

	// root's message is the next thing bob sees, on both devices.
	if code := send(t, root, "u/bob/inbox", "from-root", "hello"); code != 0 {
		t.Fatal(code)
	}
	wantMessage(t, next(t, bob, "u/bob/inbox"), "from-root", "root", "hello")
	bobTablet = h.device(t, "bob", "bob-tablet")
	wantMessage(t, next(t, bobTablet, "u/bob/inbox"), "from-root", "root", "hello")

	// alice hears nothing from bob's side; root's receipt is her next message.
	if code := send(t, alice, "u/root/inbox", "to-root", "hi root"); code != 0 {
		t.Fatal(code)
	}
	next(t, root, "u/root/inbox")
	wantDelivered(t, nextReceipt(t, alice, "alice"), "to-root", "root", "root-phone")

	// Unblocked, alice gets through again.
	wantStatus(t, adminCall(t, h, "DELETE", "/v1/me/blocks/alice", "bob", "bob-pw", nil), 204)
	if code := send(t, alice, "u/bob/inbox", "after", "thanks"); code != 0 {
		t.Fatal(code)
	}
	wantMessage(t, next(t, bob, "u/bob/inbox"), "after", "alice", "thanks")
}

// TestGroupStory is the story for a group of five: alice writes to the
// team; every member's devices get it, offline ones after a restart;
// delivered and read receipts per member reach alice; outsiders neither
// read nor write.
func TestGroupStory(t *testing.T) {
	h := startSecureHub(t, testACL)
	for _, name := range []string{"carol", "dave", "erin", "mallory"} {
		apiAddUser(t, h, name)
	}
	members := []string{"bob", "carol", "dave", "erin"}
	created := adminCall(t, h, "POST", "/v1/groups", "alice", "alice-pw",
		map[string]any{"name": "team", "title": "The team", "members": members})
	wantStatus(t, created, 201)

	alice := h.device(t, "alice", "alice-phone", "u/alice/#", "g/+")
	aliceLaptop := h.device(t, "alice", "alice-laptop", "u/alice/#", "g/+")
	online := map[string]*testutil.Client{}
	for _, m := range []string{"bob", "carol", "dave"} {
		online[m] = h.device(t, m, m+"-phone", "u/"+m+"/#", "g/+")
	}
	erin := h.device(t, "erin", "erin-phone", "u/erin/#", "g/+")
	offline(t, erin)

	// An outsider: may subscribe to g/+ (checked per message), not to the
	// team, and may not write there.
	mallory := h.device(t, "mallory", "mallory-phone", "u/mallory/#", "g/+")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if ack, _ := mallory.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "g/team", QoS: 1}}}); ack == nil || ack.Reasons[0] != 0x87 {
		t.Fatalf("outsider subscribing g/team: %+v, want 0x87", ack)
	}
	if code := send(t, mallory, "g/team", "m-x", "let me in"); code != 0x87 {
		t.Fatalf("outsider publishing to g/team: 0x%02x, want 0x87", code)
	}

	if code := send(t, alice, "g/team", "g1", "hello team"); code != 0 {
		t.Fatalf("g1 refused: 0x%02x", code)
	}
	for _, m := range []string{"bob", "carol", "dave"} {
		wantMessage(t, next(t, online[m], "g/team"), "g1", "alice", "hello team")
	}
	wantMessage(t, next(t, aliceLaptop, "g/team"), "g1", "alice", "hello team")
	got := map[string]bool{}
	for range 3 {
		r := nextReceipt(t, alice, "alice")
		wantDelivered(t, r, "g1", r.By, r.By+"-phone")
		if r.Group != "team" {
			t.Fatalf("receipt %+v: group %q, want team", r, r.Group)
		}
		got[r.By] = true
	}
	if len(got) != 3 {
		t.Fatalf("delivered receipts from %v, want bob, carol and dave", got)
	}
	// Read by carol; mallory cannot claim it.
	if code := send(t, online["carol"], "u/alice/receipts", "", `{"status":"read","ids":["g1"]}`); code != 0 {
		t.Fatalf("carol's read receipt: 0x%02x", code)
	}
	wantRead(t, nextReceipt(t, alice, "alice"), "carol", "g1")
	if code := send(t, mallory, "u/alice/receipts", "", `{"status":"read","ids":["g1"]}`); code != 0x87 {
		t.Fatalf("outsider's read receipt: 0x%02x, want 0x87", code)
	}

	// Restart; erin comes back and gets g1; alice gets erin's receipt.
	h = restart(t, h, "alice-phone", "alice-laptop", "bob-phone", "carol-phone", "dave-phone")
	erin = h.device(t, "erin", "erin-phone")
	wantMessage(t, next(t, erin, "g/team"), "g1", "alice", "hello team")
	alice = h.device(t, "alice", "alice-phone")
	wantDelivered(t, nextReceipt(t, alice, "alice"), "g1", "erin", "erin-phone")

	// Removed from the team, dave gets nothing more; mallory never did.
	wantStatus(t, adminCall(t, h, "DELETE", "/v1/groups/team/members/dave", "alice", "alice-pw", nil), 200)
	dave := h.device(t, "dave", "dave-phone")
	mallory = h.device(t, "mallory", "mallory-phone")
	if code := send(t, alice, "g/team", "g2", "without dave"); code != 0 {
		t.Fatalf("g2 refused: 0x%02x", code)
	}
	wantMessage(t, next(t, erin, "g/team"), "g2", "alice", "without dave")
	if code := send(t, alice, "u/dave/inbox", "d1", "just you"); code != 0 {
		t.Fatal(code)
	}
	wantMessage(t, next(t, dave, "u/dave/inbox"), "d1", "alice", "just you")
	if code := send(t, alice, "u/mallory/inbox", "s1", "you were never in"); code != 0 {
		t.Fatal(code)
	}
	// mallory's session holds g/+ and u/mallory/inbox: a group message
	// for her would have come first.
	wantMessage(t, next(t, mallory, "u/mallory/inbox"), "s1", "alice", "you were never in")
}

// presence reads the next presence message of c for user.
func presence(t *testing.T, c *testutil.Client, user string) hooks.PresenceState {
	t.Helper()
	m := next(t, c, "presence/"+user)
	var st hooks.PresenceState
	if err := json.Unmarshal(m.Payload, &st); err != nil {
		t.Fatalf("presence %q: %v", m.Payload, err)
	}
	return st
}

// TestPresence follows alice's presence as bob sees it: online with the
// first device, offline with last seen when the last one goes, however it
// goes; hidden last seen; only the hub writes presence; a crash leaves no
// one online.
func TestPresence(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-watch")
	bob.Subscribe(t, "presence/alice", 1)

	phone := h.device(t, "alice", "alice-phone")
	if st := presence(t, bob, "alice"); st.Status != hooks.PresenceOnline || st.LastSeen != 0 {
		t.Fatalf("after connect: %+v", st)
	}
	laptop := h.device(t, "alice", "alice-laptop")
	offline(t, phone) // the laptop is still connected: no change

	if code := send(t, laptop, "presence/alice", "", `{"status":"offline"}`); code != 0x87 {
		t.Fatalf("a client publishing presence: 0x%02x, want 0x87", code)
	}

	// The last device drops without DISCONNECT.
	before := time.Now().UnixMilli()
	if err := laptop.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	st := presence(t, bob, "alice")
	if st.Status != hooks.PresenceOffline || st.LastSeen < before || st.LastSeen > time.Now().UnixMilli() {
		t.Fatalf("after the last device dropped: %+v (dropped at %d)", st, before)
	}

	// A new watcher gets the retained state at once.
	root := h.mustLogin(t, "root", "root-watch")
	root.Subscribe(t, "presence/alice", 1)
	if got := presence(t, root, "alice"); got != st {
		t.Fatalf("retained presence %+v, want %+v", got, st)
	}

	// alice hides her last seen: the retained state loses it.
	wantStatus(t, adminCall(t, h, "PATCH", "/v1/me/settings", "alice", "alice-pw", map[string]any{"hide_last_seen": true}), 200)
	if st := presence(t, bob, "alice"); st.Status != hooks.PresenceOffline || st.LastSeen != 0 {
		t.Fatalf("after hiding last seen: %+v", st)
	}
	phone = h.device(t, "alice", "alice-phone")
	if st := presence(t, bob, "alice"); st.Status != hooks.PresenceOnline {
		t.Fatalf("after reconnect: %+v", st)
	}
	offline(t, phone)
	if st := presence(t, bob, "alice"); st.Status != hooks.PresenceOffline || st.LastSeen != 0 {
		t.Fatalf("hidden last seen shown: %+v", st)
	}

	// A crash leaves presence/bob retained as online; after the restart
	// the hub sets it offline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	dir := h.Config().DataDir
	store, err := storage.Open(storage.Options{Dir: dir + "/store"})
	if err != nil {
		t.Fatal(err)
	}
	stale := &storage.Message{Topic: "presence/bob", Payload: []byte(`{"status":"online"}`), Retain: true, Created: time.Now().UnixNano()}
	if err := store.PutRetained(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now().UnixMilli()
	h = startSecureHub(t, testACL, func(c *broker.Config) { c.DataDir = dir })
	alice := h.mustLogin(t, "alice", "alice-watch")
	alice.Subscribe(t, "presence/bob", 1)
	st = presence(t, alice, "bob")
	if st.Status != hooks.PresenceOffline || st.LastSeen < restarted {
		t.Fatalf("presence of a user online at the crash: %+v, want offline seen at the restart", st)
	}
}
