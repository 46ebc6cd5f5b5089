package broker_test

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/internal/wire"
)

// connectKeepalive sends an anonymous clean CONNECT asking for keepalive seconds
// (protocol 4: MQTT 3.1.1, 5: MQTT 5) and reads the CONNACK. It returns the
// connection and the CONNACK's Server Keep Alive, or -1 when absent.
func connectKeepalive(t *testing.T, addr string, protocol byte, clientID string, keepalive uint16) (net.Conn, int) {
	t.Helper()
	body := wire.AppendString(nil, "MQTT")
	body = append(body, protocol, 0x02) // clean start
	body = binary.BigEndian.AppendUint16(body, keepalive)
	if protocol == 5 {
		body = append(body, 0) // no properties
	}
	body = wire.AppendString(body, clientID)
	conn := testutil.Dial(t, addr)
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(append(wire.AppendVarint([]byte{0x10}, len(body)), body...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	if protocol != 5 {
		ack := make([]byte, 4)
		if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("3.1.1 CONNACK %x, %v", ack, err)
		}
		return conn, -1
	}
	pk, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	ack, ok := pk.Content.(*packets.Connack)
	if !ok || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %v", pk)
	}
	if ack.Properties == nil || ack.Properties.ServerKeepAlive == nil {
		return conn, -1
	}
	return conn, int(*ack.Properties.ServerKeepAlive)
}

// TestMaxKeepalive: with --max-keepalive 1s, an MQTT 5 client asking for a
// longer keep-alive or for none gets Server Keep Alive 1 in its CONNACK,
// one asking for less keeps its own; and a client that then stays silent,
// MQTT 5 or 3.1.1, is disconnected (mochi's deadline is keep-alive plus
// half of it in whole seconds: 1 s here), where without the cap the hub
// would have waited 90 s or forever.
func TestMaxKeepalive(t *testing.T) {
	hub := testutil.StartHub(t, func(c *broker.Config) { c.MaxKeepalive = time.Second })
	addr := hub.MQTTAddr()

	for _, tc := range []struct {
		name      string
		protocol  byte
		keepalive uint16
		want      int // Server Keep Alive, -1: absent
	}{
		{"v5 asks 60s", 5, 60, 1},
		{"v5 asks none", 5, 0, 1},
		{"v3.1.1 asks 60s", 4, 60, -1},
		{"v3.1.1 asks none", 4, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, got := connectKeepalive(t, addr, tc.protocol, "silent-"+tc.name, tc.keepalive)
			if got != tc.want {
				t.Fatalf("Server Keep Alive %d, want %d (-1: absent)", got, tc.want)
			}
			waitClosed(t, conn, 10*time.Second) // silent: no PINGREQ, nothing
		})
	}

	// Under the cap the client's own keep-alive stands: no property.
	conn, got := connectKeepalive(t, addr, 5, "within-cap", 1)
	if got != -1 {
		t.Fatalf("client asking for the cap got Server Keep Alive %d, want none", got)
	}
	conn.Close()
}

// TestNoMaxKeepaliveByDefault: without the option the client's keep-alive
// stands, 0 included (the CONNACK carries no Server Keep Alive).
func TestNoMaxKeepaliveByDefault(t *testing.T) {
	hub := testutil.StartHub(t)
	for _, ka := range []uint16{0, 65535} {
		if _, got := connectKeepalive(t, hub.MQTTAddr(), 5, "free", ka); got != -1 {
			t.Fatalf("keep-alive %d: Server Keep Alive %d, want none", ka, got)
		}
	}
}
