package hooks_test

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/hooks/offline"
)

// FuzzEnvelope checks the envelope's promises (docs/protocol.md, "The
// envelope") for any user properties, topic, user and client ID:
//
//   - a `from` or `ts` the client set never comes out;
//   - in the hub's namespaces (u/, g/), and everywhere with AllTopics, the
//     message carries exactly one `id` (the client's, else the hub's), one
//     `from` (the authenticated user) and one `ts` (the accept time);
//   - outside them with AllTopics off, the client's other user properties
//     pass unchanged and in order;
//   - the payload, topic and fixed header are never touched;
//   - an `id` the same sender repeats within the window is reported as
//     repeated (packets.CodeSuccessIgnore), and the same `id` from another
//     user is not.
//
// The seeds run in every go test; to search further:
//
//	go test -run '^$' -fuzz FuzzEnvelope -fuzztime 3m -parallel 1 ./hooks
//
// props is the client's user properties, one a line, "key=value".
func FuzzEnvelope(f *testing.F) {
	f.Add(false, "alice", "alice-phone", "u/bob/inbox", "id=m1\nfrom=root\nts=1\nx=y", []byte("hi"))
	f.Add(false, "alice", "alice-phone", "g/team", "", []byte(nil))
	f.Add(false, "", "anon", "sensors/1", "from=bob\nk=v\nid=\nid=a\nts=2\nk=v", []byte("21.5"))
	f.Add(false, "bob", "b", "plain", "k=v\nk2=v2", []byte("x"))
	f.Add(true, "bob", "b", "plain", "id="+strings.Repeat("x", 129)+"\nid=short", []byte("x"))
	f.Add(false, "carol", "c", "u/carol/receipts", "id=\nid=r1\nid=r2", []byte(`{"status":"read","ids":["m1"]}`))
	f.Add(false, "dave", "d", "u", "from=", []byte{0})
	f.Add(true, "", "", "", "=\n==", []byte(nil))
	f.Fuzz(func(t *testing.T, allTopics bool, user, clientID, topic, props string, payload []byte) {
		now := time.UnixMilli(1_764_288_000_000)
		h := hooks.NewEnvelope(hooks.EnvelopeOptions{AllTopics: allTopics, DedupeWindow: time.Minute, Now: func() time.Time { return now }})
		var in []packets.UserProperty
		if props != "" {
			for _, line := range strings.Split(props, "\n") {
				k, v, _ := strings.Cut(line, "=")
				in = append(in, packets.UserProperty{Key: k, Val: v})
			}
		}
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   topic, PacketID: 1, Payload: payload,
			Properties: packets.Properties{User: in},
		}
		original := slices.Clone(in)
		sent := bytes.Clone(payload)

		out, err := publishAccepted(h, benchClient(clientID, user), pk)
		if err != nil {
			t.Fatalf("first publish: %v", err)
		}
		if !bytes.Equal(out.Payload, sent) || !bytes.Equal(payload, sent) {
			t.Fatalf("payload %q became %q", sent, out.Payload)
		}
		if out.TopicName != topic || out.FixedHeader != pk.FixedHeader || out.PacketID != pk.PacketID {
			t.Fatalf("topic or header changed: %+v", out)
		}
		if !slices.Equal(pk.Properties.User, original) {
			t.Fatalf("the client's packet changed: %q, was %q", pk.Properties.User, original)
		}

		first, _, _ := strings.Cut(topic, "/")
		clientKeys := withoutKeys(original, hooks.PropFrom, hooks.PropTS)
		switch {
		case allTopics || first == "u" || first == "g":
			wantStamped(t, out.Properties.User, user, now, chosenID(original))
			if others := withoutKeys(out.Properties.User, hooks.PropID, hooks.PropFrom, hooks.PropTS); !slices.Equal(others, withoutKeys(clientKeys, hooks.PropID)) {
				t.Fatalf("other properties %q, want %q", others, withoutKeys(clientKeys, hooks.PropID))
			}
		case !strings.HasPrefix(first, "$") && first != "presence" && first != "+" && first != "#":
			// Plain MQTT (the other reserved names are the hub's own).
			if !slices.Equal(out.Properties.User, clientKeys) {
				t.Fatalf("plain topic: properties %q, want %q", out.Properties.User, clientKeys)
			}
		default:
			if n := count(out.Properties.User, hooks.PropFrom); n > 0 {
				wantStamped(t, out.Properties.User, user, now, chosenID(original))
			} else if count(out.Properties.User, hooks.PropTS) > 0 {
				t.Fatalf("ts without from: %q", out.Properties.User)
			}
		}

		id := chosenID(original)
		if id == "" {
			return
		}
		now = now.Add(time.Second)
		if _, err := publishAccepted(h, benchClient(clientID, user), pk); err != packets.CodeSuccessIgnore {
			t.Fatalf("id %q repeated by %q: %v, want %v", id, user, err, packets.CodeSuccessIgnore)
		}
		if _, err := publishAccepted(h, benchClient(clientID+"-other", user+"-other"), pk); err != nil {
			t.Fatalf("id %q of %q sent by another user: %v", id, user, err)
		}
	})
}

// publishAccepted is a client PUBLISH going through the envelope's rule
// as the entry path runs it, and accepted (the dedupe window records an
// id only then). A repeated id answers packets.CodeSuccessIgnore, as
// mochi is then told.
func publishAccepted(h *hooks.Envelope, cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	in := &offline.Inbound{Origin: offline.FromClient, Client: cl, User: string(cl.Properties.Username), Packet: pk}
	err := h.Admit(in)
	if errors.Is(err, offline.ErrIgnore) {
		return in.Packet, packets.CodeSuccessIgnore
	}
	if err == nil {
		in.Settle(true)
	}
	return in.Packet, err
}

// wantStamped checks one id (the client's when it chose one), one from
// (the user) and one ts (now).
func wantStamped(t *testing.T, props []packets.UserProperty, user string, now time.Time, clientChose string) {
	t.Helper()
	for _, k := range []string{hooks.PropID, hooks.PropFrom, hooks.PropTS} {
		if n := count(props, k); n != 1 {
			t.Fatalf("%d %q properties in %q, want 1", n, k, props)
		}
	}
	if v := value(props, hooks.PropFrom); v != user {
		t.Fatalf("from %q, want %q", v, user)
	}
	if v := value(props, hooks.PropTS); v != strconv.FormatInt(now.UnixMilli(), 10) {
		t.Fatalf("ts %q, want %d", v, now.UnixMilli())
	}
	if v := value(props, hooks.PropID); v == "" || clientChose != "" && v != clientChose {
		t.Fatalf("id %q, want %q (or one assigned)", v, clientChose)
	}
}

// chosenID returns the message id a client chose: the first non-empty
// `id` of at most 128 bytes (docs/protocol.md).
func chosenID(props []packets.UserProperty) string {
	for _, p := range props {
		if p.Key == hooks.PropID && p.Val != "" && len(p.Val) <= 128 {
			return p.Val
		}
	}
	return ""
}

func withoutKeys(props []packets.UserProperty, keys ...string) []packets.UserProperty {
	return slices.DeleteFunc(slices.Clone(props), func(p packets.UserProperty) bool { return slices.Contains(keys, p.Key) })
}

func count(props []packets.UserProperty, key string) int {
	n := 0
	for _, p := range props {
		if p.Key == key {
			n++
		}
	}
	return n
}

func value(props []packets.UserProperty, key string) string {
	for _, p := range props {
		if p.Key == key {
			return p.Val
		}
	}
	return ""
}
