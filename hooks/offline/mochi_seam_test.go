package offline

import (
	"os"
	"strings"
	"testing"
)

// mochiChecked is the mochi-mqtt version the reaches into its internals
// below were written and checked against.
const mochiChecked = "v2.7.9"

// mochiReaches are the places that rely on how mochi works inside, not on
// its documented API. When go.mod moves to another mochi version, re-check
// each against the new source, then update mochiChecked.
var mochiReaches = []string{
	"hooks/offline/encode.go: our PUBLISH encoder and writePublish copy WritePacket's semantics (closed check, expiry, Maximum Packet Size, Info counters, the client's write lock)",
	"hooks/offline/session.go: Inflight.ResetSendQuota(0) keeps NextImmediate (which read-locks twice) from running; subscriptions taken out of mochi's Topics and hidden from inheritClientSession",
	"hooks/offline/sender.go: packet IDs allocated around mochi's inflight map; answers to our sends handed to mochi as PUBACK 0, which processPuback ignores",
	"hooks/offline/entry.go: InboundTopicAliases.Set(alias, \"\") returns the alias' topic or \"\"; processPublish drops $SYS/$share topics silently (IsValidFilter)",
	"hooks/offline/pipeline.go: InjectPacket through an inline relay client; Info.MessagesReceived/PacketsReceived corrected",
	"hooks/offline/will.go: cl.Properties.Will cleared in OnSessionEstablished, read by mochi only in sendLWT after the read loop; StopCause after a normal DISCONNECT is CodeDisconnect",
	"hooks/offline/session.go OnPacketEncode: processUnsubscribe answers from Topics.Unsubscribe",
	"hooks/offline/retained.go: Topics.RetainMessage with an empty payload removes a retained message",
	"broker/guard.go: the cleanup after a contained panic repeats what attachClient does after its read loop",
	"broker/protocol.go: OnPacketRead errors other than ErrRejectPacket are ignored by mochi",
	"broker/broker.go: NoInheritedPropertiesOnAck; Info.Version overwritten",
}

// TestMochiVersionIsTheCheckedOne fails when go.mod names another mochi
// version than the one the reaches above were checked against.
func TestMochiVersionIsTheCheckedOne(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "github.com/mochi-mqtt/server/v2" {
			if fields[1] != mochiChecked {
				t.Fatalf("go.mod has mochi %s, the seam was checked against %s: re-check these, then update mochiChecked:\n%s",
					fields[1], mochiChecked, strings.Join(mochiReaches, "\n"))
			}
			return
		}
	}
	t.Fatal("go.mod does not require github.com/mochi-mqtt/server/v2")
}
