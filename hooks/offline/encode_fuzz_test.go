package offline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// FuzzEncodePublish: for any PUBLISH the hub could send, appendPublish
// writes the bytes mochi's encoder writes (mochiEncode, as
// Client.WritePacket calls it), or both refuse it with the same error.
// The seeds run in every go test; to search further:
//
//	go test -run '^$' -fuzz FuzzEncodePublish -fuzztime 3m -parallel 1 ./hooks/offline
//
// flags: bits 0-1 QoS (3 too: both must agree even there), bit 2 retain,
// bit 3 dup, bits 4-5 protocol version (3, 4, 5, 5), bit 6 payload format
// present, bit 7 topic alias present. subIDs holds subscription
// identifiers, 4 bytes each (0 and values past the MQTT maximum
// included); user holds user properties as lines key, value, key, ...
func FuzzEncodePublish(f *testing.F) {
	const v5 = 0x20
	f.Add(byte(1|v5), uint16(7), "u/bob/inbox", []byte("hi"), byte(0), uint32(0), "", "", []byte(nil), []byte(nil), uint16(0),
		"id\n01JD5X0000000000000000000\nfrom\nalice\nts\n1764288000000", uint32(0))
	f.Add(byte(2|4|8|v5|0x40|0x80), uint16(65535), "a/b", []byte("payload"), byte(1), uint32(3600), "text/plain", "re/+/x", []byte("corr"),
		[]byte{0, 0, 0, 1, 0x0f, 0xff, 0xff, 0xff, 0, 0, 0, 0}, uint16(3), "k\nv\nk\nv2", uint32(0))
	f.Add(byte(1|v5), uint16(1), "t", bytes.Repeat([]byte("x"), 40), byte(0), uint32(0), "", "resp/topic", []byte(nil), []byte(nil), uint16(0),
		strings.Repeat("key\nvalue\n", 4), uint32(64)) // user properties left out to fit
	f.Add(byte(1|v5), uint16(1), "t", bytes.Repeat([]byte("x"), 100), byte(0), uint32(0), "", "", []byte(nil), []byte(nil), uint16(0), "", uint32(64)) // too large
	f.Add(byte(1|0x10), uint16(9), "sensors/1", []byte("21.5"), byte(0), uint32(60), "ct", "", []byte("c"), []byte(nil), uint16(0), "k\nv", uint32(0)) // 3.1.1: no properties
	f.Add(byte(1|0x00), uint16(0), "x", []byte(nil), byte(0), uint32(0), "", "", []byte(nil), []byte(nil), uint16(0), "", uint32(0))                   // no packet ID
	f.Add(byte(3|v5), uint16(5), "", []byte(nil), byte(0), uint32(0), "", "", []byte(nil), []byte(nil), uint16(0), "", uint32(0))                      // QoS 3
	f.Add(byte(0|v5|0x80), uint16(0), "", []byte("x"), byte(0), uint32(0), "", "", []byte(nil), []byte{0xff, 0xff, 0xff, 0xff}, uint16(0), "\n", uint32(5))

	f.Fuzz(func(t *testing.T, flags byte, packetID uint16, topic string, payload []byte, format byte, expiry uint32,
		contentType, responseTopic string, correlation, subIDs []byte, alias uint16, user string, maxSize uint32) {
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: flags & 3, Retain: flags&4 != 0, Dup: flags&8 != 0},
			TopicName:   topic,
			PacketID:    packetID,
			Payload:     payload,
		}
		version := []byte{3, 4, 5, 5}[flags>>4&3]
		p := &pk.Properties
		p.PayloadFormat, p.PayloadFormatFlag = format, flags&0x40 != 0
		p.MessageExpiryInterval = expiry
		p.ContentType = contentType
		p.ResponseTopic = responseTopic
		p.CorrelationData = correlation
		for ; len(subIDs) >= 4; subIDs = subIDs[4:] {
			p.SubscriptionIdentifier = append(p.SubscriptionIdentifier, int(binary.BigEndian.Uint32(subIDs)))
		}
		p.TopicAlias, p.TopicAliasFlag = alias, flags&0x80 != 0
		if user != "" {
			kv := strings.Split(user, "\n")
			for i := 0; i < len(kv); i += 2 {
				u := packets.UserProperty{Key: kv[i]}
				if i+1 < len(kv) {
					u.Val = kv[i+1]
				}
				p.User = append(p.User, u)
			}
		}
		sameAsMochi(t, pk, version, maxSize)
	})
}

// sameAsMochi fails unless appendPublish encodes pk as mochi does, or both
// refuse it with the same error.
func sameAsMochi(t *testing.T, pk packets.Packet, version byte, maxSize uint32) {
	t.Helper()
	want, wantErr := mochiEncode(pk, version, maxSize)
	got, err := appendPublish(nil, &pk, version, maxSize)
	if !errors.Is(err, wantErr) {
		t.Fatalf("v%d, max %d, %+v: error %v, mochi %v", version, maxSize, pk, err, wantErr)
	}
	if err == nil && !bytes.Equal(got, want) {
		t.Fatalf("v%d, max %d, %+v:\n got %x\nwant %x", version, maxSize, pk, got, want)
	}
}
