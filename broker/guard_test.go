package broker_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

// rawConnect opens a TCP connection, sends CONNECT (MQTT 5 unless
// version says otherwise) and reads the CONNACK.
func rawConnect(t testing.TB, addr string, c *packets.Connect) net.Conn {
	t.Helper()
	conn := testutil.Dial(t, addr)
	t.Cleanup(func() { conn.Close() })
	if c.ProtocolName == "" {
		c.ProtocolName, c.ProtocolVersion = "MQTT", 5
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	cp.Content = c
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read connack: %v", err)
	}
	if ca, ok := ack.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		t.Fatalf("connect refused: %v", ack)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}

// waitClosed fails the test unless the hub closes conn within timeout.
func waitClosed(t testing.TB, conn net.Conn, timeout time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue // a DISCONNECT or CONNACK may come first
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", timeout)
		}
		return // EOF or reset: closed by the hub
	}
}

func metric(t testing.TB, b *broker.Broker, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// truncatedSubscribeV5 is mochi issue #501: an MQTT 5 SUBSCRIBE whose topic
// filter is not followed by its subscription options byte. Stock mochi
// v2.7.9 indexes past the buffer and the whole process dies.
var truncatedSubscribeV5 = []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'}

func TestTruncatedSubscribeCrashesOnlyItsConnection(t *testing.T) {
	b := testutil.StartHub(t)
	bystander := connect(t, b, "bystander")
	bystander.Subscribe(t, "wills/#", 1)

	attacker := rawConnect(t, b.MQTTAddr(), &packets.Connect{
		ClientID: "attacker", CleanStart: true, KeepAlive: 30,
		WillFlag: true, WillTopic: "wills/attacker", WillMessage: []byte("crashed"), WillQOS: 1,
	})
	if _, err := attacker.Write(truncatedSubscribeV5); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, attacker, 5*time.Second)

	testutil.Eventually(t, 5*time.Second, func() error {
		if n := b.DecoderPanics(); n != 1 {
			return fmt.Errorf("decoder panics = %d, want 1", n)
		}
		return nil
	})
	// The crashed session gets the cleanup mochi skipped: its will is sent.
	if m := bystander.Next(t, 5*time.Second); string(m.Payload) != "crashed" {
		t.Fatalf("got %q, want the attacker's will", m.Payload)
	}
	// The hub keeps serving: old and new clients still exchange messages,
	// and the attacker's client ID can be used again.
	bystander.Subscribe(t, "after", 1)
	newcomer := connect(t, b, "attacker")
	newcomer.Publish(t, &paho.Publish{Topic: "after", QoS: 1, Payload: []byte("still here")})
	if m := bystander.Next(t, 5*time.Second); string(m.Payload) != "still here" {
		t.Fatalf("got %q after the crash", m.Payload)
	}
	if got := metric(t, b, `mqhub_connection_errors_total{reason="decoder_panic"}`); got != "1" {
		t.Fatalf("decoder_panic counter = %q, want 1", got)
	}
}

func TestSilentConnectionsClosedAfterConnectTimeout(t *testing.T) {
	const n = 2000
	timeout := 500 * time.Millisecond
	b := testutil.StartHub(t, func(c *broker.Config) { c.ConnectTimeout = timeout; c.LogLevel = "info" })
	baseline := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, n)
	for i := range n {
		c := testutil.Dial(t, b.MQTTAddr())
		if i%2 == 1 {
			_, _ = c.Write([]byte{0x10}) // half a fixed header, then silence
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		waitClosed(t, c, timeout+10*time.Second)
		c.Close()
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := metric(t, b, `mqhub_connection_errors_total{reason="connect_timeout"}`); got != fmt.Sprint(n) {
			return fmt.Errorf("connect_timeout counter = %s, want %d", got, n)
		}
		// Goroutines of the closed connections are gone (the HTTP client
		// used above may keep a couple of its own).
		if g := runtime.NumGoroutine(); g > baseline+20 {
			return fmt.Errorf("%d goroutines, baseline %d", g, baseline)
		}
		return nil
	})
}

func TestOversizedPacketRefusedBeforeAllocation(t *testing.T) {
	b := testutil.StartHub(t)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// CONNECT fixed headers announcing 256 MiB each: read in full, these
	// would cost 5 GiB. The default 1 MiB limit refuses them from the header.
	for range 20 {
		c := testutil.Dial(t, b.MQTTAddr())
		if _, err := c.Write([]byte{0x10, 0xFF, 0xFF, 0xFF, 0x7F}); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c, 5*time.Second)
		c.Close()
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapSys) - int64(before.HeapSys); grown > 256<<20 {
		t.Fatalf("heap grew by %d MiB for refused packets", grown>>20)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := metric(t, b, `mqhub_connection_errors_total{reason="packet_too_large"}`); got != "20" {
			return fmt.Errorf("packet_too_large counter = %q, want 20", got)
		}
		return nil
	})

	// An established client that sends a publish over the limit is cut off.
	small := testutil.StartHub(t, func(c *broker.Config) { c.MaxPacketSize = 1 * broker.KiB })
	conn := rawConnect(t, small.MQTTAddr(), &packets.Connect{ClientID: "big", CleanStart: true, KeepAlive: 30})
	pub := packets.NewControlPacket(packets.PUBLISH)
	pub.Content.(*packets.Publish).Topic = "big"
	pub.Content.(*packets.Publish).Payload = bytes.Repeat([]byte("x"), 2048)
	if _, err := pub.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, 5*time.Second)
}
