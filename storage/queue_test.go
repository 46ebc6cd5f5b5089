package storage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestQueueRoundTrip(t *testing.T) {
	s := openStore(t, Options{Now: newClock().Now})
	m := fullMessage()
	seqs := mustEnqueue(t, s, m, "a", "b", "a")
	if !reflect.DeepEqual(seqs, []uint64{1, 1, 1}) {
		t.Fatalf("seqs = %v", seqs)
	}
	mustEnqueue(t, s, msg("t", "2"), "a")
	es := mustRead(t, s, "a", 0, 10)
	if got := seqsOf(es); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("read seqs = %v", got)
	}
	if !reflect.DeepEqual(&es[0].Message, m) {
		t.Fatalf("message:\n got %+v\nwant %+v", es[0].Message, *m)
	}
	if n, _ := s.Len("a"); n != 2 {
		t.Fatalf("Len = %d", n)
	}
	if b, _ := s.Bytes("a"); b <= 0 {
		t.Fatalf("Bytes = %d", b)
	}
	if es := mustRead(t, s, "a", 1, 10); !reflect.DeepEqual(seqsOf(es), []uint64{2}) {
		t.Fatalf("read after 1 = %v", seqsOf(es))
	}
	if es := mustRead(t, s, "a", 0, 1); len(es) != 1 {
		t.Fatalf("max 1 gave %d", len(es))
	}
	if err := s.Ack(bg, "a", 1, 1, 99); err != nil {
		t.Fatal(err)
	}
	if es := mustRead(t, s, "a", 0, 10); !reflect.DeepEqual(seqsOf(es), []uint64{2}) {
		t.Fatalf("after ack = %v", seqsOf(es))
	}
	if err := s.Ack(bg, "a", 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Len("a"); n != 0 {
		t.Fatalf("Len after acks = %d", n)
	}
	if b, _ := s.Bytes("a"); b != 0 {
		t.Fatalf("Bytes after acks = %d", b)
	}
	// Sequence numbers are never reused while the queue exists.
	if seqs := mustEnqueue(t, s, msg("t", "3"), "a"); seqs[0] != 3 {
		t.Fatalf("seq after drain = %d", seqs[0])
	}
	if n, _ := s.Len("b"); n != 1 {
		t.Fatalf("Len b = %d", n)
	}
	if got := s.Stats().Enqueued.Load(); got != 4 {
		t.Fatalf("Stats.Enqueued = %d", got)
	}
}

func TestInvalidArguments(t *testing.T) {
	s := openStore(t, Options{})
	long := string(make([]byte, 70000))
	tests := []struct {
		name string
		err  error
	}{
		{"no session", func() error { _, err := s.Enqueue(bg, nil, msg("t", "x")); return err }()},
		{"empty session", func() error { _, err := s.Enqueue(bg, []string{""}, msg("t", "x")); return err }()},
		{"long session", func() error { _, err := s.Enqueue(bg, []string{long}, msg("t", "x")); return err }()},
		{"qos 3", func() error { _, err := s.Enqueue(bg, []string{"a"}, &Message{QoS: 3}); return err }()},
		{"read empty id", func() error { _, err := s.Read("", 0, 1); return err }()},
		{"packet id 0", s.MarkSent(bg, "a", 1, 0)},
		{"bad filter", s.MatchRetained("a/#/b", func(*Message) error { return nil })},
		{"wildcard retained", s.PutRetained(bg, msg("a/+", "x"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", tt.err)
			}
		})
	}
}

// TestConcurrentOrder has many goroutines enqueue to the same sessions at
// once: each session's queue must hold every message exactly once, in
// seq order, with no gap, and each writer's own messages in its order.
func TestConcurrentOrder(t *testing.T) {
	s := openStore(t, Options{})
	const writers, perWriter = 16, 40
	sessions := []string{"s1", "s2", "s3"}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				targets := sessions[:1+(w+i)%len(sessions)]
				m := msg("t", fmt.Sprintf("%d/%d", w, i))
				if _, err := s.Enqueue(bg, targets, m); err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b, o := s.Stats().Batches.Load(), s.Stats().Ops.Load(); b >= o {
		t.Logf("no batching observed: %d batches for %d ops", b, o)
	}
	total := 0
	for _, id := range sessions {
		es := mustRead(t, s, id, 0, 1<<20)
		total += len(es)
		last := map[int]int{}
		for i, e := range es {
			if e.Seq != uint64(i+1) {
				t.Fatalf("%s: entry %d has seq %d (gap or disorder)", id, i, e.Seq)
			}
			var w, n int
			fmt.Sscanf(string(e.Message.Payload), "%d/%d", &w, &n)
			if p, ok := last[w]; ok && n <= p {
				t.Fatalf("%s: writer %d message %d after %d", id, w, n, p)
			}
			last[w] = n
		}
		if n, _ := s.Len(id); n != len(es) {
			t.Fatalf("%s: Len %d, read %d", id, n, len(es))
		}
	}
	want := 0
	for w := range writers {
		for i := range perWriter {
			want += 1 + (w+i)%len(sessions)
		}
	}
	if total != want {
		t.Fatalf("read %d entries, want %d", total, want)
	}
}

func TestAsyncCallbacks(t *testing.T) {
	s := openStore(t, Options{})
	type res struct {
		seqs []uint64
		err  error
	}
	ch := make(chan res, 100)
	for i := range 100 {
		if err := s.EnqueueAsync([]string{"a"}, msg("t", fmt.Sprint(i)), func(seqs []uint64, err error) {
			ch <- res{seqs, err}
		}); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	for range 100 {
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		got = append(got, r.seqs[0])
	}
	// Callbacks run in commit order.
	if !slices.IsSorted(got) || got[0] != 1 || got[99] != 100 {
		t.Fatalf("callback seqs out of order: %v", got)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	for _, d := range []Durability{DurabilitySync, DurabilityInterval} {
		t.Run(string(d), func(t *testing.T) {
			dir := dir + "/" + string(d)
			s, err := Open(Options{Dir: dir, Durability: d, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if _, err := s.Enqueue(bg, []string{"a", "b"}, msg("t", fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Ack(bg, "a", 1, 2); err != nil {
				t.Fatal(err)
			}
			if err := s.MarkSent(bg, "a", 3, 77); err != nil {
				t.Fatal(err)
			}
			if err := s.PutSession(bg, fullSession()); err != nil {
				t.Fatal(err)
			}
			if err := s.PutRetained(bg, msg("r/1", "kept")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}

			s = openStore(t, Options{Dir: dir, Durability: d, Now: clk.Now})
			if n, _ := s.Len("a"); n != 8 {
				t.Fatalf("Len a = %d", n)
			}
			es := mustRead(t, s, "a", 0, 100)
			if es[0].Seq != 3 || es[0].PacketID != 77 || es[1].PacketID != 0 {
				t.Fatalf("after reopen: first %+v", es[0])
			}
			e, err := s.LookupPacket("a", 77)
			if err != nil || e.Seq != 3 || string(e.Message.Payload) != "2" {
				t.Fatalf("LookupPacket = %+v, %v", e, err)
			}
			if seqs := mustEnqueue(t, s, msg("t", "new"), "a", "b"); !reflect.DeepEqual(seqs, []uint64{11, 11}) {
				t.Fatalf("seqs after reopen = %v", seqs)
			}
			if ss, err := s.GetSession("bob-phone"); err != nil || !reflect.DeepEqual(ss, fullSession()) {
				t.Fatalf("GetSession = %+v, %v", ss, err)
			}
			if m, err := s.GetRetained("r/1"); err != nil || string(m.Payload) != "kept" {
				t.Fatalf("GetRetained = %v, %v", m, err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	clk := newClock()
	size := func() int64 {
		m := msg("t", "0")
		m.Created = clk.Now().UnixNano()
		b, _ := m.MarshalBinary()
		return int64(len(b))
	}()
	tests := []struct {
		name       string
		lim        QueueLimits
		n          int
		wantSeqs   []uint64 // remaining in queue
		wantErrs   int      // ErrQueueFull results
		wantDrops  uint64
		wantRefuse uint64
	}{
		{"refuse by count", QueueLimits{MaxMessages: 3, Policy: PolicyRefuseNew}, 5, []uint64{1, 2, 3}, 2, 0, 2},
		{"drop by count", QueueLimits{MaxMessages: 3, Policy: PolicyDropOldest}, 5, []uint64{3, 4, 5}, 0, 2, 0},
		{"refuse by bytes", QueueLimits{MaxBytes: 2 * size, Policy: PolicyRefuseNew}, 4, []uint64{1, 2}, 2, 0, 2},
		{"drop by bytes", QueueLimits{MaxBytes: 2 * size, Policy: PolicyDropOldest}, 4, []uint64{3, 4}, 0, 2, 0},
		{"too big alone", QueueLimits{MaxBytes: size - 1, Policy: PolicyDropOldest}, 2, nil, 2, 0, 2},
		{"unlimited", QueueLimits{MaxMessages: -1, MaxBytes: -1}, 5, []uint64{1, 2, 3, 4, 5}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Options{Queue: tt.lim, Now: clk.Now})
			errs := 0
			for i := range tt.n {
				seqs, err := s.Enqueue(bg, []string{"a"}, msg("t", fmt.Sprint(i%10)))
				if errors.Is(err, ErrQueueFull) {
					errs++
					if seqs[0] != 0 {
						t.Fatalf("refused with seq %d", seqs[0])
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if errs != tt.wantErrs {
				t.Fatalf("%d ErrQueueFull, want %d", errs, tt.wantErrs)
			}
			es := mustRead(t, s, "a", 0, 100)
			if got := seqsOf(es); !slices.Equal(got, tt.wantSeqs) {
				t.Fatalf("queue = %v, want %v", got, tt.wantSeqs)
			}
			if n, _ := s.Len("a"); n != len(tt.wantSeqs) {
				t.Fatalf("Len = %d", n)
			}
			st := s.Stats()
			if st.DroppedOldest.Load() != tt.wantDrops || st.RefusedFull.Load() != tt.wantRefuse {
				t.Fatalf("drops %d refused %d", st.DroppedOldest.Load(), st.RefusedFull.Load())
			}
		})
	}
}

func TestRefuseOneOfMany(t *testing.T) {
	s := openStore(t, Options{Queue: QueueLimits{MaxMessages: 1}})
	mustEnqueue(t, s, msg("t", "x"), "full")
	seqs, err := s.Enqueue(bg, []string{"ok", "full"}, msg("t", "y"))
	if !errors.Is(err, ErrQueueFull) || !reflect.DeepEqual(seqs, []uint64{1, 0}) {
		t.Fatalf("seqs %v err %v", seqs, err)
	}
	if n, _ := s.Len("ok"); n != 1 {
		t.Fatalf("stored for the other session: Len %d", n)
	}
}

func TestExpiryAndAge(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Now: clk.Now, Queue: QueueLimits{MaxAge: time.Hour}})
	now := clk.Now().Unix()
	mustEnqueue(t, s, &Message{Topic: "t", ExpiresAt: now + 10}, "a") // 1: expires
	mustEnqueue(t, s, &Message{Topic: "t"}, "a")                      // 2: ages out
	clk.Advance(30 * time.Minute)
	mustEnqueue(t, s, &Message{Topic: "t", ExpiresAt: now + 7200}, "a") // 3: stays
	clk.Advance(31 * time.Minute)
	if got := seqsOf(mustRead(t, s, "a", 0, 10)); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("read = %v", got)
	}
	eventually(t, "expired entries deleted", func() bool {
		n, _ := s.Len("a")
		return n == 1
	})
	if e, a := s.Stats().Expired.Load(), s.Stats().AgedOut.Load(); e != 1 || a != 1 {
		t.Fatalf("expired %d aged %d", e, a)
	}
	// At enqueue, aged-out head entries go first.
	clk.Advance(2 * time.Hour)
	mustEnqueue(t, s, &Message{Topic: "t"}, "a")
	if n, _ := s.Len("a"); n != 1 {
		t.Fatalf("Len after aged enqueue = %d", n)
	}
}

func TestInflightAndAckPacket(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustEnqueue(t, s, msg("t", fmt.Sprint(i)), "a")
	}
	if err := s.MarkSent(bg, "a", 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(bg, "a", 2, 11); err != nil {
		t.Fatal(err)
	}
	// Resent with a new packet ID: the old mapping goes.
	if err := s.MarkSent(bg, "a", 2, 12); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupPacket("a", 11); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old packet id still mapped: %v", err)
	}
	if err := s.MarkSent(bg, "a", 99, 13); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkSent missing entry: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir})
	es := mustRead(t, s, "a", 0, 10)
	if es[0].PacketID != 10 || es[1].PacketID != 12 || es[2].PacketID != 0 {
		t.Fatalf("packet ids after restart: %+v", es)
	}
	e, err := s.AckPacket(bg, "a", 12)
	if err != nil || e.Seq != 2 || string(e.Message.Payload) != "1" {
		t.Fatalf("AckPacket = %+v, %v", e, err)
	}
	if _, err := s.AckPacket(bg, "a", 12); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second AckPacket: %v", err)
	}
	// Packet ID 10 is reused for entry 3 after its entry was acked by seq.
	if err := s.Ack(bg, "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(bg, "a", 3, 10); err != nil {
		t.Fatal(err)
	}
	if e, err := s.LookupPacket("a", 10); err != nil || e.Seq != 3 {
		t.Fatalf("reused packet id = %+v, %v", e, err)
	}
	if n, _ := s.Len("a"); n != 1 {
		t.Fatalf("Len = %d", n)
	}
}

// A queue knows whether it may hold inflight markers: MarkSent sets it,
// the queue emptying clears it (each marker went with its entry), and
// while it is clear acknowledgements and reads skip the marker lookups.
func TestMarkersFollowTheQueue(t *testing.T) {
	s := openStore(t, Options{})
	markers := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queues["a"].pub.markers
	}
	mustEnqueue(t, s, msg("t", "1"), "a")
	mustEnqueue(t, s, msg("t", "2"), "a")
	if markers() {
		t.Fatal("a new queue has markers")
	}
	if err := s.MarkSent(bg, "a", 1, 5); err != nil {
		t.Fatal(err)
	}
	if !markers() {
		t.Fatal("no markers after MarkSent")
	}
	if err := s.Ack(bg, "a", 1, 2); err != nil {
		t.Fatal(err)
	}
	if markers() {
		t.Fatal("an empty queue still has markers")
	}
	if _, err := s.LookupPacket("a", 5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("packet id of an acknowledged entry: %v", err)
	}
	mustEnqueue(t, s, msg("t", "3"), "a")
	if es := mustRead(t, s, "a", 0, 10); len(es) != 1 || es[0].PacketID != 0 {
		t.Fatalf("read = %+v", es)
	}
	if err := s.MarkSent(bg, "a", 3, 6); err != nil {
		t.Fatal(err)
	}
	if es := mustRead(t, s, "a", 0, 10); len(es) != 1 || es[0].PacketID != 6 {
		t.Fatalf("read after MarkSent = %+v", es)
	}
	if err := s.Ack(bg, "a", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupPacket("a", 6); !errors.Is(err, ErrNotFound) {
		t.Fatalf("packet id of an acknowledged entry: %v", err)
	}
}

// Entries acknowledged with the sizes Read gave are removed without a
// lookup while the queue has no gap; a repeated or late acknowledgement
// never counts twice, in order or not, before and after a restart.
func TestAckEntriesKeepsCountsExact(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	for i := range 6 {
		mustEnqueue(t, s, msg("t", fmt.Sprint(i)), "a")
	}
	es := mustRead(t, s, "a", 0, 10)
	full, _ := s.Bytes("a")
	ref := func(seq uint64) AckRef {
		for _, e := range es {
			if e.Seq == seq {
				if e.Size <= 0 {
					t.Fatalf("entry %d read with size %d", seq, e.Size)
				}
				return AckRef{Seq: seq, Size: e.Size}
			}
		}
		t.Fatalf("no entry %d", seq)
		return AckRef{}
	}
	ack := func(seqs ...uint64) {
		t.Helper()
		var refs []AckRef
		for _, seq := range seqs {
			refs = append(refs, ref(seq))
		}
		w := make(waiter, 1)
		if err := s.AckEntriesAsync("a", refs, func(err error) { w <- err }); err != nil {
			t.Fatal(err)
		}
		if err := w.wait(nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	check := func(wantSeqs []uint64) {
		t.Helper()
		got := seqsOf(mustRead(t, s, "a", 0, 10))
		if !slices.Equal(got, wantSeqs) {
			t.Fatalf("queue = %v, want %v", got, wantSeqs)
		}
		if n, _ := s.Len("a"); n != len(wantSeqs) {
			t.Fatalf("Len = %d, want %d", n, len(wantSeqs))
		}
		var want int64
		for _, seq := range wantSeqs {
			want += ref(seq).Size
		}
		if b, _ := s.Bytes("a"); b != want {
			t.Fatalf("Bytes = %d, want %d (of %d)", b, want, full)
		}
	}
	ack(1, 2)
	ack(2) // repeated, below the head now
	check([]uint64{3, 4, 5, 6})
	ack(5) // out of order: a gap
	ack(5) // repeated above the head: looked up, not counted again
	check([]uint64{3, 4, 6})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	ack(5) // after a restart the gap is known from the counters
	check([]uint64{3, 4, 6})
	ack(3, 4, 6)
	check(nil)
	mustEnqueue(t, s, msg("t", "7"), "a") // empty again: no gap
	es = mustRead(t, s, "a", 0, 10)
	ack(7)
	ack(7)
	check(nil)
}

// TestFailedCommitLeavesNoHole injects a Badger commit failure: every
// caller of that batch gets ErrCommit, no sequence number is consumed,
// and the queue goes on without a gap.
func TestFailedCommitLeavesNoHole(t *testing.T) {
	s := openStore(t, Options{})
	mustEnqueue(t, s, msg("t", "1"), "a")
	boom := errors.New("disk full")
	fail := func() error { return boom }
	s.faults.commit.Store(&fail)
	_, err := s.Enqueue(bg, []string{"a"}, msg("t", "lost"))
	if !errors.Is(err, ErrCommit) || !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	s.faults.commit.Store(nil)
	if seqs := mustEnqueue(t, s, msg("t", "2"), "a"); seqs[0] != 2 {
		t.Fatalf("seq after failed commit = %d, want 2", seqs[0])
	}
	if got := seqsOf(mustRead(t, s, "a", 0, 10)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("queue = %v", got)
	}
	if n, _ := s.Len("a"); n != 2 {
		t.Fatalf("Len = %d", n)
	}
}

// TestFailedSync: after an fsync error nobody is told a write is safe,
// and the store refuses writes until reopened.
func TestFailedSync(t *testing.T) {
	s := openStore(t, Options{})
	mustEnqueue(t, s, msg("t", "1"), "a")
	fail := func() error { return errors.New("eio") }
	s.faults.sync.Store(&fail)
	if _, err := s.Enqueue(bg, []string{"a"}, msg("t", "2")); !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Enqueue(bg, []string{"a"}, msg("t", "3")); !errors.Is(err, ErrFailed) {
		t.Fatalf("later write: %v", err)
	}
	// The unsynced entry is not visible to readers.
	if got := seqsOf(mustRead(t, s, "a", 0, 10)); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("queue = %v", got)
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]error{
		"Enqueue":    func() error { _, err := s.Enqueue(bg, []string{"a"}, msg("t", "x")); return err }(),
		"Read":       func() error { _, err := s.Read("a", 0, 1); return err }(),
		"Len":        func() error { _, err := s.Len("a"); return err }(),
		"Ack":        s.Ack(bg, "a", 1),
		"PutSession": s.PutSession(bg, &Session{ClientID: "a"}),
		"GetSession": func() error { _, err := s.GetSession("a"); return err }(),
		"Retained":   s.PutRetained(bg, msg("t", "x")),
		"Match":      s.MatchRetained("#", func(*Message) error { return nil }),
		"Delete":     s.DeleteSession(bg, "a"),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

// TestCloseWhileWriting closes the store under concurrent writers: every
// call either succeeds (and is on disk after reopen) or gets ErrClosed.
func TestCloseWhileWriting(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := s.Enqueue(bg, []string{"a"}, msg("t", "x"))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	eventually(t, "some writes", func() bool { mu.Lock(); defer mu.Unlock(); return ok >= 50 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openStore(t, Options{Dir: dir})
	if n, _ := s.Len("a"); n != ok {
		t.Fatalf("Len after reopen = %d, acknowledged %d", n, ok)
	}
}

func TestContextCancel(t *testing.T) {
	s := openStore(t, Options{})
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.Enqueue(ctx, []string{"a"}, msg("t", "x")); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	// One Enqueue is one atomic write: a fan-out beyond one Badger
	// transaction (15% of MemTableSize) is refused as a whole.
	s := openStore(t, Options{MemTableSize: 1 << 20})
	var many []string
	for i := range 3000 {
		many = append(many, fmt.Sprintf("member-%04d", i))
	}
	if _, err := s.Enqueue(bg, many, &Message{Topic: "t", Payload: make([]byte, 100)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if n, _ := s.Len(many[0]); n != 0 {
		t.Fatalf("partial write: Len = %d", n)
	}
	if seqs := mustEnqueue(t, s, msg("t", "small"), many[0]); seqs[0] != 1 {
		t.Fatalf("seq = %d", seqs[0])
	}
}

// TestVisibleBeforeSync: with VisibleBeforeSync an entry is readable, and
// OnVisible names its session, while its fsync is still running; the
// writer is answered only after the fsync.
func TestVisibleBeforeSync(t *testing.T) {
	visible := make(chan []string, 10)
	s := openStore(t, Options{VisibleBeforeSync: true, OnVisible: func(ids []string) { visible <- ids }})
	release := make(chan struct{})
	inSync := make(chan struct{}, 1)
	slow := func() error {
		inSync <- struct{}{}
		<-release
		return nil
	}
	s.faults.sync.Store(&slow)
	answered := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(bg, []string{"a"}, msg("t", "early"))
		answered <- err
	}()
	<-inSync // the batch is committed and its fsync is running
	if ids := <-visible; !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("OnVisible(%v), want [a]", ids)
	}
	if got := seqsOf(mustRead(t, s, "a", 0, 10)); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("queue during fsync = %v, want [1]", got)
	}
	select {
	case err := <-answered:
		t.Fatalf("writer answered before its fsync finished: %v", err)
	default:
	}
	close(release)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	s.faults.sync.Store(nil)
}

// TestOnAppended: each stored message is reported once per queue with its
// sequence number, before OnVisible, and not for a queue that refused it.
func TestOnAppended(t *testing.T) {
	type appended struct {
		id      string
		seq     uint64
		payload string
	}
	var mu sync.Mutex
	var got []appended
	var order []string
	sizes := map[string]int64{}
	s := openStore(t, Options{
		Queue: QueueLimits{MaxMessages: 1, Policy: PolicyRefuseNew},
		OnAppended: func(id string, seq uint64, m *Message, size int64) {
			mu.Lock()
			got = append(got, appended{id, seq, string(m.Payload)})
			sizes[id] = size
			order = append(order, "appended")
			mu.Unlock()
		},
		OnVisible: func([]string) {
			mu.Lock()
			order = append(order, "visible")
			mu.Unlock()
		},
	})
	mustEnqueue(t, s, msg("t", "one"), "a", "b", "a")
	if _, err := s.Enqueue(bg, []string{"a", "c"}, msg("t", "two")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("enqueue to a full queue: %v, want ErrQueueFull", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []appended{{"a", 1, "one"}, {"b", 1, "one"}, {"c", 1, "two"}}
	if !slices.Equal(got, want) {
		t.Fatalf("OnAppended calls %v, want %v", got, want)
	}
	if want := []string{"appended", "appended", "visible", "appended", "visible"}; !slices.Equal(order, want) {
		t.Fatalf("callbacks in order %v, want %v", order, want)
	}
	// The size is what the queue counts, and what Read reports.
	if n, _ := s.Bytes("b"); sizes["b"] <= 0 || sizes["b"] != n {
		t.Fatalf("appended size %d, queue bytes %d", sizes["b"], n)
	}
	if es := mustRead(t, s, "b", 0, 1); len(es) != 1 || es[0].Size != sizes["b"] {
		t.Fatalf("Read %+v, appended size %d", es, sizes["b"])
	}
}
