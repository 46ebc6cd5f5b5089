package hooks

import "strings"

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
