package offline

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

func fromPacketSubscription(sub packets.Subscription) storage.Subscription {
	return storage.Subscription{
		Filter:            sub.Filter,
		QoS:               sub.Qos,
		NoLocal:           sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished,
		RetainHandling:    sub.RetainHandling,
		Identifier:        uint32(max(sub.Identifier, 0)),
	}
}

// toMessage captures what is needed to redeliver a PUBLISH later. pk.Expiry
// is the absolute deadline mochi computed from the message expiry interval
// and the server's maximum.
func toMessage(cl *mqtt.Client, pk packets.Packet, retain bool) *storage.Message {
	m := &storage.Message{
		Topic:           pk.TopicName,
		Payload:         pk.Payload,
		QoS:             pk.FixedHeader.Qos,
		Retain:          retain,
		ContentType:     pk.Properties.ContentType,
		ResponseTopic:   pk.Properties.ResponseTopic,
		CorrelationData: pk.Properties.CorrelationData,
		ExpiresAt:       pk.Expiry,
		Created:         time.Now().UnixNano(),
		ClientID:        cl.ID,
		User:            string(cl.Properties.Username),
	}
	if pk.Properties.PayloadFormatFlag {
		m.PayloadFormat, m.HasPayloadFormat = pk.Properties.PayloadFormat, true
	}
	for _, u := range pk.Properties.User {
		m.UserProperties = append(m.UserProperties, storage.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

// toPacket builds the PUBLISH sent to a subscriber from a stored message.
func toPacket(m *storage.Message, qos byte, subscriptionIDs []int) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Properties: packets.Properties{
			ContentType:            m.ContentType,
			ResponseTopic:          m.ResponseTopic,
			CorrelationData:        m.CorrelationData,
			PayloadFormat:          m.PayloadFormat,
			PayloadFormatFlag:      m.HasPayloadFormat,
			SubscriptionIdentifier: subscriptionIDs,
		},
		Expiry:  m.ExpiresAt, // mochi turns it into the remaining interval when writing
		Created: m.Created / int64(time.Second),
		Origin:  m.ClientID,
	}
	for _, u := range m.UserProperties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	return pk
}
