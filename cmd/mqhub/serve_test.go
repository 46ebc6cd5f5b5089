package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqhub/mqhub/internal/testutil"
)

// TestServeBinary is the README's first command end to end: the built
// binary starts with its data under ./data, serves a client, and exits 0 on
// SIGTERM after a graceful shutdown.
func TestServeBinary(t *testing.T) {
	dir := t.TempDir()
	hub := startServe(t, dir, "--allow-anonymous",
		"--mqtt-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	serving := hub.waitFor(t, "mqhub serving")
	addr, _ := serving["mqtt"].(string)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("serving line has mqtt=%v", serving["mqtt"])
	}
	if serving["version"] != testVersion {
		t.Errorf("serving line has version=%v, want %s", serving["version"], testVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatalf("./data not created: %v", err)
	}

	c, _, err := testutil.TryConnect(testutil.Dial(t, addr), &paho.Connect{ClientID: "readme", CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	hub.waitFor(t, "client connected")

	if err := hub.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	hub.waitFor(t, "shutdown complete")
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected after shutdown")
	}
	if err := hub.wait(t); err != nil {
		t.Fatalf("hub exit: %v, want status 0", err)
	}
}

// subscribeReason subscribes to filter and returns the SUBACK reason code.
func subscribeReason(t *testing.T, c *testutil.Client, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, _ := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter}}})
	if ack == nil || len(ack.Reasons) != 1 {
		t.Fatalf("subscribe %q: SUBACK %+v", filter, ack)
	}
	return ack.Reasons[0]
}

// TestServeReloadsOnSIGHUP sends SIGHUP to `mqhub serve`, as mosquitto
// operators do after editing the ACL file: the hub logs the reload, keeps
// serving (the client connected before stays connected) and applies the
// new rules; an invalid file is logged as an error and changes nothing.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("topic read public/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := startServe(t, dir, "--allow-anonymous", "--acl-file", acl,
		"--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--http-addr", "")
	addr, _ := hub.waitFor(t, "mqhub serving")["mqtt"].(string)
	c := testutil.Connect(t, testutil.Dial(t, addr), &paho.Connect{ClientID: "before-hup", CleanStart: true})
	if code := subscribeReason(t, c, "extra/#"); code != 0x87 {
		t.Fatalf("extra/# before the reload: reason 0x%02x, want 0x87", code)
	}

	if err := os.WriteFile(acl, []byte("topic read public/#\ntopic read extra/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := hub.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line := hub.waitFor(t, "configuration reloaded")
	if r := fmt.Sprint(line["reloaded"]); !strings.Contains(r, "acl-file") {
		t.Errorf("reload line says reloaded=%s, want acl-file", r)
	}
	if code := subscribeReason(t, c, "extra/#"); code != 0x00 {
		t.Fatalf("extra/# after SIGHUP: reason 0x%02x, want granted", code)
	}

	if err := os.WriteFile(acl, []byte("topic sometimes extra/#\nbogus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := hub.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	bad := hub.waitFor(t, "reload: invalid files kept their previous configuration")
	if bad["level"] != "error" || !strings.Contains(fmt.Sprint(bad["error"]), "line 2") {
		t.Errorf("failed reload logged as %v", bad)
	}
	if code := subscribeReason(t, c, "extra/more"); code != 0x00 {
		t.Fatalf("extra/more after a failed reload: reason 0x%02x, want granted (rules kept)", code)
	}
	select {
	case <-c.Done():
		t.Fatal("the client connected before SIGHUP was disconnected")
	default:
	}
	testutil.Connect(t, testutil.Dial(t, addr), &paho.Connect{ClientID: "after-hup", CleanStart: true})

	if err := hub.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	hub.waitFor(t, "shutdown complete")
	if err := hub.wait(t); err != nil {
		t.Fatalf("hub exit: %v, want status 0", err)
	}
}

// TestServePortInUse starts `mqhub serve` on a port another process holds:
// it exits non-zero and says why once, with no shutdown lines for a hub
// that never served.
func TestServePortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mqhubBinary(t), "serve", "--allow-anonymous", "--data-dir", t.TempDir(),
		"--mqtt-addr", taken.Addr().String(), "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	cmd.Env = binaryEnv()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("serve on a taken port: %v, want a non-zero exit\n%s", err, out)
	}
	if n := strings.Count(string(out), "address already in use"); n != 1 {
		t.Errorf("the error appears %d times, want once:\n%s", n, out)
	}
	if strings.Contains(string(out), "shut") {
		t.Errorf("shutdown logged for a hub that never started:\n%s", out)
	}
	if !strings.Contains(string(out), "mqhub: listen tcp on "+taken.Addr().String()) {
		t.Errorf("the error does not name the address:\n%s", out)
	}
}
