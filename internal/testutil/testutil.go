// Package testutil starts real hubs for tests, in the style of
// nats-server's test helpers: in process, on 127.0.0.1 with ports chosen by
// the kernel, a temporary data directory, logs routed to the test.
package testutil

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/broker"
)

// TestConfig is a configuration for a hub under test: every listener on a
// free loopback port (TLS stays off until a test sets a certificate),
// anonymous access on, data in a temporary directory.
func TestConfig(t testing.TB) broker.Config {
	cfg := broker.Default()
	cfg.DataDir = t.TempDir()
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.WSAddr = "127.0.0.1:0"
	cfg.TLSAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AllowAnonymous = true
	cfg.LogLevel = "debug"
	return cfg
}

// StartHub starts a hub with TestConfig changed by each option, and shuts it
// down when the test ends.
func StartHub(t testing.TB, options ...func(*broker.Config)) *broker.Broker {
	t.Helper()
	cfg := TestConfig(t)
	for _, o := range options {
		o(&cfg)
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		t.Fatalf("log level: %v", err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
	b, err := broker.New(cfg, log)
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("start hub: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown hub: %v", err)
		}
	})
	return b
}

// Eventually polls cond every few milliseconds until it returns nil, and
// fails the test with cond's last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// RequireTool returns the path of an outside program a test needs. When it
// is missing the test is skipped with a clear message, unless
// MQHUB_REQUIRE_TOOLS=1 (set by CI after installing the tools), in which
// case the test fails.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found on PATH (Debian package " + debianPackage + ")"
	if os.Getenv("MQHUB_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s, and MQHUB_REQUIRE_TOOLS=1 requires it", msg)
	}
	t.Skipf("skipping: %s; install it or set MQHUB_REQUIRE_TOOLS=1 to make this a failure", msg)
	return ""
}
