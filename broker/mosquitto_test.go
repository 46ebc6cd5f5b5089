package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// Every wait on a mosquitto client is bounded by these.
const (
	mosqProcTimeout = 15 * time.Second // lifetime of any mosquitto_* process
	mosqLineTimeout = 5 * time.Second  // waiting for one expected output line
)

// mosqProc is a running mosquitto_sub or mosquitto_pub. Its stdout and
// stderr are merged and collected line by line.
type mosqProc struct {
	name   string
	cmd    *exec.Cmd
	lines  chan string   // every output line, in order
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's result; read only after exited is closed

	mu  sync.Mutex
	out strings.Builder // all output, for failure messages
	buf []byte          // incomplete last line
}

// Write implements io.Writer for the process' stdout and stderr. exec calls
// it from one goroutine at a time because both are the same writer.
func (p *mosqProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Write(b)
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(string(p.buf[:i]))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// emit hands one line to the readers; p.mu is held.
func (p *mosqProc) emit(line string) {
	select {
	case p.lines <- strings.TrimRight(line, "\r"):
	default: // nobody is reading that far; the line stays in out
	}
}

// Output returns everything the process printed so far.
func (p *mosqProc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startMosq starts a mosquitto client program (skipping or failing the test
// per testutil.RequireTool when it is missing). The process is killed after
// mosqProcTimeout at the latest, and killed and reaped when the test ends.
func startMosq(t *testing.T, tool string, args ...string) *mosqProc {
	t.Helper()
	path := testutil.RequireTool(t, tool, "mosquitto-clients")
	ctx, cancel := context.WithTimeout(context.Background(), mosqProcTimeout)
	p := &mosqProc{
		name:   tool,
		cmd:    exec.CommandContext(ctx, path, args...),
		lines:  make(chan string, 1024),
		exited: make(chan struct{}),
	}
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	p.cmd.WaitDelay = 2 * time.Second // bound Wait even if the output pipe stays open
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", tool, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		cancel()
		p.mu.Lock()
		if len(p.buf) > 0 { // a last line without newline
			p.emit(string(p.buf))
			p.buf = nil
		}
		p.mu.Unlock()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel() // kills the process if it still runs
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			t.Errorf("%s %q was not reaped", tool, args)
		}
		if t.Failed() {
			t.Logf("%s %s output:\n%s", tool, strings.Join(args, " "), p.Output())
		}
	})
	return p
}

var (
	errMosqNoLine = errors.New("no such line yet")
	errMosqExited = errors.New("process exited")
)

// nextLine returns the first output line, from those not yet consumed, for
// which match is true. It gives up after timeout (errMosqNoLine) or once
// the process has exited without printing one (errMosqExited).
func (p *mosqProc) nextLine(timeout time.Duration, match func(string) bool) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line := <-p.lines:
			if match(line) {
				return line, nil
			}
		case <-p.exited:
			// Wait has returned, so every line is in the channel already.
			for {
				select {
				case line := <-p.lines:
					if match(line) {
						return line, nil
					}
				default:
					return "", errMosqExited
				}
			}
		case <-timer.C:
			return "", errMosqNoLine
		}
	}
}

// waitLine is nextLine failing the test when no line matches.
func (p *mosqProc) waitLine(t *testing.T, timeout time.Duration, what string, match func(string) bool) string {
	t.Helper()
	line, err := p.nextLine(timeout, match)
	switch {
	case errors.Is(err, errMosqExited):
		t.Fatalf("%s exited (%v) before printing %s; output:\n%s", p.name, p.err, what, p.Output())
	case err != nil:
		t.Fatalf("%s did not print %s within %s; output:\n%s", p.name, what, timeout, p.Output())
	}
	return line
}

// awaitProbe waits until mosquitto_sub, subscribed among others to
// probeTopic, is ready: it publishes QoS 0 probes there through prober
// until the subscriber prints one. mosquitto_sub sends all its filters in
// one SUBSCRIBE, so its other subscriptions exist too. (Waiting for "-d"
// SUBACK lines does not work: mosquitto_sub does not flush its debug output
// on a pipe.)
func (p *mosqProc) awaitProbe(t *testing.T, prober *testutil.Client, probeTopic string) {
	t.Helper()
	deadline := time.Now().Add(mosqLineTimeout)
	wait := 20 * time.Millisecond
	for {
		prober.Publish(t, &paho.Publish{Topic: probeTopic, QoS: 0, Payload: []byte("probe")})
		_, err := p.nextLine(wait, func(l string) bool { return strings.Contains(l, probeTopic) })
		if err == nil {
			return
		}
		if errors.Is(err, errMosqExited) || time.Now().After(deadline) {
			t.Fatalf("%s did not print a probe on %s within %s (%v); output:\n%s", p.name, probeTopic, mosqLineTimeout, err, p.Output())
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// newMosqProber connects the paho client that publishes probes.
func newMosqProber(t *testing.T, hub *broker.Broker) *testutil.Client {
	t.Helper()
	return testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "prober-" + strings.ReplaceAll(t.Name(), "/", "-"), CleanStart: true})
}

// wait waits for the process to exit and returns its error (nil for exit
// status 0).
func (p *mosqProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s; output:\n%s", p.name, timeout, p.Output())
		return nil
	}
}

// runMosq runs a mosquitto client program to completion and returns its
// output and exit error.
func runMosq(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	p := startMosq(t, tool, args...)
	err := p.wait(t, mosqProcTimeout)
	return p.Output(), err
}

// mosqHostPort splits a bound listener address into mosquitto's -h and -p.
func mosqHostPort(t *testing.T, addr string) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listener address %q: %v", addr, err)
	}
	return []string{"-h", host, "-p", port}
}

func mosqArgs(groups ...[]string) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

var mosqVersions = []string{"mqttv311", "mqttv5"}

func isMosqMsg(l string) bool { return strings.HasPrefix(l, "MSG ") }

func TestMosquittoRoundTrip(t *testing.T) {
	testutil.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	testutil.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	hub := testutil.StartHub(t)
	hp := mosqHostPort(t, hub.MQTTAddr())
	prober := newMosqProber(t, hub)

	for _, v := range mosqVersions {
		for qos := 0; qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%s/qos%d", v, qos), func(t *testing.T) {
				topic := fmt.Sprintf("mosq/rt/%s/%d", v, qos)
				probe := topic + "/probe"
				payload := fmt.Sprintf("hello %s at qos %d", v, qos)
				q := strconv.Itoa(qos)

				sub := startMosq(t, "mosquitto_sub", mosqArgs(hp, []string{"-V", v, "-q", q, "-t", topic, "-t", probe, "-F", "MSG %q %r %t %p"})...)
				sub.awaitProbe(t, prober, probe)

				out, err := runMosq(t, "mosquitto_pub", mosqArgs(hp, []string{"-d", "-V", v, "-q", q, "-t", topic, "-m", payload})...)
				if err != nil {
					t.Fatalf("mosquitto_pub: %v\n%s", err, out)
				}
				// The hub must complete the QoS handshake the publisher asked for.
				var acks []string
				switch qos {
				case 1:
					acks = []string{"received PUBACK"}
				case 2:
					acks = []string{"received PUBREC", "sending PUBREL", "received PUBCOMP"}
				}
				for _, a := range acks {
					if !strings.Contains(out, a) {
						t.Errorf("mosquitto_pub -q %d output lacks %q:\n%s", qos, a, out)
					}
				}

				// Delivered at the QoS of the publication: the hub granted it.
				want := fmt.Sprintf("MSG %d 0 %s %s", qos, topic, payload)
				got := sub.waitLine(t, mosqLineTimeout, "the message", func(l string) bool { return isMosqMsg(l) && !strings.Contains(l, probe) })
				if got != want {
					t.Errorf("subscriber printed %q, want %q", got, want)
				}
			})
		}
	}
}

func TestMosquittoRetained(t *testing.T) {
	testutil.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	testutil.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	hub := testutil.StartHub(t)
	hp := mosqHostPort(t, hub.MQTTAddr())

	for _, v := range mosqVersions {
		t.Run(v, func(t *testing.T) {
			topic := "mosq/retained/" + v
			if out, err := runMosq(t, "mosquitto_pub", mosqArgs(hp, []string{"-V", v, "-q", "1", "-r", "-t", topic, "-m", "kept " + v})...); err != nil {
				t.Fatalf("retained publish: %v\n%s", err, out)
			}

			// A subscriber arriving later gets the retained message with the
			// retain flag, then live messages without it.
			sub := startMosq(t, "mosquitto_sub", mosqArgs(hp, []string{"-V", v, "-q", "1", "-t", topic, "-C", "2", "-F", "MSG %r %t %p"})...)
			if got, want := sub.waitLine(t, mosqLineTimeout, "the retained message", isMosqMsg), "MSG 1 "+topic+" kept "+v; got != want {
				t.Fatalf("first message %q, want %q", got, want)
			}
			// Having received the retained message, the subscription exists.
			if out, err := runMosq(t, "mosquitto_pub", mosqArgs(hp, []string{"-V", v, "-q", "1", "-t", topic, "-m", "live " + v})...); err != nil {
				t.Fatalf("live publish: %v\n%s", err, out)
			}
			if got, want := sub.waitLine(t, mosqLineTimeout, "the live message", isMosqMsg), "MSG 0 "+topic+" live "+v; got != want {
				t.Errorf("second message %q, want %q", got, want)
			}
			if err := sub.wait(t, mosqLineTimeout); err != nil {
				t.Errorf("mosquitto_sub -C 2 exited with %v", err)
			}

			// Clear the retained message so that it does not outlive the case.
			if out, err := runMosq(t, "mosquitto_pub", mosqArgs(hp, []string{"-V", v, "-r", "-n", "-t", topic})...); err != nil {
				t.Fatalf("clearing retained message: %v\n%s", err, out)
			}
		})
	}
}

func TestMosquittoWill(t *testing.T) {
	testutil.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	hub := testutil.StartHub(t)
	hp := mosqHostPort(t, hub.MQTTAddr())
	prober := newMosqProber(t, hub)

	watcher := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "will-watcher", CleanStart: true})
	watcher.Subscribe(t, "mosq/will/#", 1)

	for _, v := range mosqVersions {
		t.Run(v, func(t *testing.T) {
			willTopic, willPayload := "mosq/will/"+v, "gone "+v
			probe := "mosq/alive/" + v
			dying := startMosq(t, "mosquitto_sub", mosqArgs(hp, []string{
				"-V", v, "-t", probe, "-F", "MSG %t %p",
				"--will-topic", willTopic, "--will-payload", willPayload, "--will-qos", "1",
			})...)
			dying.awaitProbe(t, prober, probe)

			if err := dying.cmd.Process.Kill(); err != nil { // SIGKILL: no DISCONNECT
				t.Fatalf("kill mosquitto_sub: %v", err)
			}
			var exitErr *exec.ExitError
			if err := dying.wait(t, mosqLineTimeout); !errors.As(err, &exitErr) {
				t.Fatalf("mosquitto_sub after SIGKILL: %v, want a kill exit status", err)
			}

			m := watcher.Next(t, mosqLineTimeout)
			if m.Topic != willTopic || string(m.Payload) != willPayload {
				t.Fatalf("watcher got %q on %q, want will %q on %q", m.Payload, m.Topic, willPayload, willTopic)
			}
			if m.QoS != 1 {
				t.Errorf("will delivered at QoS %d, want 1", m.QoS)
			}
		})
	}
}

func TestMosquittoJSONOutput(t *testing.T) {
	testutil.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	testutil.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	hub := testutil.StartHub(t)
	hp := mosqHostPort(t, hub.MQTTAddr())
	prober := newMosqProber(t, hub)

	const topic, probe, payload = "mosq/json", "mosq/json-probe", "hello json"
	sub := startMosq(t, "mosquitto_sub", mosqArgs(hp, []string{"-V", "5", "-q", "1", "-t", topic, "-t", probe, "-F", "%j"})...)
	sub.awaitProbe(t, prober, probe)
	if out, err := runMosq(t, "mosquitto_pub", mosqArgs(hp, []string{"-V", "5", "-q", "1", "-t", topic, "-m", payload,
		"-D", "publish", "user-property", "origin", "mosquitto_pub",
		"-D", "publish", "user-property", "from", "mallory",
		"-D", "publish", "content-type", "text/plain"})...); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	line := sub.waitLine(t, mosqLineTimeout, "the message as JSON", func(l string) bool { return !strings.Contains(l, probe) })

	var msg struct {
		Topic      string         `json:"topic"`
		QoS        int            `json:"qos"`
		Retain     int            `json:"retain"`
		PayloadLen int            `json:"payloadlen"`
		Payload    string         `json:"payload"`
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal([]byte(line), &msg); err != nil {
		t.Fatalf("mosquitto_sub -F %%j printed invalid JSON %q: %v", line, err)
	}
	if msg.Topic != topic || msg.Payload != payload || msg.PayloadLen != len(payload) || msg.QoS != 1 || msg.Retain != 0 {
		t.Errorf("JSON message %+v, want topic %q, payload %q (%d bytes), qos 1, retain 0", msg, topic, payload, len(payload))
	}
	// The v5 properties travel through the hub.
	if ct, _ := msg.Properties["content-type"].(string); ct != "text/plain" {
		t.Errorf("content-type property %v, want text/plain (line %s)", msg.Properties["content-type"], line)
	}
	if !strings.Contains(line, `"origin"`) || !strings.Contains(line, `"mosquitto_pub"`) {
		t.Errorf("user property origin=mosquitto_pub missing from %s", line)
	}
	// A plain topic is relayed as published (the envelope is for the
	// hub's namespaces), but a claimed sender is removed.
	for _, key := range []string{`"id"`, `"from"`, `"ts"`, `"mallory"`} {
		if strings.Contains(line, key) {
			t.Errorf("property %s on a plain topic: %s", key, line)
		}
	}
}

func TestMosquittoNotAuthorised(t *testing.T) {
	testutil.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	hub := testutil.StartHub(t, func(c *broker.Config) { c.AllowAnonymous = false })
	hp := mosqHostPort(t, hub.MQTTAddr())

	for _, tc := range []struct {
		version string
		refused *regexp.Regexp
	}{
		// 3.1.1 CONNACK return code 5.
		{"mqttv311", regexp.MustCompile(`(?i)connection refused: not authori[sz]ed`)},
		// mochi answers a refused OnConnectAuthenticate with 0x86 "bad user
		// name or password"; 0x87 "not authorized" would fit anonymous
		// refusals better (see the report). Accept either refusal.
		{"mqttv5", regexp.MustCompile(`(?i)connection error: (not authori[sz]ed|bad user ?name or password)`)},
	} {
		t.Run(tc.version, func(t *testing.T) {
			out, err := runMosq(t, "mosquitto_pub", mosqArgs(hp, []string{"-V", tc.version, "-t", "mosq/denied", "-m", "x"})...)
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() <= 0 {
				t.Fatalf("mosquitto_pub without credentials: %v, want a non-zero exit\n%s", err, out)
			}
			if !tc.refused.MatchString(out) {
				t.Errorf("mosquitto_pub output does not match %q:\n%s", tc.refused, out)
			}
		})
	}
}

// TestMosquittoSubReadsOnlyWhatUserMay: mosquitto_sub logged in as alice
// and subscribed to her inbox and bob's gets her messages and never bob's.
func TestMosquittoSubReadsOnlyWhatUserMay(t *testing.T) {
	h := startSecureHub(t, testACL)
	hp := mosqHostPort(t, h.MQTTAddr())
	sub := startMosq(t, "mosquitto_sub", mosqArgs(hp, []string{"-V", "mqttv5", "-u", "alice", "-P", "alice-pw", "-i", "alice-cli",
		"-q", "1", "-t", "u/alice/inbox", "-t", "u/bob/inbox", "-F", "MSG %t %p"})...)
	root := h.mustLogin(t, "root", "root-cli")
	sub.awaitProbe(t, root, "u/alice/inbox")

	bob := h.mustLogin(t, "bob", "bob-cli")
	bob.Subscribe(t, "u/bob/inbox", 1)
	sendCanary(t, h, bob)
	root.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte("after the canary")})
	line := sub.waitLine(t, mosqLineTimeout, "alice's message", func(l string) bool { return strings.Contains(l, "after the canary") })
	if strings.Contains(sub.Output(), "u/bob/inbox") {
		t.Fatalf("mosquitto_sub as alice printed bob's message:\n%s", sub.Output())
	}
	if line != "MSG u/alice/inbox after the canary" {
		t.Fatalf("got %q", line)
	}
}

// TestMosquitto311DeliveredReceipt: an MQTT 3.1.1 device gets the plain
// payload, and its PUBACK still gives the sender a delivered receipt.
func TestMosquitto311DeliveredReceipt(t *testing.T) {
	h := startSecureHub(t, testACL)
	hp := mosqHostPort(t, h.MQTTAddr())
	sub := startMosq(t, "mosquitto_sub", mosqArgs(hp, []string{"-V", "mqttv311", "-u", "bob", "-P", "bob-pw", "-i", "bob-old",
		"-c", "-q", "1", "-t", "u/bob/inbox", "-F", "MSG %t %p"})...)
	root := h.mustLogin(t, "root", "root-cli")
	sub.awaitProbe(t, root, "u/bob/inbox")

	alice := h.device(t, "alice", "alice-phone", "u/alice/receipts")
	if code := send(t, alice, "u/bob/inbox", "m-311", "hello old phone"); code != 0 {
		t.Fatalf("refused: 0x%02x", code)
	}
	line := sub.waitLine(t, mosqLineTimeout, "alice's message", func(l string) bool { return strings.Contains(l, "hello old phone") })
	if line != "MSG u/bob/inbox hello old phone" {
		t.Fatalf("mosquitto_sub printed %q", line)
	}
	wantDelivered(t, nextReceipt(t, alice, "alice"), "m-311", "bob", "bob-old")
}
