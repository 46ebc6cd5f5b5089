package broker_test

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// props is an MQTT 5 property list: its length, then the properties.
func props(p ...byte) []byte { return append([]byte{byte(len(p))}, p...) }

// expectDisconnect reads until the hub's DISCONNECT, checks its reason
// code, and that the hub then closes the connection.
func expectDisconnect(t *testing.T, conn net.Conn, code byte) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		pk, err := packets.ReadPacket(conn)
		if err != nil {
			t.Fatalf("no DISCONNECT 0x%02x: %v", code, err)
		}
		if d, ok := pk.Content.(*packets.Disconnect); ok {
			if d.ReasonCode != code {
				t.Fatalf("DISCONNECT 0x%02x, want 0x%02x", d.ReasonCode, code)
			}
			break
		}
	}
	waitClosed(t, conn, 5*time.Second)
}

// readAck reads the next packet, which must be a PUBACK or PUBREC, and
// returns its type and reason code.
func readAck(t *testing.T, conn net.Conn) (byte, byte) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	pk, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read ack: %v", err)
	}
	switch a := pk.Content.(type) {
	case *packets.Puback:
		return packets.PUBACK, a.ReasonCode
	case *packets.Pubrec:
		return packets.PUBREC, a.ReasonCode
	}
	t.Fatalf("got %v, want PUBACK or PUBREC", pk)
	return 0, 0
}

// stillServing checks that the hub delivers between two other clients.
func stillServing(t *testing.T, b *broker.Broker, sub *testutil.Client, topic string) {
	t.Helper()
	pub := connect(t, b, "bystander-pub-"+strings.ReplaceAll(topic, "/", "-"))
	pub.Publish(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("still here")})
	if m := sub.Next(t, 5*time.Second); string(m.Payload) != "still here" {
		t.Fatalf("bystander got %q", m.Payload)
	}
}

// MQTT 5 protocol errors that mochi's decoder loses (it keeps the last of
// a repeated property and ignores reserved option bits) are answered with
// DISCONNECT and the right reason code; the hub serves everyone else.
func TestProtocolErrorsAnswered(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" })
	sub := connect(t, b, "bystander")
	sub.Subscribe(t, "p/#", 1)

	valid := frame(0x30, mqttString("p/ok"), props(), []byte("fine"))
	for i, tc := range []struct {
		name   string
		stream []byte
		code   byte
		split  bool // written one byte at a time
	}{
		{"PUBLISH with two Message Expiry Intervals",
			frame(0x32, mqttString("p/a"), []byte{0, 1}, props(0x02, 0, 0, 0, 10, 0x02, 0, 0, 0, 20), []byte("x")), 0x82, false},
		{"PUBLISH with two Topic Aliases",
			frame(0x30, mqttString("p/a"), props(0x23, 0, 1, 0x23, 0, 2), []byte("x")), 0x82, false},
		{"PUBLISH with two Content Types among user properties",
			frame(0x30, mqttString("p/a"), props(0x26, 0, 1, 'k', 0, 1, 'v', 0x03, 0, 1, 'a', 0x26, 0, 1, 'k', 0, 1, 'v', 0x03, 0, 1, 'b'), []byte("x")), 0x82, false},
		{"PUBLISH with two Message Expiry Intervals after a valid one, a byte per write",
			append(append([]byte{}, valid...), frame(0x32, mqttString("p/a"), []byte{0, 2}, props(0x02, 0, 0, 0, 10, 0x02, 0, 0, 0, 20), []byte("x"))...), 0x82, true},
		{"SUBSCRIBE with reserved option bits",
			frame(0x82, []byte{0, 1}, props(), mqttString("p/x"), []byte{0xc1}), 0x81, false},
		{"SUBSCRIBE with subscription identifier 0",
			frame(0x82, []byte{0, 1}, props(0x0b, 0x00), mqttString("p/x"), []byte{0x01}), 0x82, false},
		{"SUBSCRIBE with two subscription identifiers",
			frame(0x82, []byte{0, 1}, props(0x0b, 0x01, 0x0b, 0x02), mqttString("p/x"), []byte{0x01}), 0x82, false},
		{"SUBSCRIBE with retain handling 3",
			frame(0x82, []byte{0, 1}, props(), mqttString("p/x"), []byte{0x31}), 0x82, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := rawConnect(t, b.MQTTAddr(), &packets.Connect{ClientID: fmt.Sprintf("faulty-%d", i), CleanStart: true, KeepAlive: 30})
			if tc.split {
				for j := range tc.stream {
					if _, err := conn.Write(tc.stream[j : j+1]); err != nil {
						t.Fatal(err)
					}
				}
			} else if _, err := conn.Write(tc.stream); err != nil {
				t.Fatal(err)
			}
			expectDisconnect(t, conn, tc.code)
		})
	}
	// The valid PUBLISH before the faulty one went through; the faulty
	// ones did not.
	if m := sub.Next(t, 5*time.Second); m.Topic != "p/ok" {
		t.Fatalf("bystander got %q on %s, want only the valid message", m.Payload, m.Topic)
	}
	stillServing(t, b, sub, "p/after")
	if got := metric(t, b, `mqhub_connection_errors_total{reason="protocol_error"}`); got != "7" {
		t.Fatalf("protocol_error = %s, want 7", got)
	}
	if got := metric(t, b, `mqhub_connection_errors_total{reason="malformed_packet"}`); got != "1" {
		t.Fatalf("malformed_packet = %s, want 1", got)
	}

	// A CONNECT with two Session Expiry Intervals: CONNACK 0x82, closed.
	conn := testutil.Dial(t, b.MQTTAddr())
	defer conn.Close()
	connect := frame(0x10, mqttString("MQTT"), []byte{5, 0x02, 0, 30},
		props(0x11, 0, 0, 0, 10, 0x11, 0, 0, 0, 20), mqttString("dup-expiry"))
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, conn); len(got) < 4 || got[0] != 0x20 || got[3] != 0x82 {
		t.Fatalf("got % x, want CONNACK 0x82", got)
	}
	stillServing(t, b, sub, "p/after-connect")
}

// A payload announced as UTF-8 that is not: QoS 1 and 2 are refused with
// 0x99 payload format invalid, QoS 0 is dropped; the connection stays and
// nothing is delivered.
func TestInvalidUTF8PayloadRefused(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.LogLevel = "info" })
	sub := connect(t, b, "reader")
	sub.Subscribe(t, "f/#", 2)
	conn := rawConnect(t, b.MQTTAddr(), &packets.Connect{ClientID: "writer", CleanStart: true, KeepAlive: 30})

	bad := []byte{'o', 'k', 0xff, 0xfe}
	format := props(0x01, 1)
	write := func(p []byte) {
		t.Helper()
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	write(frame(0x30, mqttString("f/q0"), format, bad))
	write(frame(0x32, mqttString("f/q1"), []byte{0, 1}, format, bad))
	if typ, code := readAck(t, conn); typ != packets.PUBACK || code != 0x99 {
		t.Fatalf("QoS 1: ack type %d code 0x%02x, want PUBACK 0x99", typ, code)
	}
	write(frame(0x34, mqttString("f/q2"), []byte{0, 2}, format, bad))
	if typ, code := readAck(t, conn); typ != packets.PUBREC || code != 0x99 {
		t.Fatalf("QoS 2: ack type %d code 0x%02x, want PUBREC 0x99", typ, code)
	}
	// Valid UTF-8 with the indicator, and invalid bytes without it, pass.
	write(frame(0x32, mqttString("f/good"), []byte{0, 3}, format, []byte("héllo")))
	if _, code := readAck(t, conn); code != 0 {
		t.Fatalf("valid UTF-8: PUBACK 0x%02x", code)
	}
	write(frame(0x32, mqttString("f/binary"), []byte{0, 4}, props(), bad))
	if _, code := readAck(t, conn); code != 0 {
		t.Fatalf("binary payload: PUBACK 0x%02x", code)
	}
	for _, want := range []string{"f/good", "f/binary"} {
		if m := sub.Next(t, 5*time.Second); m.Topic != want {
			t.Fatalf("reader got %q on %s, want %s", m.Payload, m.Topic, want)
		}
	}
}

// A connected client sending a packet over max-packet-size: MQTT 5 gets
// DISCONNECT 0x95, 3.1.1 is closed; both are counted; the hub serves on.
func TestOversizedPacketFromSession(t *testing.T) {
	b := testutil.StartHub(t, func(c *broker.Config) { c.MaxPacketSize = 1 * broker.KiB; c.LogLevel = "info" })
	sub := connect(t, b, "bystander")
	sub.Subscribe(t, "big/#", 1)
	big := frame(0x30, mqttString("big/x"), props(), bytes.Repeat([]byte("x"), 2048))

	v5 := rawConnect(t, b.MQTTAddr(), &packets.Connect{ClientID: "big5", CleanStart: true, KeepAlive: 30})
	if _, err := v5.Write(big); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, v5, 0x95)

	v3, code := limConnectV311(t, b.MQTTAddr(), "big3")
	if code != 0 {
		t.Fatalf("3.1.1 CONNACK %d", code)
	}
	big311 := frame(0x30, mqttString("big/x"), bytes.Repeat([]byte("x"), 2048))
	if _, err := v3.Write(big311); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, v3); len(got) > 0 {
		t.Fatalf("3.1.1 client got % x, want a close", got)
	}
	if got := metric(t, b, `mqhub_connection_errors_total{reason="packet_too_large"}`); got != "2" {
		t.Fatalf("packet_too_large = %s, want 2", got)
	}
	stillServing(t, b, sub, "big/after")
}
