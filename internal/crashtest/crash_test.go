package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/mqhub/mqhub/internal/testutil"
)

// The shape of the crash test. Every wait is bounded by one of these.
const (
	numSubscribers      = 20 // persistent sessions (offline during the kill rounds in TestKill9)
	numPublishers       = 4  // QoS 1 publisher connections, publishing continuously
	streamsPerPublisher = 4  // concurrent publish streams on each connection
	numStreams          = numPublishers * streamsPerPublisher
	minRounds           = 10 // SIGKILL rounds (MQHUB_CRASH_ROUNDS may ask for more)

	minKillDelay = 100 * time.Millisecond // after the restart became ready
	maxKillDelay = 700 * time.Millisecond

	readyTimeout   = 10 * time.Second // start to "mqhub serving"
	reapTimeout    = 10 * time.Second // SIGKILL to the child reaped
	publishTimeout = 10 * time.Second // one PUBLISH to its PUBACK
	connectTimeout = 5 * time.Second
	drainTimeout   = 30 * time.Second // overall, for every subscriber at once
	drainQuiet     = 5 * time.Second  // no new message while some are missing: done
	drainSettle    = 300 * time.Millisecond
	stopTimeout    = 20 * time.Second // publishers stopping
	maxPortRetries = 50               // port briefly busy after a kill
	maxDialFails   = 20               // a publisher's failed connects in a row while the hub is up

	sessionExpiry = 3600
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if binDir != "" {
			_ = os.RemoveAll(binDir)
		}
		os.Exit(code)
	}))
}

// hubBinary builds cmd/mqhub once per test binary run.
func hubBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		binDir, err = os.MkdirTemp("", "mqhub-crashtest-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "mqhub")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binPath, "./cmd/mqhub")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/mqhub in %s: %v\n%s", root, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// moduleRoot walks up from the test's directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// hubProc is one run of the hub binary.
type hubProc struct {
	cmd   *exec.Cmd
	ready chan string   // the mqtt address of the "mqhub serving" line
	done  chan struct{} // closed once stderr hit EOF and the child was reaped

	mu       sync.Mutex
	output   bytes.Buffer // all of stderr
	notable  []string     // warn and error lines
	exitErr  error
	startAt  time.Time
	readyDur time.Duration
}

// startHub starts the binary; the returned process is not ready yet.
func startHub(bin string, args []string) (*hubProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MQHUB_") })
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &hubProc{cmd: cmd, ready: make(chan string, 1), done: make(chan struct{}), startAt: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.read(stderr)
	return p, nil
}

func (p *hubProc) read(stderr io.Reader) {
	defer close(p.done)
	r := bufio.NewReader(stderr)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			p.mu.Lock()
			p.output.Write(line)
			p.mu.Unlock()
			var l struct {
				Level   string `json:"level"`
				Message string `json:"message"`
				MQTT    string `json:"mqtt"`
			}
			if json.Unmarshal(line, &l) == nil {
				switch {
				case l.Message == "mqhub serving":
					p.mu.Lock()
					p.readyDur = time.Since(p.startAt)
					p.mu.Unlock()
					select {
					case p.ready <- l.MQTT:
					default:
					}
				case l.Level == "warn" || l.Level == "error" || l.Level == "fatal" || l.Level == "panic":
					p.mu.Lock()
					p.notable = append(p.notable, strings.TrimSpace(string(line)))
					p.mu.Unlock()
				}
			}
		}
		if err != nil {
			break
		}
	}
	err := p.cmd.Wait()
	p.mu.Lock()
	p.exitErr = err
	p.mu.Unlock()
}

// kill sends SIGKILL and waits for the child to be reaped.
func (p *hubProc) kill() error {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(reapTimeout):
		return fmt.Errorf("hub pid %d not reaped %s after SIGKILL", p.cmd.Process.Pid, reapTimeout)
	}
}

// warnings returns the warn and error lines logged so far.
func (p *hubProc) warnings() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.notable)
}

func (p *hubProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// crashed reports a panic or a Go runtime fatal error in the child's stderr.
func (p *hubProc) crashed() string {
	out := p.stderr()
	for _, marker := range []string{"panic:", "fatal error:"} {
		if i := strings.Index(out, marker); i >= 0 {
			return out[i:min(len(out), i+4000)]
		}
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// gate tells publishers whether the hub is up: wait returns a channel that
// is closed while it is.
type gate struct {
	mu sync.Mutex
	ch chan struct{}
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ch
}

func (g *gate) up() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
	default:
		close(g.ch)
	}
}

func (g *gate) down() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
		g.ch = make(chan struct{})
	default:
	}
}

// harness runs the hub on one data directory and one address.
type harness struct {
	t       *testing.T
	bin     string
	dataDir string
	addr    string
	procs   []*hubProc
}

func (h *harness) args() []string {
	return []string{"serve",
		"--data-dir", h.dataDir,
		"--mqtt-addr", h.addr, "--ws-addr", "", "--http-addr", "", "--tls-addr", "",
		"--allow-anonymous", "--log-format", "json", "--durability", "sync",
	}
}

// start starts the hub and waits until it serves on h.addr, retrying while
// the port is still busy from the previous run.
func (h *harness) start() *hubProc {
	t := h.t
	t.Helper()
	for attempt := 0; ; attempt++ {
		p, err := startHub(h.bin, h.args())
		if err != nil {
			t.Fatalf("start hub: %v", err)
		}
		h.procs = append(h.procs, p)
		t.Cleanup(func() {
			if err := p.kill(); err != nil {
				t.Error(err)
			}
		})
		select {
		case addr := <-p.ready:
			if addr != h.addr {
				t.Fatalf("hub serves on %q, want %q", addr, h.addr)
			}
			return p
		case <-p.done:
			out := p.stderr()
			if strings.Contains(out, "address already in use") && attempt < maxPortRetries {
				<-time.After(100 * time.Millisecond) // nothing to await: another socket holds the port
				continue
			}
			t.Fatalf("hub exited before serving (%v); stderr:\n%s", p.exitErr, tail(out, 4000))
		case <-time.After(readyTimeout):
			t.Fatalf("hub not serving %s after start; stderr:\n%s", readyTimeout, tail(p.stderr(), 4000))
		}
	}
}

// A publisher is one MQTT connection carrying several streams, each
// publishing QoS 1 messages "stream:seq" one at a time, seq 0, 1, 2...,
// message seq of a stream going to subscriber (stream+seq) % numSubscribers.
// The streams of a connection publish concurrently, so the hub has several
// publishes of the connection in flight (its QoS 1 pipeline), while each
// stream's order is well defined. A stream records the seqs whose PUBACK
// it received with a success code.
type publisher struct {
	idx     int
	id      string
	streams []*stream

	// Written by run only; read after it returned.
	conns int
	fatal error
}

// stream is written by one goroutine at a time (one per connection, the
// next connection's only after the previous one's ended) and read after
// the publisher stopped.
type stream struct {
	idx     int
	acked   []int
	sent    int // seqs 0..sent-1 were attempted
	refused int // PUBACK with a failure code
	lost    int // publish errors (connection lost, timeout)
}

func newPublisher(idx int) *publisher {
	p := &publisher{idx: idx, id: fmt.Sprintf("crash-pub-%d", idx)}
	for i := range streamsPerPublisher {
		p.streams = append(p.streams, &stream{idx: idx*streamsPerPublisher + i})
	}
	return p
}

func subscriberFor(stream, seq int) int { return (stream + seq) % numSubscribers }

func subscriberID(i int) string { return fmt.Sprintf("crash-sub-%02d", i) }

func inbox(i int) string { return "u/" + subscriberID(i) + "/inbox" }

func (p *publisher) run(addr string, g *gate, stop <-chan struct{}, progress *atomic.Int64) {
	fails := 0
	for {
		select {
		case <-stop:
			return
		case <-g.wait():
		}
		select {
		case <-stop:
			return
		default:
		}
		c, err := dial(addr, &paho.Connect{ClientID: p.id, CleanStart: true})
		if err != nil {
			// The hub may have been killed since the gate said up: the gate
			// is then down already and the next wait blocks until restart.
			fails++
			if fails > maxDialFails {
				p.fatal = fmt.Errorf("publisher %s: %d connects failed in a row while the hub was up: %w", p.id, fails, err)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		fails = 0
		p.conns++
		p.publish(c, stop, progress)
		closeClient(c)
	}
}

// publish runs every stream on connection c until stop or the first error.
func (p *publisher) publish(c *testutil.Client, stop <-chan struct{}, progress *atomic.Int64) {
	// When the connection drops, paho (v0.23, session expiry 0) forgets the
	// PUBLISH in flight without answering it, so Publish would wait for its
	// context: end the context with the connection, or with the first
	// stream's error.
	connCtx, cancelConn := context.WithCancel(context.Background())
	defer cancelConn()
	go func() {
		select {
		case <-c.Done():
			cancelConn()
		case <-connCtx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, st := range p.streams {
		wg.Go(func() {
			defer cancelConn()
			st.publish(connCtx, c, stop, progress)
		})
	}
	wg.Wait()
}

func (st *stream) publish(connCtx context.Context, c *testutil.Client, stop <-chan struct{}, progress *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		case <-connCtx.Done():
			return
		default:
		}
		seq := st.sent
		st.sent++
		ctx, cancel := context.WithTimeout(connCtx, publishTimeout)
		resp, err := c.Client.Publish(ctx, &paho.Publish{
			Topic:   inbox(subscriberFor(st.idx, seq)),
			QoS:     1,
			Payload: []byte(strconv.Itoa(st.idx) + ":" + strconv.Itoa(seq)),
		})
		cancel()
		switch {
		case err == nil && resp != nil && resp.ReasonCode < 0x80:
			st.acked = append(st.acked, seq)
			progress.Add(1)
		case resp != nil && resp.ReasonCode >= 0x80:
			st.refused++ // not stored: not counted, go on
		default:
			st.lost++
			return
		}
	}
}

// dial connects a paho MQTT 5 client without a testing.T, for goroutines.
func dial(addr string, cp *paho.Connect) (*testutil.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, connectTimeout)
	if err != nil {
		return nil, err
	}
	c, ack, err := testutil.TryConnect(conn, cp)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w (connack %+v)", cp.ClientID, err, ack)
	}
	return c, nil
}

// dialSession connects a persistent subscriber session, clean start false.
func dialSession(addr, id string) (*testutil.Client, *paho.Connack, error) {
	conn, err := net.DialTimeout("tcp", addr, connectTimeout)
	if err != nil {
		return nil, nil, err
	}
	expiry := uint32(sessionExpiry)
	return testutil.TryConnect(conn, &paho.Connect{
		ClientID:   id,
		CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
}

// closeClient disconnects c (if still connected) and waits for its
// goroutines to end.
func closeClient(c *testutil.Client) {
	select {
	case <-c.Done():
		return
	default:
	}
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	select {
	case <-c.Done():
	case <-time.After(connectTimeout):
		_ = c.Conn.Close()
		<-c.Done()
	}
}

// closeAndCollect disconnects c and returns the messages it received that
// nobody read yet. Reading goes on while disconnecting, so paho's handler
// never blocks on a full Messages channel; paho has acknowledged each of
// these to the hub, so they count as delivered.
func closeAndCollect(c *testutil.Client) []*paho.Publish {
	collected := make(chan []*paho.Publish, 1)
	go func() {
		var ms []*paho.Publish
		for {
			select {
			case m := <-c.Messages:
				ms = append(ms, m)
			case <-c.Done():
				for {
					select {
					case m := <-c.Messages:
						ms = append(ms, m)
					default:
						collected <- ms
						return
					}
				}
			}
		}
	}()
	closeClient(c)
	return <-collected
}

// delivery is one PUBLISH a subscriber received.
type delivery struct {
	pub, seq int // the publishing stream and its seq
	dup      bool
	conn     int    // the subscriber's connection it arrived on (1, 2, ...)
	bad      string // set when the message is not one of ours
}

type msgKey struct{ pub, seq int } // stream, seq

func parseDelivery(m *paho.Publish, sub, conn int) delivery {
	d := delivery{dup: m.Duplicate(), conn: conn}
	a, b, ok := strings.Cut(string(m.Payload), ":")
	pub, err1 := strconv.Atoi(a)
	seq, err2 := strconv.Atoi(b)
	switch {
	case !ok || err1 != nil || err2 != nil || pub < 0 || pub >= numStreams || seq < 0:
		d.bad = fmt.Sprintf("payload %q on %q", m.Payload, m.Topic)
	case m.Topic != inbox(sub) || subscriberFor(pub, seq) != sub:
		d.bad = fmt.Sprintf("payload %q on %q, delivered to %s", m.Payload, m.Topic, subscriberID(sub))
	case m.QoS != 1:
		d.bad = fmt.Sprintf("payload %q at QoS %d, want 1", m.Payload, m.QoS)
	}
	d.pub, d.seq = pub, seq
	return d
}

// subscriber is a persistent session that stays connected during the kill
// rounds (TestKill9WhileDelivering), reconnecting with clean start false
// after every restart.
type subscriber struct {
	idx int

	// Written by run only; read after it returned.
	got       []delivery
	conns     int
	noSession int // CONNACKs without session present
	fatal     error
}

func (s *subscriber) run(addr string, g *gate, stop <-chan struct{}) {
	fails := 0
	for {
		select {
		case <-stop:
			return
		case <-g.wait():
		}
		select {
		case <-stop:
			return
		default:
		}
		c, ack, err := dialSession(addr, subscriberID(s.idx))
		if err != nil {
			fails++
			if fails > maxDialFails {
				s.fatal = fmt.Errorf("subscriber %s: %d connects failed in a row while the hub was up: %w", subscriberID(s.idx), fails, err)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		fails = 0
		s.conns++
		if !ack.SessionPresent {
			s.noSession++
		}
	read:
		for {
			select {
			case m := <-c.Messages:
				s.got = append(s.got, parseDelivery(m, s.idx, s.conns))
			case <-c.Done():
				break read
			case <-stop:
				break read
			}
		}
		for _, m := range closeAndCollect(c) {
			s.got = append(s.got, parseDelivery(m, s.idx, s.conns))
		}
	}
}

// drainResult is what one subscriber received in the final drain.
type drainResult struct {
	got            []delivery
	sessionPresent bool
	missing        int // wanted messages not received when the drain ended
	err            error
}

// drain connects subscriber sub (as its connection number conn) and reads
// until every message in want has arrived (then until the flow settles),
// or no message came for drainQuiet, or the deadline.
func drain(addr string, sub, conn int, want map[msgKey]bool, deadline time.Time) drainResult {
	var r drainResult
	c, ack, err := dialSession(addr, subscriberID(sub))
	if err != nil {
		r.err = fmt.Errorf("connect: %w", err)
		return r
	}
	r.sessionPresent = ack.SessionPresent
	missing := len(want)
	seen := map[msgKey]bool{}
	record := func(m *paho.Publish) {
		d := parseDelivery(m, sub, conn)
		r.got = append(r.got, d)
		k := msgKey{d.pub, d.seq}
		if d.bad == "" && !seen[k] {
			seen[k] = true
			if want[k] {
				missing--
			}
		}
	}
	quietFor := func() time.Duration {
		if missing == 0 {
			return drainSettle
		}
		return drainQuiet
	}
	quiet := time.NewTimer(quietFor())
	defer quiet.Stop()
	overall := time.NewTimer(time.Until(deadline))
	defer overall.Stop()
loop:
	for {
		select {
		case m := <-c.Messages:
			record(m)
			quiet.Reset(quietFor())
		case <-quiet.C:
			break loop
		case <-overall.C:
			break loop
		case <-c.Done():
			r.err = errors.New("connection closed during the drain")
			break loop
		}
	}
	for _, m := range closeAndCollect(c) {
		record(m)
	}
	r.missing = missing
	return r
}

func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestKill9 is the durability promise under SIGKILL: persistent sessions
// stay offline while publishers publish QoS 1 messages to them without
// pause and the hub is killed at random moments and restarted on the same
// data; after the last restart every subscriber must receive every message
// whose PUBACK its publisher got, in each stream's order, with DUP on
// any second copy.
func TestKill9(t *testing.T) {
	runKill9(t, false)
}

// TestKill9WhileDelivering is TestKill9 with the subscribers connected
// during the kill rounds (reconnecting after each restart), so that the
// hub is killed while it delivers queues too: messages sent and not
// acknowledged, or acknowledged but not yet removed, come again after the
// restart, and must carry DUP.
func TestKill9WhileDelivering(t *testing.T) {
	runKill9(t, true)
}

func runKill9(t *testing.T, online bool) {
	if testing.Short() {
		t.Skip("builds the hub and kills it with SIGKILL several times; skipped with -short")
	}
	seed := envInt(t, "MQHUB_CRASH_SEED", time.Now().UnixNano())
	rounds := max(int(envInt(t, "MQHUB_CRASH_ROUNDS", minRounds)), minRounds)
	t.Logf("seed %d, %d kill rounds (replay the kill moments with MQHUB_CRASH_SEED=%d)", seed, rounds, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d716875626b696c))
	killDelay := func() time.Duration {
		return minKillDelay + time.Duration(rng.Int64N(int64(maxKillDelay-minKillDelay)))
	}

	bin := hubBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, bin: bin, dataDir: filepath.Join(t.TempDir(), "data"), addr: addr}
	testStart := time.Now()

	hub := h.start()
	t.Logf("hub ready on %s in %s", addr, hub.readyDur)

	// The persistent sessions: subscribe once, then disconnect.
	for i := range numSubscribers {
		c, _, err := dialSession(addr, subscriberID(i))
		if err != nil {
			t.Fatalf("subscriber %s: %v", subscriberID(i), err)
		}
		c.Subscribe(t, inbox(i), 1)
		closeClient(c)
	}

	g := newGate()
	g.up()
	var progress atomic.Int64

	// Subscribers first, so that their cleanup runs after the publishers'.
	subStop := make(chan struct{})
	var subWG sync.WaitGroup
	subs := make([]*subscriber, numSubscribers)
	for i := range subs {
		subs[i] = &subscriber{idx: i}
		if online {
			subWG.Go(func() { subs[i].run(addr, g, subStop) })
		}
	}
	stopSubscribers := stopper(t, "subscribers", subStop, &subWG)
	t.Cleanup(stopSubscribers)

	pubStop := make(chan struct{})
	var pubWG sync.WaitGroup
	pubs := make([]*publisher, numPublishers)
	for i := range pubs {
		pubs[i] = newPublisher(i)
		pubWG.Go(func() { pubs[i].run(addr, g, pubStop, &progress) })
	}
	stopPublishers := stopper(t, "publishers", pubStop, &pubWG)
	t.Cleanup(stopPublishers)

	var readyTimes []time.Duration
	for round := 1; round <= rounds; round++ {
		delay := killDelay()
		before := progress.Load()
		select {
		case <-time.After(delay):
		case <-hub.done:
			t.Fatalf("round %d: hub exited on its own (%v); stderr:\n%s", round, hub.exitErr, tail(hub.stderr(), 4000))
		}
		g.down()
		if err := hub.kill(); err != nil {
			t.Fatal(err)
		}
		if msg := hub.crashed(); msg != "" {
			t.Fatalf("round %d: hub crashed before the kill:\n%s", round, msg)
		}
		killedAt := progress.Load()
		hub = h.start()
		readyTimes = append(readyTimes, hub.readyDur)
		t.Logf("round %d: killed %s after ready, %d messages acknowledged in the round (%d total); restart ready in %s",
			round, delay, killedAt-before, killedAt, hub.readyDur)
		g.up()
	}

	// The last restart is up: let the publishers get going on it, then stop them.
	select {
	case <-time.After(killDelay()):
	case <-hub.done:
		t.Fatalf("hub exited on its own (%v); stderr:\n%s", hub.exitErr, tail(hub.stderr(), 4000))
	}
	stopPublishers()
	stopSubscribers()
	publishDone := time.Now()

	acked := make([]map[msgKey]bool, numSubscribers)
	for i := range acked {
		acked[i] = map[msgKey]bool{}
	}
	sent := make([]int, numStreams)
	var totalAcked, totalRefused, totalLost, totalConns int
	for _, p := range pubs {
		if p.fatal != nil {
			t.Error(p.fatal)
		}
		totalConns += p.conns
		for _, st := range p.streams {
			for _, seq := range st.acked {
				acked[subscriberFor(st.idx, seq)][msgKey{st.idx, seq}] = true
			}
			sent[st.idx] = st.sent
			totalAcked += len(st.acked)
			totalRefused += st.refused
			totalLost += st.lost
		}
	}
	t.Logf("publishers: %d messages sent on %d streams, %d acknowledged, %d refused, %d publish errors, %d connections",
		sumInts(sent), numStreams, totalAcked, totalRefused, totalLost, totalConns)
	if totalAcked == 0 {
		t.Fatal("no message was acknowledged: the test exercised nothing")
	}
	if online {
		var conns, early int
		for _, s := range subs {
			if s.fatal != nil {
				t.Error(s.fatal)
			}
			if s.noSession > 0 {
				t.Errorf("%s: %d of %d reconnections got session present = false: the persistent session was lost",
					subscriberID(s.idx), s.noSession, s.conns)
			}
			conns += s.conns
			early += len(s.got)
		}
		t.Logf("subscribers online during the kill rounds: %d connections, %d deliveries", conns, early)
	}

	// Drain every session at once: what it has not received yet.
	results := make([]drainResult, numSubscribers)
	deadline := time.Now().Add(drainTimeout)
	var dwg sync.WaitGroup
	for i := range numSubscribers {
		want := maps.Clone(acked[i])
		for _, d := range subs[i].got {
			delete(want, msgKey{d.pub, d.seq})
		}
		dwg.Go(func() { results[i] = drain(addr, i, subs[i].conns+1, want, deadline) })
	}
	dwg.Wait()
	t.Logf("drain took %s", time.Since(publishDone).Round(time.Millisecond))

	// Check each subscriber.
	var st checkStats
	for i, r := range results {
		id := subscriberID(i)
		if r.err != nil {
			t.Errorf("%s: drain: %v", id, r.err)
		}
		if r.err == nil && !r.sessionPresent {
			t.Errorf("%s: CONNACK session present = false after the last restart: the persistent session was lost", id)
		}
		checkSubscriber(t, id, append(slices.Clone(subs[i].got), r.got...), acked[i], sent, &st)
	}
	t.Logf("subscribers: %d deliveries, %d acknowledged messages missing, %d stored without PUBACK (allowed), %d duplicates (%d with DUP)",
		st.delivered, st.missing, st.unacked, st.dups, st.dupsMarked)

	// Every run of the hub: no panic; warnings and errors logged for the record.
	for n, p := range h.procs {
		if msg := p.crashed(); msg != "" {
			t.Errorf("hub run %d crashed:\n%s", n, msg)
		}
		if w := p.warnings(); len(w) > 0 {
			t.Logf("hub run %d logged %d warnings/errors, first: %s", n, len(w), strings.Join(w[:min(len(w), 3)], "\n  "))
		}
	}

	// The last run shuts down cleanly on SIGTERM.
	if err := hub.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hub.done:
		if hub.exitErr != nil {
			t.Errorf("hub exit after SIGTERM: %v, want status 0; stderr:\n%s", hub.exitErr, tail(hub.stderr(), 4000))
		}
		if msg := hub.crashed(); msg != "" {
			t.Errorf("hub crashed during shutdown:\n%s", msg)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("hub still running 15s after SIGTERM")
	}
	slices.Sort(readyTimes)
	t.Logf("restarts ready in %s min, %s median, %s max; whole test %s",
		readyTimes[0], readyTimes[len(readyTimes)/2], readyTimes[len(readyTimes)-1], time.Since(testStart).Round(time.Millisecond))
}

// stopper returns a function that closes stop and waits for wg, once.
func stopper(t *testing.T, what string, stop chan struct{}, wg *sync.WaitGroup) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(stopTimeout):
				t.Errorf("%s still running %s after stop", what, stopTimeout)
				<-done // do not race on their fields
			}
		})
	}
}

type checkStats struct {
	delivered, missing, unacked, dups, dupsMarked int
}

// checkSubscriber checks everything one subscriber received, in order of
// arrival: every acknowledged message arrived; nothing arrived that was not
// published to it; any second copy has DUP; the first copies of
// acknowledged messages follow each stream's order.
func checkSubscriber(t *testing.T, id string, got []delivery, acked map[msgKey]bool, sent []int, st *checkStats) {
	t.Helper()
	seen := map[msgKey]delivery{}
	last := map[int]int{} // stream -> highest acknowledged seq delivered so far
	var bad, undup, disorder []string
	for _, d := range got {
		st.delivered++
		if d.bad != "" {
			bad = append(bad, d.bad)
			continue
		}
		k := msgKey{d.pub, d.seq}
		if d.seq >= sent[d.pub] {
			bad = append(bad, fmt.Sprintf("%d:%d was never published", d.pub, d.seq))
			continue
		}
		if first, ok := seen[k]; ok {
			st.dups++
			if d.dup {
				st.dupsMarked++
			} else {
				undup = append(undup, fmt.Sprintf("%d:%d (connections %d and %d)", d.pub, d.seq, first.conn, d.conn))
			}
			continue
		}
		seen[k] = d
		if !acked[k] {
			st.unacked++ // stored, PUBACK lost to a kill: allowed
			continue
		}
		if prev, ok := last[d.pub]; ok && d.seq < prev {
			disorder = append(disorder, fmt.Sprintf("%d:%d after %d:%d", d.pub, d.seq, d.pub, prev))
		}
		last[d.pub] = max(last[d.pub], d.seq)
	}
	var missing []msgKey
	for k := range acked {
		if _, ok := seen[k]; !ok {
			missing = append(missing, k)
		}
	}
	slices.SortFunc(missing, func(a, b msgKey) int {
		if a.pub != b.pub {
			return a.pub - b.pub
		}
		return a.seq - b.seq
	})
	st.missing += len(missing)
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d acknowledged messages missing: %s", id, len(missing), len(acked), formatKeys(missing, 20))
	}
	if len(bad) > 0 {
		t.Errorf("%s: %d messages that are not its own: %s", id, len(bad), strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	if len(undup) > 0 {
		t.Errorf("%s: %d messages delivered again without DUP: %s", id, len(undup), strings.Join(undup[:min(len(undup), 10)], "; "))
	}
	if len(disorder) > 0 {
		t.Errorf("%s: %d acknowledged messages out of their stream's order: %s",
			id, len(disorder), strings.Join(disorder[:min(len(disorder), 10)], "; "))
	}
}

func sumInts(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func formatKeys(keys []msgKey, n int) string {
	var b strings.Builder
	for i, k := range keys {
		if i == n {
			fmt.Fprintf(&b, " ... (%d more)", len(keys)-n)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", k.pub, k.seq)
	}
	return b.String()
}
