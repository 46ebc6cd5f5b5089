package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/rs/zerolog"
)

// errTextFrame is returned when a WebSocket client sends a text frame:
// MQTT over WebSocket uses binary frames only [MQTT-6.0.0-1].
var errTextFrame = errors.New("websocket: text frame received, MQTT needs binary frames")

// wsListener serves MQTT over WebSocket on one HTTP path (subprotocol
// "mqtt"). Unlike mochi's, it reports its bound address and routes
// connections through guard.
type wsListener struct {
	boundListener
	path     string
	upgrader websocket.Upgrader
	srv      *http.Server
}

func newWSListener(id, address, path string, tlsConfig *tls.Config, connectTimeout time.Duration, guard guardFn, log zerolog.Logger) *wsListener {
	return &wsListener{
		boundListener: boundListener{id: id, address: address, tlsConfig: tlsConfig, guard: guard, log: log},
		path:          path,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: connectTimeout,
			Subprotocols:     []string{"mqtt"},
			// Small buffers: an idle connection should cost little. Browsers
			// connect from any origin; credentials, not origins, admit them.
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			CheckOrigin:     func(*http.Request) bool { return true },
		},
		srv: &http.Server{ReadHeaderTimeout: connectTimeout},
	}
}

// Protocol implements listeners.Listener.
func (l *wsListener) Protocol() string {
	if l.tlsConfig != nil {
		return "wss"
	}
	return "ws"
}

// Serve runs the HTTP server until Close.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	// An exact path comparison rather than a ServeMux pattern: the path is
	// configuration, and a pattern ("/mqtt/{", "/mqtt/") could panic or match
	// more than the one path.
	l.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != l.path {
			http.NotFound(w, r)
			return
		}
		ws, err := l.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader already answered with an HTTP error
		}
		_ = l.guard(l.id, &wsConn{Conn: ws.NetConn(), ws: ws}, establish)
	})
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error().Err(err).Str("listener", l.id).Msg("websocket listener stopped")
	}
}

// Close stops the HTTP server (upgraded connections are mochi's to close).
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := l.srv.Shutdown(ctx); err != nil {
			_ = l.srv.Close()
		}
		if l.ln != nil {
			_ = l.ln.Close() // Serve may not have started
		}
	})
	closeClients(l.id)
}

// wsConn presents a WebSocket as the byte stream mochi reads packets from.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader // current message, nil between messages
	wm sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue // empty or finished message: read the next one
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

var _ listeners.Listener = (*wsListener)(nil)
