package hooks

import "strings"

// Subtopics of a user's namespace u/{user}/...
const (
	subtopicInbox    = "inbox"    // direct messages to the user
	subtopicReceipts = "receipts" // receipts for messages the user sent
	subtopicSync     = "sync"     // copies of what the user sent, for the user's other devices
)

// namespaceAccess decides access to the hub's reserved namespaces
// (docs/security.md):
//
//	u/{user}/inbox, u/{user}/receipts  read: that user only; write: any user
//	u/{user}/sync                      read: that user only; write: the hub only
//	g/{group}                          closed until groups exist
//	presence/{user}                    read: any user; write: the hub only
//	$SYS/...                           read: admins only; write: nobody
//
// For a subscription, topic is the filter (with any $share/{group}/ prefix
// removed); a filter is allowed only if every topic it could match is. A
// filter starting with a wildcard could match every namespace, so only
// admins may use one. reserved is false when the topic lies outside these
// namespaces: the ACL file decides those. Server-side publishers (inline
// clients) do not come here.
func namespaceAccess(user string, admin bool, topic string, write bool) (allowed, reserved bool) {
	first, rest, _ := strings.Cut(topic, "/")
	switch first {
	case "+", "#":
		return !write && admin, true
	case "$SYS":
		return !write && admin, true
	case "presence":
		return !write, true
	case "g":
		return false, true
	case "u":
		return userNamespace(user, admin, rest, write), true
	}
	if strings.HasPrefix(first, "$") {
		return admin && !write, true // other $ topics: reserved for the server
	}
	return false, false
}

// userNamespace decides u/{owner}/{subtopic} for user.
func userNamespace(user string, admin bool, rest string, write bool) bool {
	owner, sub, _ := strings.Cut(rest, "/")
	if write {
		if owner == "" || strings.ContainsAny(owner, "+#") {
			return false
		}
		return sub == subtopicInbox || sub == subtopicReceipts
	}
	if admin {
		return true
	}
	if owner != user || user == "" {
		return false // another user's namespace, or a wildcard over all of them
	}
	switch sub {
	case subtopicInbox, subtopicReceipts, subtopicSync, "+", "#":
		return true
	}
	return false
}

// hubOnly reports topics only the hub publishes to: presence, sync copies
// and $ topics.
func hubOnly(topic string) bool {
	first, rest, _ := strings.Cut(topic, "/")
	if strings.HasPrefix(first, "$") || first == "presence" {
		return true
	}
	if first == "u" {
		_, sub, _ := strings.Cut(rest, "/")
		return sub == subtopicSync || strings.HasPrefix(sub, subtopicSync+"/")
	}
	return false
}

// isNamespaced reports topics inside the hub's namespaces.
func isNamespaced(topic string) bool {
	_, reserved := namespaceAccess("", false, topic, false)
	return reserved
}
