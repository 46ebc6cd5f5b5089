package offline

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/internal/wire"
)

// writePublish writes a PUBLISH to cl as mochi's Client.WritePacket does:
// the same bytes (TestEncodeMatchesMochi), the same limits and counters,
// under the client's lock, so that it never interleaves with mochi's own
// writes. The encoder is ours because mochi's looks every property kind
// up in a nested map for every packet: 17% of the hub's CPU in the fan-in
// bench went to encoding PUBLISH packets.
//
// Hooks' OnPacketEncode and OnPacketSent are not called: none of the
// hub's hooks changes or watches a PUBLISH on its way out (Envelope's
// OnPacketEncode only keeps user properties on PUBLISH, which this
// encoder always does, as [MQTT-3.1.2-29] allows).
func (h *Hook) writePublish(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Closed() {
		return mqtt.ErrConnectionClosed
	}
	if cl.Net.Conn == nil {
		return nil // an offline client
	}
	if pk.Expiry > 0 {
		pk.Properties.MessageExpiryInterval = uint32(max(pk.Expiry-time.Now().Unix(), 1)) // [MQTT-3.3.2-6]
	}
	bp := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(bp)
	b, err := appendPublish((*bp)[:0], &pk, cl.Properties.ProtocolVersion, cl.Properties.Props.MaximumPacketSize)
	*bp = b[:0]
	if err != nil {
		return err
	}
	cl.Lock()
	n, err := cl.Net.Conn.Write(b)
	cl.Unlock()
	if err != nil {
		return err
	}
	atomic.AddInt64(&h.server.Info.BytesSent, int64(n))
	atomic.AddInt64(&h.server.Info.PacketsSent, 1)
	atomic.AddInt64(&h.server.Info.MessagesSent, 1)
	return nil
}

// encodeBuffers holds encoding buffers; the connection copies what it
// holds back (broker/heldwrites.go), so a buffer is free again once
// Write returns.
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendPublish appends pk encoded for a client of the given protocol
// version. maxSize is the client's Maximum Packet Size (0: none): a
// packet over it is refused with ErrPacketTooLarge [MQTT-3.1.2-25], after
// leaving out the user properties if they alone do not fit, as mochi does.
func appendPublish(b []byte, pk *packets.Packet, version byte, maxSize uint32) ([]byte, error) {
	qos := pk.FixedHeader.Qos
	if qos > 0 && pk.PacketID == 0 {
		return b, packets.ErrProtocolViolationNoPacketID // [MQTT-2.2.1-2]
	}
	fixed := 2 + len(pk.TopicName) // the variable header before properties
	if qos > 0 {
		fixed += 2
	}
	var props, user int // sizes of the properties without and of the user properties
	if version == 5 {
		props, user = propertiesSize(&pk.Properties)
		if user > 0 && maxSize > 0 && uint32(fixed+len(pk.Payload)+user+1) >= maxSize {
			user = -1 // mochi's rule: user properties only if they fit
		}
		if user > 0 {
			props += user
		}
	}
	remaining := fixed + len(pk.Payload)
	if version == 5 {
		remaining += wire.VarintSize(props) + props
	}

	header := byte(packets.Publish<<4) | qos<<1
	if pk.FixedHeader.Dup {
		header |= 1 << 3
	}
	if pk.FixedHeader.Retain {
		header |= 1
	}
	b = append(b, header)
	b = wire.AppendVarint(b, remaining)
	b = wire.AppendString(b, pk.TopicName)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pk.PacketID)
	}
	if version == 5 {
		b = wire.AppendVarint(b, props)
		b = appendProperties(b, &pk.Properties, user > 0)
	}
	b = append(b, pk.Payload...)
	if maxSize > 0 && uint32(len(b)) > maxSize {
		return b[:0], packets.ErrPacketTooLarge
	}
	return b, nil
}

// The PUBLISH properties, in mochi's order.
func appendProperties(b []byte, p *packets.Properties, withUser bool) []byte {
	if p.PayloadFormatFlag {
		b = append(b, packets.PropPayloadFormat, p.PayloadFormat)
	}
	if p.MessageExpiryInterval > 0 {
		b = append(b, packets.PropMessageExpiryInterval)
		b = binary.BigEndian.AppendUint32(b, p.MessageExpiryInterval)
	}
	if p.ContentType != "" {
		b = append(b, packets.PropContentType)
		b = wire.AppendString(b, p.ContentType)
	}
	if responseTopicAllowed(p.ResponseTopic) {
		b = append(b, packets.PropResponseTopic)
		b = wire.AppendString(b, p.ResponseTopic)
	}
	if len(p.CorrelationData) > 0 {
		b = append(b, packets.PropCorrelationData)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.CorrelationData)))
		b = append(b, p.CorrelationData...)
	}
	for _, id := range p.SubscriptionIdentifier {
		if id > 0 {
			b = append(b, packets.PropSubscriptionIdentifier)
			b = wire.AppendVarint(b, id)
		}
	}
	if p.TopicAliasFlag && p.TopicAlias > 0 {
		b = append(b, packets.PropTopicAlias)
		b = binary.BigEndian.AppendUint16(b, p.TopicAlias)
	}
	if withUser {
		for _, u := range p.User {
			b = append(b, packets.PropUser)
			b = wire.AppendString(b, u.Key)
			b = wire.AppendString(b, u.Val)
		}
	}
	return b
}

// propertiesSize returns the encoded size of the PUBLISH properties
// other than user properties, and of the user properties.
func propertiesSize(p *packets.Properties) (n, user int) {
	if p.PayloadFormatFlag {
		n += 2
	}
	if p.MessageExpiryInterval > 0 {
		n += 5
	}
	if p.ContentType != "" {
		n += 3 + len(p.ContentType)
	}
	if responseTopicAllowed(p.ResponseTopic) {
		n += 3 + len(p.ResponseTopic)
	}
	if len(p.CorrelationData) > 0 {
		n += 3 + len(p.CorrelationData)
	}
	for _, id := range p.SubscriptionIdentifier {
		if id > 0 {
			n += 1 + wire.VarintSize(id)
		}
	}
	if p.TopicAliasFlag && p.TopicAlias > 0 {
		n += 3
	}
	for _, u := range p.User {
		user += 5 + len(u.Key) + len(u.Val)
	}
	return n, user
}

// responseTopicAllowed: a response topic must not hold wildcards
// [MQTT-3.3.2-14].
func responseTopicAllowed(t string) bool {
	return t != "" && !strings.ContainsAny(t, "+#")
}
