package offline

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mqhub/mqhub/storage"
)

// The index answers as the MQTT matching rules (storage.MatchTopic, which
// the sessions use too) say, over random filters with wildcards, '$'
// topics, empty levels and overlapping subscriptions of one client,
// through subscribes and unsubscribes. mochi's TopicsIndex, which it
// replaces, agrees except that it does not match "+/#" to "a" (the spec
// and mosquitto do: '#' includes the parent level).
func TestIndexMatchesTheRules(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "$SYS", "", "u", "inbox"}
	randomTopic := func() string {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = levels[rng.IntN(len(levels))]
		}
		if parts[0] == "" && n == 1 {
			parts[0] = "a"
		}
		return joinLevels(parts)
	}
	randomFilter := func() string {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			switch r := rng.IntN(10); {
			case r < 2:
				parts[i] = "+"
			case r < 3 && i == n-1:
				parts[i] = "#"
			default:
				parts[i] = levels[rng.IntN(len(levels))]
			}
		}
		if parts[0] == "" && n == 1 {
			parts[0] = "#"
		}
		return joinLevels(parts)
	}

	var ours index
	type sub struct{ client, filter string }
	var subs []sub
	for round := range 3000 {
		if len(subs) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(subs))
			s := subs[i]
			subs = slices.Delete(subs, i, i+1)
			ours.unsubscribe(s.client, s.filter)
		} else {
			s := sub{fmt.Sprintf("c%d", rng.IntN(20)), randomFilter()}
			if !slices.Contains(subs, s) {
				subs = append(subs, s)
			}
			ours.subscribe(s.client, s.filter)
		}
		for range 5 {
			topic := randomTopic()
			got := ours.subscribers(topic)
			var want []string
			for _, s := range subs {
				if storage.MatchTopic(s.filter, topic) && !slices.Contains(want, s.client) {
					want = append(want, s.client)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, topic %q: got %q, want %q (subscriptions %v)", round, topic, got, want, subs)
			}
		}
	}
	for _, s := range subs {
		ours.unsubscribe(s.client, s.filter)
	}
	if !ours.root.empty() {
		t.Fatalf("index not empty after every unsubscribe: %+v", ours.root)
	}
}

func TestIndexRules(t *testing.T) {
	var x index
	x.subscribe("all", "#")
	x.subscribe("sport", "sport/#")
	x.subscribe("one", "+/tennis")
	x.subscribe("sys", "$SYS/+")
	x.subscribe("empty", "a//b")
	x.subscribe("twice", "sport/#")
	x.subscribe("twice", "sport/+")
	x.subscribe("any", "+/#")
	for topic, want := range map[string][]string{
		"sport":        {"all", "any", "sport", "twice"}, // "#" matches its parent level
		"sport/tennis": {"all", "any", "one", "sport", "twice"},
		"$SYS/load":    {"sys"}, // no leading wildcard matches a '$' topic
		"$SYS":         nil,
		"a//b":         {"all", "any", "empty"},
		"/tennis":      {"all", "any", "one"},
	} {
		got := x.subscribers(topic)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("subscribers(%q) = %q, want %q", topic, got, want)
		}
	}
}

func joinLevels(parts []string) string {
	s := parts[0]
	for _, p := range parts[1:] {
		s += "/" + p
	}
	return s
}

func BenchmarkIndexInbox(b *testing.B) {
	var x index
	for i := range 100 {
		x.subscribe(fmt.Sprintf("c%d", i), fmt.Sprintf("u/user%d/inbox", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(x.subscribers("u/user42/inbox")); n != 1 {
			b.Fatal(n)
		}
	}
}

func BenchmarkIndexGroup(b *testing.B) {
	var x index
	for i := range 1000 {
		x.subscribe(fmt.Sprintf("c%d", i), "g/big")
	}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(x.subscribers("g/big")); n != 1000 {
			b.Fatal(n)
		}
	}
}
