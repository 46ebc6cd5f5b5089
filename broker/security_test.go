package broker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/storage"
)

// secureHub is a hub with anonymous access off, three users (root is an
// admin), an Ed25519 JWT key and an ACL file.
type secureHub struct {
	*broker.Broker
	jwtKey ed25519.PrivateKey
	dir    string
}

const testACL = `
user alice
topic readwrite shared/#
user bob
topic read news/#
`

func startSecureHub(t *testing.T, acl string, options ...func(*broker.Config)) *secureHub {
	t.Helper()
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "jwt.pem")
	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aclFile, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	b := testutil.StartHub(t, append([]func(*broker.Config){func(c *broker.Config) {
		c.AllowAnonymous = false
		c.ACLFile = aclFile
		c.JWTEd25519PublicKeyFile = keyFile
		c.LogLevel = "info"
	}}, options...)...)
	for _, u := range []struct {
		name  string
		admin bool
	}{{"alice", false}, {"bob", false}, {"root", true}} {
		// The lowest bcrypt cost keeps the suite fast; logins check it the
		// same way as the production cost.
		hash, err := bcrypt.GenerateFromPassword([]byte(u.name+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Store().PutUser(context.Background(), &storage.User{Name: u.name, PasswordHash: hash, Admin: u.admin}); err != nil {
			t.Fatal(err)
		}
	}
	return &secureHub{Broker: b, jwtKey: priv, dir: dir}
}

func (h *secureHub) login(t *testing.T, user, password, clientID string, options ...func(*paho.Connect)) (*testutil.Client, *paho.Connack, error) {
	t.Helper()
	cp := &paho.Connect{ClientID: clientID, CleanStart: true,
		UsernameFlag: user != "", Username: user, PasswordFlag: password != "", Password: []byte(password)}
	for _, o := range options {
		o(cp)
	}
	c, ack, err := testutil.TryConnect(testutil.Dial(t, h.MQTTAddr()), cp)
	if err == nil {
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); <-c.Done() })
	}
	return c, ack, err
}

func (h *secureHub) mustLogin(t *testing.T, user, clientID string, options ...func(*paho.Connect)) *testutil.Client {
	t.Helper()
	c, ack, err := h.login(t, user, user+"-pw", clientID, options...)
	if err != nil {
		t.Fatalf("%s as %s: %v (connack %+v)", user, clientID, err, ack)
	}
	return c
}

func (h *secureHub) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(h.jwtKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expectRefused checks a CONNECT fails with the MQTT 5 reason code.
func expectRefused(t *testing.T, ack *paho.Connack, err error, code byte) {
	t.Helper()
	if err == nil {
		t.Fatalf("connection admitted, want reason 0x%02x", code)
	}
	if ack == nil || ack.ReasonCode != code {
		t.Fatalf("connack %+v (%v), want reason 0x%02x", ack, err, code)
	}
}

// noCanary fails if the attacker received anything within a short while
// after the canary was published and delivered to its real recipient.
func noCanary(t *testing.T, attacker *testutil.Client) {
	t.Helper()
	select {
	case m := <-attacker.Messages:
		t.Fatalf("attacker received %q on %q", m.Payload, m.Topic)
	default:
	}
}

// sendCanary publishes to bob's inbox and waits until bob has it, so that
// any leak to an attacker has had its chance to happen.
func sendCanary(t *testing.T, h *secureHub, bob *testutil.Client) {
	t.Helper()
	sender := h.mustLogin(t, "root", "canary-sender-"+t.Name())
	sender.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("canary")})
	if m := bob.Next(t, 5*time.Second); string(m.Payload) != "canary" {
		t.Fatalf("bob got %q", m.Payload)
	}
}

func TestBypassCredentials(t *testing.T) {
	h := startSecureHub(t, testACL)
	for _, tc := range []struct {
		name, user, password, clientID string
		code                           byte
	}{
		{"no credentials", "", "", "anon", 0x87},
		{"wrong password", "alice", "nope", "a1", 0x86},
		{"unknown user", "mallory", "mallory-pw", "m1", 0x86},
		{"empty password", "alice", "", "a2", 0x86},
		{"hash in user name", "ali#ce", "x", "a3", 0x86},
		{"plus in user name", "+", "x", "a4", 0x86},
		{"hash in client ID", "alice", "alice-pw", "dev#1", 0x85},
		{"plus in client ID", "alice", "alice-pw", "+", 0x85},
		{"slash in client ID", "alice", "alice-pw", "a/b", 0x85},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ack, err := h.login(t, tc.user, tc.password, tc.clientID)
			expectRefused(t, ack, err, tc.code)
		})
	}
	// The counter moves when the connection ends, just after the CONNACK.
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := metric(t, h.Broker, `mqhub_connection_errors_total{reason="auth_refused"}`); got != "9" {
			return fmt.Errorf("auth_refused counter = %q, want 9", got)
		}
		return nil
	})
}

func TestBypassClientIDOfAnotherUser(t *testing.T) {
	h := startSecureHub(t, testACL)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](3600)}
	}
	bob := h.mustLogin(t, "bob", "bob-phone", persistent)
	bob.Subscribe(t, "u/bob/inbox", 1)

	// Online victim: alice cannot take bob's client ID over.
	_, ack, err := h.login(t, "alice", "alice-pw", "bob-phone", persistent)
	expectRefused(t, ack, err, 0x85)
	sendCanary(t, h, bob)

	// Offline victim with a queued message: alice can neither resume nor
	// clean-start bob's session.
	if err := bob.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	<-bob.Done()
	sender := h.mustLogin(t, "root", "sender")
	sender.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("queued canary")})
	for _, opt := range []func(*paho.Connect){persistent, func(*paho.Connect) {}} {
		_, ack, err := h.login(t, "alice", "alice-pw", "bob-phone", opt)
		expectRefused(t, ack, err, 0x85)
	}
	back := h.mustLogin(t, "bob", "bob-phone", persistent)
	m := back.Next(t, 5*time.Second)
	if string(m.Payload) == "canary" && m.Duplicate() {
		// bob's PUBACK for the first canary may not have left before he
		// disconnected: the hub re-sends it, marked DUP, as QoS 1 requires.
		m = back.Next(t, 5*time.Second)
	}
	if string(m.Payload) != "queued canary" {
		t.Fatalf("bob got %q: his queue was touched", m.Payload)
	}
}

func TestBypassSubscriptions(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-1")
	bob.Subscribe(t, "u/bob/inbox", 1)
	alice := h.mustLogin(t, "alice", "alice-1")
	for _, filter := range []string{
		"#", "+", "$SYS/#", "+/inbox", "u/+/inbox", "u/bob/#", "u/bob/inbox", "u/#",
		"$share/g/#", "$share/g/u/bob/inbox", "$share/g/u/+/inbox", "news/#",
	} {
		ctx, cancel := ctxTimeout()
		ack, err := alice.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		cancel()
		// paho reports a refused subscription as an error along with the SUBACK.
		if ack == nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 0x87 {
			t.Errorf("subscribe %q: %+v (%v), want reason 0x87", filter, ack, err)
		}
	}
	alice.Subscribe(t, "u/alice/#", 1) // her own namespace is fine
	alice.Subscribe(t, "shared/#", 1)  // and what the ACL file grants
	sendCanary(t, h, bob)
	noCanary(t, alice)
}

func TestBypassWillAndServerTopics(t *testing.T) {
	h := startSecureHub(t, testACL)
	for i, topic := range []string{"presence/bob", "u/bob/sync", "$SYS/x", "secret/anything"} {
		_, ack, err := h.login(t, "alice", "alice-pw", fmt.Sprint("will-", i), func(cp *paho.Connect) {
			cp.WillMessage = &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("forged")}
		})
		expectRefused(t, ack, err, 0x87)
	}

	bob := h.mustLogin(t, "bob", "bob-1")
	bob.Subscribe(t, "presence/bob", 1)
	bob.Subscribe(t, "u/bob/inbox", 1)
	alice := h.mustLogin(t, "alice", "alice-1")
	ctx, cancel := ctxTimeout()
	defer cancel()
	resp, err := alice.Client.Publish(ctx, &paho.Publish{Topic: "presence/bob", QoS: 1, Payload: []byte("offline")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("publish to presence/bob: %+v (%v), want reason 0x87", resp, err)
	}
	// The forged presence never reaches bob: until a later real message,
	// he sees only the hub's own presence of him.
	root := h.mustLogin(t, "root", "root-1")
	root.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("real")})
	for {
		m := bob.Next(t, 5*time.Second)
		if m.Topic == "u/bob/inbox" && string(m.Payload) == "real" {
			break
		}
		if m.Topic != "presence/bob" || string(m.Payload) != `{"status":"online"}` {
			t.Fatalf("bob got %q on %q", m.Payload, m.Topic)
		}
	}
}

func TestBypassJWT(t *testing.T) {
	h := startSecureHub(t, testACL)
	now := time.Now()
	valid := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
	otherPub, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	_ = otherPub
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, valid).SignedString(otherKey)
	// Algorithm confusion: HS256 "signed" with the hub's public key as the
	// HMAC secret, for a hub that trusts only that (Ed25519) key.
	pubPEM, err := os.ReadFile(filepath.Join(h.dir, "jwt.pem"))
	if err != nil {
		t.Fatal(err)
	}
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, valid).SignedString(pubPEM)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","exp":9999999999}`)) + "."
	for _, tc := range []struct {
		name, user, token, clientID string
		code                        byte
	}{
		{"expired", "", h.token(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Minute).Unix()}), "j1", 0x86},
		{"not yet valid", "", h.token(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}), "j2", 0x86},
		{"alg none", "", none, "j3", 0x86},
		{"wrong key", "", wrongKey, "j4", 0x86},
		{"algorithm confusion", "", confused, "j6", 0x86},
		{"user name differs from sub", "bob", h.token(t, valid), "j5", 0x86},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ack, err := h.login(t, tc.user, tc.token, tc.clientID)
			expectRefused(t, ack, err, tc.code)
		})
	}

	bob := h.mustLogin(t, "bob", "bob-phone")
	bob.Subscribe(t, "u/bob/inbox", 1)
	// A valid token for alice does not open bob's client ID.
	_, ack, err := h.login(t, "", h.token(t, valid), "bob-phone")
	expectRefused(t, ack, err, 0x85)
	// A valid token logs alice in as alice.
	alice, _, err := h.login(t, "", h.token(t, valid), "alice-jwt")
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	alice.Subscribe(t, "u/alice/inbox", 1)
	sendCanary(t, h, bob)
	noCanary(t, alice)
}

func TestRevokedAccessStopsQueuedMessages(t *testing.T) {
	h := startSecureHub(t, testACL)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](3600)}
	}
	bob := h.mustLogin(t, "bob", "bob-news", persistent)
	bob.Subscribe(t, "news/#", 1)
	if err := bob.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	<-bob.Done()
	root := h.mustLogin(t, "root", "root-news")
	root.Publish(t, &paho.Publish{Topic: "news/today", QoS: 1, Payload: []byte("for subscribers")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// The operator takes bob's news access away and restarts.
	revoked := startSecureHub(t, "user alice\ntopic readwrite shared/#\n", func(c *broker.Config) { c.DataDir = h.Config().DataDir })
	back := revoked.mustLogin(t, "bob", "bob-news", persistent)
	back.Subscribe(t, "u/bob/inbox", 1)
	rootAgain := revoked.mustLogin(t, "root", "root-2")
	rootAgain.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("after")})
	if m := back.Next(t, 5*time.Second); string(m.Payload) != "after" {
		t.Fatalf("bob got %q on %q after his access was revoked", m.Payload, m.Topic)
	}
	if got := metric(t, revoked.Broker, "mqhub_queue_revoked_total"); got != "1" {
		t.Fatalf("mqhub_queue_revoked_total = %q, want 1", got)
	}
}

// TestDeniedSubscriptionV311 checks a refused subscription of an MQTT
// 3.1.1 client gets SUBACK 0x80 (failure), its only refusal code.
func TestDeniedSubscriptionV311(t *testing.T) {
	h := startSecureHub(t, testACL)
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60}, str("alice-v3")...)
	body = append(append(body, str("alice")...), str("alice-pw")...)
	conn := testutil.Dial(t, h.MQTTAddr())
	defer conn.Close()
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("connack %x, %v", ack, err)
	}
	for _, tc := range []struct {
		filter string
		want   byte
	}{{"u/bob/inbox", 0x80}, {"#", 0x80}, {"u/alice/inbox", 0x01}} {
		sub := append(append([]byte{0, 1}, str(tc.filter)...), 1)
		if _, err := conn.Write(append([]byte{0x82, byte(len(sub))}, sub...)); err != nil {
			t.Fatal(err)
		}
		suback := make([]byte, 5)
		if _, err := io.ReadFull(conn, suback); err != nil || suback[0] != 0x90 {
			t.Fatalf("suback %x, %v", suback, err)
		}
		if suback[4] != tc.want {
			t.Errorf("subscribe %q: return code 0x%02x, want 0x%02x", tc.filter, suback[4], tc.want)
		}
	}
}

// TestRetainedMessagesFollowReadRules: a retained message on a topic the
// subscriber may not read is not sent on subscribe, even when its filter
// covers the topic.
func TestRetainedMessagesFollowReadRules(t *testing.T) {
	h := startSecureHub(t, "user alice\ntopic readwrite shared/#\ntopic deny shared/secret\n")
	root := h.mustLogin(t, "root", "root-r")
	root.Publish(t, &paho.Publish{Topic: "shared/secret", QoS: 1, Retain: true, Payload: []byte("hidden")})
	root.Publish(t, &paho.Publish{Topic: "shared/open", QoS: 1, Retain: true, Payload: []byte("visible")})
	alice := h.mustLogin(t, "alice", "alice-r")
	alice.Subscribe(t, "shared/#", 1)
	if m := alice.Next(t, 5*time.Second); string(m.Payload) != "visible" {
		t.Fatalf("alice got %q on %q", m.Payload, m.Topic)
	}
	root.Publish(t, &paho.Publish{Topic: "shared/open", QoS: 1, Payload: []byte("live")})
	if m := alice.Next(t, 5*time.Second); string(m.Payload) != "live" {
		t.Fatalf("alice got %q on %q, want the live message (the secret retained one must not come)", m.Payload, m.Topic)
	}
}

// TestEmptyClientIDGetsAssignedOne: an MQTT 5 client without a client ID
// gets one assigned by the hub, owned by its user like any other.
func TestEmptyClientIDGetsAssignedOne(t *testing.T) {
	h := startSecureHub(t, testACL)
	c, ack, err := h.login(t, "alice", "alice-pw", "")
	if err != nil {
		t.Fatalf("connect without client ID: %v", err)
	}
	if ack.Properties == nil || ack.Properties.AssignedClientID == "" {
		t.Fatalf("no assigned client identifier in CONNACK: %+v", ack.Properties)
	}
	c.Subscribe(t, "u/alice/inbox", 1)
	owner, err := h.Store().ClientIDOwner(ack.Properties.AssignedClientID)
	if err != nil || owner != "alice" {
		t.Fatalf("owner of %q = %q, %v; want alice", ack.Properties.AssignedClientID, owner, err)
	}
	_, ack2, err := h.login(t, "bob", "bob-pw", ack.Properties.AssignedClientID)
	expectRefused(t, ack2, err, 0x85)
}
