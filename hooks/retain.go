package hooks

import (
	"strings"

	"github.com/mqhub/mqhub/hooks/offline"
)

// NotRetained is a rule of the entry path (offline.Rule): messages in the
// hub's conversations (u/ and g/: inboxes, receipts, sync copies, typing
// indicators, groups) are never retained, whatever way they came in (a
// PUBLISH, a will). They are messages, not state: a retained one would be
// delivered again on every SUBSCRIBE to the conversation. Typing
// indicators are moreover delivered at QoS 0 to connected devices only
// (IsTyping is the offline hook's Rules.Ephemeral).
func NotRetained(in *offline.Inbound) error {
	topic := in.Packet.TopicName
	if in.Packet.FixedHeader.Retain && (strings.HasPrefix(topic, "u/") || strings.HasPrefix(topic, "g/")) {
		in.Packet.FixedHeader.Retain = false
	}
	return nil
}
