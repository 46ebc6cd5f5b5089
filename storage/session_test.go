package storage

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestSessionCRUD(t *testing.T) {
	s := openStore(t, Options{})
	if _, err := s.GetSession("none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession missing: %v", err)
	}
	want := fullSession()
	for _, id := range []string{"c2", "c1", want.ClientID} {
		ss := *want
		ss.ClientID = id
		if err := s.PutSession(bg, &ss); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetSession(want.ClientID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	var ids []string
	if err := s.ListSessions(func(ss *Session) error { ids = append(ids, ss.ClientID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"c1", "c2", want.ClientID}) {
		t.Fatalf("ListSessions = %v", ids)
	}
	stop := errors.New("stop")
	if err := s.ListSessions(func(*Session) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ListSessions error: %v", err)
	}
	if err := s.DeleteSession(bg, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession("c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestDeleteSessionRemovesQueue deletes a session whose queue spans
// several purge chunks, with inflight markers, and checks nothing is left.
func TestDeleteSessionRemovesQueue(t *testing.T) {
	s := openStore(t, Options{})
	if err := s.PutSession(bg, &Session{ClientID: "a"}); err != nil {
		t.Fatal(err)
	}
	const n = 2*purgeChunk + 10
	for i := 0; i < n; i += 100 {
		errs := make(chan error, 100)
		for j := range 100 {
			if err := s.EnqueueAsync([]string{"a", "b"}, msg("t", fmt.Sprint(i+j)), func(_ []uint64, err error) { errs <- err }); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.MarkSent(bg, "a", 5, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Len("a"); n != 0 {
		t.Fatalf("Len after delete = %d", n)
	}
	if es := mustRead(t, s, "a", 0, 10); len(es) != 0 {
		t.Fatalf("read after delete: %v", seqsOf(es))
	}
	if _, err := s.LookupPacket("a", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("packet mapping survived: %v", err)
	}
	for _, fam := range []byte{famQueue, famInflight, famPacket, famCounters, famSession} {
		if k := countKeys(t, s, sidPrefix(fam, "a", 0)); k != 0 {
			t.Fatalf("%d keys of family %c left", k, fam)
		}
	}
	if n, _ := s.Len("b"); n != 2*purgeChunk+100 {
		t.Fatalf("other session touched: Len b = %d", n)
	}
	// A new session with the same ID starts afresh.
	if seqs := mustEnqueue(t, s, msg("t", "new"), "a"); seqs[0] != 1 {
		t.Fatalf("seq of recreated session = %d", seqs[0])
	}
}

func countKeys(t *testing.T, s *Store, prefix []byte) int {
	t.Helper()
	n := 0
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badgerKeysOnly(prefix))
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}

func TestDeleteExpiredSessions(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Now: clk.Now})
	now := clk.Now()
	sessions := []*Session{
		{ClientID: "connected", ExpiryInterval: 10},
		{ClientID: "expired", ExpiryInterval: 10, DisconnectedAt: now.Add(-11 * time.Second).UnixNano()},
		{ClientID: "clean", ExpiryInterval: 0, DisconnectedAt: now.UnixNano()},
		{ClientID: "pending", ExpiryInterval: 10, DisconnectedAt: now.Add(-5 * time.Second).UnixNano()},
		{ClientID: "forever", ExpiryInterval: NeverExpire, DisconnectedAt: 1},
	}
	for _, ss := range sessions {
		if err := s.PutSession(bg, ss); err != nil {
			t.Fatal(err)
		}
		mustEnqueue(t, s, msg("t", "x"), ss.ClientID)
	}
	got, err := s.DeleteExpiredSessions(bg, now)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"clean", "expired"}) {
		t.Fatalf("deleted %v", got)
	}
	for _, ss := range sessions {
		_, err := s.GetSession(ss.ClientID)
		n, _ := s.Len(ss.ClientID)
		gone := ss.ClientID == "clean" || ss.ClientID == "expired"
		if gone != errors.Is(err, ErrNotFound) || gone != (n == 0) {
			t.Fatalf("%s: get err %v, Len %d", ss.ClientID, err, n)
		}
	}
	got, _ = s.DeleteExpiredSessions(bg, now.Add(6*time.Second))
	if !slices.Equal(got, []string{"pending"}) {
		t.Fatalf("second sweep deleted %v", got)
	}
}

func TestDeleteOrphanQueues(t *testing.T) {
	s := openStore(t, Options{})
	kept := &Session{ClientID: "kept", ExpiryInterval: 60}
	if err := s.PutSession(bg, kept); err != nil {
		t.Fatal(err)
	}
	// More orphans than one scan page, to cross the paging.
	ids := []string{"kept"}
	for i := range purgeChunk + 3 {
		ids = append(ids, fmt.Sprintf("clean-%04d", i))
	}
	if _, err := s.Enqueue(bg, ids, msg("t", "x")); err != nil {
		t.Fatal(err)
	}
	deleted, err := s.DeleteOrphanQueues(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != purgeChunk+3 || slices.Contains(deleted, "kept") {
		t.Fatalf("deleted %d queues (kept included: %v), want %d orphans", len(deleted), slices.Contains(deleted, "kept"), purgeChunk+3)
	}
	if n, err := s.Len("kept"); err != nil || n != 1 {
		t.Fatalf("kept queue: %d, %v", n, err)
	}
	if n, err := s.Len("clean-0000"); err != nil || n != 0 {
		t.Fatalf("orphan queue: %d, %v", n, err)
	}
}
