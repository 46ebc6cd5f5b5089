package hooks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mqhub/mqhub/storage"
)

// Permission is what a rule grants or refuses.
type Permission uint8

// Permission values, as written in an ACL file.
const (
	PermRead Permission = 1 << iota
	PermWrite
	PermDeny
	PermReadWrite = PermRead | PermWrite
)

// ACLRule is one `topic` or `pattern` line of an ACL file.
type ACLRule struct {
	Access  Permission
	Filter  string // may contain %u and %c when Pattern is set
	Pattern bool
	Line    int
}

// ACLFile is a parsed ACL file in mosquitto's acl_file syntax:
//
//	# comment
//	topic read public/#            (before any user line: anonymous clients)
//	user alice
//	topic readwrite sensors/alice/#
//	topic deny sensors/alice/secret
//	pattern write devices/%c/status (any user; %u user name, %c client ID)
//
// The access word is optional and defaults to readwrite, as in mosquitto.
type ACLFile struct {
	anonymous []ACLRule
	users     map[string][]ACLRule
	patterns  []ACLRule
}

// ParseACLFile reads an ACL file and returns every problem found, with line
// numbers, joined.
func ParseACLFile(r io.Reader) (*ACLFile, error) {
	acl := &ACLFile{users: map[string][]ACLRule{}}
	var errs []error
	user, inUser := "", false
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keyword, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch keyword {
		case "user":
			if rest == "" {
				errs = append(errs, fmt.Errorf("line %d: user needs a name", n))
				continue
			}
			user, inUser = rest, true
		case "topic", "pattern":
			rule, err := parseRule(rest, keyword == "pattern", n)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			switch {
			case rule.Pattern:
				acl.patterns = append(acl.patterns, rule)
			case inUser:
				acl.users[user] = append(acl.users[user], rule)
			default:
				acl.anonymous = append(acl.anonymous, rule)
			}
		default:
			errs = append(errs, fmt.Errorf("line %d: unknown keyword %q (want user, topic or pattern)", n, keyword))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return acl, errors.Join(errs...)
}

func parseRule(rest string, pattern bool, line int) (ACLRule, error) {
	rule := ACLRule{Access: PermReadWrite, Pattern: pattern, Line: line}
	word, filter, ok := strings.Cut(rest, " ")
	switch word {
	case "read":
		rule.Access = PermRead
	case "write":
		rule.Access = PermWrite
	case "readwrite":
		rule.Access = PermReadWrite
	case "deny":
		rule.Access = PermDeny
	default:
		filter, ok = rest, true // no access word: the whole rest is the topic
	}
	filter = strings.TrimSpace(filter)
	if !ok || filter == "" {
		return rule, fmt.Errorf("line %d: missing topic", line)
	}
	if err := storage.ValidFilter(filter); err != nil {
		return rule, fmt.Errorf("line %d: %w", line, err)
	}
	rule.Filter = filter
	return rule, nil
}

// Allows decides whether user (empty for anonymous) on clientID may write
// to a topic (write) or subscribe to a filter (read).
//
// The rules that apply are the user's own (or the anonymous ones) and every
// pattern. Among those matching, the most specific decides; at equal
// specificity deny wins over allow. Nothing matching means no access. The
// decision depends only on the file and the arguments, never on order of
// evaluation, so it is the same every time.
func (a *ACLFile) Allows(user, clientID, topic string, write bool) bool {
	rules := a.anonymous
	if user != "" {
		rules = a.users[user]
	}
	var matched []ACLRule
	for _, r := range rules {
		if ruleMatches(r.Filter, topic, write) {
			matched = append(matched, r)
		}
	}
	for _, r := range a.patterns {
		filter, ok := expandPattern(r.Filter, user, clientID)
		if ok && ruleMatches(filter, topic, write) {
			r.Filter = filter
			matched = append(matched, r)
		}
	}
	if len(matched) == 0 {
		return false
	}
	sort.SliceStable(matched, func(i, j int) bool {
		si, sj := specificity(matched[i].Filter), specificity(matched[j].Filter)
		if si != sj {
			return si > sj
		}
		return matched[i].Access == PermDeny && matched[j].Access != PermDeny
	})
	best := matched[0]
	if best.Access == PermDeny {
		return false
	}
	if write {
		return best.Access&PermWrite != 0
	}
	return best.Access&PermRead != 0
}

func ruleMatches(filter, topic string, write bool) bool {
	if write {
		return storage.MatchTopic(filter, topic)
	}
	return filterCovers(filter, topic)
}

// expandPattern substitutes %u and %c. A user name or client ID holding a
// wildcard or a level separator would widen the rule, so such identities
// get no pattern access at all.
func expandPattern(filter, user, clientID string) (string, bool) {
	if strings.Contains(filter, "%u") && (user == "" || strings.ContainsAny(user, "+#/")) {
		return "", false
	}
	if strings.Contains(filter, "%c") && (clientID == "" || strings.ContainsAny(clientID, "+#/")) {
		return "", false
	}
	return strings.ReplaceAll(strings.ReplaceAll(filter, "%u", user), "%c", clientID), true
}

// specificity orders filters: more literal levels first, then no "#" before
// "#", then fewer "+".
func specificity(filter string) int {
	literal, plus, hash := 0, 0, 0
	for _, l := range strings.Split(filter, "/") {
		switch l {
		case "+":
			plus++
		case "#":
			hash = 1
		default:
			literal++
		}
	}
	return literal*1000 + (1-hash)*100 - plus
}
