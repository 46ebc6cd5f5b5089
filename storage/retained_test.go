package storage

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func badgerKeysOnly(prefix []byte) badger.IteratorOptions {
	return badger.IteratorOptions{Prefix: prefix}
}

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a/", true},
		{"a/+/c", "a/b/c", true},
		{"+/+", "/x", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/b/#", "a/b", true},
		{"a/+/#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"a/b", "a/b/", false},
		{"a/b/", "a/b/", true},
	}
	for _, tt := range tests {
		t.Run(tt.filter+" "+tt.topic, func(t *testing.T) {
			if got := MatchTopic(tt.filter, tt.topic); got != tt.want {
				t.Fatalf("MatchTopic(%q, %q) = %v", tt.filter, tt.topic, got)
			}
		})
	}
}

func TestLiteralPrefix(t *testing.T) {
	for filter, want := range map[string]string{
		"a/b": "a/b", "a/b/#": "a/b", "#": "", "+/x": "", "a/+/c": "a/", "$SYS/#": "$SYS",
	} {
		if got := literalPrefix(filter); got != want {
			t.Errorf("literalPrefix(%q) = %q, want %q", filter, got, want)
		}
	}
}

func TestRetained(t *testing.T) {
	s := openStore(t, Options{Now: newClock().Now})
	topics := []string{"a", "a/b", "a/b/c", "a/c", "ab", "$SYS/x", "x/y"}
	for _, tp := range topics {
		if err := s.PutRetained(bg, msg(tp, "v:"+tp)); err != nil {
			t.Fatal(err)
		}
	}
	// Empty payload deletes; Delete deletes.
	if err := s.PutRetained(bg, &Message{Topic: "x/y"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRetained(bg, "ab"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRetained("x/y"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted retained: %v", err)
	}
	if m, err := s.GetRetained("a/b"); err != nil || string(m.Payload) != "v:a/b" {
		t.Fatalf("GetRetained = %v, %v", m, err)
	}
	// An expired retained message is not returned.
	if err := s.PutRetained(bg, &Message{Topic: "a/old", Payload: []byte("x"), ExpiresAt: 1}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		filter string
		want   []string
	}{
		{"#", []string{"a", "a/b", "a/b/c", "a/c"}},
		{"a/#", []string{"a", "a/b", "a/b/c", "a/c"}},
		{"a/+", []string{"a/b", "a/c"}},
		{"a/b", []string{"a/b"}},
		{"+/b/+", []string{"a/b/c"}},
		{"$SYS/#", []string{"$SYS/x"}},
		{"nothing/#", nil},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			var got []string
			if err := s.MatchRetained(tt.filter, func(m *Message) error { got = append(got, m.Topic); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("MatchRetained(%q) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
	n := 0
	if err := s.EachRetained(func(*Message) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("EachRetained saw %d, %v", n, err)
	}
}

// TestRetainedMany stores 100,000 retained topics and matches a subtree:
// the scan touches only the subtree's keys.
func TestRetainedMany(t *testing.T) {
	if testing.Short() {
		t.Skip("100k retained topics")
	}
	s := openStore(t, Options{Durability: DurabilityInterval})
	const n = 100_000
	errs := make(chan error, 1024)
	pending := 0
	for i := range n {
		m := msg(fmt.Sprintf("dev/%03d/%d", i%1000, i), "v")
		if err := s.PutRetainedAsync(m, func(err error) { errs <- err }); err != nil {
			t.Fatal(err)
		}
		pending++
		for pending > 512 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			pending--
		}
	}
	for ; pending > 0; pending-- {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	if err := s.MatchRetained("dev/042/+", func(*Message) error { got++; return nil }); err != nil {
		t.Fatal(err)
	}
	if got != n/1000 {
		t.Fatalf("matched %d, want %d", got, n/1000)
	}
	all := 0
	if err := s.MatchRetained("+/+/+", func(*Message) error { all++; return nil }); err != nil || all != n {
		t.Fatalf("matched all %d, %v", all, err)
	}
}
