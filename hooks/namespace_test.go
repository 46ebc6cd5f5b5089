package hooks

import "testing"

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
		{"groups closed", "alice", false, "g/team", true, false, true},
		{"other topics are the ACL file's", "alice", false, "sensors/1", true, false, false},
		{"anonymous own inbox", "", false, "u//inbox", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowed, rsvd := namespaceAccess(tc.user, tc.admin, tc.topic, tc.write)
			if allowed != tc.allowed || rsvd != tc.rsvd {
				t.Fatalf("namespaceAccess(%q, admin=%v, %q, write=%v) = %v, %v; want %v, %v",
					tc.user, tc.admin, tc.topic, tc.write, allowed, rsvd, tc.allowed, tc.rsvd)
			}
		})
	}
}
