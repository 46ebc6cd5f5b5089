package broker_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// wsClientConn presents a client WebSocket as a net.Conn carrying MQTT in
// binary messages, so that paho can run over it. An MQTT packet may span
// messages and a message may hold several packets: reads see one stream.
type wsClientConn struct {
	ws *websocket.Conn
	r  io.Reader  // current message, nil between messages
	wm sync.Mutex // gorilla allows one writer at a time
}

var _ net.Conn = (*wsClientConn)(nil)

// dialWS opens a WebSocket to url offering the "mqtt" subprotocol.
func dialWS(url string) (*wsClientConn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"mqtt"}}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, resp, err
	}
	return &wsClientConn{ws: ws}, resp, nil
}

func (c *wsClientConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: got message type %d from the hub, want binary", typ)
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsClientConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeText sends a text frame, which MQTT over WebSocket forbids.
func (c *wsClientConn) writeText(s string) error {
	c.wm.Lock()
	defer c.wm.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// Close sends a close frame (best effort) and closes the connection.
func (c *wsClientConn) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

func (c *wsClientConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsClientConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsClientConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsClientConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsClientConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}

func wsURL(hub *broker.Broker, path string) string { return "ws://" + hub.WSAddr() + path }

// connectWS dials the hub's WebSocket endpoint and connects paho through it.
func connectWS(t *testing.T, hub *broker.Broker, clientID string) (*testutil.Client, *wsClientConn) {
	t.Helper()
	conn, _, err := dialWS(wsURL(hub, hub.Config().WSPath))
	if err != nil {
		t.Fatalf("dial websocket: %v", err)
	}
	if got := conn.ws.Subprotocol(); got != "mqtt" {
		t.Errorf("negotiated subprotocol %q, want mqtt", got)
	}
	return testutil.Connect(t, conn, &paho.Connect{ClientID: clientID, CleanStart: true}), conn
}

// expectRoundTrip subscribes sub to topic at qos, publishes payload from pub and
// checks that sub receives it at that QoS.
func expectRoundTrip(t *testing.T, pub, sub *testutil.Client, topic string, qos byte, payload []byte) {
	t.Helper()
	sub.Subscribe(t, topic, qos)
	pub.Publish(t, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	m := sub.Next(t, 5*time.Second)
	if m.Topic != topic || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("received %d bytes on %q, want %d bytes on %q", len(m.Payload), m.Topic, len(payload), topic)
	}
	if m.QoS != qos {
		t.Errorf("received at QoS %d, want %d", m.QoS, qos)
	}
}

func TestWebSocketRoundTrip(t *testing.T) {
	hub := testutil.StartHub(t)
	ws, _ := connectWS(t, hub, "ws-client")
	tcp := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "tcp-client", CleanStart: true})

	// Larger than the hub's read and write buffers and gorilla's frame
	// buffers, so that packets span several WebSocket messages and frames.
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB

	for _, dir := range []struct {
		name     string
		pub, sub *testutil.Client
	}{
		{"ws to tcp", ws, tcp},
		{"tcp to ws", tcp, ws},
		{"ws to ws", ws, ws},
	} {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%s/qos%d", dir.name, qos), func(t *testing.T) {
				topic := fmt.Sprintf("ws/%s/%d", dir.name, qos)
				expectRoundTrip(t, dir.pub, dir.sub, topic, qos, []byte("hello "+dir.name))
			})
		}
		t.Run(dir.name+"/large", func(t *testing.T) {
			expectRoundTrip(t, dir.pub, dir.sub, "ws/large/"+dir.name, 1, big)
		})
	}
}

func TestWebSocketWrongPath(t *testing.T) {
	hub := testutil.StartHub(t)
	for _, path := range []string{"/other", "/", "/mqtt/extra", "/MQTT"} {
		t.Run(path, func(t *testing.T) {
			conn, resp, err := dialWS(wsURL(hub, path))
			if err == nil {
				_ = conn.Close()
				t.Fatalf("websocket upgrade on %s succeeded", path)
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("dial %s: %v, want a refused handshake", path, err)
			}
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("status %d on %s, want 404", resp.StatusCode, path)
			}
			if up := resp.Header.Get("Upgrade"); up != "" {
				t.Errorf("response on %s has Upgrade: %q", path, up)
			}
		})
	}

	// A plain HTTP request on the right path is no upgrade either.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + hub.WSAddr() + "/mqtt")
	if err != nil {
		t.Fatalf("GET /mqtt: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain GET /mqtt: status %d, want 400", resp.StatusCode)
	}
}

func TestWebSocketTextFrameClosesConnection(t *testing.T) {
	hub := testutil.StartHub(t)
	other, _ := connectWS(t, hub, "ws-bystander")
	tcp := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "tcp-bystander", CleanStart: true})

	conn, _, err := dialWS(wsURL(hub, "/mqtt"))
	if err != nil {
		t.Fatalf("dial websocket: %v", err)
	}
	victim, _, err := testutil.TryConnect(conn, &paho.Connect{ClientID: "ws-texter", CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		_ = victim.Disconnect(&paho.Disconnect{})
		select {
		case <-victim.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("client ws-texter did not stop")
		}
	})
	expectRoundTrip(t, victim, victim, "ws/text/before", 1, []byte("binary is fine"))

	if err := conn.writeText("hello"); err != nil {
		t.Fatalf("write text frame: %v", err)
	}
	select {
	case <-victim.Done(): // the hub closed the connection
	case <-time.After(5 * time.Second):
		t.Fatal("the hub did not close the connection after a text frame")
	}

	// Everybody else carries on.
	expectRoundTrip(t, other, tcp, "ws/text/after/1", 1, []byte("still here"))
	expectRoundTrip(t, tcp, other, "ws/text/after/2", 2, []byte("me too"))
}

func TestWebSocketConnectTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hub := testutil.StartHub(t, func(c *broker.Config) { c.ConnectTimeout = timeout })

	// A client that sent CONNECT in time is not affected by the deadline.
	early, _ := connectWS(t, hub, "ws-early")

	silent, _, err := dialWS(wsURL(hub, "/mqtt"))
	if err != nil {
		t.Fatalf("dial websocket: %v", err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	start := time.Now()
	_ = silent.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = silent.ws.ReadMessage()
	elapsed := time.Since(start)
	var netErr net.Error
	switch {
	case err == nil:
		t.Fatal("the hub sent a message to a client that never sent CONNECT")
	case errors.As(err, &netErr) && netErr.Timeout():
		t.Fatalf("the hub did not close a silent connection within 5s (connect timeout %s)", timeout)
	}
	t.Logf("silent connection closed after %s: %v", elapsed.Round(time.Millisecond), err)
	if elapsed < timeout*2/3 {
		t.Errorf("silent connection closed after %s, before the %s connect timeout", elapsed, timeout)
	}

	// Well past the connect timeout, the early client still works.
	expectRoundTrip(t, early, early, "ws/timeout/early", 1, []byte("alive"))
}
