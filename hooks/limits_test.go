package hooks

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/storage"
)

// limitsConn is a connection that keeps what is written to it.
type limitsConn struct {
	net.Conn // nil: only the methods below are used
	remote   net.Addr
	version  byte
	mu       sync.Mutex
	out      bytes.Buffer
}

func (c *limitsConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(b)
}
func (c *limitsConn) Close() error                     { return nil }
func (c *limitsConn) RemoteAddr() net.Addr             { return c.remote }
func (c *limitsConn) SetDeadline(time.Time) error      { return nil }
func (c *limitsConn) SetReadDeadline(time.Time) error  { return nil }
func (c *limitsConn) SetWriteDeadline(time.Time) error { return nil }

// packets decodes what was written so far, and forgets it.
func (c *limitsConn) packets(t *testing.T) []packets.Packet {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []packets.Packet
	b := c.out.Bytes()
	for len(b) > 0 {
		fh := packets.FixedHeader{}
		if err := fh.Decode(b[0]); err != nil {
			t.Fatal(err)
		}
		n, l := 0, 0
		for i, mult := 1, 1; ; i, mult = i+1, mult*128 {
			n += int(b[i]&127) * mult
			if b[i] < 128 {
				l = i + 1
				break
			}
		}
		fh.Remaining = n
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: c.version}
		body := b[l : l+n]
		var err error
		switch fh.Type {
		case packets.Connack:
			err = pk.ConnackDecode(body)
		case packets.Puback:
			err = pk.PubackDecode(body)
		case packets.Pubrec:
			err = pk.PubrecDecode(body)
		case packets.Disconnect:
			err = pk.DisconnectDecode(body)
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pk)
		b = b[l+n:]
	}
	c.out.Reset()
	return out
}

type limitsFixture struct {
	t      *testing.T
	server *mqtt.Server
	h      *Limits
	now    time.Time
}

func newLimitsFixture(t *testing.T, opts LimitsOptions) *limitsFixture {
	f := &limitsFixture{t: t, server: mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), now: time.Unix(1_000_000, 0)}
	opts.Server = f.server
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t))
	f.h = NewLimits(opts)
	f.h.now = func() time.Time { return f.now }
	if err := f.server.AddHook(f.h, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *limitsFixture) client(id, ip string, version byte) (*mqtt.Client, *limitsConn) {
	conn := &limitsConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}, version: version}
	cl := f.server.NewClient(conn, "tcp", id, false)
	cl.Properties.ProtocolVersion = version
	return cl, conn
}

func TestBucketBurstIsTwiceTheRate(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
	}{{5, 10}, {0.2, 1}, {0.5, 1}, {1000, 2000}} {
		if got := newBucket(tc.rate).Burst(); got != tc.burst {
			t.Errorf("rate %v: burst %d, want %d", tc.rate, got, tc.burst)
		}
	}
	now := time.Unix(0, 0)
	b := newBucket(100) // holds 200
	if !takeN(b, now, 500) {
		t.Fatal("more than the bucket holds refused on a full bucket")
	}
	if takeN(b, now.Add(time.Second), 150) {
		t.Fatal("150 taken from a bucket refilled to 100")
	}
	if !takeN(b, now.Add(time.Second), 100) {
		t.Fatal("100 refused from a bucket refilled to 100")
	}
}

func TestLimitsConnectionPlacesCannotLeak(t *testing.T) {
	f := newLimitsFixture(t, LimitsOptions{MaxConnectionsPerIP: 2})
	const ip = "192.0.2.1"
	accept := func(ip string) string {
		t.Helper()
		by, ok := f.h.Accept(ip)
		if ok != (by == "") {
			t.Fatalf("Accept(%s) = %q, %v", ip, by, ok)
		}
		return by
	}
	if by := accept(ip) + accept(ip); by != "" {
		t.Fatalf("refused under the limit: %s", by)
	}
	if by := accept(ip); by != "connections_per_ip" {
		t.Fatalf("third connection: %q, want connections_per_ip", by)
	}
	if by := accept("192.0.2.2"); by != "" {
		t.Fatalf("another IP refused: %s", by)
	}
	f.h.Release(ip)
	if by := accept(ip); by != "" {
		t.Fatalf("place of a closed connection still taken: %s", by)
	}
	f.h.Release(ip)
	f.h.Release(ip)
	f.h.Release(ip) // one too many: no negative count, no place gained
	f.h.Release("192.0.2.2")
	if n := f.h.trackedIPs(); n != 0 {
		t.Fatalf("%d IPs still tracked with nothing open", n)
	}
	if by := accept(ip) + accept(ip) + accept(ip); by != "connections_per_ip" {
		t.Fatalf("after the releases: %q, want two admitted and one refused", by)
	}
	if got := f.h.Stats().ConnectionsPerIP.Load(); got != 2 {
		t.Fatalf("ConnectionsPerIP = %d, want 2", got)
	}
}

func TestLimitsConnectRateAndBoundedState(t *testing.T) {
	f := newLimitsFixture(t, LimitsOptions{ConnectRate: 1, MaxConnectionsPerIP: 100})
	var refusals []string
	for range 3 {
		by, _ := f.h.Accept("192.0.2.1")
		refusals = append(refusals, by)
	}
	if strings.Join(refusals, ",") != ",,connect_rate" {
		t.Fatalf("refusals %q, want the third by connect_rate", refusals)
	}
	f.now = f.now.Add(time.Second)
	if by, ok := f.h.Accept("192.0.2.1"); !ok {
		t.Fatalf("refused after a second of refill: %s", by)
	}
	// One connection from each of many addresses, closed at once: all are
	// forgotten once their buckets are full again.
	for i := range 1000 {
		ip := net.IPv4(10, 0, byte(i/256), byte(i)).String()
		if _, ok := f.h.Accept(ip); !ok {
			t.Fatal("refused")
		}
		f.h.Release(ip)
	}
	if n := f.h.trackedIPs(); n < 1000 {
		t.Fatalf("%d IPs tracked, want the 1000 with partly empty buckets", n)
	}
	f.now = f.now.Add(sweepEvery)
	if _, ok := f.h.Accept("198.51.100.1"); !ok {
		t.Fatal("refused")
	}
	if n := f.h.trackedIPs(); n != 2 { // 192.0.2.1, with connections open, and the new one
		t.Fatalf("%d IPs tracked after the sweep, want 2", n)
	}
	if got := f.h.Stats().ConnectRate.Load(); got != 1 {
		t.Fatalf("ConnectRate = %d, want 1", got)
	}
}

// TestLimitsPublishRefusals checks the rule's decisions; the answers on
// the wire (PUBACK/PUBREC with the code, in order) are the entry path's
// and are checked in broker's TestLimitPublishRate and TestLimitTopicLengthAndLevels.
func TestLimitsPublishRefusals(t *testing.T) {
	f := newLimitsFixture(t, LimitsOptions{PublishRate: 1, PublishBytesRate: 100, MaxTopicLevels: 3, MaxTopicLength: 20})
	publish := func(cl *mqtt.Client, topic string, qos byte, size int) error {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic,
			PacketID: 7, Payload: make([]byte, size)}
		return f.h.Admit(&offline.Inbound{Origin: offline.FromClient, Client: cl, Packet: pk})
	}
	cl, conn := f.client("p", "192.0.2.1", 5)
	f.h.OnSessionEstablished(cl, packets.Packet{})
	for i := range 2 { // the bucket holds 2
		if err := publish(cl, "a/b", 1, 10); err != nil {
			t.Fatalf("message %d refused: %v", i, err)
		}
	}
	for _, qos := range []byte{1, 2} {
		if err := publish(cl, "a/b", qos, 10); err != packets.ErrMessageRateTooHigh {
			t.Fatalf("QoS %d over the rate: %v, want 0x96", qos, err)
		}
	}
	if err := publish(cl, "a/b/c/d", 1, 1); err != packets.ErrTopicNameInvalid {
		t.Fatalf("too many levels: %v, want 0x90", err)
	}
	if pks := conn.packets(t); len(pks) != 0 || cl.Closed() {
		t.Fatalf("the rule wrote %+v (closed %v); answers are the entry path's", pks, cl.Closed())
	}

	// Bytes: a fresh client's bucket holds 200; 150 leave 50, so 60 more
	// are over.
	f.now = f.now.Add(time.Minute)
	b, _ := f.client("b", "192.0.2.1", 5)
	if err := publish(b, "x", 1, 150); err != nil {
		t.Fatal(err)
	}
	if err := publish(b, "x", 1, 60); err != packets.ErrMessageRateTooHigh {
		t.Fatalf("over the byte rate: %v", err)
	}

	// QoS 0 has no answer, so it ends the connection: DISCONNECT for
	// MQTT 5, none for 3.1.1.
	q0, q0Conn := f.client("q0", "192.0.2.1", 5)
	if err := publish(q0, "a/b/c/d", 0, 1); err != offline.ErrIgnore || !q0.Closed() {
		t.Fatalf("QoS 0 with too many levels: %v, closed %v", err, q0.Closed())
	}
	if pks := q0Conn.packets(t); len(pks) != 1 || pks[0].FixedHeader.Type != packets.Disconnect || pks[0].ReasonCode != 0x90 {
		t.Fatalf("got %+v, want DISCONNECT 0x90", pks)
	}
	v3, v3Conn := f.client("v3", "192.0.2.1", 4)
	if err := publish(v3, "0123456789/0123456789", 0, 1); err != offline.ErrIgnore || !v3.Closed() {
		t.Fatalf("3.1.1 topic too long: %v, closed %v", err, v3.Closed())
	}
	if pks := v3Conn.packets(t); len(pks) != 0 {
		t.Fatalf("3.1.1 client got %+v, want nothing", pks)
	}

	inline := f.server.NewClient(nil, "local", "inline", true)
	if err := f.h.Admit(&offline.Inbound{Origin: offline.FromHub, Client: inline, Packet: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b/c/d/e/f/g/h/i/j/k/l", Payload: make([]byte, 10_000),
	}}); err != nil {
		t.Fatalf("hub message limited: %v", err)
	}
	st := f.h.Stats()
	if st.PublishRate.Load() != 2 || st.PublishBytesRate.Load() != 1 || st.TopicLevels.Load() != 2 || st.TopicLength.Load() != 1 {
		t.Fatalf("stats rate %d bytes %d levels %d length %d, want 2 1 2 1",
			st.PublishRate.Load(), st.PublishBytesRate.Load(), st.TopicLevels.Load(), st.TopicLength.Load())
	}
}

type fakeSessions map[string][]string

func (s fakeSessions) GetSession(id string) (*storage.Session, error) {
	filters, ok := s[id]
	if !ok {
		return nil, storage.ErrNotFound
	}
	rec := &storage.Session{ClientID: id}
	for _, f := range filters {
		rec.Subscriptions = append(rec.Subscriptions, storage.Subscription{Filter: f})
	}
	return rec, nil
}

func TestLimitsSubscribeCodes(t *testing.T) {
	f := newLimitsFixture(t, LimitsOptions{MaxSubscriptions: 3, MaxTopicLevels: 3,
		Sessions: fakeSessions{"resumed": {"stored/1"}}})
	subscribe := func(cl *mqtt.Client, filters ...string) []byte {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}}
		for _, fl := range filters {
			pk.Filters = append(pk.Filters, packets.Subscription{Filter: fl})
		}
		out := f.h.OnSubscribe(cl, pk)
		for i, fl := range filters {
			if pk.Filters[i].Filter != fl {
				t.Fatal("OnSubscribe changed the caller's filters")
			}
		}
		// What mochi does with the packet returned.
		codes := make([]byte, len(out.Filters))
		for i, sub := range out.Filters {
			if !mqtt.IsValidFilter(sub.Filter, false) {
				codes[i] = packets.ErrTopicFilterInvalid.Code
				if cl.Properties.ProtocolVersion < 5 {
					codes[i] = packets.ErrUnspecifiedError.Code
				}
				continue
			}
			cl.State.Subscriptions.Add(sub.Filter, sub)
		}
		f.h.OnSubscribed(cl, out, codes)
		return codes
	}
	cl, _ := f.client("resumed", "192.0.2.1", 5)
	cl.State.Subscriptions.Add("held/1", packets.Subscription{Filter: "held/1"})
	// Held: stored/1 and held/1. One more fits; a repeat or an invalid
	// filter takes no place; a filter too deep is refused for its depth.
	got := subscribe(cl, "new/1", "new/1", "a/#/b", "stored/1", "new/2", "$share/g/a/b/c", "a/b/c/d")
	want := []byte{0, 0, 0x8F, 0, 0x97, 0x97, 0x8F}
	if !bytes.Equal(got, want) {
		t.Fatalf("codes % x, want % x", got, want)
	}
	v3, _ := f.client("v3", "192.0.2.1", 4)
	if got := subscribe(v3, "a/b/c/d", "1", "2", "3", "4"); !bytes.Equal(got, []byte{0x80, 0, 0, 0, 0x80}) {
		t.Fatalf("3.1.1 codes % x", got)
	}
	if st := f.h.Stats(); st.Subscriptions.Load() != 3 || st.TopicLevels.Load() != 2 {
		t.Fatalf("subscriptions %d levels %d, want 3 and 2", st.Subscriptions.Load(), st.TopicLevels.Load())
	}
}
