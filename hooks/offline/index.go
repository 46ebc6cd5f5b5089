package offline

import (
	"strings"
	"sync"
)

// index finds the sessions subscribed to a topic. It holds every
// subscription of our sessions (mochi's own index keeps only shared and
// inline ones) and answers with client IDs alone: the session then works
// out QoS, identifiers and no-local from its own filters.
//
// mochi's TopicsIndex answers with maps of merged subscriptions, four of
// them allocated per lookup: 1.7 µs for one inbox among 100, and 0.96 ms
// with 1 MB of garbage for a group of 1,000 (go test -bench Index
// ./hooks/offline). This one walks a tree of topic levels under a read
// lock and allocates only the answer.
type index struct {
	mu   sync.RWMutex
	root indexNode
}

// indexNode is one topic level. A filter ending here is in exact; a
// filter ending in "#" after this level is in rest; "+" is a child like
// any other level name.
type indexNode struct {
	children map[string]*indexNode
	exact    map[string]struct{}
	rest     map[string]struct{}
}

// subscribe adds clientID's subscription to filter (a second one for the
// same filter and client changes nothing). filter must be valid and not
// shared.
func (x *index) subscribe(clientID, filter string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := &x.root
	for {
		level, more := cutLevel(&filter)
		if level == "#" && !more {
			n.rest = addID(n.rest, clientID)
			return
		}
		c := n.children[level]
		if c == nil {
			c = &indexNode{}
			if n.children == nil {
				n.children = map[string]*indexNode{}
			}
			n.children[level] = c
		}
		n = c
		if !more {
			n.exact = addID(n.exact, clientID)
			return
		}
	}
}

// unsubscribe removes clientID's subscription to filter, if it has one,
// and the levels nobody subscribes under any more.
func (x *index) unsubscribe(clientID, filter string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.root.remove(clientID, filter)
}

// remove deletes clientID's filter below n and reports whether n is left
// empty.
func (n *indexNode) remove(clientID, filter string) bool {
	level, more := cutLevel(&filter)
	switch {
	case level == "#" && !more:
		delete(n.rest, clientID)
	case n.children[level] != nil:
		c := n.children[level]
		var empty bool
		if more {
			empty = c.remove(clientID, filter)
		} else {
			delete(c.exact, clientID)
			empty = c.empty()
		}
		if empty {
			delete(n.children, level)
		}
	}
	return n.empty()
}

func (n *indexNode) empty() bool {
	return len(n.children) == 0 && len(n.exact) == 0 && len(n.rest) == 0
}

// subscribers returns the client IDs with a filter matching topic, each
// once. Topics starting with '$' are not matched by filters starting with
// a wildcard [MQTT-4.7.2-1].
func (x *index) subscribers(topic string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var m matches
	m.walk(&x.root, topic, !strings.HasPrefix(topic, "$"))
	return m.ids()
}

// matches gathers the ID sets that match; most topics match one set, so
// merging (and its map) is only needed when there are several.
type matches struct {
	sets []map[string]struct{}
}

// walk visits the nodes under n matching topic (the levels still to
// match); wild says whether wildcards may match at this level.
func (m *matches) walk(n *indexNode, topic string, wild bool) {
	if wild {
		m.add(n.rest) // "#" matches the parent level too: "a/#" matches "a"
	}
	level, more := cutLevel(&topic)
	for _, name := range [2]string{level, "+"} {
		c := n.children[name]
		if c == nil || (name == "+" && (!wild || level == "+")) {
			continue
		}
		if more {
			m.walk(c, topic, true)
		} else {
			m.add(c.exact)
			m.add(c.rest)
		}
	}
}

func (m *matches) add(set map[string]struct{}) {
	if len(set) > 0 {
		m.sets = append(m.sets, set)
	}
}

func (m *matches) ids() []string {
	n := 0
	for _, s := range m.sets {
		n += len(s)
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	if len(m.sets) == 1 {
		for id := range m.sets[0] {
			out = append(out, id)
		}
		return out
	}
	seen := make(map[string]struct{}, n)
	for _, s := range m.sets {
		for id := range s {
			if _, dup := seen[id]; !dup {
				seen[id] = struct{}{}
				out = append(out, id)
			}
		}
	}
	return out
}

// cutLevel takes the first level off *topic and reports whether more
// levels follow ("a/" is "a" then an empty level).
func cutLevel(topic *string) (level string, more bool) {
	level, *topic, more = strings.Cut(*topic, "/")
	return level, more
}

func addID(set map[string]struct{}, id string) map[string]struct{} {
	if set == nil {
		set = map[string]struct{}{}
	}
	set[id] = struct{}{}
	return set
}
