package hooks

import (
	"slices"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// PropTo names, on a sync copy, the topic the original message went to.
const PropTo = "to"

// SyncCopies is offline.Rules.Copies: a direct message a user sends to
// another user's inbox is copied to u/{sender}/sync, for the sender's other
// devices (the sending device does not get it), with the same envelope and
// a `to` user property naming the original topic. Group messages need no
// copy: the sender's other devices are members and get the message itself.
func SyncCopies(cl *mqtt.Client, pk packets.Packet) []packets.Packet {
	user := string(cl.Properties.Username)
	owner, sub, ok := userTopic(pk.TopicName)
	if user == "" || !ok || sub != subtopicInbox || owner == user {
		return nil
	}
	c := pk
	c.TopicName = "u/" + user + "/" + subtopicSync
	c.FixedHeader.Retain = false
	c.Properties.TopicAlias, c.Properties.TopicAliasFlag = 0, false
	c.Properties.User = append(slices.Clip(pk.Properties.User), packets.UserProperty{Key: PropTo, Val: pk.TopicName})
	return []packets.Packet{c}
}
