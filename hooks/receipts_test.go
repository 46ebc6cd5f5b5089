package hooks_test

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/storage"
)

// WantsDelivered tells the offline hook which messages in flight to keep
// for a delivered receipt: exactly those Delivered writes one for.
func TestWantsDeliveredMatchesDelivered(t *testing.T) {
	h := hooks.NewReceipts(hooks.ReceiptsOptions{Router: routeNow{}, Logger: zerolog.Nop()})
	withID := []storage.UserProperty{{Key: hooks.PropID, Value: "m1"}}
	for _, tc := range []struct {
		name string
		m    storage.Message
		want bool
	}{
		{"direct message", storage.Message{Topic: "u/bob/inbox", User: "alice", UserProperties: withID}, true},
		{"group message", storage.Message{Topic: "g/family", User: "alice", UserProperties: withID}, true},
		{"no id", storage.Message{Topic: "u/bob/inbox", User: "alice"}, false},
		{"anonymous sender", storage.Message{Topic: "u/bob/inbox", UserProperties: withID}, false},
		{"a receipt", storage.Message{Topic: "u/bob/receipts", User: "alice", UserProperties: withID}, false},
		{"typing", storage.Message{Topic: "g/family/typing", User: "alice", UserProperties: withID}, false},
		{"plain MQTT", storage.Message{Topic: "sensors/1", User: "alice", UserProperties: withID}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.WantsDelivered(&tc.m); got != tc.want {
				t.Fatalf("WantsDelivered = %v, want %v", got, tc.want)
			}
			// bob's device acknowledges it: a receipt is written only
			// for what WantsDelivered kept.
			wrote := h.Delivered("bob-phone", "bob", &tc.m, func(error) {})
			if wrote && !tc.want {
				t.Fatalf("Delivered wrote a receipt for a message WantsDelivered drops")
			}
		})
	}
}
