package bench

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// scenario must close its clients, progress pollers and timers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startTestMosquitto starts a real mosquitto on 127.0.0.1 for one test. It
// skips when the binary is missing, unless MQHUB_REQUIRE_TOOLS=1 (CI), where
// a missing tool must fail rather than silently pass.
func startTestMosquitto(t *testing.T) *Broker {
	t.Helper()
	b, err := StartMosquitto(context.Background(), DefaultMosquittoBin, t.TempDir())
	if errors.Is(err, ErrBrokerMissing) {
		if os.Getenv("MQHUB_REQUIRE_TOOLS") == "1" {
			t.Fatalf("mosquitto is required (MQHUB_REQUIRE_TOOLS=1): %v", err)
		}
		t.Skipf("mosquitto not installed (apt-get install mosquitto); skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(b.Stop)
	return b
}

// testContext bounds a test's runs so a hung broker fails the test instead
// of stalling the whole package.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
