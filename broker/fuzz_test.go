package broker_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// Stream prefixes selected by the first byte of a fuzz input, so that the
// fuzzer reaches the packet decoders behind CONNECT as well as CONNECT's.
const (
	prefixNone = iota
	prefixConnectV5
	prefixConnectV311
	prefixCount
)

func connectBytes(version byte, clientID string) []byte {
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.CleanStart, c.KeepAlive = "MQTT", version, clientID, true, 30
	var buf bytes.Buffer
	_, _ = cp.WriteTo(&buf)
	return buf.Bytes()
}

// FuzzConnection feeds arbitrary bytes to a real hub over a real TCP
// connection, split in two writes to exercise partial reads, and checks
// after each input that the hub still accepts a client. A decoder panic that
// escaped the guard would kill the fuzzing process.
//
//	go test ./broker -run '^$' -fuzz FuzzConnection -fuzztime 5m
func FuzzConnection(f *testing.F) {
	b := testutil.StartHub(f, func(c *broker.Config) { c.LogLevel = "disabled"; c.ConnectTimeout = time.Second })
	prefixes := [prefixCount][]byte{nil, connectBytes(5, "fuzz"), connectBytes(4, "fuzz")}
	// The probe has its own client ID: the fuzzed connection may be processed
	// after it and must not take its session over.
	probeConnect := connectBytes(5, "probe")

	f.Add(byte(prefixConnectV5), truncatedSubscribeV5)
	f.Add(byte(prefixConnectV5), []byte{0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x01})
	f.Add(byte(prefixConnectV311), []byte{0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x01})
	f.Add(byte(prefixConnectV5), []byte{0x32, 0x0a, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 0x00, 'h', 'i'})
	f.Add(byte(prefixConnectV5), []byte{0x30, 0x08, 0x00, 0x01, 'a', 0x05, 0x23, 0x00, 0x01, 'x'}) // topic alias property
	f.Add(byte(prefixConnectV5), []byte{0xa2, 0x06, 0x00, 0x02, 0x00, 0x00, 0x01, 'a'})            // unsubscribe
	f.Add(byte(prefixConnectV5), []byte{0xe0, 0x02, 0x8e, 0x00})                                   // disconnect
	f.Add(byte(prefixConnectV5), []byte{0xf0, 0x02, 0x18, 0x00})                                   // auth
	// Faults only the frame scanner sees (frames.go): repeated properties,
	// reserved subscription option bits, subscription identifier 0, a
	// payload that is not the UTF-8 it claims, sizes over the limits.
	f.Add(byte(prefixConnectV5), []byte{0x30, 0x0b, 0x00, 0x01, 'a', 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02, 'x'})
	f.Add(byte(prefixConnectV5), []byte{0x32, 0x11, 0x00, 0x01, 'a', 0x00, 0x01, 0x0a, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2, 'x'})
	f.Add(byte(prefixConnectV5), []byte{0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'a', '/', 'b', 0xc1})
	f.Add(byte(prefixConnectV5), []byte{0x82, 0x0b, 0x00, 0x01, 0x02, 0x0b, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x01})
	f.Add(byte(prefixConnectV5), []byte{0x32, 0x0a, 0x00, 0x01, 'a', 0x00, 0x01, 0x02, 0x01, 0x01, 0xff, 0xfe})
	f.Add(byte(prefixConnectV5), []byte{0x30, 0xff, 0xff, 0x7f})
	f.Add(byte(prefixNone), []byte{0x10, 0x1a, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x1e, 0x0a,
		0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, 0x00, 0x03, 'd', 'u', 'p'})
	f.Add(byte(prefixNone), []byte{0x10, 0xa0, 0x8d, 0x06, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05})
	f.Add(byte(prefixNone), connectBytes(5, "fuzz"))
	f.Add(byte(prefixNone), []byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add(byte(prefixNone), []byte{0x10, 0x05, 0x00, 0x04, 'M', 'Q', 'T'})
	f.Add(byte(prefixNone), []byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, prefix byte, data []byte) {
		stream := append(append([]byte{}, prefixes[int(prefix)%prefixCount]...), data...)
		conn, err := net.DialTimeout("tcp", b.MQTTAddr(), 5*time.Second)
		if err != nil {
			t.Fatalf("hub stopped accepting: %v", err)
		}
		half := len(stream) / 2
		_, _ = conn.Write(stream[:half])
		_, _ = conn.Write(stream[half:])
		_ = conn.Close()

		probe := testutil.Dial(t, b.MQTTAddr())
		defer probe.Close()
		if _, err := probe.Write(probeConnect); err != nil {
			t.Fatalf("hub stopped serving: %v", err)
		}
		_ = probe.SetReadDeadline(time.Now().Add(5 * time.Second))
		ack, err := packets.ReadPacket(probe)
		if err != nil {
			t.Fatalf("hub stopped answering CONNECT: %v", err)
		}
		if ca, ok := ack.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
			t.Fatalf("hub refused a valid CONNECT: %v", ack)
		}
	})
}
