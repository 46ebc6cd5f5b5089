package bench

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqhub/mqhub/hooks"
)

// TestUserTokenAcceptedByHub signs a token as receipts does and checks it
// with the hub's own verifier, from a secret file written by echo (one
// trailing newline, which both sides trim).
func TestUserTokenAcceptedByHub(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret, err := loadJWTSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 40 {
		t.Errorf("secret is %d bytes, want 40 (newline trimmed)", len(secret))
	}
	tok, err := userToken(secret, "b0123abcd-s0", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := hooks.NewJWTVerifier(hooks.JWTOptions{HMACSecretFile: path})
	if err != nil {
		t.Fatal(err)
	}
	user, err := v.Verify(tok)
	if err != nil || user != "b0123abcd-s0" {
		t.Fatalf("Verify = %q, %v", user, err)
	}
	if !hooks.LooksLikeJWT([]byte(tok)) {
		t.Error("the hub would not try the token as a JWT")
	}
}

// TestCompareReceipts runs compare's receipts path end to end with the real
// mqhub binary: compare must generate the secret and pass it to the hub,
// get every receipt, and show mosquitto as n/a rather than as a failure.
func TestCompareReceipts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the mqhub binary; skipped with -short")
	}
	startTestMosquitto(t).Stop() // skips or fails as configured when mosquitto is missing
	dir := t.TempDir()
	bin := filepath.Join(dir, "mqhub")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/mqhub").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var table, log bytes.Buffer
	rep, err := Compare(testContext(t), CompareOptions{
		Base: Options{
			Clients: 2, Duration: 500 * time.Millisecond, Rate: 40,
			DrainIdle: time.Second, Drain: 10 * time.Second,
		},
		Scenarios: []string{"receipts"},
		Rounds:    2,
		Out:       filepath.Join(dir, "out"),
		MqhubBin:  bin,
		Table:     &table,
		Log:       &log,
	})
	t.Logf("log:\n%s\ntable:\n%s", log.String(), table.String())
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	sr := rep.Scenarios[0]
	if !slices.Equal(sr.NotApplicable, []string{BrokerMosquitto}) || len(sr.Runs[BrokerMosquitto]) != 0 || len(sr.Errors) != 0 {
		t.Errorf("not applicable %v, mosquitto runs %d, errors %v", sr.NotApplicable, len(sr.Runs[BrokerMosquitto]), sr.Errors)
	}
	if n := len(sr.Runs[BrokerMqhub]); n != 2 {
		t.Fatalf("%d mqhub runs, want 2", n)
	}
	for _, res := range sr.Runs[BrokerMqhub] {
		f := res.Figures
		positive(t, f, "sent", "delivered_p50_us", "read_p50_us")
		equal(t, f, "delivered", f["sent"])
		equal(t, f, "read", f["sent"])
		zero(t, f, "delivered_missing", "read_missing", "duplicates")
	}
	if len(sr.Ratios) != 0 {
		t.Errorf("ratios without a second broker: %v", sr.Ratios)
	}
	if !strings.Contains(table.String(), "n/a") {
		t.Errorf("table does not mark mosquitto n/a:\n%s", table.String())
	}
}

// TestReceiptsAgainstMosquitto checks that the scenario itself refuses a
// broker without the messaging flow, rather than reporting every receipt
// missing: mosquitto lets the JWTs in as passwords but stamps no envelope.
func TestReceiptsAgainstMosquitto(t *testing.T) {
	b := startTestMosquitto(t)
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Run(testContext(t), "receipts", Options{
		Target: b.Addr, JWTSecretFile: path, Clients: 1, Count: 3, Rate: -1,
		DrainIdle: 300 * time.Millisecond,
	})
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "`from`") {
		t.Fatalf("err = %v, want ErrNotSupported naming the envelope", err)
	}
}
