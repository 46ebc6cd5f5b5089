package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/storage"
)

// connectV311As sends an MQTT 3.1.1 CONNECT with credentials and returns
// the CONNACK return code; the connection is closed when the test ends.
func connectV311As(t *testing.T, addr, clientID, user, password string, clean bool) (net.Conn, byte) {
	t.Helper()
	str := func(b *bytes.Buffer, v string) { b.Write([]byte{byte(len(v) >> 8), byte(len(v))}); b.WriteString(v) }
	var body bytes.Buffer
	str(&body, "MQTT")
	flags := byte(0xC0) // user name and password
	if clean {
		flags |= 0x02
	}
	body.Write([]byte{4, flags, 0, 30}) // level 4 (3.1.1), keepalive 30 s
	str(&body, clientID)
	str(&body, user)
	str(&body, password)
	var buf bytes.Buffer
	buf.WriteByte(0x10)
	for n := body.Len(); ; { // remaining length, variable byte integer
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		buf.WriteByte(b)
		if n == 0 {
			break
		}
	}
	buf.Write(body.Bytes())
	conn := testutil.Dial(t, addr)
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(buf.Bytes()); err != nil {
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

// countMessages waits until c has received want messages in all, and no
// more than that.
func countMessages(t *testing.T, c *testutil.Client, want int) {
	t.Helper()
	got := 0
	testutil.Eventually(t, 10*time.Second, func() error {
		for len(c.Messages) > 0 {
			<-c.Messages
			got++
		}
		if got != want {
			return fmt.Errorf("%d messages received, want %d", got, want)
		}
		return nil
	})
}

// TestLimitUserPublishRate is the attack of issue 12 (item 10): one user
// floods another user's inbox, from several connections, to fill her
// queue. With the default per-user rate (50 msg/s, burst 1000) a burst of
// 500 messages at once, as a phone flushing its outbox, passes untouched;
// the flood after it is refused on every connection of the user (QoS 1:
// PUBACK 0x96; QoS 0: dropped, the connection stays), and other users are
// not slowed.
func TestLimitUserPublishRate(t *testing.T) {
	h := startSecureHub(t, testACL)
	bob := h.mustLogin(t, "bob", "bob-phone")
	bob.Subscribe(t, "u/bob/inbox", 1)
	phone := h.mustLogin(t, "alice", "alice-phone")
	laptop := h.mustLogin(t, "alice", "alice-laptop")

	const burst = 500
	start := time.Now()
	codes := make(chan byte, burst)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range burst / 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := phone.Client.Publish(ctx, &paho.Publish{Topic: "u/bob/inbox", QoS: 1, Payload: []byte("outbox")})
				cancel()
				if resp == nil {
					t.Errorf("publish: %v", err)
					codes <- 0xFF
					continue
				}
				codes <- resp.ReasonCode
			}
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 0 {
			t.Fatalf("a message of the burst got reason 0x%02x, want all %d accepted", code, burst)
		}
	}
	countMessages(t, bob, burst)

	// The flood: 2,000 QoS 0 messages from the laptop. The hub reads one
	// connection's packets in order, so the PUBACK of the QoS 1 message
	// after them comes once all were taken or dropped.
	const flood = 2000
	for range flood {
		if _, err := laptop.Client.Publish(context.Background(), &paho.Publish{Topic: "u/bob/inbox", Payload: []byte("flood")}); err != nil {
			t.Fatalf("QoS 0 publish: %v", err)
		}
	}
	if code := limPublish(t, laptop, "u/bob/inbox", 1, []byte("more")); code != 0x96 {
		t.Fatalf("QoS 1 after the flood: reason 0x%02x, want 0x96 message rate too high", code)
	}
	// The bucket is the user's, not the connection's: the phone sent 600
	// in all, less than one bucket, and is refused after the laptop's
	// flood (100 messages are 2 s of refill).
	for range 100 {
		if _, err := phone.Client.Publish(context.Background(), &paho.Publish{Topic: "u/bob/inbox", Payload: []byte("flood")}); err != nil {
			t.Fatalf("QoS 0 publish: %v", err)
		}
	}
	if code := limPublish(t, phone, "u/bob/inbox", 1, []byte("more")); code != 0x96 {
		t.Fatalf("QoS 1 from alice's other device: reason 0x%02x, want 0x96", code)
	}
	elapsed := time.Since(start).Seconds()
	// At most the rest of the bucket and its refill got through.
	const sent = flood + 1 + 100 + 1
	if got, least := limitRefusals(t, h.Broker, "user_publish_rate"), sent-(1000-burst)-int(50*elapsed)-1; got < least || got > sent {
		t.Fatalf("user_publish_rate refusals = %d, want between %d and %d", got, least, sent)
	}
	// Other users are not limited by alice's flood.
	if code := limPublish(t, bob, "u/alice/inbox", 1, []byte("hi")); code != 0 {
		t.Fatalf("bob's message refused: 0x%02x", code)
	}
}

// TestLimitUserPublishRateAnswers checks every answer of the per-user rate
// on a small bucket: PUBREC 0x96 for QoS 2, admins exempt, 3.1.1 clients
// disconnected (they have no negative acknowledgement).
func TestLimitUserPublishRateAnswers(t *testing.T) {
	h := startSecureHub(t, testACL, func(c *broker.Config) { c.UserPublishRate, c.UserPublishBurst = 1, 5 })
	alice := h.mustLogin(t, "alice", "alice-1")
	start := time.Now()
	accepted, code := 0, byte(0)
	for range 20 {
		if code = limPublish(t, alice, "u/bob/inbox", 1, []byte("m")); code != 0 {
			break
		}
		accepted++
	}
	if code != 0x96 {
		t.Fatalf("PUBACK reason 0x%02x after %d messages, want 0x96", code, accepted)
	}
	if most := 5 + int(time.Since(start).Seconds()) + 1; accepted < 5 || accepted > most {
		t.Fatalf("%d messages accepted, want between 5 and %d", accepted, most)
	}
	for range 5 {
		if code = limPublish(t, alice, "u/bob/inbox", 2, []byte("m")); code != 0 {
			break
		}
	}
	if code != 0x96 {
		t.Fatalf("PUBREC reason 0x%02x, want 0x96", code)
	}

	// Admins (operators, the hub's own services) are exempt.
	root := h.mustLogin(t, "root", "root-1")
	for i := range 20 {
		if code := limPublish(t, root, "u/bob/inbox", 1, []byte("notice")); code != 0 {
			t.Fatalf("admin's message %d refused: 0x%02x", i+1, code)
		}
	}

	// 3.1.1: the same user's bucket is empty, the connection is closed.
	conn, rc := connectV311As(t, h.MQTTAddr(), "alice-v3", "alice", "alice-pw", true)
	if rc != 0 {
		t.Fatalf("3.1.1 CONNACK return code %d", rc)
	}
	var flood bytes.Buffer
	for i := range 10 {
		// PUBLISH QoS 1 to u/bob/inbox, packet ID i+1, payload "m".
		flood.Write([]byte{0x32, 2 + 11 + 2 + 1, 0, 11, 'u', '/', 'b', 'o', 'b', '/', 'i', 'n', 'b', 'o', 'x', 0, byte(i + 1), 'm'})
	}
	if _, err := conn.Write(flood.Bytes()); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, 5*time.Second)
}

// persistentAs connects user's device clientID with a persistent MQTT 5
// session (clean start off, expiry 3600 s) and returns the CONNACK.
func persistentAs(t *testing.T, h *secureHub, user, clientID string, expiry uint32) (*testutil.Client, *paho.Connack, error) {
	t.Helper()
	return h.login(t, user, user+"-pw", clientID, func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: ptr(expiry)}
	})
}

// TestLimitSessionsPerUser is the attack of issue 12 (item 10): a user
// creating persistent sessions without end, each of which stores a copy of
// every message to her. With the cap at 3: a 4th persistent session is
// refused (MQTT 5: CONNACK 0x97; 3.1.1: 3), clean sessions and resuming a
// held session still work, the count survives a restart, and once a
// session is removed (clean start with expiry 0, or expiry) a new one is
// allowed.
func TestLimitSessionsPerUser(t *testing.T) {
	capAt3 := func(c *broker.Config) { c.MaxSessionsPerUser = 3 }
	h := startSecureHub(t, testACL, capAt3)
	for _, id := range []string{"alice-1", "alice-2", "alice-3"} {
		c, _, err := persistentAs(t, h, "alice", id, 3600)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if id != "alice-3" {
			offline(t, c)
		}
	}
	_, ack, err := persistentAs(t, h, "alice", "alice-4", 3600)
	expectRefused(t, ack, err, 0x97)
	if _, rc := connectV311As(t, h.MQTTAddr(), "alice-v3", "alice", "alice-pw", false); rc != 3 {
		t.Fatalf("3.1.1 persistent session: CONNACK return code %d, want 3 server unavailable", rc)
	}
	// Clean sessions cost no storage: always allowed.
	h.mustLogin(t, "alice", "alice-clean")
	if _, rc := connectV311As(t, h.MQTTAddr(), "alice-v3", "alice", "alice-pw", true); rc != 0 {
		t.Fatalf("3.1.1 clean session: CONNACK return code %d", rc)
	}
	// Resuming a held session is always allowed, and other users are not
	// counted with alice.
	c, ack, err := persistentAs(t, h, "alice", "alice-1", 3600)
	if err != nil || !ack.SessionPresent {
		t.Fatalf("resuming alice-1: %v (connack %+v)", err, ack)
	}
	offline(t, c)
	if _, _, err := persistentAs(t, h, "bob", "bob-1", 3600); err != nil {
		t.Fatalf("bob's session: %v", err)
	}
	// Concurrent CONNECTs cannot all take the last places: bob holds one,
	// of 5 at once exactly 2 get in. (JWT logins: no password check to
	// wait for.)
	token := h.token(t, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
	admitted := make(chan bool, 5)
	for i := range 5 {
		go func() {
			cp := &paho.Connect{ClientID: fmt.Sprintf("bob-racer-%d", i), KeepAlive: 30, PasswordFlag: true, Password: []byte(token),
				Properties: &paho.ConnectProperties{SessionExpiryInterval: ptr[uint32](3600)}}
			c, ack, err := testutil.TryConnect(testutil.Dial(t, h.MQTTAddr()), cp)
			if err == nil {
				t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); <-c.Done() })
			} else if ack == nil || ack.ReasonCode != 0x97 {
				t.Errorf("connack %+v (%v), want 0x97", ack, err)
			}
			admitted <- err == nil
		}()
	}
	n := 0
	for range 5 {
		if <-admitted {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d of 5 concurrent new sessions admitted with 2 places left", n)
	}
	if got := limitRefusals(t, h.Broker, "sessions_per_user"); got != 2+3 {
		t.Fatalf("sessions_per_user refusals = %d, want 5", got)
	}

	// The stored sessions still count after a restart.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	dir := h.Config().DataDir
	h = startSecureHub(t, testACL, capAt3, func(c *broker.Config) { c.DataDir = dir })
	_, ack, err = persistentAs(t, h, "alice", "alice-4", 3600)
	expectRefused(t, ack, err, 0x97)

	// alice-2 ends its session (clean start, expiry 0): a place is free.
	c, _, err = h.login(t, "alice", "alice-pw", "alice-2")
	if err != nil {
		t.Fatal(err)
	}
	offline(t, c)
	c, _, err = persistentAs(t, h, "alice", "alice-4", 1)
	if err != nil {
		t.Fatalf("alice-4 after alice-2 ended: %v", err)
	}
	// alice-4's session expires a second after it disconnects: then a new
	// one is allowed again.
	offline(t, c)
	testutil.Eventually(t, 10*time.Second, func() error {
		c, ack, err := persistentAs(t, h, "alice", "alice-5", 3600)
		if err != nil {
			return fmt.Errorf("alice-5: %v (connack %+v)", err, ack)
		}
		offline(t, c)
		return nil
	})
}

// heldChecks is a password check for WithPasswordCheck that counts the
// checks and holds each one until release is called. The guesses' password
// ("guess") is refused without bcrypt: the unknown users' dummy hash costs
// 10, seconds per check under the race detector.
type heldChecks struct {
	entered atomic.Int64
	gate    chan struct{}
	once    sync.Once
}

func newHeldChecks() *heldChecks { return &heldChecks{gate: make(chan struct{})} }

func (c *heldChecks) check(hash, password []byte) bool {
	c.entered.Add(1)
	<-c.gate
	return string(password) != "guess" && storage.CheckPassword(hash, password)
}

func (c *heldChecks) release() { c.once.Do(func() { close(c.gate) }) }

// guessMQTT sends an MQTT 5 CONNECT as user with a wrong password from the
// local address from (nil: any) and returns the CONNACK reason code (0xFF:
// none within 30 s).
func guessMQTT(addr string, from net.Addr, user, clientID string) byte {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second, LocalAddr: from}).Dial("tcp", addr)
	if err != nil {
		return 0xFF
	}
	defer conn.Close()
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.CleanStart, c.KeepAlive = "MQTT", 5, clientID, true, 30
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, user, true, []byte("guess")
	if _, err := cp.WriteTo(conn); err != nil {
		return 0xFF
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	ack, err := packets.ReadPacket(conn)
	if err != nil || ack.Type != packets.CONNACK {
		return 0xFF
	}
	return ack.Content.(*packets.Connack).ReasonCode
}

// guessHTTP sends a user API request as user with a wrong password and
// returns the HTTP status (0: none).
func guessHTTP(addr, user string) int {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/me/settings", nil)
	if err != nil {
		return 0
	}
	req.SetBasicAuth(user, "guess")
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestLoginGuessingBounded is the attack of issue 12 (item 10): 60 MQTT
// CONNECTs and 60 HTTP requests with wrong passwords in parallel from one
// IP. The password checks are held (WithPasswordCheck) so that all of them
// are in flight together: exactly --max-password-checks-per-ip (4) run,
// the other 116 are refused at once without a check (CONNACK 0x9F
// connection rate exceeded, HTTP 429), and those 4 get the usual refusal
// once their checks end. Each check's place is held through its failure
// delay, so one IP gets at most 4 checks per delay (docs/security.md).
func TestLoginGuessingBounded(t *testing.T) {
	checks := newHeldChecks()
	h := startSecureHub(t, testACL, broker.WithPasswordCheck(checks.check))
	t.Cleanup(checks.release)

	const each = 60
	mqttCodes, httpCodes := make(chan byte, each), make(chan int, each)
	for i := range each {
		go func() {
			mqttCodes <- guessMQTT(h.MQTTAddr(), nil, fmt.Sprintf("guess-m%d", i), fmt.Sprintf("guess-m%d", i))
		}()
		go func() { httpCodes <- guessHTTP(h.HTTPAddr(), fmt.Sprintf("guess-h%d", i)) }()
	}
	// Wait for the answers that need no check: 116 of 120.
	mqttBusy, httpBusy := 0, 0
	deadline := time.After(20 * time.Second)
	for mqttBusy+httpBusy < 2*each-4 {
		select {
		case code := <-mqttCodes:
			if code != 0x9F {
				t.Fatalf("MQTT guess answered 0x%02x while 4 checks are held, want 0x9F connection rate exceeded", code)
			}
			mqttBusy++
		case status := <-httpCodes:
			if status != http.StatusTooManyRequests {
				t.Fatalf("HTTP guess answered %d while 4 checks are held, want 429", status)
			}
			httpBusy++
		case <-deadline:
			t.Fatalf("only %d MQTT and %d HTTP guesses refused unchecked (%d checks entered)", mqttBusy, httpBusy, checks.entered.Load())
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := checks.entered.Load(); n != 4 {
			return fmt.Errorf("%d password checks in flight, want 4", n)
		}
		return nil
	})
	checks.release()
	for range 4 {
		select {
		case code := <-mqttCodes:
			if code != 0x86 {
				t.Fatalf("checked MQTT guess answered 0x%02x, want 0x86", code)
			}
		case status := <-httpCodes:
			if status != http.StatusUnauthorized {
				t.Fatalf("checked HTTP guess answered %d, want 401", status)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the checked guesses got no answer")
		}
	}
	if got := metric(t, h.Broker, "mqhub_password_checks_total"); got != "4" {
		t.Fatalf("mqhub_password_checks_total = %s, want 4", got)
	}
	if got := limitRefusals(t, h.Broker, "password_checks_per_ip"); got != 2*each-4 {
		t.Fatalf("password_checks_per_ip refusals = %d, want %d", got, 2*each-4)
	}
	// Nothing stays taken: the right password gets in.
	h.mustLogin(t, "alice", "alice-1")
}

// TestLoginGuessingPerUser: guesses at one user name from many IPs (here
// six loopback addresses) run at most --max-password-checks-per-user (2)
// checks at once; the others get 0x9F unchecked.
func TestLoginGuessingPerUser(t *testing.T) {
	checks := newHeldChecks()
	h := startSecureHub(t, testACL, broker.WithPasswordCheck(checks.check))
	t.Cleanup(checks.release)
	codes := make(chan byte, 6)
	for i := range 6 {
		from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(11+i))}
		go func() { codes <- guessMQTT(h.MQTTAddr(), from, "alice", fmt.Sprintf("guess-%d", i)) }()
	}
	for range 4 {
		select {
		case code := <-codes:
			if code != 0x9F {
				t.Fatalf("guess answered 0x%02x while 2 checks of alice are held, want 0x9F", code)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("fewer than 4 guesses refused unchecked (%d checks entered)", checks.entered.Load())
		}
	}
	if n := checks.entered.Load(); n != 2 {
		t.Fatalf("%d checks of alice in flight, want 2", n)
	}
	checks.release()
	for range 2 {
		if code := <-codes; code != 0x86 {
			t.Fatalf("checked guess answered 0x%02x, want 0x86", code)
		}
	}
	if got := limitRefusals(t, h.Broker, "password_checks_per_user"); got != 4 {
		t.Fatalf("password_checks_per_user refusals = %d, want 4", got)
	}
	h.mustLogin(t, "alice", "alice-1")
}
