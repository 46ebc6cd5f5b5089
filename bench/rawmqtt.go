package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/mqhub/mqhub/internal/wire"
)

// The conns scenario holds thousands of idle connections. A paho client
// costs three goroutines and their buffers each; a raw connection costs a
// file descriptor. These helpers speak just enough MQTT 5 for that:
// CONNECT, CONNACK, PINGREQ/PINGRESP and DISCONNECT.

// MQTT control packet bytes used by the raw connections.
var (
	pingreqPacket    = []byte{0xC0, 0x00}
	disconnectPacket = []byte{0xE0, 0x00}
)

const (
	packetConnack  = 0x20
	packetPingresp = 0xD0
)

// maxRawPacket bounds what readPacket allocates: the raw connections only
// expect CONNACK and PINGRESP, a few bytes each, and a length field must not
// make the generator allocate 256 MiB.
const maxRawPacket = 1 << 16

// ErrConnRefused is returned when a CONNACK carries a failure reason code.
var ErrConnRefused = errors.New("connection refused by broker")

// encodeConnect builds an MQTT 5 CONNECT with clean start, no properties, and
// the given client id, keepalive (seconds) and optional credentials.
func encodeConnect(clientID string, keepAlive uint16, username, password string) []byte {
	var body []byte
	body = wire.AppendString(body, "MQTT")
	body = append(body, 5) // protocol level: MQTT 5
	flags := byte(0x02)    // clean start
	if username != "" {
		flags |= 0x80 | 0x40
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	body = append(body, 0) // properties length
	body = wire.AppendString(body, clientID)
	if username != "" {
		body = wire.AppendString(body, username)
		body = wire.AppendString(body, password)
	}
	pkt := []byte{0x10}
	pkt = wire.AppendVarint(pkt, len(body))
	return append(pkt, body...)
}

// readPacket reads one packet's fixed header and body.
func readPacket(r *bufio.Reader) (typ byte, body []byte, err error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, errors.New("malformed remaining length")
		}
		d, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7F) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	if n > maxRawPacket {
		return 0, nil, fmt.Errorf("packet of %d bytes is not a CONNACK or PINGRESP", n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h & 0xF0, body, nil
}

// readConnack reads a CONNACK and returns an error unless it accepts the
// connection.
func readConnack(r *bufio.Reader) error {
	typ, body, err := readPacket(r)
	if err != nil {
		return fmt.Errorf("read connack: %w", err)
	}
	if typ != packetConnack || len(body) < 2 {
		return fmt.Errorf("read connack: got packet type %#x", typ)
	}
	if body[1] >= 0x80 {
		return fmt.Errorf("%w: reason code %#x", ErrConnRefused, body[1])
	}
	return nil
}
