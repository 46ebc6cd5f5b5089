package storage

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { removeFilledDirs() }))
}

// clock is a settable time source for expiry tests (no sleeping).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testLogger routes logs to t.Log so they show only for failing tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// openStore opens a store in dir (a new temp dir if empty) and closes it
// at the end of the test.
func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Logger = zerolog.New(tWriter{t}).Level(zerolog.WarnLevel)
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// eventually polls cond every millisecond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func msg(topic, payload string) *Message {
	return &Message{Topic: topic, Payload: []byte(payload), QoS: 1}
}

var bg = context.Background()

func mustEnqueue(t testing.TB, s *Store, m *Message, sessions ...string) []uint64 {
	t.Helper()
	seqs, err := s.Enqueue(bg, sessions, m)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return seqs
}

func mustRead(t testing.TB, s *Store, id string, after uint64, max int) []Entry {
	t.Helper()
	es, err := s.Read(id, after, max)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return es
}

func seqsOf(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}
