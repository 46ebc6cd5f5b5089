package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/rs/zerolog"
)

// guardFn wraps mochi's establish function for one accepted connection.
type guardFn func(listenerID string, c net.Conn, next listeners.EstablishFn) error

// admitFn decides at accept whether a new connection may stay; an
// admitted one is given release, called once when it closes.
type admitFn func(listenerID string, c net.Conn) (release func(), ok bool)

// boundListener is what our listeners share: an ID for mochi and the logs,
// and a socket bound in Init (so that ":0" resolves to the real port).
type boundListener struct {
	id        string
	address   string
	tlsConfig *tls.Config
	guard     guardFn
	admit     admitFn // nil: every connection is admitted
	log       zerolog.Logger
	ln        net.Listener
	closeOnce sync.Once
}

// ID implements listeners.Listener.
func (l *boundListener) ID() string { return l.id }

// Address returns the bound address once Init has run.
func (l *boundListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Init binds the address (with TLS when configured); mochi calls it from
// AddListener.
func (l *boundListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	if l.admit != nil {
		ln = &admittingListener{Listener: ln, id: l.id, admit: l.admit}
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.ln = ln
	return nil
}

// streamListener serves MQTT over TCP, or over TLS when tlsConfig is set.
// It implements mochi's listeners.Listener so that mochi can manage it, but
// every accepted connection goes through guard.
type streamListener struct {
	boundListener
}

func newStreamListener(id, address string, tlsConfig *tls.Config, guard guardFn, log zerolog.Logger) *streamListener {
	return &streamListener{boundListener{id: id, address: address, tlsConfig: tlsConfig, guard: guard, log: log}}
}

// Protocol implements listeners.Listener.
func (l *streamListener) Protocol() string {
	if l.tlsConfig != nil {
		return "tls"
	}
	return "tcp"
}

// Serve accepts connections until Close. Accept errors other than closing
// (running out of file descriptors, for one) back off instead of spinning.
func (l *streamListener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn().Err(err).Str("listener", l.id).Dur("retry_in", backoff).Msg("accept failed")
			time.Sleep(backoff) // nothing to wait on: the condition is the kernel's
			continue
		}
		backoff = 0
		go func() { _ = l.guard(l.id, conn, establish) }()
	}
}

// Close stops accepting and asks mochi to close this listener's clients.
func (l *streamListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		if l.ln != nil {
			_ = l.ln.Close()
		}
	})
	closeClients(l.id)
}

var _ listeners.Listener = (*streamListener)(nil)

// admittingListener applies admit to every accepted connection before a
// byte is read from it (before a TLS handshake or an HTTP upgrade too): a
// refused one is closed at once, so that a flood of connections from one
// address costs no goroutine and no buffer.
type admittingListener struct {
	net.Listener
	id    string
	admit admitFn
}

// Accept returns the next admitted connection.
func (l *admittingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if release, ok := l.admit(l.id, c); ok {
			return &admittedConn{Conn: c, release: release}, nil
		}
		_ = c.Close()
	}
}

// admittedConn gives its place back when it is closed.
type admittedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

// Close gives the place back first, so that a client that sees the
// connection end may connect again at once.
func (c *admittedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
