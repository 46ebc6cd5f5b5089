package wire

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The variable byte integer round-trips through mochi's decoder at every
// length boundary, and VarintSize agrees with what is written.
func TestVarint(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455} {
		b := AppendVarint(nil, n)
		if len(b) != VarintSize(n) {
			t.Fatalf("%d: %d bytes written, VarintSize %d", n, len(b), VarintSize(n))
		}
		got, _, err := packets.DecodeLength(bytes.NewReader(b))
		if err != nil || got != n {
			t.Fatalf("%d: decoded %d, %v", n, got, err)
		}
	}
}

func TestAppendVarintBytes(t *testing.T) {
	for n, want := range map[int][]byte{0: {0}, 127: {0x7F}, 128: {0x80, 0x01}, 16383: {0xFF, 0x7F}, 2097152: {0x80, 0x80, 0x80, 0x01}} {
		if got := AppendVarint(nil, n); !bytes.Equal(got, want) {
			t.Errorf("AppendVarint(%d) = %x, want %x", n, got, want)
		}
	}
}

func TestAppendString(t *testing.T) {
	if got := AppendString([]byte{9}, "ab"); !bytes.Equal(got, []byte{9, 0, 2, 'a', 'b'}) {
		t.Fatalf("got %v", got)
	}
}
