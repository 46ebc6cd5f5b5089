package storage

import (
	"testing"
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
