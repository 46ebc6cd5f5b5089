package broker_test

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// TestInboundQoS2ReusesOutboundPacketID is mochi #545 as an attack. MQTT
// packet IDs are per direction, but mochi keeps both directions in one map:
// a client's QoS 2 PUBLISH that reuses the ID P of a message the hub sent
// it, not yet acknowledged, deletes the hub's entry (a QoS 2 message), and
// the acknowledgement of the hub's message deletes the record of the
// client's (a QoS 1 message).
//
// bob, over raw TCP with Receive Maximum 1, receives m1 with packet ID P
// and publishes his own QoS 2 message b1 with ID P. His message must reach
// alice exactly once, m1 must leave his queue (the delivered receipt
// arrives, it is not sent again on reconnect) and the hub must keep
// serving; each acknowledgement must be answered as if the other
// direction's P did not exist.
func TestInboundQoS2ReusesOutboundPacketID(t *testing.T) {
	for _, tc := range []struct {
		name     string
		qos      byte // of m1
		ackFirst bool // acknowledge m1 before b1's PUBREL; b1 is re-sent after a reconnect
	}{
		// Failed on mochi's shared map: b1's PUBLISH deleted m1's entry,
		// and bob's PUBREC for m1 was answered PUBREL 0x92.
		{name: "QoS 1 acknowledged after PUBCOMP", qos: 1},
		{name: "QoS 2 acknowledged after PUBCOMP", qos: 2},
		// Failed on mochi's shared map: the PUBACK for m1 deleted mochi's
		// record of b1, and b1 re-sent after a reconnect was delivered twice.
		{name: "QoS 1 acknowledged before PUBREL", qos: 1, ackFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fault string // what went wrong, reported at the end
			h := startSecureHub(t, testACL)
			alice := h.device(t, "alice", "alice-phone", "u/alice/#")
			bob := rawDevice(t, h, "bob", "bob-raw", "u/bob/inbox")

			alice.Publish(t, &paho.Publish{Topic: "u/bob/inbox", QoS: tc.qos, Payload: []byte("hi bob"),
				Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "id", Value: "m1"}}}})
			m1 := rawExpect(t, bob, packets.PUBLISH).Content.(*packets.Publish)
			if string(m1.Payload) != "hi bob" || m1.QoS != tc.qos {
				t.Fatalf("bob got %q at QoS %d, want %q at QoS %d", m1.Payload, m1.QoS, "hi bob", tc.qos)
			}
			pid := m1.PacketID

			// bob's own QoS 2 message, with the ID of the hub's. It has no
			// message id: exactly once is MQTT's promise here, not the
			// envelope's deduplication.
			b1 := packets.NewControlPacket(packets.PUBLISH)
			*b1.Content.(*packets.Publish) = packets.Publish{Topic: "u/alice/inbox", QoS: 2, PacketID: pid, Payload: []byte("hi alice")}
			rawWrite(t, bob, b1)
			if tc.ackFirst {
				// The PUBACK goes out with the PUBLISH; the connection
				// drops before bob reads the PUBREC.
				rawWriteAck(t, bob, packets.PUBACK, pid)
				rawExpectAck(t, bob, packets.PUBREC, pid)
				wantB1(t, next(t, alice, "u/alice/inbox"))
				wantDelivered(t, nextReceipt(t, alice, "alice"), "m1", "bob", "bob-raw")
				_ = bob.Close()
				bob = rawDevice(t, h, "bob", "bob-raw")
				b1.Content.(*packets.Publish).Duplicate = true
				rawWrite(t, bob, b1) // [MQTT-4.4.0-1]
				rawWriteAck(t, bob, packets.PUBREL, pid)
				rawExpectAck(t, bob, packets.PUBCOMP, pid, packets.PUBREC) // mochi re-sends its PUBREC, or answers the re-send
			} else {
				rawExpectAck(t, bob, packets.PUBREC, pid)
				rawWriteAck(t, bob, packets.PUBREL, pid)
				rawExpectAck(t, bob, packets.PUBCOMP, pid)
				if tc.qos == 1 {
					rawWriteAck(t, bob, packets.PUBACK, pid)
				} else {
					rawWriteAck(t, bob, packets.PUBREC, pid)
					if code := rawExpect(t, bob, packets.PUBREL).Content.(*packets.Pubrel); code.PacketID != pid || code.ReasonCode != 0 {
						fault = fmt.Sprintf("PUBREL %d reason 0x%02x for m1, want %d reason 0x00", code.PacketID, code.ReasonCode, pid)
					}
					rawWriteAck(t, bob, packets.PUBCOMP, pid)
				}
				wantB1(t, next(t, alice, "u/alice/inbox"))
				wantDelivered(t, nextReceipt(t, alice, "alice"), "m1", "bob", "bob-raw")
				_ = bob.Close()
				bob = rawDevice(t, h, "bob", "bob-raw")
			}

			// m1 left bob's queue: after reconnecting, m2 is the first
			// message he gets.
			if code := send(t, alice, "u/bob/inbox", "m2", "still there?"); code != 0 {
				t.Fatalf("m2 refused: 0x%02x", code)
			}
			m2 := rawExpect(t, bob, packets.PUBLISH).Content.(*packets.Publish)
			if string(m2.Payload) != "still there?" || m2.Duplicate {
				t.Fatalf("bob got %q (dup %v) after reconnecting, want m2 %q", m2.Payload, m2.Duplicate, "still there?")
			}
			rawWriteAck(t, bob, packets.PUBACK, m2.PacketID) // QoS 1: alice sent it so

			// alice got b1 once: the next thing she gets is m2's receipt.
			if m := alice.Next(t, wait); m.Topic == "u/alice/inbox" && string(m.Payload) == "hi alice" {
				fault = "alice received b1 twice"
			} else if m.Topic != "u/alice/receipts" {
				t.Fatalf("alice got %q on %q, want m2's receipt", m.Payload, m.Topic)
			}

			if fault != "" {
				t.Fatal(fault)
			}
		})
	}
}

// wantB1 checks bob's message as alice receives it.
func wantB1(t *testing.T, m *paho.Publish) {
	t.Helper()
	if string(m.Payload) != "hi alice" || m.Properties.User.Get("from") != "bob" {
		t.Fatalf("alice got %q from %q, want %q from bob", m.Payload, m.Properties.User.Get("from"), "hi alice")
	}
}

// rawDevice connects a persistent MQTT 5 session over raw TCP with Receive
// Maximum 1 and subscribes it to filters at QoS 2.
func rawDevice(t *testing.T, h *secureHub, user, clientID string, filters ...string) net.Conn {
	t.Helper()
	conn := rawConnect(t, h.MQTTAddr(), &packets.Connect{ClientID: clientID, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(user + "-pw"),
		Properties: &packets.Properties{ReceiveMaximum: ptr[uint16](1), SessionExpiryInterval: ptr[uint32](3600)}})
	for i, f := range filters {
		sub := packets.NewControlPacket(packets.SUBSCRIBE)
		*sub.Content.(*packets.Subscribe) = packets.Subscribe{PacketID: uint16(i + 1), Subscriptions: []packets.SubOptions{{Topic: f, QoS: 2}}}
		rawWrite(t, conn, sub)
		ack := rawExpect(t, conn, packets.SUBACK).Content.(*packets.Suback)
		if len(ack.Reasons) != 1 || ack.Reasons[0] != 2 {
			t.Fatalf("%s subscribes %q: reasons %v", clientID, f, ack.Reasons)
		}
	}
	return conn
}

func rawWrite(t *testing.T, conn net.Conn, cp *packets.ControlPacket) {
	t.Helper()
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatalf("write %s: %v", cp.PacketType(), err)
	}
}

// rawWriteAck writes a PUBACK, PUBREC, PUBREL or PUBCOMP (reason 0).
func rawWriteAck(t *testing.T, conn net.Conn, typ byte, pid uint16) {
	t.Helper()
	cp := packets.NewControlPacket(typ)
	switch c := cp.Content.(type) {
	case *packets.Puback:
		c.PacketID = pid
	case *packets.Pubrec:
		c.PacketID = pid
	case *packets.Pubrel:
		c.PacketID = pid
	case *packets.Pubcomp:
		c.PacketID = pid
	}
	rawWrite(t, conn, cp)
}

// rawExpect reads packets until one of type typ, skipping at most a few of
// the types in skip, and fails on any other.
func rawExpect(t *testing.T, conn net.Conn, typ byte, skip ...byte) *packets.ControlPacket {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	defer conn.SetReadDeadline(time.Time{})
	for range 4 {
		cp, err := packets.ReadPacket(conn)
		if err != nil {
			t.Fatalf("waiting for packet type %d: %v", typ, err)
		}
		if cp.Type == typ {
			return cp
		}
		if !slices.Contains(skip, cp.Type) {
			t.Fatalf("got %s, want packet type %d", cp, typ)
		}
	}
	t.Fatalf("no packet of type %d", typ)
	return nil
}

// rawExpectAck reads the acknowledgement typ (skipping packets of the
// types in skip) and fails unless it is for packet ID pid with reason 0x00.
func rawExpectAck(t *testing.T, conn net.Conn, typ byte, pid uint16, skip ...byte) {
	t.Helper()
	cp := rawExpect(t, conn, typ, skip...)
	var id uint16
	var reason byte
	switch c := cp.Content.(type) {
	case *packets.Pubrec:
		id, reason = c.PacketID, c.ReasonCode
	case *packets.Pubrel:
		id, reason = c.PacketID, c.ReasonCode
	case *packets.Pubcomp:
		id, reason = c.PacketID, c.ReasonCode
	}
	if id != pid || reason != 0 {
		t.Fatalf("got %s (packet ID %d, reason 0x%02x), want packet ID %d, reason 0x00", cp, id, reason, pid)
	}
}
