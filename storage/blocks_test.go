package storage

import (
	"errors"
	"slices"
	"testing"

	"github.com/rs/zerolog"
)

type blockPair struct{ user, blocked string }

func allBlocks(t *testing.T, s *Store) []blockPair {
	t.Helper()
	var out []blockPair
	if err := s.ListAllBlocks(func(user, blocked string) error {
		out = append(out, blockPair{user, blocked})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func blockedBy(t *testing.T, s *Store, user string) []string {
	t.Helper()
	var out []string
	if err := s.ListBlocked(user, func(b string) error { out = append(out, b); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBlocks(t *testing.T) {
	s := openStore(t, Options{})
	for _, p := range []blockPair{
		{"alice", "mallory"}, {"alice", "eve"}, {"alice", "eve"}, // idempotent
		{"al", "bob"}, {"bob", "alice"},
	} {
		if err := s.Block(bg, p.user, p.blocked); err != nil {
			t.Fatalf("Block(%q, %q): %v", p.user, p.blocked, err)
		}
	}
	// "al" is a prefix of "alice": the lists are still disjoint.
	if got := blockedBy(t, s, "alice"); !slices.Equal(got, []string{"eve", "mallory"}) {
		t.Fatalf("alice blocked %v", got)
	}
	if got := blockedBy(t, s, "al"); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("al blocked %v", got)
	}
	if got := blockedBy(t, s, "nobody"); len(got) != 0 {
		t.Fatalf("nobody blocked %v", got)
	}
	want := []blockPair{{"al", "bob"}, {"bob", "alice"}, {"alice", "eve"}, {"alice", "mallory"}}
	if got := allBlocks(t, s); !slices.Equal(got, want) {
		t.Fatalf("ListAllBlocks = %v, want %v", got, want)
	}

	if err := s.Unblock(bg, "alice", "eve"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unblock(bg, "alice", "eve"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unblock twice: %v", err)
	}
	if err := s.Unblock(bg, "bob", "al"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unblock never blocked: %v", err)
	}
	if got := blockedBy(t, s, "alice"); !slices.Equal(got, []string{"mallory"}) {
		t.Fatalf("after unblock alice blocked %v", got)
	}

	stop := errors.New("stop")
	if err := s.ListBlocked("alice", func(string) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ListBlocked error: %v", err)
	}
	if err := s.ListAllBlocks(func(string, string) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ListAllBlocks error: %v", err)
	}
}

func TestBlocksRejectInvalid(t *testing.T) {
	s := openStore(t, Options{})
	for name, err := range map[string]error{
		"Block self":        s.Block(bg, "alice", "alice"),
		"Block bad user":    s.Block(bg, "a/b", "bob"),
		"Block bad blocked": s.Block(bg, "alice", ""),
		"Unblock self":      s.Unblock(bg, "alice", "alice"),
		"Unblock bad":       s.Unblock(bg, "alice", "#"),
		"ListBlocked bad":   s.ListBlocked("+", func(string) error { return nil }),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if got := allBlocks(t, s); len(got) != 0 {
		t.Fatalf("invalid blocks stored: %v", got)
	}
}

func TestBlocksSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: zerolog.New(tWriter{t}).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Block(bg, "alice", "eve"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	if got := allBlocks(t, s); !slices.Equal(got, []blockPair{{"alice", "eve"}}) {
		t.Fatalf("after reopen: %v", got)
	}
}
