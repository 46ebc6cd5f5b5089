package main

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestVersionCommand runs `mqhub version` and `mqhub --version` on a
// binary built with the version linked in, as a release is.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, mqhubBinary(t), args...)
		cmd.Env = binaryEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("mqhub %v: %v\n%s", args, err, out)
		}
		if want := "mqhub " + testVersion + "\n"; string(out) != want {
			t.Errorf("mqhub %v printed %q, want %q", args, out, want)
		}
	}
}
