package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// receiveMaximum is the Receive Maximum every bench client announces. paho
// sizes a per-client channel by it (65,535 pointers by default, 512 KiB per
// client), which would dominate the generator's memory with 1,000 fanout
// subscribers; 512 still lets a broker keep plenty of QoS 1 messages in
// flight.
const receiveMaximum = 512

// closeTimeout bounds how long closing one client may take.
const closeTimeout = 5 * time.Second

// clientSpec describes one MQTT connection.
type clientSpec struct {
	id            string
	cleanStart    bool
	sessionExpiry uint32 // seconds; 0 ends the session with the connection
	onMessage     func(*paho.Publish)
}

// connectClient dials o.Target and completes an MQTT 5 CONNECT. The returned
// connack tells whether the broker kept a session.
func connectClient(ctx context.Context, o Options, s clientSpec) (*paho.Client, *paho.Connack, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", o.Target)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", o.Target, err)
	}
	cfg := paho.ClientConfig{Conn: conn, ClientID: s.id}
	if s.onMessage != nil {
		on := s.onMessage
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				on(pr.Packet)
				return true, nil
			},
		}
	}
	c := paho.NewClient(cfg)
	rm := uint16(receiveMaximum)
	cp := &paho.Connect{
		ClientID:   s.id,
		KeepAlive:  uint16(o.KeepAlive / time.Second),
		CleanStart: s.cleanStart,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm},
	}
	if s.sessionExpiry > 0 {
		se := s.sessionExpiry
		cp.Properties.SessionExpiryInterval = &se
	}
	if o.Username != "" {
		cp.UsernameFlag, cp.Username = true, o.Username
		cp.PasswordFlag, cp.Password = true, []byte(o.Password)
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		// Connect closes the connection itself on failure.
		return nil, ca, fmt.Errorf("connect %s as %s: %w", o.Target, s.id, err)
	}
	return c, ca, nil
}

// closeClient sends DISCONNECT and waits for the client's goroutines to end.
// A non-nil props is sent with the DISCONNECT (offline-drain uses it to set
// the session expiry to 0 so the broker frees the session).
func closeClient(c *paho.Client, props *paho.DisconnectProperties) {
	if c == nil {
		return
	}
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0, Properties: props})
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-c.Done():
	case <-t.C:
	}
}

// connectMany opens n clients, at most o.ConnectConcurrency at a time. On
// any failure it closes those already open and returns the first error.
func connectMany(ctx context.Context, o Options, n int, spec func(i int) clientSpec) ([]*paho.Client, []*paho.Connack, error) {
	clients := make([]*paho.Client, n)
	acks := make([]*paho.Connack, n)
	errs := make([]error, n)
	sem := make(chan struct{}, o.ConnectConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i], acks[i], errs[i] = connectClient(ctx, o, spec(i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll(clients, nil)
		return nil, nil, firstError(errs)
	}
	return clients, acks, nil
}

// closeAll closes every non-nil client concurrently.
func closeAll(clients []*paho.Client, props *paho.DisconnectProperties) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c == nil {
			continue
		}
		wg.Go(func() { closeClient(c, props) })
	}
	wg.Wait()
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// subscribe subscribes c to filter at qos and checks the granted QoS, since a
// broker that downgrades QoS 1 to 0 would silently void the loss figures.
func subscribe(ctx context.Context, c *paho.Client, filter string, qos byte) error {
	sa, err := c.Subscribe(ctx, &paho.Subscribe{
		Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}},
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		return fmt.Errorf("subscribe %s: broker answered %v, want granted qos %d", filter, sa.Reasons, qos)
	}
	return nil
}

// subscribeAll subscribes each client to its filter, concurrently.
func subscribeAll(ctx context.Context, o Options, clients []*paho.Client, filter func(i int) string, qos byte) error {
	errs := make([]error, len(clients))
	sem := make(chan struct{}, o.ConnectConcurrency)
	var wg sync.WaitGroup
	for i, c := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = subscribe(ctx, c, filter(i), qos)
		})
	}
	wg.Wait()
	return firstError(errs)
}

// newRunID returns a short random id that prefixes client ids and topics, so
// that concurrent or leftover runs on the same broker cannot cross-talk.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return "b" + hex.EncodeToString(b[:])
}

// waitDrained polls until done() holds, progress() has not changed for
// idle, max has passed, or ctx ends. It is how scenarios wait for the last
// in-flight messages without a fixed sleep.
func waitDrained(ctx context.Context, maxWait, idle time.Duration, done func() bool, progress func() int64) {
	deadline := time.Now().Add(maxWait)
	last, lastChange := progress(), time.Now()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !done() {
		now := time.Now()
		if p := progress(); p != last {
			last, lastChange = p, now
		}
		if now.After(deadline) || now.Sub(lastChange) > idle {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
