package storage

import (
	"errors"
	"testing"
)

// enqueueAll runs EnqueueAllAsync and waits for its answer.
func enqueueAll(t *testing.T, s *Store, ds ...Delivery) error {
	t.Helper()
	w := make(chan error, 1)
	if err := s.EnqueueAllAsync(ds, func(err error) { w <- err }); err != nil {
		return err
	}
	return <-w
}

func TestEnqueueAllIsAllOrNothing(t *testing.T) {
	s := openStore(t, Options{Queue: QueueLimits{MaxMessages: 1}})
	mustEnqueue(t, s, msg("t", "x"), "full")
	err := enqueueAll(t, s,
		Delivery{Sessions: []string{"ok", "other"}, Message: msg("t", "y")},
		Delivery{Sessions: []string{"full"}, Message: msg("sync", "y")})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err %v, want ErrQueueFull", err)
	}
	for _, id := range []string{"ok", "other"} {
		if n, _ := s.Len(id); n != 0 {
			t.Fatalf("%s holds %d entries of a refused write", id, n)
		}
	}
	if err := enqueueAll(t, s, Delivery{Sessions: []string{"ok", "other"}, Message: msg("t", "y")}); err != nil {
		t.Fatal(err)
	}
	// The refused write left no hole: the next entries are seq 1.
	for _, id := range []string{"ok", "other"} {
		if e, err := s.Read(id, 0, 10); err != nil || len(e) != 1 || e[0].Seq != 1 {
			t.Fatalf("%s: %+v, %v", id, e, err)
		}
	}
}

func TestRoomThenAdmitted(t *testing.T) {
	s := openStore(t, Options{Queue: QueueLimits{MaxMessages: 1, MaxBytes: 1 << 10}})
	mustEnqueue(t, s, msg("t", "x"), "full")
	if err := s.Room([]string{"ok", "full"}, msg("t", "y")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Room with a full queue: %v", err)
	}
	big := msg("t", string(make([]byte, 2<<10)))
	if err := s.Room([]string{"ok"}, big); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Room for a message over MaxBytes: %v", err)
	}
	if err := s.Room([]string{"ok"}, msg("t", "y")); err != nil {
		t.Fatal(err)
	}
	// A queue that filled after Room admitted the write takes it anyway.
	w := make(chan error, 1)
	if err := s.EnqueueAdmittedAsync([]string{"full"}, msg("t", "y"), func(_ []uint64, err error) { w <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-w; err != nil {
		t.Fatalf("admitted write refused: %v", err)
	}
	if n, _ := s.Len("full"); n != 2 {
		t.Fatalf("Len %d, want 2 (one over the limit)", n)
	}
}
