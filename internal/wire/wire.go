// Package wire has the few MQTT encoding primitives that both the hub's
// own PUBLISH encoder (hooks/offline) and the bench's raw client use.
package wire

import "encoding/binary"

// AppendString appends s as an MQTT UTF-8 string: a two-byte length, then
// the bytes [MQTT-1.5.4].
func AppendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// AppendVarint appends n as an MQTT variable byte integer [MQTT-1.5.5].
func AppendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// VarintSize is the number of bytes AppendVarint writes for n.
func VarintSize(n int) int {
	size := 1
	for n >= 128 {
		n /= 128
		size++
	}
	return size
}
