package storage

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Writes to the queues of sessions that end with their connection are
// committed without an fsync; anything that touches a persistent queue
// still is, and the volatile writes are readable and counted all the same.
func TestVolatileQueuesSkipTheFsync(t *testing.T) {
	s := openStore(t, Options{Durability: DurabilitySync})
	s.SetVolatile("clean", true)
	syncs := func() uint64 { return s.Stats().Syncs.Load() }
	step := func(what string, wantSync bool, do func()) {
		t.Helper()
		before := syncs()
		do()
		if got := syncs() - before; (got > 0) != wantSync {
			t.Fatalf("%s: %d fsyncs, want fsync %v", what, got, wantSync)
		}
	}

	step("enqueue to a clean session", false, func() { mustEnqueue(t, s, msg("t", "1"), "clean") })
	step("enqueue to a persistent session", true, func() { mustEnqueue(t, s, msg("t", "2"), "kept") })
	step("enqueue to both", true, func() { mustEnqueue(t, s, msg("t", "3"), "clean", "kept") })
	step("ack on the clean queue", false, func() {
		if err := s.Ack(bg, "clean", 1); err != nil {
			t.Fatal(err)
		}
	})
	step("ack on the persistent queue", true, func() {
		if err := s.Ack(bg, "kept", 1); err != nil {
			t.Fatal(err)
		}
	})
	if es := mustRead(t, s, "clean", 0, 10); len(es) != 1 || string(es[0].Message.Payload) != "3" {
		t.Fatalf("clean queue holds %+v, want message 3", es)
	}
	if n, _ := s.Len("clean"); n != 1 {
		t.Fatalf("clean queue length %d, want 1", n)
	}

	s.SetVolatile("clean", false)
	step("enqueue once the mark is gone", true, func() { mustEnqueue(t, s, msg("t", "4"), "clean") })
}

// A volatile queue keeps its entries in memory: nothing of it reaches
// Badger, and it behaves as a queue on disk does (order, out-of-order
// acks, limits, expiry, rollback of a failed commit, deletion).
func TestVolatileQueueInMemory(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Now: clk.Now, Queue: QueueLimits{MaxMessages: 3, Policy: PolicyDropOldest}})
	s.SetVolatile("v", true)
	payloads := func() []string {
		t.Helper()
		var out []string
		for _, e := range mustRead(t, s, "v", 0, 10) {
			out = append(out, string(e.Message.Payload))
		}
		return out
	}
	expect := func(what string, want ...string) {
		t.Helper()
		if got := payloads(); !slices.Equal(got, want) {
			t.Fatalf("%s: queue holds %q, want %q", what, got, want)
		}
		if n, _ := s.Len("v"); n != len(want) {
			t.Fatalf("%s: Len = %d, want %d", what, n, len(want))
		}
	}

	for _, p := range []string{"1", "2", "3"} {
		mustEnqueue(t, s, msg("t", p), "v")
	}
	expect("three enqueued", "1", "2", "3")
	if err := s.Ack(bg, "v", 2); err != nil {
		t.Fatal(err)
	}
	expect("2 acknowledged out of order", "1", "3")
	mustEnqueue(t, s, msg("t", "4"), "v")
	mustEnqueue(t, s, msg("t", "5"), "v")
	expect("over the limit of 3, the oldest dropped", "3", "4", "5")

	// A failed commit leaves the queue as it was.
	fail := func() error { return errors.New("injected commit failure") }
	s.faults.commit.Store(&fail)
	if err := s.Ack(bg, "v", 3); err == nil {
		t.Fatal("ack under a failing commit succeeded")
	}
	if _, err := s.Enqueue(bg, []string{"v"}, msg("t", "lost")); err == nil {
		t.Fatal("enqueue under a failing commit succeeded")
	}
	s.faults.commit.Store(nil)
	expect("after failed commits", "3", "4", "5")

	// Expired entries are skipped by Read and then dropped.
	m := msg("t", "short")
	m.ExpiresAt = clk.Now().Unix() + 10
	mustEnqueue(t, s, m, "v")
	clk.Advance(time.Minute)
	if got := payloads(); !slices.Equal(got, []string{"4", "5"}) {
		t.Fatalf("Read returned %q with one expired, want 4 and 5", got)
	}
	// Read dropped it in the background; an op behind that drop settles it.
	if err := s.Ack(bg, "v", 1000); err != nil {
		t.Fatal(err)
	}
	expect("one expired and dropped", "4", "5")

	// Nothing of it is on disk.
	err := s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{sidPrefix(famQueue, "v", 0), countersKey("v")} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			it.Rewind()
			valid := it.Valid()
			it.Close()
			if valid {
				return fmt.Errorf("key with prefix %q in Badger", prefix)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteSession(bg, "v"); err != nil {
		t.Fatal(err)
	}
	expect("session deleted")
	if seqs := mustEnqueue(t, s, msg("t", "again"), "v"); seqs[0] != 1 {
		t.Fatalf("first seq after the session was deleted: %d, want 1", seqs[0])
	}
	expect("a new session", "again")
}

// MemoryQueueMaxBytes bounds a memory queue below the disk queue limit.
func TestMemoryQueueLimit(t *testing.T) {
	mk := func() *Message { m := msg("t", "0123456789"); m.Created = 1; return m }
	val, err := mk().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{MemoryQueueMaxBytes: int64(2*len(val) + len(val)/2)})
	s.SetVolatile("clean", true)
	for range 2 {
		mustEnqueue(t, s, mk(), "clean", "kept")
	}
	_, err = s.Enqueue(bg, []string{"clean", "kept"}, mk())
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third message: %v, want ErrQueueFull for the memory queue", err)
	}
	if n, _ := s.Len("clean"); n != 2 {
		t.Fatalf("memory queue holds %d, want 2", n)
	}
	if n, _ := s.Len("kept"); n != 3 {
		t.Fatalf("disk queue holds %d, want 3 (its own limit is not reached)", n)
	}
}
