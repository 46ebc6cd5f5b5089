package storage

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// recordSent records synchronously through RecordSentAsync's callback.
func recordSent(t *testing.T, s *Store, sender, id, topic string, ttl time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	if err := s.RecordSentAsync(sender, id, topic, ttl, func(err error) { done <- err }); err != nil {
		t.Fatalf("RecordSentAsync: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RecordSentAsync done: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RecordSentAsync: done not called")
	}
}

func TestSentRecords(t *testing.T) {
	s := openStore(t, Options{})
	recordSent(t, s, "alice", "m1", "u/bob/inbox", time.Hour)
	recordSent(t, s, "al", "icem1", "g/team", 0) // key prefix of alice's "m1" record if not length-prefixed
	recordSent(t, s, "alice", strings.Repeat("i", MaxMessageIDLen), "g/team", time.Hour)
	for _, tc := range []struct{ sender, id, topic string }{
		{"alice", "m1", "u/bob/inbox"},
		{"al", "icem1", "g/team"},
		{"alice", strings.Repeat("i", MaxMessageIDLen), "g/team"},
	} {
		if got, err := s.SentTopic(tc.sender, tc.id); err != nil || got != tc.topic {
			t.Errorf("SentTopic(%q, %q) = %q, %v; want %q", tc.sender, tc.id, got, err, tc.topic)
		}
	}
	for _, tc := range []struct{ sender, id string }{{"bob", "m1"}, {"alice", "m2"}, {"al", "m1"}} {
		if _, err := s.SentTopic(tc.sender, tc.id); !errors.Is(err, ErrNotFound) {
			t.Errorf("SentTopic(%q, %q): %v, want ErrNotFound", tc.sender, tc.id, err)
		}
	}
	// A nil done is allowed; the write still happens.
	if err := s.RecordSentAsync("carol", "x", "g/team", 0, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "carol's record", func() bool { _, err := s.SentTopic("carol", "x"); return err == nil })

	for name, err := range map[string]error{
		"empty id":     s.RecordSentAsync("alice", "", "t", 0, nil),
		"long id":      s.RecordSentAsync("alice", strings.Repeat("i", MaxMessageIDLen+1), "t", 0, nil),
		"bad sender":   s.RecordSentAsync("a/b", "m", "t", 0, nil),
		"empty topic":  s.RecordSentAsync("alice", "m", "", 0, nil),
		"filter topic": s.RecordSentAsync("alice", "m", "g/+", 0, nil),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("RecordSentAsync %s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.SentTopic("alice", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("SentTopic empty id: %v", err)
	}
}

// TestSentRecordExpires checks Badger's TTL: a 1-second record is there
// at first and gone within a bounded wait, while one without TTL stays.
func TestSentRecordExpires(t *testing.T) {
	s := openStore(t, Options{})
	start := time.Now()
	recordSent(t, s, "alice", "short", "u/bob/inbox", time.Second)
	recordSent(t, s, "alice", "forever", "u/bob/inbox", 0)
	_, err := s.SentTopic("alice", "short")
	if time.Since(start) < time.Second && err != nil {
		t.Fatalf("expired early: %v", err)
	}
	eventually(t, "the 1 s record to expire", func() bool {
		_, err := s.SentTopic("alice", "short")
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return errors.Is(err, ErrNotFound)
	})
	if lived := time.Since(start); lived < time.Second {
		t.Fatalf("expired after %v, before its 1 s TTL", lived)
	}
	if got, err := s.SentTopic("alice", "forever"); err != nil || got != "u/bob/inbox" {
		t.Fatalf("record without TTL: %q, %v", got, err)
	}
}

func TestSentRecordsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: zerolog.New(tWriter{t}).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	recordSent(t, s, "alice", "m1", "g/team", time.Hour)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	if got, err := s.SentTopic("alice", "m1"); err != nil || got != "g/team" {
		t.Fatalf("after reopen: %q, %v", got, err)
	}
}
