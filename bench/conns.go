package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connsScenario measures the cost of idle connections: how fast the broker
// accepts them and how much memory each one holds, the figure that decides
// how many sleeping phones a node can keep.
func connsScenario() Scenario {
	return Scenario{
		Name:    "conns",
		Summary: "N idle connections with keepalive (default 1000, up to 19000); connect rate, broker RSS per connection",
		Key:     []string{"connect_per_s", "rss_kb_per_conn", "failed"},
		Defaults: func(o *Options) {
			if o.Clients == 0 {
				o.Clients = 1000
			}
			if o.Hold == 0 {
				o.Hold = 5 * time.Second
			}
			if o.Duration == 0 && o.Count == 0 {
				// Not used to send; set so Validate's bound holds.
				o.Duration = o.Hold
			}
		},
		run: runConns,
	}
}

// fdReserve is how many descriptors conns leaves for everything else in
// the process (stdio, the Go runtime, other clients).
const fdReserve = 64

// rawConn is one idle MQTT connection.
type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

func runConns(ctx context.Context, o Options) (map[string]float64, error) {
	limit, err := RaiseOpenFiles()
	if err != nil {
		return nil, err
	}
	if limit > 0 && uint64(o.Clients)+fdReserve > limit {
		return nil, fmt.Errorf("%d connections need more than the open file limit %d allows (reserve %d)", o.Clients, limit, fdReserve)
	}
	run := newRunID()
	conns := make([]*rawConn, o.Clients)
	defer closeRaw(conns)

	var rssBefore int64
	if o.PID > 0 {
		if rssBefore, err = ReadRSS(o.PID); err != nil {
			return nil, err
		}
	}
	var done, failed atomic.Int64
	var firstErr atomic.Value
	bar := startProgress(o.Progress, o.scenarioDesc("conns")+" (connections)", int64(o.Clients), done.Load)
	start := time.Now()
	sem := make(chan struct{}, o.ConnectConcurrency)
	var wg sync.WaitGroup
	for i := range o.Clients {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialRaw(ctx, o, fmt.Sprintf("%s-c%d", run, i))
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
			done.Add(1)
		})
	}
	wg.Wait()
	connectElapsed := time.Since(start)
	bar.finish()
	connected := done.Load()
	if connected == 0 {
		err, _ := firstErr.Load().(error)
		return nil, fmt.Errorf("no connection succeeded: %w", err)
	}

	var rssHeld int64
	if o.PID > 0 {
		if rssHeld, err = ReadRSS(o.PID); err != nil {
			return nil, err
		}
	}
	holdConns(ctx, o, conns)
	alive := checkAlive(ctx, o, conns)

	figs := map[string]float64{
		"connections":      float64(o.Clients),
		"connected":        float64(connected),
		"failed":           float64(failed.Load()),
		"connect_s":        connectElapsed.Seconds(),
		"connect_per_s":    perSecond(uint64(connected), connectElapsed),
		"alive_after_hold": float64(alive),
		"open_files_limit": float64(limit),
		"keepalive_s":      o.KeepAlive.Seconds(),
		"hold_s":           o.Hold.Seconds(),
	}
	if o.PID > 0 {
		figs["rss_conns_before_kb"] = float64(rssBefore)
		figs["rss_held_kb"] = float64(rssHeld)
		figs["rss_kb_per_conn"] = float64(rssHeld-rssBefore) / float64(connected)
	}
	return figs, nil
}

// dialRaw opens one connection and completes CONNECT/CONNACK.
func dialRaw(ctx context.Context, o Options, id string) (*rawConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", o.Target)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.Target, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, 64)}
	if _, err := c.Write(encodeConnect(id, uint16(o.KeepAlive/time.Second), o.Username, o.Password)); err != nil {
		c.Close()
		return nil, fmt.Errorf("send connect as %s: %w", id, err)
	}
	if err := readConnack(rc.r); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect as %s: %w", id, err)
	}
	_ = c.SetDeadline(time.Time{})
	return rc, nil
}

// holdConns keeps the connections open for o.Hold, sending PINGREQ on each
// every half keepalive so the broker does not drop them. No goroutine reads
// while holding: the 2-byte PINGRESPs wait in the socket buffers and
// checkAlive consumes them, which keeps the generator's own cost per
// connection to a descriptor.
func holdConns(ctx context.Context, o Options, conns []*rawConn) {
	end := time.NewTimer(o.Hold)
	defer end.Stop()
	ping := time.NewTicker(o.KeepAlive / 2)
	defer ping.Stop()
	bar := startProgress(o.Progress, o.scenarioDesc("conns")+" hold (ms)", o.Hold.Milliseconds(), holdClock())
	defer bar.finish()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-ping.C:
			for _, c := range conns {
				if c != nil {
					_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
					_, _ = c.c.Write(pingreqPacket)
				}
			}
		}
	}
}

func holdClock() func() int64 {
	start := time.Now()
	return func() int64 { return time.Since(start).Milliseconds() }
}

// checkAlive pings every connection once more and counts those that answer,
// so a broker that silently dropped connections during the hold is caught.
func checkAlive(ctx context.Context, o Options, conns []*rawConn) int64 {
	var alive atomic.Int64
	sem := make(chan struct{}, o.ConnectConcurrency)
	var wg sync.WaitGroup
	for _, c := range conns {
		if c == nil || ctx.Err() != nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.c.Write(pingreqPacket); err != nil {
				return
			}
			typ, _, err := readPacket(c.r)
			if err == nil && typ == packetPingresp {
				alive.Add(1)
			}
		})
	}
	wg.Wait()
	return alive.Load()
}

// closeRaw sends DISCONNECT on each open connection and closes it.
func closeRaw(conns []*rawConn) {
	for _, c := range conns {
		if c == nil {
			continue
		}
		_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.c.Write(disconnectPacket)
		_ = c.c.Close()
	}
}
