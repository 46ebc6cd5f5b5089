package broker

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

// recordingConn records each write that reaches the socket.
type recordingConn struct {
	net.Conn
	writes []string
	err    error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func TestHeldWritesGoOutTogether(t *testing.T) {
	rec := &recordingConn{}
	tc := &trackedConn{Conn: rec}
	write := func(s string) {
		t.Helper()
		if n, err := tc.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}

	write("a") // not held: straight through
	tc.HoldWrites()
	tc.HoldWrites() // a second holder, say the PUBACK pipeline
	write("b")
	write("c")
	if err := tc.ReleaseWrites(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 {
		t.Fatalf("writes %q went out while another holder still held them", rec.writes)
	}
	if err := tc.ReleaseWrites(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "bc"}; !slices.Equal(rec.writes, want) {
		t.Fatalf("socket writes %q, want %q", rec.writes, want)
	}

	// A long run streams out in bounded pieces.
	rec.writes = nil
	tc.HoldWrites()
	chunk := strings.Repeat("x", 1000)
	for range 2 * maxHeldBytes / len(chunk) {
		write(chunk)
	}
	if len(rec.writes) == 0 {
		t.Fatalf("nothing written after %d held bytes", 2*maxHeldBytes)
	}
	if err := tc.ReleaseWrites(); err != nil {
		t.Fatal(err)
	}
	var total bytes.Buffer
	for _, w := range rec.writes {
		if len(w) > maxHeldBytes+len(chunk) {
			t.Fatalf("one write of %d bytes: the buffer is not bounded", len(w))
		}
		total.WriteString(w)
	}
	if total.Len() != 2*maxHeldBytes/len(chunk)*len(chunk) {
		t.Fatalf("%d bytes reached the socket, want every byte written", total.Len())
	}
}

func TestHeldWritesReportABrokenConnection(t *testing.T) {
	broken := errors.New("connection reset")
	rec := &recordingConn{err: broken}
	tc := &trackedConn{Conn: rec}
	tc.HoldWrites()
	if _, err := tc.Write([]byte("lost")); err != nil {
		t.Fatalf("a held write failed before the flush: %v", err)
	}
	if err := tc.ReleaseWrites(); !errors.Is(err, broken) {
		t.Fatalf("release = %v, want the socket's error", err)
	}
	// Later writes fail at once rather than pretending to succeed.
	if _, err := tc.Write([]byte("next")); !errors.Is(err, broken) {
		t.Fatalf("write after a failed flush = %v, want the socket's error", err)
	}
}
