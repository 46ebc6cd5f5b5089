package offline

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// appendPublish writes the bytes mochi's PublishEncode writes (as
// Client.WritePacket calls it), for random packets of every protocol
// version, with and without a client's Maximum Packet Size.
func TestEncodeMatchesMochi(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	str := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = "ab/+#xyz"[rng.IntN(8)]
		}
		return string(b)
	}
	for i := range 20_000 {
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: byte(rng.IntN(3)), Dup: rng.IntN(2) == 0, Retain: rng.IntN(2) == 0},
			TopicName:   "t/" + str(20),
			Payload:     []byte(str(300 * rng.IntN(2))),
		}
		if pk.FixedHeader.Qos > 0 {
			pk.PacketID = uint16(1 + rng.IntN(65535))
		}
		p := &pk.Properties
		if rng.IntN(2) == 0 {
			p.PayloadFormat, p.PayloadFormatFlag = byte(rng.IntN(2)), true
		}
		if rng.IntN(2) == 0 {
			p.MessageExpiryInterval = rng.Uint32()
		}
		p.ContentType = str(10 * rng.IntN(2))
		p.ResponseTopic = str(10 * rng.IntN(2))
		p.CorrelationData = []byte(str(10 * rng.IntN(2)))
		for range rng.IntN(3) {
			p.SubscriptionIdentifier = append(p.SubscriptionIdentifier, rng.IntN(268_435_455))
		}
		if rng.IntN(4) == 0 {
			p.TopicAlias, p.TopicAliasFlag = uint16(rng.IntN(10)), true
		}
		for range rng.IntN(4) {
			p.User = append(p.User, packets.UserProperty{Key: str(8), Val: str(40)})
		}
		version := []byte{3, 4, 5, 5}[rng.IntN(4)]
		maxSize := []uint32{0, 0, 64, 128, 256, 400}[rng.IntN(6)]

		want, wantErr := mochiEncode(pk, version, maxSize)
		got, err := appendPublish(nil, &pk, version, maxSize)
		if !errors.Is(err, wantErr) && !(err == nil && wantErr == nil) {
			t.Fatalf("packet %d (v%d, max %d): error %v, mochi %v", i, version, maxSize, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("packet %d (v%d, max %d) %+v:\n got %x\nwant %x", i, version, maxSize, pk, got, want)
		}
	}
}

// A QoS 1/2 packet needs a packet ID [MQTT-2.2.1-2], as in mochi.
func TestEncodeRefusesMissingPacketID(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a"}
	if _, err := appendPublish(nil, &pk, 5, 0); !errors.Is(err, packets.ErrProtocolViolationNoPacketID) {
		t.Fatalf("error %v, want %v", err, packets.ErrProtocolViolationNoPacketID)
	}
}

// mochiEncode encodes pk as mochi's Client.WritePacket does.
func mochiEncode(pk packets.Packet, version byte, maxSize uint32) ([]byte, error) {
	pk.ProtocolVersion = version
	pk.Mods.MaxSize = maxSize
	pk.Mods.AllowResponseInfo = true
	var buf bytes.Buffer
	if err := pk.PublishEncode(&buf); err != nil {
		return nil, err
	}
	if maxSize > 0 && uint32(buf.Len()) > maxSize {
		return nil, packets.ErrPacketTooLarge
	}
	return buf.Bytes(), nil
}

func BenchmarkEncodePublish(b *testing.B) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "u/bob/inbox", PacketID: 7, Payload: make([]byte, 64),
		Properties: packets.Properties{User: []packets.UserProperty{{Key: "id", Val: "01JD5X0000000000000000000"}, {Key: "from", Val: "alice"}, {Key: "ts", Val: "1764288000000"}}},
	}
	b.Run("mochi", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := mochiEncode(pk, 5, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = appendPublish(buf[:0], &pk, 5, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
