package testutil

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Client is a real paho.golang MQTT 5 client connected to a hub under test.
// Every PUBLISH it receives lands in Messages; a server DISCONNECT lands in
// Disconnects.
type Client struct {
	*paho.Client
	Messages    chan *paho.Publish
	Disconnects chan *paho.Disconnect
	Conn        net.Conn
}

// Dial opens a TCP connection to addr or fails the test.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

// Connect sends CONNECT over conn with the given client ID (clean start,
// keepalive 30 s unless cp says otherwise) and fails the test unless the hub
// accepts. The client disconnects when the test ends.
func Connect(t testing.TB, conn net.Conn, cp *paho.Connect) *Client {
	t.Helper()
	c, ack, err := TryConnect(conn, cp)
	if err != nil {
		t.Fatalf("connect %q: %v (connack %+v)", cp.ClientID, err, ack)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("client %q did not stop", cp.ClientID)
		}
	})
	return c
}

// TryConnect is Connect without the test: it returns the CONNACK and error.
// On error the connection is closed. Options may change the paho client's
// configuration (manual acknowledgement, for one).
func TryConnect(conn net.Conn, cp *paho.Connect, options ...func(*paho.ClientConfig)) (*Client, *paho.Connack, error) {
	c := &Client{
		Messages:    make(chan *paho.Publish, 10_000),
		Disconnects: make(chan *paho.Disconnect, 1),
		Conn:        conn,
	}
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	cfg := paho.ClientConfig{
		ClientID: cp.ClientID,
		Conn:     packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				c.Messages <- pr.Packet
				return true, nil
			},
		},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.Disconnects <- d:
			default:
			}
		},
	}
	for _, o := range options {
		o(&cfg)
	}
	c.Client = paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Client.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		<-c.Done()
		return nil, ack, err
	}
	return c, ack, nil
}

// Subscribe subscribes to filter at qos or fails the test.
func (c *Client) Subscribe(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("subscribe %q: %v", filter, err)
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0] > 2 {
		t.Fatalf("subscribe %q refused: reasons %v", filter, ack.Reasons)
	}
}

// Publish publishes and, for QoS 1 and 2, waits for the acknowledgement.
func (c *Client) Publish(t testing.TB, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Client.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish to %q: %v", p.Topic, err)
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		t.Fatalf("publish to %q refused: reason 0x%02x", p.Topic, resp.ReasonCode)
	}
}

// Next returns the next message received, failing the test after timeout.
func (c *Client) Next(t testing.TB, timeout time.Duration) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.Messages:
		return m
	case <-time.After(timeout):
		t.Fatalf("client %q: no message within %s", c.ClientID(), timeout)
		return nil
	}
}
