package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeMqhub is a stand-in for `mqhub serve` until it exists: it takes the
// exact command line Compare passes and runs mosquitto on the requested
// 127.0.0.1 port, so Compare's whole path (start, alternate, medians,
// ratio, files) is exercised with two real brokers.
const fakeMqhub = `#!/bin/sh
[ "$1" = serve ] || { echo "want serve, got $1" >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
	case "$1" in
	--mqtt-addr) addr=$2; shift ;;
	--data-dir) dir=$2; shift ;;
	--ws-addr|--http-addr) [ -z "$2" ] || { echo "$1 should be empty" >&2; exit 2; }; shift ;;
	--allow-anonymous) ;;
	*) echo "unexpected flag $1" >&2; exit 2 ;;
	esac
	shift
done
case "$addr" in 127.0.0.1:*) ;; *) echo "not loopback: $addr" >&2; exit 2 ;; esac
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "${addr##*:}" > "$dir/fake.conf"
exec MOSQUITTO -c "$dir/fake.conf"
`

func TestCompareWithFakeMqhub(t *testing.T) {
	startTestMosquitto(t).Stop() // skips or fails as configured when mosquitto is missing
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-mqhub")
	script := strings.Replace(fakeMqhub, "MOSQUITTO", DefaultMosquittoBin, 1)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	var table, log bytes.Buffer
	rep, err := Compare(testContext(t), CompareOptions{
		Base: Options{
			Clients: 2, Duration: 500 * time.Millisecond, Count: 0, Rate: 40,
			Hold: 50 * time.Millisecond, DrainIdle: 300 * time.Millisecond,
		},
		Scenarios: []string{"fanin-qos1", "conns"},
		Rounds:    2,
		Out:       out,
		MqhubBin:  bin,
		Table:     &table,
		Log:       &log,
	})
	t.Logf("log:\n%s\ntable:\n%s", log.String(), table.String())
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("got %d scenario reports", len(rep.Scenarios))
	}
	for _, sr := range rep.Scenarios {
		for _, b := range DefaultBrokers() {
			if n := len(sr.Runs[b]); n != 2 {
				t.Errorf("%s/%s: %d runs, want 2", sr.Scenario, b, n)
			}
		}
		// Both sides are mosquitto: ratios exist and are in a sane range.
		key := sr.Key[0]
		r, ok := sr.Ratios[key]
		if !ok || r < 0.2 || r > 5 {
			t.Errorf("%s: ratio of %s = %v (present %v)", sr.Scenario, key, r, ok)
		}
		checkSVG(t, filepath.Join(out, sr.Scenario+".svg"))
	}
	if !strings.Contains(table.String(), "mqhub/mosquitto") || !strings.Contains(table.String(), "connect_per_s") {
		t.Errorf("table lacks header or figures:\n%s", table.String())
	}
	data, err := os.ReadFile(filepath.Join(out, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back CompareReport
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("compare.json: %v", err)
	}
	if len(back.Scenarios) != 2 || !strings.Contains(back.MosquittoConfig, "set_tcp_nodelay true") {
		t.Errorf("compare.json incomplete: %d scenarios", len(back.Scenarios))
	}
}

// TestCompareReportsBrokenMqhub checks that a broken mqhub (the serve
// command not written yet) is reported, not hidden, and that mosquitto's
// figures are still produced.
func TestCompareReportsBrokenMqhub(t *testing.T) {
	startTestMosquitto(t).Stop()
	dir := t.TempDir()
	bin := filepath.Join(dir, "broken-mqhub")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'unknown flag: --allow-anonymous' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	rep, err := Compare(testContext(t), CompareOptions{
		Base:      Options{Clients: 2, Hold: 50 * time.Millisecond},
		Scenarios: []string{"conns", "conns"},
		Rounds:    1,
		Out:       filepath.Join(dir, "out"),
		MqhubBin:  bin,
		Table:     &table,
		Log:       io.Discard,
	})
	if !errors.Is(err, ErrRunsFailed) {
		t.Fatalf("err = %v, want ErrRunsFailed", err)
	}
	sr := rep.Scenarios[0]
	if len(sr.Runs[BrokerMosquitto]) != 1 || len(sr.Errors[BrokerMqhub]) != 1 {
		t.Fatalf("runs %v errors %v", sr.Runs, sr.Errors)
	}
	if !strings.Contains(sr.Errors[BrokerMqhub][0], "unknown flag") {
		t.Errorf("mqhub error lacks its log: %s", sr.Errors[BrokerMqhub][0])
	}
	if !strings.Contains(rep.Scenarios[1].Errors[BrokerMqhub][0], "skipped") {
		t.Errorf("second scenario retried a broken mqhub: %v", rep.Scenarios[1].Errors)
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(data); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// wellFormed parses data as XML to the end.
func wellFormed(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// TestCompareSkipsMissingMosquitto checks that a machine without mosquitto
// still measures mqhub and says why there are no ratios.
func TestCompareSkipsMissingMosquitto(t *testing.T) {
	startTestMosquitto(t).Stop() // the fake mqhub below needs mosquitto
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-mqhub")
	if err := os.WriteFile(bin, []byte(strings.Replace(fakeMqhub, "MOSQUITTO", DefaultMosquittoBin, 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	rep, err := Compare(testContext(t), CompareOptions{
		Base:         Options{Clients: 2, Hold: 50 * time.Millisecond},
		Scenarios:    []string{"conns"},
		Rounds:       1,
		Out:          filepath.Join(dir, "out"),
		MqhubBin:     bin,
		MosquittoBin: filepath.Join(dir, "no-such-mosquitto"),
		Log:          &log,
	})
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	if !strings.Contains(log.String(), "mosquitto not found") {
		t.Errorf("no skip message in log: %q", log.String())
	}
	if len(rep.Brokers) != 1 || len(rep.Scenarios[0].Runs[BrokerMqhub]) != 1 {
		t.Errorf("brokers %v runs %v", rep.Brokers, rep.Scenarios[0].Runs)
	}
}
