package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrDecoderPanic marks a connection closed because one of its packets
// crashed mochi's decoder (mochi issue #501 and its relatives).
var ErrDecoderPanic = errors.New("packet crashed the decoder")

// trackedConn is the net.Conn handed to mochi. It lets the guard find the
// mochi client of a connection after a panic, and know whether the
// connection ever became a session; the hub's senders batch their writes
// through it (heldwrites.go); mochi reads through its frame scanner
// (frames.go).
type trackedConn struct {
	net.Conn
	b           *Broker
	listener    string
	client      atomic.Pointer[mqtt.Client]
	established atomic.Bool
	held        heldWrites // see heldwrites.go

	// Used by mochi's reader goroutine only (Read and the OnPacketRead
	// hook it calls).
	scan    frameScanner
	pending []byte      // scanned bytes mochi has not read yet: the CONNECT and what came with it
	fault   *frameError // answered once mochi has read the bytes before it
	decoded uint64      // packets mochi decoded, the CONNECT included
}

// awaitConnect reads the CONNECT whole, through the frame scanner, before
// mochi is given the connection: until then a connection costs its
// goroutine and the bytes it sent, not a mochi client with its buffers
// and writer goroutine, nor the length its fixed header claims. A refused
// CONNECT is answered here (MQTT 5: CONNACK with the reason code).
func (c *trackedConn) awaitConnect() error {
	for {
		n, err := c.Conn.Read(c.scan.connectRoom())
		if n > 0 {
			buf, k, ferr := c.scan.collectConnect(n)
			if ferr != nil {
				if ferr.version == 5 {
					_, _ = c.Conn.Write(connackRefusal(ferr.code))
				}
				return ferr
			}
			if buf != nil {
				ok, ferr := c.scan.scan(buf[k:])
				c.pending, c.fault = buf[:k+ok], ferr
				return nil // a read error with the last bytes comes back from mochi's next read
			}
		}
		if err != nil {
			return err
		}
	}
}

// Read hands mochi the CONNECT that awaitConnect collected, then the
// connection's bytes as they come through the frame scanner, up to a frame
// announcing more than the maximum packet size: that one is answered
// (DISCONNECT 0x95 for MQTT 5) before mochi could allocate it.
func (c *trackedConn) Read(p []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil // the CONNECT's buffer is garbage now
			}
			return n, nil
		}
		if c.fault != nil {
			return 0, c.refuse(c.fault)
		}
		n, err := c.Conn.Read(p)
		if n == 0 {
			return 0, err
		}
		ok, ferr := c.scan.scan(p[:n])
		if ferr == nil {
			return n, err
		}
		c.fault = ferr
		if ok > 0 {
			return ok, nil
		}
	}
}

// refuse answers a session's packet over the maximum packet size and
// returns it as the read error that ends mochi's read loop.
func (c *trackedConn) refuse(ferr *frameError) error {
	if cl := c.client.Load(); cl != nil && c.established.Load() {
		c.b.closeForFault(cl, c, ferr)
	}
	return ferr
}

// connackRefusal is an MQTT 5 CONNACK refusing with code, with its reason
// string.
func connackRefusal(code packets.Code) []byte {
	reason := code.Reason[:min(len(code.Reason), 100)]
	props := 3 + len(reason)
	b := []byte{0x20, byte(3 + props), 0, code.Code, byte(props), 0x1f, 0, byte(len(reason))}
	return append(b, reason...)
}

// closeForFault ends a session whose client sent a faulty packet: MQTT 5
// clients get DISCONNECT with the reason code first, 3.1.1 clients, which
// have no reason codes, are closed. Counted and logged (sampled) once.
func (b *Broker) closeForFault(cl *mqtt.Client, tc *trackedConn, ferr *frameError) {
	b.metrics.connectionError(ferr.reason)
	b.sampled.Info().Str("client_id", cl.ID).Str("user", string(cl.Properties.Username)).
		Str("remote", cl.Net.Remote).Str("listener", tc.listener).Str("reason", ferr.code.Reason).
		Str("detail", ferr.why).Msg("client sent a faulty packet; disconnected")
	if cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode:  ferr.code.Code,
			Properties:  packets.Properties{ReasonString: ferr.code.Reason},
		})
		tc.flush() // even when a sender holds the connection's writes
	}
	cl.Stop(ferr.code)
}

// TLSState reports the TLS state of a connection that arrived over TLS,
// so that authentication can map a client certificate to a user.
func (c *trackedConn) TLSState() (tls.ConnectionState, bool) {
	if t, ok := c.Conn.(*tls.Conn); ok {
		return t.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// conns counts and tracks live connections so that shutdown can wait for
// them and, past its deadline, close them.
type conns struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	set map[*trackedConn]struct{}
}

func (c *conns) add(tc *trackedConn) {
	c.wg.Add(1)
	c.mu.Lock()
	if c.set == nil {
		c.set = map[*trackedConn]struct{}{}
	}
	c.set[tc] = struct{}{}
	c.mu.Unlock()
}

func (c *conns) done(tc *trackedConn) {
	c.mu.Lock()
	delete(c.set, tc)
	c.mu.Unlock()
	c.wg.Done()
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tc := range c.set {
		_ = tc.Close()
	}
}

// establish is the single entry point of every accepted connection, on
// every listener. It gives the client ConnectTimeout to send CONNECT
// (mochi sets no deadline before it), confines a panic to this connection,
// and finishes the cleanup mochi skips when its read loop panics.
func (b *Broker) establish(listenerID string, raw net.Conn) (err error) {
	tc := &trackedConn{Conn: raw, b: b, listener: listenerID}
	tc.scan.maxConnect = int(min(b.cfg.MaxConnectSize, b.cfg.MaxPacketSize))
	tc.scan.maxPacket = int(b.cfg.MaxPacketSize)
	b.conns.add(tc)
	defer b.conns.done(tc)
	b.metrics.connections.Inc()

	// Mochi replaces this deadline with the keepalive one once CONNECT is
	// accepted (before CONNACK), so it bounds exactly the pre-CONNECT phase.
	_ = raw.SetReadDeadline(time.Now().Add(b.cfg.ConnectTimeout))

	// Runs last: a session that failed between OnSessionEstablish and
	// CONNACK got no OnDisconnect, but presence counted it.
	defer func() {
		if cl := tc.client.Load(); cl != nil {
			b.presence.ConnectionEnded(cl)
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDecoderPanic, r)
			b.metrics.connectionError(reasonPanic)
			cl := tc.client.Load()
			ev := b.sampled.Error().Str("remote", raw.RemoteAddr().String()).Str("listener", listenerID).
				Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack()))
			if cl != nil {
				ev = ev.Str("client_id", cl.ID).Str("user", string(cl.Properties.Username))
			}
			ev.Msg("malformed packet crashed the decoder; closed that connection only")
			_ = tc.Close()
			if cl != nil && tc.established.Load() {
				b.finishCrashedSession(cl, err)
			}
		}
	}()

	if tlsConn, ok := raw.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ConnectTimeout)
		err := tlsConn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			b.metrics.connectionError(reasonTLSHandshake)
			b.sampled.Info().Str("remote", raw.RemoteAddr().String()).Str("listener", listenerID).Err(err).
				Msg("TLS handshake failed")
			_ = raw.Close()
			return err
		}
	}
	if err := tc.awaitConnect(); err != nil {
		b.logRejected(tc, listenerID, err)
		_ = tc.Close()
		return err
	}
	err = b.mochi.EstablishConnection(listenerID, tc)
	if !tc.established.Load() && err != nil {
		b.logRejected(tc, listenerID, err)
	}
	return err
}

// admit applies the per-IP limits to a connection just accepted: a refused
// one is counted and logged (sampled) here and closed by the listener.
func (b *Broker) admit(listenerID string, c net.Conn) (func(), bool) {
	ip, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		ip = c.RemoteAddr().String()
	}
	limit, ok := b.limits.Accept(ip)
	if ok {
		return func() { b.limits.Release(ip) }, true
	}
	b.metrics.connectionError(limit)
	b.sampled.Info().Str("remote", c.RemoteAddr().String()).Str("listener", listenerID).Str("reason", limit).
		Msg("connection refused at accept: per-IP limit")
	return nil, false
}

// logRejected reports a connection that ended before becoming a session.
func (b *Broker) logRejected(tc *trackedConn, listenerID string, err error) {
	var code packets.Code
	var netErr net.Error
	var ferr *frameError
	reason := reasonMalformed
	switch {
	case errors.As(err, &ferr):
		reason = ferr.reason
		err = ferr
	case errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
		reason = reasonConnectTimeout
		err = fmt.Errorf("no CONNECT within %s", b.cfg.ConnectTimeout)
	case errors.Is(err, packets.ErrPacketTooLarge):
		reason = reasonTooLarge
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return // closed before saying anything: port probes, health checks
	case errors.As(err, &code) && (code == packets.ErrBadUsernameOrPassword || code == packets.ErrNotAuthorized ||
		code == packets.ErrClientIdentifierNotValid):
		b.metrics.connectionError(reasonAuthFailed)
		return // the auth hook logged it with the user name and why
	case errors.As(err, &code):
		reason = reasonRefused
	}
	b.metrics.connectionError(reason)
	ev := b.sampled.Info().Str("remote", tc.RemoteAddr().String()).Str("listener", listenerID).Str("reason", reason).Err(err)
	if cl := tc.client.Load(); cl != nil {
		ev = ev.Str("client_id", cl.ID).Str("user", string(cl.Properties.Username))
	}
	ev.Msg("connection closed before a session was established")
}

// finishCrashedSession does what mochi's attachClient would have done after
// its read loop ended, had it not panicked: tell the hooks (the offline
// hook then sends the will) and drop a clean session.
func (b *Broker) finishCrashedSession(cl *mqtt.Client, cause error) {
	expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
		(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean)
	for _, h := range b.hooks {
		if h.Provides(mqtt.OnDisconnect) {
			h.OnDisconnect(cl, cause, expire)
		}
	}
	if expire && !cl.IsTakenOver() {
		if current, ok := b.mochi.Clients.Get(cl.ID); ok && current == cl {
			cl.ClearInflights()
			b.mochi.UnsubscribeClient(cl)
			b.mochi.Clients.Delete(cl.ID)
		}
	}
}
