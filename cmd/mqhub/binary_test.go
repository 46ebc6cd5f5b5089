package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testVersion is linked into the binary the tests run, as a release build
// would be (-ldflags -X).
const testVersion = "v9.9.9-test"

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain removes the built binary, and fails the run if a test left a
// goroutine behind (the hubs the commands start in process included).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// mqhubBinary builds this command once per test run, with testVersion
// linked in. Tests using it are skipped with -short.
func mqhubBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "mqhub-cmd-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "mqhub")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build",
			"-ldflags", "-X github.com/mqhub/mqhub/internal/version.version="+testVersion, "-o", binPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// binaryEnv is the environment without MQHUB_* variables, so that the
// caller's shell cannot change what a test runs.
func binaryEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MQHUB_") })
}

// serveProc is one `mqhub serve` child process with JSON logs.
type serveProc struct {
	cmd    *exec.Cmd
	lines  chan map[string]any // each JSON log line; closed at EOF
	exited chan error          // the exit status, once stderr is drained
}

// startServe runs `mqhub serve --log-format json args...` in dir and kills
// it when the test ends if it is still running.
func startServe(t *testing.T, dir string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(mqhubBinary(t), append([]string{"serve", "--log-format", "json"}, args...)...)
	cmd.Dir = dir
	cmd.Env = binaryEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, lines: make(chan map[string]any, 1000), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.lines <- line
			}
		}
		close(p.lines)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// waitFor returns the next log line whose message is message, failing the
// test if the process exits or 20 s pass first.
func (p *serveProc) waitFor(t *testing.T, message string) map[string]any {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
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

// wait drains the log and returns the exit status, within 20 s.
func (p *serveProc) wait(t *testing.T) error {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-p.lines:
			if ok {
				continue
			}
			return <-p.exited
		case <-timeout:
			t.Fatal("hub did not exit within 20s")
		}
	}
}
