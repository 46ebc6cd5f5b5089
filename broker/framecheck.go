package broker

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The MQTT 5 faults the frame scanner answers, which mochi's decoder lets
// through: it keeps the last of a repeated property and ignores the
// reserved bits of subscription options.
var (
	errDuplicateProperty  = packets.Code{Code: 0x82, Reason: "protocol error: property given more than once"}
	errSubscriptionIDZero = packets.Code{Code: 0x82, Reason: "protocol error: subscription identifier 0"}
	errRetainHandling     = packets.Code{Code: 0x82, Reason: "protocol error: retain handling 3"}
	errReservedOptionBits = packets.Code{Code: 0x81, Reason: "malformed packet: reserved subscription option bits set"}
	errWillPayloadFormat  = packets.Code{Code: 0x99, Reason: "payload format invalid: will payload is not UTF-8"}
)

// propKind is how a property's value is encoded (MQTT 5 section 2.2.2.2).
type propKind uint8

const (
	propUnknown propKind = iota
	propByte
	propUint16
	propUint32
	propVarint
	propString // also binary data: a two-byte length and the bytes
	propPair   // two strings: the user property
)

const (
	propPayloadFormat = 0x01
	propSubscriptionI = 0x0b
	propUser          = 0x26
)

var propKinds = [...]propKind{
	0x01: propByte, 0x02: propUint32, 0x03: propString, 0x08: propString, 0x09: propString,
	0x0b: propVarint, 0x11: propUint32, 0x12: propString, 0x13: propUint16, 0x15: propString,
	0x16: propString, 0x17: propByte, 0x18: propUint32, 0x19: propByte, 0x1a: propString,
	0x1c: propString, 0x1f: propString, 0x21: propUint16, 0x22: propUint16, 0x23: propUint16,
	0x24: propByte, 0x25: propByte, 0x26: propPair, 0x27: propUint32, 0x28: propByte,
	0x29: propByte, 0x2a: propByte,
}

// props is what the checks need from a property list.
type props struct {
	end    int  // offset just after the list
	dup    byte // a property given twice that may appear once; 0: none
	subID  int  // subscription identifier; -1: absent
	format int  // payload format indicator; -1: absent
}

// varint decodes a variable byte integer; n is 0 while more bytes are
// needed, -1 when it is malformed.
func varint(b []byte) (v, n int) {
	mult := 1
	for i := 0; i < len(b) && i < 4; i++ {
		v += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
		mult *= 128
	}
	if len(b) >= 4 {
		return 0, -1
	}
	return 0, 0
}

// readProps reads the property list at the start of b (its length
// first). need > len(b) asks for that many bytes; bad means a list mochi
// refuses by itself (malformed, unknown property), so nothing to check.
func readProps(b []byte) (p props, need int, bad bool) {
	plen, lb := varint(b)
	switch {
	case lb < 0:
		return p, 0, true
	case lb == 0:
		return p, len(b) + 1, false
	}
	end := lb + plen
	if len(b) < end {
		return p, end, false
	}
	p.end, p.subID, p.format = end, -1, -1
	var seen uint64
	for i := lb; i < end; {
		id := b[i]
		i++
		if int(id) >= len(propKinds) || propKinds[id] == propUnknown {
			return p, 0, true
		}
		start := i
		switch propKinds[id] {
		case propByte:
			i++
		case propUint16:
			i += 2
		case propUint32:
			i += 4
		case propVarint:
			v, n := varint(b[i:end])
			if n <= 0 {
				return p, 0, true
			}
			i += n
			p.subID = v
		case propString, propPair:
			strs := 1
			if id == propUser {
				strs = 2 // name and value
			}
			for range strs {
				if i+2 > end {
					return p, 0, true
				}
				i += 2 + int(binary.BigEndian.Uint16(b[i:]))
			}
		}
		if i > end {
			return p, 0, true
		}
		if id == propPayloadFormat {
			p.format = int(b[start])
		}
		if id != propUser {
			if seen&(1<<id) != 0 && p.dup == 0 {
				p.dup = id
			}
			seen |= 1 << id
		}
	}
	return p, 0, false
}

// checked reports whether frames of this type are checked (MQTT 5 only).
func checked(typ byte) bool {
	return typ>>4 == packets.Publish || typ>>4 == packets.Subscribe
}

// checkBody checks the prefix b of the body of an MQTT 5 PUBLISH or
// SUBSCRIBE of size bytes. need > len(b) asks for a longer prefix; else
// the verdict is given (nil: nothing found). A frame whose structure
// does not fit its size is left to mochi's decoder, which refuses it.
func checkBody(typ byte, b []byte, size int) (need int, err *frameError) {
	if typ>>4 == packets.Publish {
		need, err = checkPublish(typ, b, size)
	} else {
		need, err = checkSubscribe(b, size)
	}
	if need > size {
		return 0, nil
	}
	return need, err
}

func checkPublish(typ byte, b []byte, size int) (int, *frameError) {
	if len(b) < 2 {
		return 2, nil
	}
	off := 2 + int(binary.BigEndian.Uint16(b))
	if (typ>>1)&3 > 0 {
		off += 2 // packet identifier
	}
	if off >= size {
		return 0, nil
	}
	if len(b) <= off {
		return off + 1, nil
	}
	p, need, bad := readProps(b[off:])
	switch {
	case bad:
		return 0, nil
	case need > 0:
		return off + need, nil
	case p.dup != 0:
		return 0, protocolFault(errDuplicateProperty, "PUBLISH carries property 0x%02x more than once", p.dup)
	}
	return 0, nil
}

func checkSubscribe(b []byte, size int) (int, *frameError) {
	if len(b) < size {
		return size, nil // SUBSCRIBEs are rare and small: checked whole
	}
	if len(b) < 2 {
		return 0, nil
	}
	p, _, bad := readProps(b[2:])
	switch {
	case bad:
		return 0, nil
	case p.dup != 0:
		return 0, protocolFault(errDuplicateProperty, "SUBSCRIBE carries property 0x%02x more than once", p.dup)
	case p.subID == 0:
		return 0, protocolFault(errSubscriptionIDZero, "SUBSCRIBE with subscription identifier 0")
	}
	for i := 2 + p.end; i+2 <= len(b); {
		i += 2 + int(binary.BigEndian.Uint16(b[i:]))
		if i >= len(b) {
			return 0, nil
		}
		switch opts := b[i]; {
		case opts&0xc0 != 0:
			return 0, protocolFault(errReservedOptionBits, "SUBSCRIBE options 0x%02x set reserved bits", opts)
		case (opts>>4)&3 == 3:
			return 0, protocolFault(errRetainHandling, "SUBSCRIBE options 0x%02x ask for retain handling 3", opts)
		}
		i++
	}
	return 0, nil
}

// connectVersion reads the protocol version from the start of a CONNECT
// body, if it has arrived.
func connectVersion(b []byte) (byte, bool) {
	if len(b) < 2 {
		return 0, false
	}
	at := 2 + int(binary.BigEndian.Uint16(b))
	if len(b) <= at {
		return 0, false
	}
	return b[at], true
}

// checkConnect checks a whole CONNECT body: for MQTT 5, properties of the
// CONNECT and of the will given twice, and a will payload announced as
// UTF-8 that is not. Anything malformed is left to mochi.
func checkConnect(b []byte) (byte, *frameError) {
	version, ok := connectVersion(b)
	if !ok || version != 5 {
		return version, nil
	}
	off := 2 + int(binary.BigEndian.Uint16(b)) + 1
	if off+3 > len(b) {
		return version, nil
	}
	flags := b[off]
	off += 3 // flags, keep alive
	p, _, bad := readProps(b[off:])
	if bad || p.end == 0 {
		return version, nil
	}
	if p.dup != 0 {
		return version, protocolFault(errDuplicateProperty, "CONNECT carries property 0x%02x more than once", p.dup)
	}
	off += p.end
	if flags&0x04 == 0 { // no will
		return version, nil
	}
	if off+2 > len(b) {
		return version, nil
	}
	off += 2 + int(binary.BigEndian.Uint16(b[off:])) // client identifier
	if off > len(b) {
		return version, nil
	}
	wp, _, bad := readProps(b[off:])
	if bad || wp.end == 0 {
		return version, nil
	}
	if wp.dup != 0 {
		return version, protocolFault(errDuplicateProperty, "will properties carry property 0x%02x more than once", wp.dup)
	}
	off += wp.end
	if wp.format != 1 || off+2 > len(b) {
		return version, nil
	}
	off += 2 + int(binary.BigEndian.Uint16(b[off:])) // will topic
	if off+2 > len(b) {
		return version, nil
	}
	n := int(binary.BigEndian.Uint16(b[off:]))
	if off+2+n <= len(b) && !utf8.Valid(b[off+2:off+2+n]) {
		return version, &frameError{code: errWillPayloadFormat, reason: reasonProtocolError,
			why: "will payload format indicator 1 with a payload that is not UTF-8"}
	}
	return version, nil
}

// protocolFault builds the error of a malformed packet or protocol error.
func protocolFault(code packets.Code, format string, args ...any) *frameError {
	reason := reasonProtocolError
	if code.Code == packets.ErrMalformedPacket.Code {
		reason = reasonMalformed
	}
	return &frameError{code: code, reason: reason, why: fmt.Sprintf(format, args...)}
}
