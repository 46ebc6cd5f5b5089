package offline

import (
	"slices"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqhub/mqhub/storage"
)

// FuzzIndexMatches: after every subscribe and unsubscribe, the index
// answers every topic as storage.MatchTopic says, and it is empty once
// every subscription is gone. The seeds run in every go test; to search
// further:
//
//	go test -run '^$' -fuzz FuzzIndexMatches -fuzztime 3m -parallel 1 ./hooks/offline
//
// ops is one operation a line: its first byte picks the client (one of
// four, so that a client holds overlapping filters), then "-filter"
// unsubscribes and "filter" subscribes. As in OnSubscribed, only filters
// mochi accepts and that are not shared reach subscribe; unsubscribe gets
// anything, as OnUnsubscribed passes what the client sent. topics is one
// topic a line, without wildcards (mochi refuses those in a PUBLISH), the
// empty topic included.
func FuzzIndexMatches(f *testing.F) {
	f.Add("a#\nbsport/#\nc+/tennis\nd$SYS/+\naa//b\nbsport/+\nc+/#", "sport\nsport/tennis\n$SYS/load\n$SYS\na//b\n/tennis")
	f.Add("a/#\nb/\nc//\nd+/+\na-/#\nb$share/g/a\nc$share/g/#\nd-$share/g/a", "\n/\n//\na\n/a\n$share/g/a")
	f.Add("a+\nb+/#\nc#\na-#\nb-+\nc-+/#\nd$x/#\nd$x/+/y\nd-$x", "a\n$x\n$x/\n$x/1/y\n$SYS/broker/uptime")
	f.Add("au/+/inbox\nbu/alice/#\ncg/#\ncg/+/typing\nau/alice/inbox\na-u/+/inbox", "u/alice/inbox\ng/team\ng/team/typing\nu/alice")
	f.Add("aa/b#\nba+b/c\nc/+\nd-a/b#\nd-a/#/b\nd-", "a/b#\na+b/c\n/x\nu/a\n\x00")
	f.Fuzz(func(t *testing.T, ops, topics string) {
		var x index
		type sub struct{ client, filter string }
		var subs []sub
		for _, op := range strings.Split(ops, "\n") {
			if op == "" {
				continue
			}
			s := sub{client: "c" + string('0'+op[0]%4), filter: op[1:]}
			if f, ok := strings.CutPrefix(s.filter, "-"); ok {
				s.filter = f
				x.unsubscribe(s.client, s.filter)
				subs = slices.DeleteFunc(subs, func(o sub) bool { return o == s })
			} else if mqtt.IsValidFilter(s.filter, false) && !mqtt.IsSharedFilter(s.filter) {
				x.subscribe(s.client, s.filter)
				if !slices.Contains(subs, s) {
					subs = append(subs, s)
				}
			}
			for _, topic := range strings.Split(topics, "\n") {
				if strings.ContainsAny(topic, "+#") {
					continue
				}
				got := x.subscribers(topic)
				var want []string
				for _, s := range subs {
					if storage.MatchTopic(s.filter, topic) && !slices.Contains(want, s.client) {
						want = append(want, s.client)
					}
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("after %q, topic %q: got %q, want %q (subscriptions %q)", op, topic, got, want, subs)
				}
			}
		}
		for _, s := range subs {
			x.unsubscribe(s.client, s.filter)
		}
		if !x.root.empty() {
			t.Fatalf("index not empty after every unsubscribe: %+v", x.root)
		}
	})
}
