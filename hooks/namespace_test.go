package hooks

import (
	"slices"
	"testing"
)

func TestNamespaceAccess(t *testing.T) {
	for _, tc := range []struct {
		name          string
		user          string
		admin         bool
		topic         string
		write         bool
		allowed, rsvd bool
	}{
		{"own inbox read", "alice", false, "u/alice/inbox", false, true, true},
		{"own namespace wildcard", "alice", false, "u/alice/#", false, true, true},
		{"own subtopic wildcard", "alice", false, "u/alice/+", false, true, true},
		{"other inbox read", "alice", false, "u/bob/inbox", false, false, true},
		{"all inboxes", "alice", false, "u/+/inbox", false, false, true},
		{"whole namespace", "alice", false, "u/#", false, false, true},
		{"other user tree", "alice", false, "u/bob/#", false, false, true},
		{"write other inbox", "alice", false, "u/bob/inbox", true, true, true},
		{"write receipts", "bob", false, "u/alice/receipts", true, true, true},
		{"write sync is the hub's", "alice", false, "u/alice/sync", true, false, true},
		{"write unknown subtopic", "alice", false, "u/bob/other", true, false, true},
		{"own sync read", "alice", false, "u/alice/sync", false, true, true},
		{"everything", "alice", false, "#", false, false, true},
		{"first-level wildcard", "alice", false, "+/inbox", false, false, true},
		{"admin everything", "root", true, "#", false, true, true},
		{"admin sys", "root", true, "$SYS/#", false, true, true},
		{"sys for users", "alice", false, "$SYS/#", false, false, true},
		{"sys write", "root", true, "$SYS/x", true, false, true},
		{"presence read", "alice", false, "presence/bob", false, true, true},
		{"presence wildcard read", "alice", false, "presence/+", false, true, true},
		{"presence write", "alice", false, "presence/alice", true, false, true},
		{"group write member", "alice", false, "g/team", true, true, true},
		{"group write non-member", "carol", false, "g/team", true, false, true},
		{"group read member", "alice", false, "g/team", false, true, true},
		{"group read non-member", "carol", false, "g/team", false, false, true},
		{"group typing member", "alice", false, "g/team/typing", true, true, true},
		{"group typing non-member", "carol", false, "g/team/typing", false, false, true},
		{"group other subtopic", "alice", false, "g/team/x", true, false, true},
		{"group wildcard write", "alice", false, "g/+", true, false, true},
		{"all groups filter, checked per message", "carol", false, "g/+", false, true, true},
		{"all groups deep filter", "carol", false, "g/#", false, true, true},
		{"all group typing", "carol", false, "g/+/typing", false, true, true},
		{"all groups unknown subtopic", "carol", false, "g/+/x", false, false, true},
		{"group filter member", "alice", false, "g/team/#", false, true, true},
		{"group filter non-member", "carol", false, "g/team/#", false, false, true},
		{"groups anonymous", "", false, "g/+", false, false, true},
		{"admin reads groups", "root", true, "g/team", false, true, true},
		{"admin writes only as member", "root", true, "g/team", true, false, true},
		{"typing write", "alice", false, "u/bob/typing", true, true, true},
		{"typing read own", "bob", false, "u/bob/typing", false, true, true},
		{"typing read other", "alice", false, "u/bob/typing", false, false, true},
		{"other topics are the ACL file's", "alice", false, "sensors/1", true, false, false},
		{"anonymous own inbox", "", false, "u//inbox", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowed, rsvd := namespaceAccess(tc.user, tc.admin, tc.topic, tc.write, members{"team": {"alice", "bob"}})
			if allowed != tc.allowed || rsvd != tc.rsvd {
				t.Fatalf("namespaceAccess(%q, admin=%v, %q, write=%v) = %v, %v; want %v, %v",
					tc.user, tc.admin, tc.topic, tc.write, allowed, rsvd, tc.allowed, tc.rsvd)
			}
		})
	}
}

// members is a Membership over a fixed map: group -> users.
type members map[string][]string

func (m members) IsMember(group, user string) bool { return slices.Contains(m[group], user) }

func TestIsTyping(t *testing.T) {
	for topic, want := range map[string]bool{
		"u/bob/typing": true, "g/team/typing": true, "u/bob/inbox": false, "g/team": false,
		"u//typing": false, "g//typing": false, "u/bob/typing/x": false, "typing": false,
	} {
		if got := IsTyping(topic); got != want {
			t.Errorf("IsTyping(%q) = %v, want %v", topic, got, want)
		}
	}
}
