package broker_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// frame builds an MQTT packet: the first byte, the remaining length, the
// body.
func frame(first byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	out := []byte{first}
	n := len(b)
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			break
		}
	}
	return append(out, b...)
}

// mqttString is a length-prefixed string or binary value.
func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

// halfConnect is the start of an MQTT 5 CONNECT announcing claimed bytes:
// the fixed header and the protocol name and version, nothing more.
func halfConnect(claimed int) []byte {
	head := frame(0x10, make([]byte, claimed))
	return append(head[:len(head)-claimed], append(mqttString("MQTT"), 5)...)
}

// readAll reads what the hub sends until it closes the connection.
func readAll(t *testing.T, conn net.Conn) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 256)
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("connection not closed within 5s (read % x)", got)
			}
			return got // EOF or reset: closed by the hub
		}
	}
}

// The attack of issue 12 item 4: many connections each sending the start
// of a large CONNECT and then nothing. Past the per-IP limit they are
// closed at accept; those admitted cost what they sent, not what they
// claimed.
func TestHalfConnectsCostWhatTheySent(t *testing.T) {
	const (
		n       = 200
		limit   = 50
		claimed = 1_000_000
	)
	b := testutil.StartHub(t, func(c *broker.Config) {
		c.MaxConnectionsPerIP = limit
		c.MaxConnectSize = 1 * broker.MiB // the claims are allowed: only their bytes are missing
		c.ConnectTimeout = time.Minute
		c.LogLevel = "info"
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, n)
	for range n {
		c := testutil.Dial(t, b.MQTTAddr())
		t.Cleanup(func() { c.Close() })
		_, _ = c.Write(halfConnect(claimed))
		conns = append(conns, c)
	}
	// Every connection past the limit is closed without a byte sent back.
	refused := 0
	for _, c := range conns[limit:] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if k, err := c.Read(make([]byte, 8)); k == 0 && err != nil && !isTimeout(err) {
			refused++
		}
	}
	if refused != n-limit {
		t.Fatalf("%d of the %d connections past the limit closed, want all", refused, n-limit)
	}
	// The admitted ones are open, each with the goroutine that reads its
	// CONNECT; their 12 bytes were in the socket before it was accepted.
	testutil.Eventually(t, 10*time.Second, func() error {
		if g := runtime.NumGoroutine(); g < goroutines+limit {
			return fmt.Errorf("%d goroutines, want at least %d", g, goroutines+limit)
		}
		return nil
	})
	for _, c := range conns[:limit] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 8)); !isTimeout(err) {
			t.Fatalf("an admitted half-CONNECT was answered or closed: %v", err)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// Claimed: 50 MB by the admitted ones, 200 MB in all. Allocated at the
	// claim, that would show; the bytes sent are 12 each.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB for %d half-CONNECTs claiming %d bytes each", grown>>20, limit, claimed)
	}
	if got := metric(t, b, `mqhub_connection_errors_total{reason="connections_per_ip"}`); got != fmt.Sprint(n-limit) {
		t.Fatalf(`connection_errors{reason="connections_per_ip"} = %s, want %d`, got, n-limit)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestConnectOverMaxConnectSize(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" }) // max-connect-size 8 KiB

	// MQTT 5, the version readable with the header: CONNACK 0x95, closed.
	c := testutil.Dial(t, b.MQTTAddr())
	defer c.Close()
	if _, err := c.Write(halfConnect(100_000)); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, c)
	if len(got) < 4 || got[0] != 0x20 || got[3] != 0x95 {
		t.Fatalf("got % x, want CONNACK 0x95", got)
	}
	// The fixed header alone, and MQTT 3.1.1 (no such reason code): closed
	// without an answer.
	v311 := halfConnect(100_000)
	v311[len(v311)-1] = 4
	for _, stream := range [][]byte{{0x10, 0xa0, 0x8d, 0x06}, v311} {
		c := testutil.Dial(t, b.MQTTAddr())
		defer c.Close()
		if _, err := c.Write(stream); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, c); len(got) > 0 {
			t.Fatalf("% x answered with % x, want a close", stream, got)
		}
	}
	if got := metric(t, b, `mqhub_connection_errors_total{reason="packet_too_large"}`); got != "3" {
		t.Fatalf("packet_too_large = %s, want 3", got)
	}
}

// A real CONNECT with a long JWT password (4 KB, as identity providers
// issue with many roles) fits the default maximum CONNECT size.
func TestLongJWTConnectFits(t *testing.T) {
	h := startSecureHub(t, testACL)
	token := h.token(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"roles": strings.Repeat("role-", 600)})
	if len(token) < 4000 {
		t.Fatalf("token of %d bytes, want 4 KB", len(token))
	}
	c, ack, err := h.login(t, "", token, "alice-jwt", func(cp *paho.Connect) {
		cp.Properties = &paho.ConnectProperties{User: paho.UserProperties{{Key: "device", Value: "phone"}}}
	})
	if err != nil {
		t.Fatalf("CONNECT with a %d-byte JWT refused: %v (%+v)", len(token), err, ack)
	}
	_ = c
}
