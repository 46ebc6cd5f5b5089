package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// chunkConn returns its data at most size bytes per read, and keeps what
// is written.
type chunkConn struct {
	net.Conn // nil: only Read and Write are used
	data     []byte
	size     int
	written  bytes.Buffer
}

func (c *chunkConn) Write(p []byte) (int, error) { return c.written.Write(p) }

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func rawFrame(first byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	out := []byte{first}
	for n := len(b); ; {
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

func str(s string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...) }

var (
	v5Connect    = rawFrame(0x10, str("MQTT"), []byte{5, 0x02, 0, 30, 0}, str("scan"))
	validPublish = rawFrame(0x32, str("u/bob/inbox"), []byte{0, 1},
		[]byte{12, 0x26, 0, 2, 'i', 'd', 0, 2, 'm', '1', 0x01, 1}, bytes.Repeat([]byte("x"), 100))
	dupPublish   = rawFrame(0x30, str("a"), []byte{6, 0x23, 0, 1, 0x23, 0, 2}, []byte("x"))
	okSubscribe  = rawFrame(0x82, []byte{0, 2, 0}, str("a/#"), []byte{0x01})
	badSubscribe = rawFrame(0x82, []byte{0, 3, 0}, str("a/#"), []byte{0xc1})
)

// The scanner follows frames whatever the read boundaries: mochi gets
// the stream unchanged, and the faults are found in the right frames.
func TestFrameScannerAcrossReads(t *testing.T) {
	stream := bytes.Join([][]byte{v5Connect, validPublish, {0xc0, 0}, dupPublish, okSubscribe, badSubscribe, validPublish}, nil)
	for size := 1; size <= len(stream); size++ {
		tc := &trackedConn{Conn: &chunkConn{data: stream, size: size}}
		tc.scan.maxConnect, tc.scan.maxPacket = 8<<10, 1<<20
		if err := tc.awaitConnect(); err != nil {
			t.Fatalf("reads of %d: %v", size, err)
		}
		got, err := io.ReadAll(tc)
		if err != nil || !bytes.Equal(got, stream) {
			t.Fatalf("reads of %d: stream changed (%v)", size, err)
		}
		if tc.scan.frames != 7 {
			t.Fatalf("reads of %d: %d frames, want 7", size, tc.scan.frames)
		}
		var found []byte
		for i := range uint64(7) {
			if f := tc.scan.fault(i); f != nil {
				found = append(found, byte(i), f.code.Code)
			}
		}
		if want := []byte{3, 0x82, 5, 0x81}; !bytes.Equal(found, want) {
			t.Fatalf("reads of %d: faults % x, want % x", size, found, want)
		}
	}
}

// A frame over the maximum packet size ends the stream before its header
// reaches mochi; a CONNECT over the maximum CONNECT size is not handed on
// at all, nor its claimed length allocated.
func TestFrameScannerSizes(t *testing.T) {
	big := []byte{0x30, 0x80, 0x80, 0x40} // 1 MiB announced
	for size := 1; size <= 8; size++ {
		tc := &trackedConn{Conn: &chunkConn{data: bytes.Join([][]byte{v5Connect, validPublish, big}, nil), size: size}}
		tc.scan.maxConnect, tc.scan.maxPacket = 8<<10, 1<<10
		if err := tc.awaitConnect(); err != nil {
			t.Fatalf("reads of %d: %v", size, err)
		}
		got, err := io.ReadAll(tc)
		var ferr *frameError
		if !errors.As(err, &ferr) || ferr.code != packets.ErrPacketTooLarge {
			t.Fatalf("reads of %d: error %v, want packet too large", size, err)
		}
		if want := len(v5Connect) + len(validPublish); len(got) < want || len(got) > want+len(big)-1 {
			t.Fatalf("reads of %d: %d bytes handed on, want the %d before the big frame and not all its header", size, len(got), want)
		}
	}
	cc := &chunkConn{data: []byte{0x10, 0xff, 0xff, 0x03, 0, 4, 'M', 'Q', 'T', 'T', 5}, size: 64}
	tc := &trackedConn{Conn: cc}
	tc.scan.maxConnect, tc.scan.maxPacket = 8<<10, 1<<20
	err := tc.awaitConnect()
	var ferr *frameError
	if !errors.As(err, &ferr) || ferr.version != 5 || ferr.code != packets.ErrPacketTooLarge {
		t.Fatalf("big CONNECT: %v", err)
	}
	if tc.pending != nil || cap(tc.scan.connect) > minConnectBuffer {
		t.Fatalf("big CONNECT: %d bytes handed on, %d held", len(tc.pending), cap(tc.scan.connect))
	}
	if w := cc.written.Bytes(); len(w) < 4 || w[0] != 0x20 || w[3] != 0x95 {
		t.Fatalf("big CONNECT answered % x, want CONNACK 0x95", w)
	}
}

// BenchmarkFrameScanPublish is the scanner's cost per MQTT 5 PUBLISH (QoS
// 1, a user property, 100 bytes of payload), whole in one read, and in a
// stream read 1 KiB at a time as mochi's reader does.
func BenchmarkFrameScanPublish(b *testing.B) {
	b.Run("whole", func(b *testing.B) {
		s := frameScanner{version: 5, connected: true, maxPacket: 1 << 20}
		b.SetBytes(int64(len(validPublish)))
		for b.Loop() {
			s.scan(validPublish)
		}
		if len(s.faults) > 0 {
			b.Fatal(s.faults[0].err)
		}
	})
	b.Run("stream", func(b *testing.B) {
		const per = 1000
		stream := bytes.Repeat(validPublish, per)
		s := frameScanner{version: 5, connected: true, maxPacket: 1 << 20}
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			for i := 0; i < len(stream); i += 1024 {
				s.scan(stream[i:min(i+1024, len(stream))])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/publish")
	})
}
