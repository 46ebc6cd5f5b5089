package broker

import (
	"sync"
)

// maxHeldBytes is how much a held connection buffers before it writes
// anyway, so that a long batch still streams out.
const maxHeldBytes = 64 << 10

// heldBuffers recycles the buffers of held writes: a connection has one
// only while a batch is being written, so an idle connection keeps none.
var heldBuffers = sync.Pool{New: func() any { return new([]byte) }}

// heldWrites lets the hub's senders send many packets to one connection in
// one write: mochi writes every packet with its own syscall, which for a
// subscriber receiving a burst (a queue drain, a fan-in) costs more than
// the packets themselves, on both ends. Between HoldWrites and
// ReleaseWrites (counted, so several goroutines may hold at once) writes
// to the connection are buffered; the last release sends them. Outside a
// hold, writes go straight through.
type heldWrites struct {
	mu    sync.Mutex
	holds int
	buf   *[]byte
	err   error // a failed flush: the connection is broken, later writes fail
}

// HoldWrites starts buffering the connection's writes.
func (c *trackedConn) HoldWrites() {
	c.held.mu.Lock()
	c.held.holds++
	c.held.mu.Unlock()
}

// ReleaseWrites ends one hold; the last one sends what was buffered. It
// reports a write error, which a writer that was buffered did not see.
func (c *trackedConn) ReleaseWrites() error {
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	if c.held.holds > 0 {
		c.held.holds--
	}
	if c.held.holds > 0 {
		return c.held.err
	}
	return c.flushLocked()
}

// Write sends p, or buffers it while the connection is held.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	if c.held.err != nil {
		return 0, c.held.err
	}
	if c.held.holds == 0 {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if c.held.buf == nil {
		c.held.buf = heldBuffers.Get().(*[]byte)
	}
	*c.held.buf = append(*c.held.buf, p...)
	if len(*c.held.buf) >= maxHeldBytes {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flushLocked writes the buffered bytes and gives the buffer back.
func (c *trackedConn) flushLocked() error {
	b := c.held.buf
	if b == nil {
		return c.held.err
	}
	c.held.buf = nil
	_, err := c.Conn.Write(*b)
	if cap(*b) <= 4*maxHeldBytes {
		*b = (*b)[:0]
		heldBuffers.Put(b)
	}
	if err != nil && c.held.err == nil {
		c.held.err = err
	}
	return c.held.err
}

// flush sends what is buffered now, held or not: for a last packet
// before the connection is closed.
func (c *trackedConn) flush() {
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	_ = c.flushLocked()
}
