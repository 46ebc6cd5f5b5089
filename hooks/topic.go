package hooks

import "strings"

// filterMatches reports whether the MQTT topic filter matches the topic
// name: "+" matches one level, "#" the rest, and wildcards at the first
// level do not match topics starting with "$" [MQTT-4.7.2-1].
func filterMatches(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, fRest, fMore := strings.Cut(filter, "/")
		t, tRest, tMore := strings.Cut(topic, "/")
		switch {
		case f == "#":
			return true
		case f != "+" && f != t:
			return false
		}
		if !fMore || !tMore {
			// "a/#" also matches "a" [MQTT-4.7.1-2].
			return fMore == tMore || (fMore && fRest == "#")
		}
		filter, topic = fRest, tRest
	}
}

// filterCovers reports whether every topic matched by the filter requested
// is also matched by the filter granted: a grant of "a/#" covers a
// subscription to "a/+/b", a grant of "a/+" does not cover "a/#".
func filterCovers(granted, requested string) bool {
	if strings.HasPrefix(requested, "$") != strings.HasPrefix(granted, "$") &&
		(strings.HasPrefix(granted, "+") || strings.HasPrefix(granted, "#")) {
		return false
	}
	for {
		g, gRest, gMore := strings.Cut(granted, "/")
		r, rRest, rMore := strings.Cut(requested, "/")
		switch {
		case g == "#":
			return true
		case r == "#":
			return false // only "#" covers "#"
		case g == "+":
			// covers any single level, including a requested "+"
		case g != r:
			return false
		}
		if !gMore || !rMore {
			return gMore == rMore || (gMore && gRest == "#")
		}
		granted, requested = gRest, rRest
	}
}

// splitShared strips "$share/{group}/" from a shared subscription filter;
// access is decided on the filter underneath.
func splitShared(filter string) (group, inner string, shared bool) {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return "", filter, false
	}
	group, inner, ok = strings.Cut(rest, "/")
	return group, inner, ok
}
