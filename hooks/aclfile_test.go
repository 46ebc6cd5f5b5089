package hooks

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mqhub/mqhub/storage"
)

func TestFilterCovers(t *testing.T) {
	for _, tc := range []struct {
		granted, requested string
		want               bool
	}{
		{"a/#", "a/+/b", true}, {"a/#", "a/#", true}, {"a/#", "a", true}, {"a/+", "a/#", false},
		{"a/+", "a/+", true}, {"a/b", "a/+", false}, {"#", "+/x", true}, {"#", "$SYS/#", false},
		{"u/alice/inbox", "u/+/inbox", false}, {"+/inbox", "u/inbox", true}, {"a/+/c", "a/b/c", true},
	} {
		if got := filterCovers(tc.granted, tc.requested); got != tc.want {
			t.Errorf("filterCovers(%q, %q) = %v, want %v", tc.granted, tc.requested, got, tc.want)
		}
	}
}

const sampleACL = `
# anonymous clients
topic read public/#

user alice
topic readwrite sensors/alice/#
topic deny sensors/alice/secret
topic read sensors/#
topic write sensors/alice/secret/override

user bob
topic sensors/bob/#

pattern write devices/%c/status
pattern read devices/%u/+/cmd
`

func TestACLFileAllows(t *testing.T) {
	acl, err := ParseACLFile(strings.NewReader(sampleACL))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, client, topic string
		write, want               bool
	}{
		{"anonymous reads public", "", "c", "public/news", false, true},
		{"anonymous cannot write public", "", "c", "public/news", true, false},
		{"users do not inherit anonymous rules", "alice", "c", "public/news", false, false},
		{"own subtree", "alice", "c", "sensors/alice/temp", true, true},
		{"deny beats the broader allow", "alice", "c", "sensors/alice/secret", true, false},
		{"deny beats the broader read", "alice", "c", "sensors/alice/secret", false, false},
		{"more specific allow beats deny", "alice", "c", "sensors/alice/secret/override", true, true},
		{"read elsewhere", "alice", "c", "sensors/bob/temp", false, true},
		{"no write elsewhere", "alice", "c", "sensors/bob/temp", true, false},
		{"subscribe to covered wildcard", "alice", "c", "sensors/+/temp", false, true},
		{"subscribe wider than grant", "bob", "c", "sensors/#", false, false},
		{"default access word is readwrite", "bob", "c", "sensors/bob/x", true, true},
		{"pattern with client id", "bob", "dev1", "devices/dev1/status", true, true},
		{"pattern for another client", "bob", "dev1", "devices/dev2/status", true, false},
		{"pattern with user", "bob", "dev1", "devices/bob/lamp/cmd", false, true},
		{"wildcard in client id gets no pattern", "bob", "+", "devices/+/status", true, false},
		{"slash in user gets no pattern", "a/b", "c", "devices/a/b/cmd", false, false},
		{"unknown user", "mallory", "c", "sensors/alice/temp", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 { // the same answer every time
				if got := acl.Allows(tc.user, tc.client, tc.topic, tc.write); got != tc.want {
					t.Fatalf("Allows(%q, %q, %q, write=%v) = %v, want %v", tc.user, tc.client, tc.topic, tc.write, got, tc.want)
				}
			}
		})
	}
}

func TestParseACLFileListsEveryProblem(t *testing.T) {
	_, err := ParseACLFile(strings.NewReader("user\ntopic read\nfrobnicate x\ntopic read a/#/b\ntopic write a+/b\n"))
	if err == nil {
		t.Fatal("bad file accepted")
	}
	for _, want := range []string{"line 1", "line 2", "line 3", "line 4", "line 5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

// FuzzACL checks invariants of the ACL engine on arbitrary files and
// topics: no panic; the same decision on every call; a pattern never
// expands for an identity holding a wildcard or "/"; and a grant that
// covers a subscription also matches every topic that subscription can
// receive.
func FuzzACL(f *testing.F) {
	f.Add(sampleACL, "alice", "c1", "sensors/alice/temp")
	f.Add("pattern readwrite %u/%c/#", "bob", "dev", "bob/dev/x")
	f.Add("topic deny #\ntopic read $SYS/#", "", "c", "$SYS/broker")
	f.Add("user x\ntopic a/+/#", "x", "+", "a/#")
	f.Fuzz(func(t *testing.T, file, user, clientID, topic string) {
		acl, err := ParseACLFile(strings.NewReader(file))
		if err != nil {
			return
		}
		for _, write := range []bool{false, true} {
			if acl.Allows(user, clientID, topic, write) != acl.Allows(user, clientID, topic, write) {
				t.Fatalf("decision changed between calls for %q", topic)
			}
		}
		for _, p := range acl.patterns {
			_, ok := expandPattern(p.Filter, user, clientID)
			if ok && (strings.Contains(p.Filter, "%u") && strings.ContainsAny(user, "+#/") ||
				strings.Contains(p.Filter, "%c") && strings.ContainsAny(clientID, "+#/")) {
				t.Fatalf("pattern %q expanded for user %q client %q", p.Filter, user, clientID)
			}
		}
		if storage.ValidFilter(topic) != nil {
			return
		}
		// A concrete topic the subscription "topic" receives.
		concrete := strings.ReplaceAll(strings.ReplaceAll(topic, "+", "x"), "#", "x/y")
		for _, r := range append(append([]ACLRule{}, acl.anonymous...), acl.users[user]...) {
			if filterCovers(r.Filter, topic) && !storage.MatchTopic(r.Filter, concrete) {
				t.Fatalf("grant %q covers %q but not its topic %q", r.Filter, topic, concrete)
			}
		}
	})
}

// BenchmarkAccessCheck is the per-message cost of a topic check: the
// namespace rules, then an ACL file with a few hundred users.
//
//	go test ./hooks -run '^$' -bench AccessCheck -benchmem
func BenchmarkAccessCheck(b *testing.B) {
	var file strings.Builder
	file.WriteString("pattern write devices/%c/status\npattern read devices/%u/+/cmd\n")
	for i := range 300 {
		fmt.Fprintf(&file, "user user%d\ntopic readwrite sensors/user%d/#\ntopic deny sensors/user%d/secret\ntopic read public/#\n", i, i, i)
	}
	acl, err := ParseACLFile(strings.NewReader(file.String()))
	if err != nil {
		b.Fatal(err)
	}
	h := NewAuth(AuthOptions{ACL: acl})
	for _, bc := range []struct {
		name, user, topic string
		write             bool
	}{
		{"namespace inbox write", "user7", "u/user9/inbox", true},
		{"acl file write", "user7", "sensors/user7/temp", true},
		{"acl file subscribe", "user7", "sensors/+/temp", false},
		{"pattern", "user7", "devices/dev-1/status", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			id := Identity{User: bc.user}
			for b.Loop() {
				h.allowed(id, "dev-1", bc.topic, bc.write)
			}
		})
	}
}
