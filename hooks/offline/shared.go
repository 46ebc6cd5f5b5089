package offline

import (
	"slices"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Shared subscriptions ($share/{group}/{filter}) are the hub's like any
// other: kept out of mochi's index, a message matching a share group goes
// to one member session through that session's queue, with its Receive
// Maximum, the access rules and the block lists, as every delivery does.
// The member is picked in turn among those connected; when none is, among
// the persistent ones that are offline (the message waits in its queue).
// Retained messages are not sent for a new shared subscription (MQTT 5,
// section 4.8.2).

// shares holds the shared subscriptions of our sessions.
type shares struct {
	// index holds the share groups' inner filters; its "client IDs" are
	// the full shared filters, so a lookup answers the groups a topic
	// matches.
	index  index
	mu     sync.Mutex
	groups map[string]*shareGroup // by full shared filter
}

type shareGroup struct {
	members []string // client IDs, in subscription order
	next    int      // where the next pick starts
}

// innerFilter is the filter of a shared subscription ($share/g/f -> f),
// or the filter itself.
func innerFilter(filter string) string {
	if !mqtt.IsSharedFilter(filter) {
		return filter
	}
	_, inner, _ := strings.Cut(filter[len("$share/"):], "/")
	return inner
}

func (x *shares) subscribe(clientID, filter string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.groups == nil {
		x.groups = map[string]*shareGroup{}
	}
	g := x.groups[filter]
	if g == nil {
		g = &shareGroup{}
		x.groups[filter] = g
		x.index.subscribe(filter, innerFilter(filter))
	}
	if !slices.Contains(g.members, clientID) {
		g.members = append(g.members, clientID)
	}
}

func (x *shares) unsubscribe(clientID, filter string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	g := x.groups[filter]
	if g == nil {
		return
	}
	g.members = slices.DeleteFunc(g.members, func(id string) bool { return id == clientID })
	if len(g.members) == 0 {
		delete(x.groups, filter)
		x.index.unsubscribe(filter, innerFilter(filter))
	}
}

// matching returns the share groups (full filters) matching topic.
func (x *shares) matching(topic string) []string { return x.index.subscribers(topic) }

// pick chooses the member of group filter that gets the next message: the
// first one in turn that eligible accepts and is online, else the first
// one it accepts at all; "" if none.
func (x *shares) pick(filter string, eligible func(id string) (ok, online bool)) string {
	x.mu.Lock()
	g := x.groups[filter]
	if g == nil {
		x.mu.Unlock()
		return ""
	}
	members, start := slices.Clone(g.members), g.next
	x.mu.Unlock()
	chosen, fallback := -1, -1
	for k := range members {
		i := (start + k) % len(members)
		ok, online := eligible(members[i])
		if ok && online {
			chosen = i
			break
		}
		if ok && fallback < 0 {
			fallback = i
		}
	}
	if chosen < 0 {
		chosen = fallback
	}
	if chosen < 0 {
		return ""
	}
	x.mu.Lock()
	if g := x.groups[filter]; g != nil {
		g.next = chosen + 1
	}
	x.mu.Unlock()
	return members[chosen]
}
