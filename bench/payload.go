package bench

import (
	"encoding/binary"
	"errors"
	"time"
)

// PayloadHeaderSize is the number of bytes every bench payload starts with:
// a 4-byte magic, a 4-byte stream id, an 8-byte sequence number and an
// 8-byte send time. Payloads may be longer (padding up to --payload-size).
const PayloadHeaderSize = 24

// payloadMagic marks bench payloads so that stray messages on the same
// topics (another tool, a retained message) are counted as foreign instead of
// corrupting the loss and duplicate figures.
var payloadMagic = [4]byte{'M', 'Q', 'H', 'B'}

// ErrForeignPayload is returned by DecodePayload for a payload that was not
// written by EncodePayload.
var ErrForeignPayload = errors.New("not a bench payload")

// epoch is the reference for payload timestamps. Publishers and receivers
// run in one process, so a monotonic offset from epoch is immune to wall
// clock steps, which a UnixNano timestamp is not.
var epoch = time.Now()

// monoNow returns the nanoseconds elapsed since epoch on the monotonic clock.
func monoNow() int64 { return int64(time.Since(epoch)) }

// PayloadHeader is what a receiver learns from a bench payload.
type PayloadHeader struct {
	// Stream identifies the sequence the message belongs to: a publisher,
	// or a (publisher, session) pair in offline-drain.
	Stream uint32
	// Seq is the message's position in its stream, from 0.
	Seq uint64
	// SentNanos is when the message was sent, in nanoseconds since the
	// package epoch (monotonic).
	SentNanos int64
}

// EncodePayload returns a payload of size bytes (at least
// PayloadHeaderSize) carrying h. A new slice is allocated each time because
// paho keeps QoS 1 payloads in its session store until they are acknowledged.
func EncodePayload(h PayloadHeader, size int) []byte {
	size = max(size, PayloadHeaderSize)
	b := make([]byte, size)
	copy(b, payloadMagic[:])
	binary.BigEndian.PutUint32(b[4:], h.Stream)
	binary.BigEndian.PutUint64(b[8:], h.Seq)
	binary.BigEndian.PutUint64(b[16:], uint64(h.SentNanos))
	return b
}

// DecodePayload reads the header EncodePayload wrote. It returns
// ErrForeignPayload for anything else.
func DecodePayload(b []byte) (PayloadHeader, error) {
	if len(b) < PayloadHeaderSize || [4]byte(b[:4]) != payloadMagic {
		return PayloadHeader{}, ErrForeignPayload
	}
	return PayloadHeader{
		Stream:    binary.BigEndian.Uint32(b[4:]),
		Seq:       binary.BigEndian.Uint64(b[8:]),
		SentNanos: int64(binary.BigEndian.Uint64(b[16:])),
	}, nil
}
