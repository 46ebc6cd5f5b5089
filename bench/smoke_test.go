package bench

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// TestScenariosSmoke runs every scenario with tiny sizes against a real
// mosquitto and checks that the figures are sane.
func TestScenariosSmoke(t *testing.T) {
	b := startTestMosquitto(t)
	tiny := Options{
		Clients:   2,
		Duration:  time.Second,
		Rate:      50,
		DrainIdle: 500 * time.Millisecond,
		Drain:     5 * time.Second,
		Timeout:   30 * time.Second,
	}
	tests := []struct {
		name  string
		tweak func(*Options)
		check func(t *testing.T, f map[string]float64)
	}{
		{"fanin-qos0", nil, func(t *testing.T, f map[string]float64) {
			positive(t, f, "sent", "received", "recv_per_s", "sent_per_s")
			// Loopback at 100 msg/s: mosquitto has no reason to drop.
			zero(t, f, "lost", "duplicates", "foreign")
		}},
		{"fanin-qos1", func(o *Options) { o.Inflight = 4 }, func(t *testing.T, f map[string]float64) {
			positive(t, f, "sent", "received", "recv_per_s")
			zero(t, f, "lost", "duplicates", "publish_errors")
			equal(t, f, "received", f["sent"])
		}},
		{"fanin-qos1", func(o *Options) { o.Duration, o.Count, o.Rate = 0, 25, -1 }, func(t *testing.T, f map[string]float64) {
			equal(t, f, "sent", 50) // count-bounded: 2 publishers x 25
			equal(t, f, "received", 50)
		}},
		{"p2p-latency", nil, func(t *testing.T, f map[string]float64) {
			positive(t, f, "sent", "received", "p50_us", "p99_us", "p999_us", "max_us")
			zero(t, f, "lost", "duplicates", "out_of_order")
			if f["p50_us"] > f["p99_us"] || f["p99_us"] > f["max_us"] {
				t.Errorf("quantiles not ordered: p50 %v p99 %v max %v", f["p50_us"], f["p99_us"], f["max_us"])
			}
			equal(t, f, "latency_samples", f["received"])
		}},
		{"fanout", func(o *Options) { o.Clients = 3 }, func(t *testing.T, f map[string]float64) {
			positive(t, f, "sent", "delivered", "deliveries_per_s", "p50_us")
			equal(t, f, "expected", 3*f["sent"])
			equal(t, f, "delivered", f["expected"])
			zero(t, f, "lost", "duplicates")
		}},
		{"fanout-qos1", func(o *Options) { o.Clients = 3 }, func(t *testing.T, f map[string]float64) {
			equal(t, f, "delivered", 3*f["sent"])
			zero(t, f, "lost", "duplicates", "out_of_order")
		}},
		{"conns", func(o *Options) { o.Clients, o.Hold, o.ConnectConcurrency = 3, 100*time.Millisecond, 2 }, func(t *testing.T, f map[string]float64) {
			equal(t, f, "connected", 3)
			equal(t, f, "alive_after_hold", 3)
			zero(t, f, "failed")
			positive(t, f, "connect_per_s", "rss_held_kb")
		}},
		{"offline-drain", func(o *Options) { o.Count = 20 }, func(t *testing.T, f map[string]float64) {
			equal(t, f, "sent", 40)
			equal(t, f, "received", 40)
			zero(t, f, "lost", "duplicates", "out_of_order", "sessions_lost")
			positive(t, f, "drain_per_s", "rss_queued_kb")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tiny
			o.Target, o.PID = b.Addr, b.PID()
			if tt.tweak != nil {
				tt.tweak(&o)
			}
			res, err := Run(testContext(t), tt.name, o)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.Scenario != tt.name || res.Target != b.Addr {
				t.Errorf("result names %s against %s", res.Scenario, res.Target)
			}
			// The CLI prints exactly this encoding; it must be one line.
			line, err := json.Marshal(res)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			t.Logf("%s", line)
			positive(t, res.Figures, "rss_before_kb", "rss_after_kb")
			tt.check(t, res.Figures)
		})
	}
}

// TestReceiptsSmoke runs receipts briefly against a real hub started in
// process with JWT logins only (no anonymous access): every acknowledged
// message must come back as exactly one delivered and one read receipt.
func TestReceiptsSmoke(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s3cret-", 8)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := testutil.StartHub(t, func(c *broker.Config) {
		c.JWTHMACSecretFile = secret
		c.AllowAnonymous = false
		c.LogLevel = "warn" // debug logs every publish: 100s of lines a second
	})
	res, err := Run(testContext(t), "receipts", Options{
		Target: hub.MQTTAddr(), JWTSecretFile: secret,
		Clients: 2, Duration: time.Second, Rate: 50,
		DrainIdle: time.Second, Drain: 10 * time.Second, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	line, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	t.Logf("%s", line)
	f := res.Figures
	positive(t, f, "sent", "sent_p50_us", "delivered_p50_us", "delivered_p99_us", "read_p50_us", "read_max_us", "receipts_per_s")
	equal(t, f, "received", f["sent"])
	equal(t, f, "delivered", f["sent"])
	equal(t, f, "read", f["sent"])
	zero(t, f, "lost", "delivered_missing", "read_missing", "duplicates", "read_refused", "publish_errors", "foreign", "unstamped", "no_id")
	equal(t, f, "delivered_latency_samples", f["sent"])
	if f["sent_p50_us"] > f["delivered_p50_us"] || f["delivered_p50_us"] > f["delivered_max_us"] {
		t.Errorf("quantiles not ordered: sent p50 %v, delivered p50 %v max %v", f["sent_p50_us"], f["delivered_p50_us"], f["delivered_max_us"])
	}
}

// TestReceiptsNeedsJWTSecret checks that receipts says which option it
// lacks before it dials anything.
func TestReceiptsNeedsJWTSecret(t *testing.T) {
	_, err := Run(testContext(t), "receipts", Options{Target: "127.0.0.1:1"})
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "--jwt-secret-file") {
		t.Fatalf("err = %v, want ErrInvalidOptions naming --jwt-secret-file", err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Run(testContext(t), "receipts", Options{Target: "127.0.0.1:1", JWTSecretFile: short})
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short secret: err = %v, want ErrInvalidOptions", err)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	if _, err := Run(testContext(t), "nope", Options{}); !errors.Is(err, ErrUnknownScenario) {
		t.Errorf("unknown scenario: err = %v", err)
	}
	_, err := Run(testContext(t), "fanin-qos0", Options{Target: "no-port", PayloadSize: 8})
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("bad options: err = %v", err)
	}
}

func positive(t *testing.T, f map[string]float64, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := f[k]; !ok || !(v > 0) {
			t.Errorf("%s = %v (present %v), want > 0", k, v, ok)
		}
	}
}

func zero(t *testing.T, f map[string]float64, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := f[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", k, v, ok)
		}
	}
}

func equal(t *testing.T, f map[string]float64, key string, want float64) {
	t.Helper()
	if v, ok := f[key]; !ok || v != want {
		t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
	}
}
