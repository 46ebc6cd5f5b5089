package main

import (
	"bufio"
	"encoding/json"
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
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mqhub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "--allow-anonymous", "--log-format", "json",
		"--mqtt-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				lines <- line
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	waitFor := func(message string) map[string]any {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("hub exited before logging %q", message)
				}
				if l["message"] == message {
					return l
				}
			case <-timeout:
				t.Fatalf("hub did not log %q", message)
			}
		}
	}
	serving := waitFor("mqhub serving")
	addr, _ := serving["mqtt"].(string)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("serving line has mqtt=%v", serving["mqtt"])
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatalf("./data not created: %v", err)
	}

	c, _, err := testutil.TryConnect(testutil.Dial(t, addr), &paho.Connect{ClientID: "readme", CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	waitFor("client connected")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("shutdown complete")
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected after shutdown")
	}
	for range lines { // drain until the process closes stderr
	}
	if err := <-exited; err != nil {
		t.Fatalf("hub exit: %v, want status 0", err)
	}
}
