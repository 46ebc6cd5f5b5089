package storage

import (
	"fmt"
	"slices"
)

// UserProperty is one MQTT 5 user property. Order and repeats matter in
// MQTT, so a message carries them as a slice, not a map.
type UserProperty struct {
	Key   string
	Value string
}

// Message is a message as the hub stores it: enough to redeliver it to an
// MQTT 3.1.1 or 5 subscriber later, on this node or after a restart. It is
// independent of mochi-mqtt's packet type on purpose: the on-disk format
// must not change when mochi does.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool

	// MQTT 5 properties needed to redeliver.
	UserProperties  []UserProperty
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	// PayloadFormat is the payload format indicator (0 bytes, 1 UTF-8);
	// HasPayloadFormat says whether the publisher sent one.
	PayloadFormat    byte
	HasPayloadFormat bool
	// ExpiresAt is the message expiry deadline in unix seconds (0: never).
	// A relative Message Expiry Interval is turned into a deadline at
	// accept time, so the remaining interval can be sent on redelivery.
	ExpiresAt int64

	// Created is the accept time in unix nanoseconds.
	Created int64
	// ClientID and User name the publisher.
	ClientID string
	User     string
}

// messageVersion is the first byte of every encoded Message.
const messageVersion = 1

const (
	flagRetain        = 1 << 2
	flagPayloadFormat = 1 << 3
	flagQoSMask       = 0x03
	flagKnown         = flagQoSMask | flagRetain | flagPayloadFormat
)

// Expired reports whether the message expiry deadline has passed at now
// (unix seconds).
func (m *Message) Expired(nowUnix int64) bool {
	return m.ExpiresAt != 0 && m.ExpiresAt <= nowUnix
}

// Clone returns a deep copy of m.
func (m *Message) Clone() *Message {
	c := *m
	c.Payload = slices.Clone(m.Payload)
	c.CorrelationData = slices.Clone(m.CorrelationData)
	c.UserProperties = slices.Clone(m.UserProperties)
	return &c
}

// MarshalBinary encodes m in the compact versioned binary format:
//
//	version(1) flags(1) created(varint) expires_at(varint)
//	[payload_format(1) if flag] topic payload content_type response_topic
//	correlation_data user_property_count (key value)* client_id user
//
// where strings and byte fields are uvarint-length-prefixed. Created and
// ExpiresAt come first so a queue scan can check age without decoding the
// rest. It returns ErrInvalid for a QoS above 2.
func (m *Message) MarshalBinary() ([]byte, error) {
	if m.QoS > 2 {
		return nil, fmt.Errorf("%w: qos %d", ErrInvalid, m.QoS)
	}
	return m.appendBinary(nil), nil
}

func (m *Message) size() int {
	n := 2 + 10 + 10 + 1 + 5*8 + len(m.Topic) + len(m.Payload) + len(m.ContentType) +
		len(m.ResponseTopic) + len(m.CorrelationData) + len(m.ClientID) + len(m.User)
	for _, p := range m.UserProperties {
		n += 10 + len(p.Key) + len(p.Value)
	}
	return n
}

func (m *Message) appendBinary(b []byte) []byte {
	e := enc{b: slices.Grow(b, m.size())}
	flags := m.QoS & flagQoSMask
	if m.Retain {
		flags |= flagRetain
	}
	if m.HasPayloadFormat {
		flags |= flagPayloadFormat
	}
	e.byte(messageVersion)
	e.byte(flags)
	e.varint(m.Created)
	e.varint(m.ExpiresAt)
	if m.HasPayloadFormat {
		e.byte(m.PayloadFormat)
	}
	e.str(m.Topic)
	e.bytes(m.Payload)
	e.str(m.ContentType)
	e.str(m.ResponseTopic)
	e.bytes(m.CorrelationData)
	e.uvarint(uint64(len(m.UserProperties)))
	for _, p := range m.UserProperties {
		e.str(p.Key)
		e.str(p.Value)
	}
	e.str(m.ClientID)
	e.str(m.User)
	return e.b
}

// UnmarshalBinary decodes what MarshalBinary wrote. It never panics: any
// malformed input returns an error wrapping ErrCorrupt (or
// ErrUnsupportedVersion), and m is left unchanged. The decoded message
// does not alias b.
func (m *Message) UnmarshalBinary(b []byte) error {
	d := dec{b: b}
	v := d.byte("version")
	if d.err == nil && v != messageVersion {
		return fmt.Errorf("%w: message version %d", ErrUnsupportedVersion, v)
	}
	flags := d.byte("flags")
	if d.err == nil && (flags&^flagKnown != 0 || flags&flagQoSMask == 3) {
		d.fail("flags")
	}
	var out Message
	out.QoS = flags & flagQoSMask
	out.Retain = flags&flagRetain != 0
	out.Created = d.varint("created")
	out.ExpiresAt = d.varint("expires_at")
	if flags&flagPayloadFormat != 0 {
		out.HasPayloadFormat = true
		out.PayloadFormat = d.byte("payload format")
	}
	out.Topic = d.str("topic")
	out.Payload = d.bytes("payload")
	out.ContentType = d.str("content type")
	out.ResponseTopic = d.str("response topic")
	out.CorrelationData = d.bytes("correlation data")
	if n := d.count("user property count", 2); n > 0 {
		out.UserProperties = make([]UserProperty, n)
		for i := range out.UserProperties {
			out.UserProperties[i] = UserProperty{Key: d.str("user property key"), Value: d.str("user property value")}
		}
	}
	out.ClientID = d.str("client id")
	out.User = d.str("user")
	if err := d.end(); err != nil {
		return err
	}
	*m = out
	return nil
}

// peekTimes returns Created and ExpiresAt of an encoded message without
// decoding the rest: queue scans use it to skip expired entries cheaply.
func peekTimes(b []byte) (created, expiresAt int64, err error) {
	d := dec{b: b}
	if v := d.byte("version"); d.err == nil && v != messageVersion {
		return 0, 0, fmt.Errorf("%w: message version %d", ErrUnsupportedVersion, v)
	}
	d.byte("flags")
	created = d.varint("created")
	expiresAt = d.varint("expires_at")
	return created, expiresAt, d.err
}
