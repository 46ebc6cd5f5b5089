package hooks

import "strings"

// Subtopics of a user's namespace u/{user}/... and of a group's g/{group}/...
const (
	subtopicInbox    = "inbox"    // direct messages to the user
	subtopicReceipts = "receipts" // receipts for messages the user sent
	subtopicSync     = "sync"     // copies of what the user sent, for the user's other devices
	subtopicTyping   = "typing"   // typing indicators: QoS 0, never queued
)

// Membership answers whether a user belongs to a group (Directory).
type Membership interface {
	IsMember(group, user string) bool
}

// namespaceAccess decides access to the hub's reserved namespaces
// (docs/protocol.md, docs/security.md):
//
//	u/{user}/inbox, u/{user}/receipts,
//	u/{user}/typing                    read: that user only; write: any user
//	u/{user}/sync                      read: that user only; write: the hub only
//	g/{group}, g/{group}/typing        read and write: members only
//	g/+, g/#, g/+/typing               read: any user; each message goes only to members
//	presence/{user}                    read: any user; write: the hub only
//	$SYS/...                           read: admins only; write: nobody
//
// For a subscription, topic is the filter (with any $share/{group}/ prefix
// removed); a filter is allowed only if every topic it could match is,
// except the group wildcards, whose messages are checked per member at
// delivery (CanRead). A filter starting with a wildcard could match every
// namespace, so only admins may use one. reserved is false when the topic
// lies outside these namespaces: the ACL file decides those. Server-side
// publishers (inline clients) do not come here. groups may be nil: then
// only admins may read g/ and nobody writes there.
func namespaceAccess(user string, admin bool, topic string, write bool, groups Membership) (allowed, reserved bool) {
	first, rest, _ := strings.Cut(topic, "/")
	switch first {
	case "+", "#":
		return !write && admin, true
	case "$SYS":
		return !write && admin, true
	case "presence":
		return !write, true
	case "g":
		return groupNamespace(user, admin, rest, write, groups), true
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
		return sub == subtopicInbox || sub == subtopicReceipts || sub == subtopicTyping
	}
	if admin {
		return true
	}
	if owner != user || user == "" {
		return false // another user's namespace, or a wildcard over all of them
	}
	switch sub {
	case subtopicInbox, subtopicReceipts, subtopicSync, subtopicTyping, "+", "#":
		return true
	}
	return false
}

// groupNamespace decides g/{group}[/typing] for user.
func groupNamespace(user string, admin bool, rest string, write bool, groups Membership) bool {
	group, sub, hasSub := strings.Cut(rest, "/")
	known := !hasSub || sub == subtopicTyping
	if write {
		return known && user != "" && groups != nil && !strings.ContainsAny(group, "+#") && group != "" &&
			groups.IsMember(group, user)
	}
	if admin {
		return true
	}
	if user == "" || groups == nil {
		return false
	}
	if group == "+" || group == "#" {
		// Each message is checked against membership when it is delivered.
		return group == "+" && (known || sub == "+" || sub == "#") || group == "#" && !hasSub
	}
	return (known || sub == "+" || sub == "#") && group != "" && groups.IsMember(group, user)
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
	_, reserved := namespaceAccess("", false, topic, false, nil)
	return reserved
}

// userTopic splits u/{user}/{sub} (no wildcards); ok is false for any
// other topic.
func userTopic(topic string) (user, sub string, ok bool) {
	rest, found := strings.CutPrefix(topic, "u/")
	if !found {
		return "", "", false
	}
	user, sub, found = strings.Cut(rest, "/")
	if !found || user == "" || strings.Contains(sub, "/") {
		return "", "", false
	}
	return user, sub, true
}

// groupTopic returns the group of g/{group} (not of its typing topic).
func groupTopic(topic string) (group string, ok bool) {
	group, found := strings.CutPrefix(topic, "g/")
	if !found || group == "" || strings.Contains(group, "/") {
		return "", false
	}
	return group, true
}

// IsTyping reports the typing topics, u/{user}/typing and g/{group}/typing,
// whose messages are never queued (offline.Rules.Ephemeral).
func IsTyping(topic string) bool {
	if _, sub, ok := userTopic(topic); ok {
		return sub == subtopicTyping
	}
	rest, found := strings.CutPrefix(topic, "g/")
	group, sub, _ := strings.Cut(rest, "/")
	return found && group != "" && sub == subtopicTyping
}
