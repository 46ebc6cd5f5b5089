package bench

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slicesEqual(in, tt.in) {
			t.Errorf("Median reordered its input: %v", tt.in)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b   float64
		want   float64
		wantOK bool
	}{
		{10, 5, 2, true},
		{0, 5, 0, true},
		{5, 0, 0, false},
		{0, 0, 0, false},
		{math.NaN(), 1, 0, false},
		{1, math.NaN(), 0, false},
	}
	for _, tt := range tests {
		got, ok := Ratio(tt.a, tt.b)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Ratio(%v, %v) = %v, %v; want %v, %v", tt.a, tt.b, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, PayloadHeaderSize, 64, 4096} {
		h := PayloadHeader{Stream: 7, Seq: 1<<40 + 3, SentNanos: 123456789}
		b := EncodePayload(h, size)
		if len(b) != max(size, PayloadHeaderSize) {
			t.Errorf("size %d: len %d", size, len(b))
		}
		got, err := DecodePayload(b)
		if err != nil || got != h {
			t.Errorf("size %d: decoded %+v, %v; want %+v", size, got, err, h)
		}
	}
	for _, b := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{'x'}, 64)} {
		if _, err := DecodePayload(b); !errors.Is(err, ErrForeignPayload) {
			t.Errorf("DecodePayload(%q) err = %v", b, err)
		}
	}
}

func FuzzDecodePayload(f *testing.F) {
	f.Add(EncodePayload(PayloadHeader{Stream: 1, Seq: 2, SentNanos: 3}, 64))
	f.Add([]byte("MQHB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodePayload(b)
		if err != nil {
			return
		}
		again, err := DecodePayload(EncodePayload(h, len(b)))
		if err != nil || again != h {
			t.Fatalf("re-encode of %+v gave %+v, %v", h, again, err)
		}
	})
}

func TestStreamSet(t *testing.T) {
	s := newStreamSet()
	for _, seq := range []uint64{0, 1, 3, 2, 3, 5, 200} {
		s.add(1, seq)
	}
	s.add(2, 0)
	s.add(2, maxTrackedSeq) // out of range: foreign, not a 32 MiB allocation
	s.addForeign()
	unique, dups, ooo, foreign := s.totals()
	if unique != 7 || dups != 1 || ooo != 1 || foreign != 2 {
		t.Errorf("totals = unique %d dups %d ooo %d foreign %d; want 7 1 1 2", unique, dups, ooo, foreign)
	}
	// 0 1 3 2 3 5 200: steps back at 3->2 only (3 after 2 is a duplicate
	// going forward).
	if b := s.orderBreaks(); b != 1 {
		t.Errorf("orderBreaks = %d, want 1", b)
	}
	// One early straggler: large out-of-order count, one break.
	late := newStreamSet()
	for _, seq := range []uint64{9, 0, 1, 2, 3, 4, 5, 6, 7, 8} {
		late.add(1, seq)
	}
	if _, _, ooo, _ := late.totals(); ooo != 9 || late.orderBreaks() != 1 {
		t.Errorf("straggler: ooo %d breaks %d, want 9 1", ooo, late.orderBreaks())
	}
	// Stream 1 got 6 unique of 10 sent; stream 2 got 1 of 1; stream 3
	// got none of 2; a surplus on one stream must not offset another.
	if got := s.lost(map[uint32]uint64{1: 10, 2: 0, 3: 2}); got != 4+2 {
		t.Errorf("lost = %d, want 6", got)
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tmosquitto\nVmPeak:\t  20000 kB\nVmRSS:\t    8532 kB\nRssAnon:\t    1204 kB\nThreads:\t1\n"
	for field, want := range map[string]int64{"VmRSS": 8532, "RssAnon": 1204} {
		kb, err := parseStatusKB(strings.NewReader(status), field)
		if err != nil || kb != want {
			t.Errorf("parseStatusKB(%s) = %d, %v; want %d", field, kb, err, want)
		}
	}
	if _, err := parseStatusKB(strings.NewReader("Name:\tkthreadd\n"), "VmRSS"); !errors.Is(err, ErrNoRSS) {
		t.Errorf("no VmRSS: err = %v", err)
	}
	if _, err := parseStatusKB(strings.NewReader("VmRSS:\tlots kB\n"), "VmRSS"); err == nil {
		t.Error("malformed VmRSS accepted")
	}
}

// TestEncodeConnect checks the raw CONNECT of the conns scenario with paho's
// own decoder, so the two MQTT implementations in the bench agree.
func TestEncodeConnect(t *testing.T) {
	for _, tc := range []struct{ user, pass string }{{"", ""}, {"alice", "s3cret"}} {
		cp, err := packets.ReadPacket(bytes.NewReader(encodeConnect("client-1", 30, tc.user, tc.pass)))
		if err != nil {
			t.Fatalf("paho cannot read our CONNECT: %v", err)
		}
		c, ok := cp.Content.(*packets.Connect)
		if !ok {
			t.Fatalf("decoded %T", cp.Content)
		}
		if c.ProtocolName != "MQTT" || c.ProtocolVersion != 5 || !c.CleanStart || c.KeepAlive != 30 || c.ClientID != "client-1" {
			t.Errorf("decoded %+v", c)
		}
		if c.UsernameFlag != (tc.user != "") || c.Username != tc.user || string(c.Password) != tc.pass {
			t.Errorf("credentials: %+v", c)
		}
	}
}

func TestReadConnack(t *testing.T) {
	ok := []byte{0x20, 0x03, 0x00, 0x00, 0x00}
	if err := readConnack(bufio.NewReader(bytes.NewReader(ok))); err != nil {
		t.Errorf("success connack: %v", err)
	}
	refused := []byte{0x20, 0x03, 0x00, 0x87, 0x00} // not authorized
	if err := readConnack(bufio.NewReader(bytes.NewReader(refused))); !errors.Is(err, ErrConnRefused) {
		t.Errorf("refused connack: err = %v", err)
	}
	if err := readConnack(bufio.NewReader(bytes.NewReader([]byte{0xD0, 0x00}))); err == nil {
		t.Error("PINGRESP accepted as CONNACK")
	}
}

func TestWriteBarChart(t *testing.T) {
	var buf bytes.Buffer
	err := WriteBarChart(&buf, "fanin <qos0> & co", []string{"mqhub", "mosquitto"}, []BarGroup{
		{Label: "recv_per_s", Values: []float64{120000, 150000}},
		{Label: "lost", Values: []float64{0, 0}},
		{Label: "p99_us", Values: []float64{math.NaN(), 812.5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(buf.Bytes()); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, buf.String())
	}
	svg := buf.String()
	for _, want := range []string{"fanin &lt;qos0&gt; &amp; co", "recv_per_s", "150000", "812", "mosquitto"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	// NaN draws no bar: 2 + 2 + 1 bars, plus background and 2 legend swatches.
	if n := strings.Count(svg, "<rect"); n != 5+3 {
		t.Errorf("%d rects, want 8", n)
	}
}

func TestOptionsValidateJoinsProblems(t *testing.T) {
	err := Options{Target: "nohost", PayloadSize: 3, QoS: 2, KeepAlive: 0}.Validate()
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"target", "clients", "duration or count", "payload size", "qos", "keepalive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func FuzzReadPacket(f *testing.F) {
	f.Add([]byte{0x20, 0x03, 0x00, 0x00, 0x00})
	f.Add([]byte{0xD0, 0x00})
	f.Add([]byte{0x20, 0xFF, 0xFF, 0xFF, 0x7F})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, body, err := readPacket(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if typ&0x0F != 0 || len(body) > maxRawPacket || len(body) > len(b) {
			t.Fatalf("type %#x body %d bytes from %d input bytes", typ, len(body), len(b))
		}
	})
}

// A run bounded by count gets a hard limit that grows with the messages it
// sends: offline-drain of 10,000 x 100 must not be cut off at a minute.
func TestTimeoutGrowsWithCount(t *testing.T) {
	small := Options{Clients: 10, Count: 100}.withDefaults().Timeout
	large := Options{Clients: 10_000, Count: 100}.withDefaults().Timeout
	if large < small+900*time.Second {
		t.Errorf("timeout for 1,000,000 messages %v (1,000 for %v): want room for 1,000 msg/s", large, small)
	}
	if d := (Options{Duration: 5 * time.Second}).withDefaults().Timeout; d > 2*time.Minute {
		t.Errorf("a 5 s timed run got a %v limit", d)
	}
}
