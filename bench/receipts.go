package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
)

// receiptsScenario measures mqhub's messaging flow (docs/protocol.md,
// "Sending and the ticks") as a chat app lives it: N sender/recipient
// pairs, each sender publishing QoS 1 direct messages with its own `id` at
// a fixed rate, each recipient acknowledging them (the hub then sends the
// sender a `delivered` receipt) and answering with a `read` receipt. Three
// latencies from the moment of publishing: sent (the PUBACK: stored),
// delivered (two ticks) and read (blue ticks).
//
// A plain MQTT broker has no receipts, and mqhub sends them only between
// authenticated users, so the scenario logs in with JWTs it signs itself
// (Options.JWTSecretFile): no user store to prepare on the hub.
func receiptsScenario() Scenario {
	return Scenario{
		Name:    "receipts",
		Summary: "N sender/recipient pairs: QoS 1 direct messages at a fixed rate, delivered and read receipts back (mqhub only, needs --jwt-secret-file); latency quantiles",
		Key: []string{
			"sent_p50_us", "delivered_p50_us", "delivered_p99_us", "read_p50_us", "read_p99_us",
			"delivered_missing", "read_missing",
		},
		Defaults: chatDefaults, // as p2p-latency
		run:      runReceipts,
	}
}

// Receipt payloads (docs/protocol.md). Only the fields the scenario checks.
const (
	receiptDelivered = "delivered"
	receiptRead      = "read"
)

type receiptMsg struct {
	Status string   `json:"status"`
	ID     string   `json:"id,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	By     string   `json:"by,omitempty"`
}

// jwtTTL is how long the scenario's tokens are valid: far longer than any
// run (Options.Timeout is finite), short enough that a bench token that
// leaks is soon worthless.
const jwtTTL = time.Hour

// minJWTSecretLen is the hub's minimum HS256 secret (hooks/jwt.go, RFC
// 7518): a shorter one would only fail later, at the hub, as refused logins.
const minJWTSecretLen = 32

// loadJWTSecret reads an HS256 secret file as the hub does: one trailing
// newline ("\n" or "\r\n") is trimmed, so a file written with echo signs
// tokens the hub accepts.
func loadJWTSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	if trimmed, ok := bytes.CutSuffix(b, []byte("\n")); ok {
		b, _ = bytes.CutSuffix(trimmed, []byte("\r"))
	}
	if len(b) < minJWTSecretLen {
		return nil, fmt.Errorf("%w: jwt secret %s is %d bytes, want at least %d (as the hub's --jwt-hmac-secret-file)", ErrInvalidOptions, path, len(b), minJWTSecretLen)
	}
	return b, nil
}

// userToken signs an HS256 JWT for user: sub and exp only. The hub checks
// iss and aud only when it runs with --jwt-issuer / --jwt-audience, which
// a bench hub does not; iat is left out so that a hub whose clock runs
// behind cannot see the token as issued in the future.
func userToken(secret []byte, user string, now time.Time) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		ExpiresAt: jwt.NewNumericDate(now.Add(jwtTTL)),
	})
	s, err := tok.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign jwt for %s: %w", user, err)
	}
	return s, nil
}

// receiptsPair is one sender and one recipient: the messages of the pair's
// stream and what came back for each of them, by sequence number.
type receiptsPair struct {
	index     int
	sender    string // user name, also the client ID: one device per user
	recipient string
	idPrefix  string // message IDs are idPrefix + seq

	mu     sync.Mutex
	sentAt []int64 // publish start by seq (epoch nanos); set before the publish so a fast receipt finds it
	acked  seqTracker
	inbox  seqTracker
	// delivered and read count each message's receipts; a second one is
	// a duplicate.
	delivered seqTracker
	read      seqTracker
	// readFirst counts read receipts that arrived before the message's
	// delivered receipt: both are routed by the hub independently.
	readFirst uint64
}

func (p *receiptsPair) messageID(seq uint64) string {
	return p.idPrefix + strconv.FormatUint(seq, 10)
}

// seqOf parses a message ID of this pair; false for anything else.
func (p *receiptsPair) seqOf(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, p.idPrefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	return seq, err == nil
}

// has reports whether seq was recorded.
func (t *seqTracker) has(seq uint64) bool {
	w := seq / 64
	return w < uint64(len(t.seen)) && t.seen[w]&(1<<(seq%64)) != 0
}

// notIn counts the sequence numbers recorded in t but not in u.
func (t *seqTracker) notIn(u *seqTracker) uint64 {
	var n int
	for w, bitsT := range t.seen {
		if w < len(u.seen) {
			bitsT &^= u.seen[w]
		}
		n += bits.OnesCount64(bitsT)
	}
	return uint64(n)
}

// receiptsRun is the shared state of one run: recorders and counters the
// clients' callbacks feed.
type receiptsRun struct {
	pairs                              []*receiptsPair
	sentLat, inboxLat, deliveredLat    *latencyRecorder
	readLat                            *latencyRecorder
	acked, failed                      atomic.Int64
	delivered, read, readRefused       atomic.Int64 // first receipts per message; read receipts the hub refused
	arrivals, foreign, unstamped, noID atomic.Int64
	last                               lastArrival
}

// runReceipts connects 2N clients as 2N users, subscribes each sender to
// its receipts and each recipient to its inbox, sends for the window,
// waits for the last receipts and reports.
func runReceipts(ctx context.Context, o Options) (map[string]float64, error) {
	if o.JWTSecretFile == "" {
		return nil, fmt.Errorf("%w: receipts needs JWT logins (the hub sends receipts between authenticated users only): "+
			"pass --jwt-secret-file FILE (Options.JWTSecretFile) with the HS256 secret the hub reads with --jwt-hmac-secret-file", ErrInvalidOptions)
	}
	secret, err := loadJWTSecret(o.JWTSecretFile)
	if err != nil {
		return nil, err
	}
	run := newRunID()
	r := &receiptsRun{
		pairs:    make([]*receiptsPair, o.Clients),
		sentLat:  newLatencyRecorder(),
		inboxLat: newLatencyRecorder(), deliveredLat: newLatencyRecorder(), readLat: newLatencyRecorder(),
	}
	// User names carry the run id, like p2p-latency's topics, so that
	// receipts of a concurrent or earlier run on the same hub cannot be
	// mistaken for this one's.
	for i := range r.pairs {
		r.pairs[i] = &receiptsPair{
			index:     i,
			sender:    fmt.Sprintf("%s-s%d", run, i),
			recipient: fmt.Sprintf("%s-r%d", run, i),
			idPrefix:  fmt.Sprintf("%s-%d-", run, i),
		}
	}

	// A recipient's callback hands each new message to the pair's reader,
	// which publishes the read receipt: publishing from the callback
	// itself would wait for a PUBACK while holding up paho's delivery
	// loop. paho acknowledges the message when the callback returns, so
	// PUBACK and read receipt leave at about the same time, like an app
	// showing a message in an open chat.
	readCtx, stopReaders := context.WithCancel(ctx)
	reads := make([]chan string, o.Clients)
	for i := range reads {
		reads[i] = make(chan string, receiveMaximum)
	}

	n := o.Clients
	clients, err := connectUsers(ctx, o, secret, 2*n, func(i int) (clientSpec, string) {
		if i < n {
			p := r.pairs[i]
			return clientSpec{id: p.sender, cleanStart: true, onMessage: r.onReceipt(p)}, p.sender
		}
		p := r.pairs[i-n]
		return clientSpec{id: p.recipient, cleanStart: true, onMessage: r.onInbox(readCtx, p, reads[i-n])}, p.recipient
	})
	if err != nil {
		stopReaders()
		return nil, err
	}
	defer closeAll(clients, nil)
	var readers sync.WaitGroup
	// Runs before closeAll: readers stop publishing first.
	defer func() {
		stopReaders()
		readers.Wait()
	}()
	err = subscribeAll(ctx, o, clients, func(i int) string {
		if i < n {
			return "u/" + r.pairs[i].sender + "/receipts"
		}
		return "u/" + r.pairs[i-n].recipient + "/inbox"
	}, 1)
	if err != nil {
		return nil, err
	}
	for i, p := range r.pairs {
		rc := clients[n+i]
		// o.Inflight read receipts in flight per recipient: each waits
		// for its fsynced PUBACK, and one at a time would cap a
		// recipient at about 1/fsync receipts per second, measuring the
		// generator's queue instead of the hub under load.
		for range o.Inflight {
			readers.Go(func() { r.readLoop(readCtx, rc, p, reads[i]) })
		}
	}

	window, cancel := sendWindow(ctx, o)
	defer cancel()
	bar := receiptsProgress(o, o.scenarioDesc("receipts"), r.acked.Load)
	start := monoNow()
	var senders sync.WaitGroup
	for i, p := range r.pairs {
		sc := clients[i]
		senders.Go(func() { r.send(window, ctx, o, sc, p) })
	}
	senders.Wait()
	sendElapsed := monoNow() - start
	bar.finish()

	acked := r.acked.Load()
	waitDrained(ctx, o.Drain, o.DrainIdle,
		func() bool { return r.delivered.Load() >= acked && r.read.Load() >= acked },
		r.arrivals.Load)
	stopReaders()
	readers.Wait()

	figs := r.figures(o, sendElapsed, start)
	if figs["received"] > 0 && figs["unstamped"] == figs["received"] {
		// Every message arrived without the hub's envelope: this is not
		// mqhub (mosquitto passes the JWT off as a password and forwards
		// our read receipts untouched), so the receipt figures would
		// only say "all missing".
		return nil, fmt.Errorf("%w: %s does not stamp messages with the `from` user property, so it has no messaging flow (receipts need mqhub)", ErrNotSupported, o.Target)
	}
	return figs, nil
}

// connectUsers is connectMany with a user per client: spec returns the
// client and its user name, and each client logs in with a token signed
// for that user (the user name is sent too; the hub checks it matches).
func connectUsers(ctx context.Context, o Options, secret []byte, n int, spec func(i int) (clientSpec, string)) ([]*paho.Client, error) {
	clients := make([]*paho.Client, n)
	errs := make([]error, n)
	sem := make(chan struct{}, o.ConnectConcurrency)
	var wg sync.WaitGroup
	now := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cs, user := spec(i)
			tok, err := userToken(secret, user, now)
			if err != nil {
				errs[i] = err
				return
			}
			uo := o
			uo.Username, uo.Password = user, tok
			clients[i], _, errs[i] = connectClient(ctx, uo, cs)
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		closeAll(clients, nil)
		return nil, err
	}
	return clients, nil
}

// send publishes the pair's messages to the recipient's inbox until the
// window ends or o.Count were sent. One publish at a time keeps a chat's
// order. Each publish runs under ctx (the hard timeout), not window, so
// one in flight when the window closes still gets its PUBACK counted.
func (r *receiptsRun) send(window, ctx context.Context, o Options, c *paho.Client, p *receiptsPair) {
	pc := newPacer(o.sendRate())
	topic := "u/" + p.recipient + "/inbox"
	for seq := uint64(0); (o.Count == 0 || seq < uint64(o.Count)) && seq < maxTrackedSeq; seq++ {
		if pc.wait(window) != nil {
			return
		}
		start := monoNow()
		p.mu.Lock()
		p.sentAt = append(p.sentAt, start) // index seq: one goroutine appends
		p.mu.Unlock()
		_, err := c.Publish(ctx, &paho.Publish{
			Topic: topic, QoS: 1,
			Payload:    EncodePayload(PayloadHeader{Stream: uint32(p.index), Seq: seq, SentNanos: start}, o.PayloadSize),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "id", Value: p.messageID(seq)}}},
		})
		if err != nil {
			r.failed.Add(1)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		r.sentLat.record(start)
		p.mu.Lock()
		p.acked.add(seq)
		p.mu.Unlock()
		r.acked.Add(1)
	}
}

// onInbox is a recipient's callback: it counts the message, checks the
// envelope and queues a read receipt for its first arrival (an app marks a
// message read once; a repeat would hide the hub's own duplicates).
func (r *receiptsRun) onInbox(ctx context.Context, p *receiptsPair, reads chan<- string) func(*paho.Publish) {
	return func(pub *paho.Publish) {
		h, err := DecodePayload(pub.Payload)
		if err != nil || h.Stream != uint32(p.index) {
			r.foreign.Add(1)
			return
		}
		p.mu.Lock()
		first := p.inbox.add(h.Seq)
		p.mu.Unlock()
		r.arrivals.Add(1)
		r.last.mark()
		if !first {
			return
		}
		r.inboxLat.record(h.SentNanos)
		var props paho.UserProperties
		if pub.Properties != nil {
			props = pub.Properties.User
		}
		if props.Get("from") != p.sender {
			r.unstamped.Add(1)
		}
		id := props.Get("id")
		if id == "" {
			// Cannot happen with mqhub (it keeps the client's id); read
			// by the id we sent so the figure shows the real problem.
			r.noID.Add(1)
			id = p.messageID(h.Seq)
		}
		select {
		case reads <- id:
		case <-ctx.Done():
		}
	}
}

// readLoop publishes the pair's read receipts, one message each: the
// worst case for the hub, which checks every id against its sent records
// and routes a receipt per message.
func (r *receiptsRun) readLoop(ctx context.Context, c *paho.Client, p *receiptsPair, reads <-chan string) {
	topic := "u/" + p.sender + "/receipts"
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-reads:
			payload, _ := json.Marshal(receiptMsg{Status: receiptRead, IDs: []string{id}}) // cannot fail
			if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
				if ctx.Err() != nil {
					return
				}
				// 0x87: the hub found no sent record for the id.
				r.readRefused.Add(1)
			}
		}
	}
}

// onReceipt is a sender's callback: it matches delivered and read receipts
// to the pair's messages and records their latency from the publish.
func (r *receiptsRun) onReceipt(p *receiptsPair) func(*paho.Publish) {
	return func(pub *paho.Publish) {
		var rc receiptMsg
		if json.Unmarshal(pub.Payload, &rc) != nil || rc.By != p.recipient {
			// Also a read receipt the hub did not rewrite (no "by"):
			// not mqhub's messaging flow.
			r.foreign.Add(1)
			return
		}
		var ids []string
		switch rc.Status {
		case receiptDelivered:
			ids = []string{rc.ID}
		case receiptRead:
			ids = rc.IDs
		default:
			r.foreign.Add(1)
			return
		}
		r.arrivals.Add(1)
		r.last.mark()
		for _, id := range ids {
			seq, ok := p.seqOf(id)
			p.mu.Lock()
			if !ok || seq >= uint64(len(p.sentAt)) {
				p.mu.Unlock()
				r.foreign.Add(1)
				continue
			}
			sentAt := p.sentAt[seq]
			var first bool
			if rc.Status == receiptDelivered {
				first = p.delivered.add(seq)
			} else {
				first = p.read.add(seq)
				if first && !p.delivered.has(seq) {
					p.readFirst++
				}
			}
			p.mu.Unlock()
			if !first {
				continue
			}
			if rc.Status == receiptDelivered {
				r.deliveredLat.record(sentAt)
				r.delivered.Add(1)
			} else {
				r.readLat.record(sentAt)
				r.read.Add(1)
			}
		}
	}
}

// figures sums the pairs. A receipt is missing when its message was
// acknowledged (PUBACK) and the receipt never came; receipts for a publish
// that failed locally yet reached the hub count as received, not missing.
func (r *receiptsRun) figures(o Options, sendElapsed, start int64) map[string]float64 {
	var inbox, inboxDups, lost, delivered, deliveredDups, deliveredMissing, read, readDups, readMissing, readFirst uint64
	for _, p := range r.pairs {
		p.mu.Lock()
		inbox += p.inbox.unique
		inboxDups += p.inbox.dups
		lost += p.acked.notIn(&p.inbox)
		delivered += p.delivered.unique
		deliveredDups += p.delivered.dups
		deliveredMissing += p.acked.notIn(&p.delivered)
		read += p.read.unique
		readDups += p.read.dups
		readMissing += p.acked.notIn(&p.read)
		readFirst += p.readFirst
		p.mu.Unlock()
	}
	acked := uint64(r.acked.Load())
	figs := map[string]float64{
		"pairs":                 float64(o.Clients),
		"sent":                  float64(acked),
		"publish_errors":        float64(r.failed.Load()),
		"sent_per_s":            perSecond(acked, durationOf(sendElapsed)),
		"received":              float64(inbox),
		"lost":                  float64(lost),
		"delivered":             float64(delivered),
		"delivered_missing":     float64(deliveredMissing),
		"delivered_duplicates":  float64(deliveredDups),
		"read":                  float64(read),
		"read_missing":          float64(readMissing),
		"read_duplicates":       float64(readDups),
		"read_refused":          float64(r.readRefused.Load()),
		"read_before_delivered": float64(readFirst),
		"receipts_per_s":        perSecond(delivered+read, r.last.since(start)),
		"duplicates":            float64(inboxDups + deliveredDups + readDups),
		"foreign":               float64(r.foreign.Load()),
		"unstamped":             float64(r.unstamped.Load()),
		"no_id":                 float64(r.noID.Load()),
	}
	for prefix, l := range map[string]*latencyRecorder{
		"sent": r.sentLat, "inbox": r.inboxLat, "delivered": r.deliveredLat, "read": r.readLat,
	} {
		f := map[string]float64{}
		l.figures(f)
		for k, v := range f {
			figs[prefix+"_"+k] = v
		}
	}
	return figs
}

// receiptsProgress is sendProgress for the pairs' acknowledged count.
func receiptsProgress(o Options, desc string, acked func() int64) *progress {
	if o.Duration > 0 {
		start := time.Now()
		return startProgress(o.Progress, desc+" (ms)", o.Duration.Milliseconds(),
			func() int64 { return time.Since(start).Milliseconds() })
	}
	return startProgress(o.Progress, desc+" (msgs)", int64(o.Count)*int64(o.Clients), acked)
}
