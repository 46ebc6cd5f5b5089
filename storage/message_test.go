package storage

import (
	"errors"
	"reflect"
	"testing"
)

func fullMessage() *Message {
	return &Message{
		Topic:            "u/bob/inbox",
		Payload:          []byte("hello"),
		QoS:              2,
		Retain:           true,
		UserProperties:   []UserProperty{{"id", "01J"}, {"from", "alice"}, {"id", "dup"}},
		ContentType:      "text/plain",
		ResponseTopic:    "u/alice/inbox",
		CorrelationData:  []byte{0, 1, 2},
		PayloadFormat:    1,
		HasPayloadFormat: true,
		ExpiresAt:        1_700_000_060,
		Created:          1_700_000_000_123_456_789,
		ClientID:         "alice-phone",
		User:             "alice",
	}
}

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    *Message
	}{
		{"empty", &Message{}},
		{"minimal", msg("a/b", "x")},
		{"full", fullMessage()},
		{"negative times", &Message{Topic: "t", Created: -5, ExpiresAt: -1}},
		{"binary payload", &Message{Topic: "t", Payload: []byte{0, 0xff, 0x80}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Message
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, tt.m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, *tt.m)
			}
			c, e, err := peekTimes(b)
			if err != nil || c != tt.m.Created || e != tt.m.ExpiresAt {
				t.Fatalf("peekTimes = %d %d %v", c, e, err)
			}
		})
	}
}

func TestMessageDecodeErrors(t *testing.T) {
	good, _ := fullMessage().MarshalBinary()
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, ErrCorrupt},
		{"version only", []byte{1}, ErrCorrupt},
		{"future version", []byte{9, 0}, ErrUnsupportedVersion},
		{"qos 3", []byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrCorrupt},
		{"unknown flag", []byte{1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrCorrupt},
		{"huge length", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrCorrupt},
		{"truncated", good[:len(good)-1], ErrCorrupt},
		{"trailing", append(append([]byte{}, good...), 0), ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{Topic: "unchanged"}
			err := m.UnmarshalBinary(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if m.Topic != "unchanged" {
				t.Fatal("failed decode modified the message")
			}
		})
	}
	if _, err := (&Message{QoS: 3}).MarshalBinary(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("marshal qos 3: %v", err)
	}
}

// FuzzMessageDecode checks that the decoder never panics on garbage and
// that whatever it accepts re-encodes to the same bytes.
func FuzzMessageDecode(f *testing.F) {
	for _, m := range []*Message{{}, msg("a/b", "x"), fullMessage()} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1, 0x08, 2, 2, 1, 1, 'a', 0, 0, 0, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var m2 Message
		if err := m2.UnmarshalBinary(out); err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("unstable round trip:\n%+v\n%+v", m, m2)
		}
	})
}

func fullSession() *Session {
	return &Session{
		ClientID: "bob-phone", User: "bob", ProtocolVersion: 5, ExpiryInterval: 3600,
		DisconnectedAt: 1_700_000_000_000_000_000,
		Subscriptions: []Subscription{
			{Filter: "u/bob/inbox", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, Identifier: 268435455},
			{Filter: "g/+", QoS: 0},
		},
	}
}

func TestSessionEncoding(t *testing.T) {
	for _, ss := range []*Session{{ClientID: "c"}, fullSession(), {ClientID: "x", Clean: true, ExpiryInterval: NeverExpire}} {
		b, err := ss.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Session
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, ss) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, *ss)
		}
	}
	if _, err := (&Session{Subscriptions: []Subscription{{QoS: 3}}}).MarshalBinary(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("qos 3: %v", err)
	}
}

// FuzzSessionDecode checks the session decoder never panics.
func FuzzSessionDecode(f *testing.F) {
	b, _ := fullSession().MarshalBinary()
	f.Add(b)
	f.Add([]byte{1, 0, 5, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ss Session
		if err := ss.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := ss.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var ss2 Session
		if err := ss2.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(ss, ss2) {
			t.Fatalf("unstable round trip: %v", err)
		}
	})
}
