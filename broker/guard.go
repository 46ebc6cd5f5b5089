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
// through it (heldwrites.go).
type trackedConn struct {
	net.Conn
	client      atomic.Pointer[mqtt.Client]
	established atomic.Bool
	held        heldWrites // see heldwrites.go
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
	tc := &trackedConn{Conn: raw}
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
	err = b.mochi.EstablishConnection(listenerID, tc)
	if !tc.established.Load() && err != nil {
		b.logRejected(tc, listenerID, err)
	}
	return err
}

// logRejected reports a connection that ended before becoming a session.
func (b *Broker) logRejected(tc *trackedConn, listenerID string, err error) {
	var code packets.Code
	var netErr net.Error
	reason := reasonMalformed
	switch {
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
	case errors.As(err, &code) && (code == packets.ErrQuotaExceeded || code == packets.ErrConnectionRateExceeded):
		return // the limits hook logged and counted it
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
