package offline

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Shared subscriptions ($share/group/filter) are still delivered by mochi
// from its own index, not through the hub's queues (docs/architecture.md,
// "Known gaps"). Mochi checks each delivery against the ACL (OnACLCheck)
// but knows nothing of block lists: OnSelectSubscribers takes the members
// who blocked the publisher out of the choice, so that a shared
// subscription to an inbox is not a way around a block.

// OnSelectSubscribers removes, from each share group matching a message,
// the members whose user blocked its publisher; mochi then picks one of
// the others.
func (h *Hook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if h.rules.Blocked == nil || pk.Origin == "" {
		return subs
	}
	publisher, ok := h.server.Clients.Get(pk.Origin)
	if !ok || publisher.Net.Inline || len(publisher.Properties.Username) == 0 {
		return subs
	}
	sender := string(publisher.Properties.Username)
	for filter, members := range subs.Shared {
		kept := make(map[string]packets.Subscription, len(members))
		for id, sub := range members {
			if cl, ok := h.server.Clients.Get(id); ok && h.rules.Blocked(string(cl.Properties.Username), sender) {
				continue
			}
			kept[id] = sub
		}
		if len(kept) == 0 {
			delete(subs.Shared, filter)
			continue
		}
		subs.Shared[filter] = kept
	}
	return subs
}
