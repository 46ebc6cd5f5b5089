package broker

import (
	"fmt"
	"slices"

	"github.com/mochi-mqtt/server/v2/packets"
)

// frameError is a fault of the inbound byte stream found by the frame
// scanner: mochi's decoder either loses it (duplicate properties, reserved
// bits) or would only find it after allocating the packet (its size). It
// unwraps to the MQTT reason code that answers it.
type frameError struct {
	code    packets.Code
	reason  string // label of mqhub_connection_errors_total
	why     string // for the log
	version byte   // protocol version, when known: decides how to answer
}

func (e *frameError) Error() string { return e.code.Reason + ": " + e.why }
func (e *frameError) Unwrap() error { return e.code }

// frameFault marks a frame the scanner found faulty, by its position in
// the stream (the CONNECT is frame 0), for the hook that acts on it when
// mochi has decoded that packet (protocol.go).
type frameFault struct {
	frame uint64
	err   *frameError
}

// frameScanner follows the MQTT frames of one connection's inbound bytes
// as they are read, before mochi sees them. It collects the CONNECT until
// it has arrived whole (so that a claimed length costs nothing before its
// bytes do, and never more than maxConnect), and afterwards
// lets bytes through as they come while it checks each frame's fixed
// header against the maximum packet size and, for MQTT 5, the properties
// and options mochi's decoder does not check (framecheck.go). It is used
// by the connection's reader goroutine only.
type frameScanner struct {
	maxConnect int // largest CONNECT, fixed header included
	maxPacket  int // mochi's limit: remaining length + 1

	version   byte // from CONNECT
	connected bool // the CONNECT has arrived whole and was handed on
	off       bool // not followed any more (not MQTT, a bad length): mochi refuses what comes

	connect []byte // the CONNECT so far, until it is handed on

	hdr    [5]byte // the fixed header being read
	nhdr   int
	inBody bool
	typ    byte // first byte of the current frame
	size   int  // its remaining length
	left   int  // body bytes still to come

	checking bool   // the current frame's body is being checked
	body     []byte // its prefix, when it spans reads
	need     int    // prefix length the check needs next

	frames uint64       // frames complete, the CONNECT included
	faults []frameFault // faulty frames not yet acted on, in order
}

// maxHeldBody is the largest check buffer kept between frames; a larger
// one (a PUBLISH with big user properties split across reads) is dropped.
const maxHeldBody = 4 << 10

// decodeLength decodes the remaining length from the fixed header bytes
// after the first; ok is false while a continuation bit asks for more.
func decodeLength(b []byte) (n int, ok bool) {
	mult := 1
	for _, c := range b {
		n += int(c&0x7f) * mult
		if c&0x80 == 0 {
			return n, true
		}
		mult *= 128
	}
	return n, false
}

// minConnectBuffer is the first room a CONNECT is read into; it doubles
// as bytes arrive, so that a connection holds at most about twice what it
// sent.
const minConnectBuffer = 256

// connectRoom returns the free end of the CONNECT buffer, to read into.
func (s *frameScanner) connectRoom() []byte {
	if len(s.connect) == cap(s.connect) {
		s.connect = slices.Grow(s.connect, max(minConnectBuffer, cap(s.connect)))
	}
	return s.connect[len(s.connect):cap(s.connect)]
}

// collectConnect takes n more bytes read into connectRoom. Once the
// CONNECT has arrived whole it returns the bytes read so far, of which the
// first k are the CONNECT and the rest are still to be scanned; an error
// refuses the CONNECT; a nil buffer and no error means read on. A stream
// that does not start with a CONNECT (or whose length is malformed) is
// handed on as it is, for mochi to refuse.
func (s *frameScanner) collectConnect(n int) (buf []byte, k int, err *frameError) {
	s.connect = s.connect[:len(s.connect)+n]
	c := s.connect
	if c[0]>>4 != packets.Connect {
		return s.handOn(len(c), true)
	}
	hl := 1
	for hl < len(c) && hl < 5 && c[hl]&0x80 != 0 {
		hl++
	}
	if hl >= len(c) {
		return nil, 0, nil // the remaining length is still coming
	}
	if hl == 5 {
		return s.handOn(len(c), true)
	}
	size, _ := decodeLength(c[1 : hl+1])
	hl++ // the last length byte
	if total := hl + size; total > s.maxConnect || size+1 > s.maxPacket {
		version, _ := connectVersion(c[hl:])
		s.connect = nil
		return nil, 0, &frameError{code: packets.ErrPacketTooLarge, reason: reasonTooLarge, version: version,
			why: fmt.Sprintf("CONNECT of %d bytes announced, the limit is %d", total, min(s.maxConnect, s.maxPacket))}
	}
	if len(c) < hl+size {
		return nil, 0, nil
	}
	version, ferr := checkConnect(c[hl : hl+size])
	s.version = version
	if ferr != nil {
		ferr.version = version
		s.connect = nil
		return nil, 0, ferr
	}
	s.frames = 1
	return s.handOn(hl+size, false)
}

// handOn ends the CONNECT phase: the buffer goes to mochi, n bytes of it
// checked; off stops the scanning of what follows.
func (s *frameScanner) handOn(n int, off bool) ([]byte, int, *frameError) {
	buf := s.connect
	s.connect, s.connected, s.off = nil, true, off
	return buf, n, nil
}

// scan follows the frames after CONNECT through b, just read. It returns
// how many bytes of b may go to mochi: all of them, unless a frame
// announces more than the maximum packet size, in which case the bytes
// before that frame, and the error.
func (s *frameScanner) scan(b []byte) (int, *frameError) {
	if s.off {
		return len(b), nil
	}
	for i := 0; i < len(b); {
		if !s.inBody {
			s.hdr[s.nhdr] = b[i]
			s.nhdr++
			i++
			if s.nhdr == 1 || b[i-1]&0x80 != 0 {
				if s.nhdr == 5 {
					s.off = true // malformed length: mochi refuses it
					return len(b), nil
				}
				continue
			}
			size, _ := decodeLength(s.hdr[1:s.nhdr])
			if size+1 > s.maxPacket {
				return max(0, i-s.nhdr), &frameError{code: packets.ErrPacketTooLarge, reason: reasonTooLarge, version: s.version,
					why: fmt.Sprintf("packet of %d bytes announced, the limit is %d", size+1, s.maxPacket)}
			}
			s.typ, s.size, s.left, s.nhdr, s.inBody = s.hdr[0], size, size, 0, true
			s.checking = s.version == 5 && checked(s.typ)
			s.body, s.need = s.body[:0], 0
			if size == 0 {
				s.endFrame()
			}
			continue
		}
		k := min(s.left, len(b)-i)
		if s.checking {
			s.check(b[i : i+k])
		}
		i += k
		s.left -= k
		if s.left == 0 {
			s.endFrame()
		}
	}
	return len(b), nil
}

// check takes the next chunk of the current frame's body. A body that
// arrived in one read is checked where it lies; only one that spans reads
// is copied, and only as far as its check needs.
func (s *frameScanner) check(chunk []byte) {
	if len(s.body) == 0 {
		need, err := checkBody(s.typ, chunk, s.size)
		if need <= len(chunk) {
			s.done(err)
			return
		}
		s.need = need
	}
	for len(chunk) > 0 {
		k := min(len(chunk), s.need-len(s.body))
		s.body = append(s.body, chunk[:k]...)
		chunk = chunk[k:]
		if len(s.body) < s.need {
			return
		}
		need, err := checkBody(s.typ, s.body, s.size)
		if need <= len(s.body) {
			s.done(err)
			return
		}
		s.need = need
	}
}

// done records the verdict on the current frame.
func (s *frameScanner) done(err *frameError) {
	s.checking = false
	if cap(s.body) > maxHeldBody {
		s.body = nil
	}
	if err != nil {
		err.version = s.version
		s.faults = append(s.faults, frameFault{frame: s.frames, err: err})
	}
}

func (s *frameScanner) endFrame() {
	s.frames++
	s.inBody = false
	s.checking = false
}

// fault returns the fault found in the packet with that position in the
// stream, if any; packets are asked for in order.
func (s *frameScanner) fault(packet uint64) *frameError {
	for len(s.faults) > 0 && s.faults[0].frame <= packet {
		f := s.faults[0]
		s.faults = s.faults[1:]
		if f.frame == packet {
			return f.err
		}
	}
	return nil
}
