package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"text/tabwriter"
	"time"
)

// Broker names Compare knows how to start.
const (
	BrokerMqhub     = "mqhub"
	BrokerMosquitto = "mosquitto"
)

// ErrRunsFailed is returned by Compare when some scenario runs failed; the
// table and files are still written for the runs that succeeded.
var ErrRunsFailed = errors.New("some bench runs failed")

// DefaultBrokers returns the brokers Compare runs by default, in order.
func DefaultBrokers() []string { return []string{BrokerMqhub, BrokerMosquitto} }

// DefaultCompareScenarios returns the scenarios Compare runs by default:
// all that work against a plain MQTT broker, then receipts, which runs
// against mqhub only (see mqhubOnly).
func DefaultCompareScenarios() []string {
	return []string{"fanin-qos0", "fanin-qos1", "p2p-latency", "fanout", "fanout-qos1", "conns", "offline-drain", "receipts"}
}

// mqhubOnly reports whether a scenario measures mqhub's messaging flow,
// which no other broker has: Compare runs it against mqhub alone, started
// with a JWT secret (the scenario logs in as users), and shows n/a for the
// others instead of a column of "all receipts missing".
func mqhubOnly(scenario string) bool { return scenario == "receipts" }

// jwtSecretFile is the HS256 secret Compare writes into an mqhub's temp
// dir for mqhubOnly scenarios; the hub and the scenario both read it.
const jwtSecretFile = "jwt-secret"

// CompareOptions configure Compare.
type CompareOptions struct {
	// Base is applied to every run; Target and PID are set per broker.
	Base Options
	// Scenarios to run (default DefaultCompareScenarios).
	Scenarios []string
	// Brokers to run, in order (default DefaultBrokers). The ratio column
	// is Brokers[0]/Brokers[1].
	Brokers []string
	// Rounds is how many times each scenario runs against each broker,
	// alternating brokers (A B A B ...).
	Rounds int
	// Out is the directory for compare.json and the SVG plots.
	Out string
	// MqhubBin is the mqhub binary; it is started as `MqhubBin serve ...`
	// (see MqhubArgs).
	MqhubBin string
	// MosquittoBin is the mosquitto binary (default DefaultMosquittoBin).
	MosquittoBin string
	// Table receives the table of medians; Log receives one status line
	// per run. Either may be nil.
	Table io.Writer
	Log   io.Writer
}

// CompareReport is everything Compare measured; it is written to
// OUT/compare.json.
type CompareReport struct {
	Start    time.Time `json:"start"`
	ElapsedS float64   `json:"elapsed_s"`
	Brokers  []string  `json:"brokers"`
	Rounds   int       `json:"rounds"`
	// MosquittoConfig is the configuration mosquitto ran with (its port
	// differs per scenario), recorded because it shapes the figures.
	MosquittoConfig string           `json:"mosquitto_config"`
	Scenarios       []ScenarioReport `json:"scenarios"`
}

// ScenarioReport holds one scenario's runs and their medians.
type ScenarioReport struct {
	Scenario string `json:"scenario"`
	// Key lists the figures tabulated and plotted.
	Key []string `json:"key"`
	// Runs holds each broker's results, in round order.
	Runs map[string][]*Result `json:"runs"`
	// Errors holds each broker's failed runs.
	Errors map[string][]string `json:"errors,omitempty"`
	// NotApplicable lists the brokers the scenario cannot run against
	// (mqhubOnly, or a run that returned ErrNotSupported): shown as n/a,
	// not counted as failures.
	NotApplicable []string `json:"not_applicable,omitempty"`
	// Medians maps broker -> figure -> median over the rounds.
	Medians map[string]map[string]float64 `json:"medians"`
	// Ratios maps figure -> median(Brokers[0]) / median(Brokers[1]), for
	// figures where the ratio is meaningful.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

func (co CompareOptions) withDefaults() CompareOptions {
	if len(co.Scenarios) == 0 {
		co.Scenarios = DefaultCompareScenarios()
	}
	if len(co.Brokers) == 0 {
		co.Brokers = DefaultBrokers()
	}
	if co.Rounds == 0 {
		co.Rounds = 3
	}
	if co.Out == "" {
		co.Out = filepath.Join("bench", "out")
	}
	if co.MosquittoBin == "" {
		co.MosquittoBin = DefaultMosquittoBin
	}
	if co.Table == nil {
		co.Table = io.Discard
	}
	if co.Log == nil {
		co.Log = io.Discard
	}
	return co
}

// Validate reports every problem with co at once.
func (co CompareOptions) Validate() error {
	var errs []error
	for _, s := range co.Scenarios {
		if _, err := Lookup(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, b := range co.Brokers {
		if b != BrokerMqhub && b != BrokerMosquitto {
			errs = append(errs, fmt.Errorf("unknown broker %q (want %s or %s)", b, BrokerMqhub, BrokerMosquitto))
		}
	}
	if co.Rounds < 1 {
		errs = append(errs, fmt.Errorf("rounds must be at least 1, got %d", co.Rounds))
	}
	if slices.Contains(co.Brokers, BrokerMqhub) && co.MqhubBin == "" {
		errs = append(errs, errors.New("mqhub binary not set"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return nil
}

// Compare runs each scenario against each broker, alternating brokers within
// every round so that drift on the machine (thermal, other load) hits both
// alike. Every run gets a freshly started broker (see runOnce). It prints the table, writes OUT/compare.json and
// OUT/SCENARIO.svg, and returns ErrRunsFailed (wrapped) if any run failed.
func Compare(ctx context.Context, co CompareOptions) (*CompareReport, error) {
	co = co.withDefaults()
	if err := co.Validate(); err != nil {
		return nil, err
	}
	// Children inherit the raised limit, which conns needs on both sides.
	if _, err := RaiseOpenFiles(); err != nil {
		return nil, err
	}
	if i := slices.Index(co.Brokers, BrokerMosquitto); i >= 0 {
		if _, err := exec.LookPath(co.MosquittoBin); err != nil {
			// A machine without mosquitto can still measure mqhub; say
			// so loudly instead of failing every mosquitto run.
			fmt.Fprintf(co.Log, "mosquitto not found at %s (Debian package mosquitto): skipping it, no ratios: %v\n", co.MosquittoBin, err)
			co.Brokers = slices.Delete(slices.Clone(co.Brokers), i, i+1)
			if len(co.Brokers) == 0 {
				return nil, fmt.Errorf("%w: mosquitto at %s: %w", ErrBrokerMissing, co.MosquittoBin, err)
			}
		}
	}
	if err := os.MkdirAll(co.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create output dir: %w", err)
	}
	rep := &CompareReport{Start: time.Now(), Brokers: co.Brokers, Rounds: co.Rounds, MosquittoConfig: MosquittoConfig(0)}
	unavailable := map[string]error{} // brokers that failed to start: skipped from then on
	failures := 0
	for _, name := range co.Scenarios {
		if ctx.Err() != nil {
			break
		}
		sr, n := co.runScenario(ctx, name, unavailable)
		failures += n
		rep.Scenarios = append(rep.Scenarios, sr)
	}
	rep.ElapsedS = time.Since(rep.Start).Seconds()

	if err := writeTable(co.Table, rep); err != nil {
		return rep, err
	}
	if err := writeReportFiles(co.Out, rep); err != nil {
		return rep, err
	}
	if failures > 0 {
		return rep, fmt.Errorf("%w: %d failed (see errors in %s)", ErrRunsFailed, failures, filepath.Join(co.Out, "compare.json"))
	}
	return rep, ctx.Err()
}

// runScenario runs the rounds of one scenario and computes medians and
// ratios. It returns the number of failed runs.
func (co CompareOptions) runScenario(ctx context.Context, name string, unavailable map[string]error) (ScenarioReport, int) {
	sc, _ := Lookup(name) // validated
	sr := ScenarioReport{
		Scenario: name, Key: sc.Key,
		Runs: map[string][]*Result{}, Errors: map[string][]string{}, Medians: map[string]map[string]float64{},
	}
	failures := 0
	fail := func(broker string, err error) {
		failures++
		sr.Errors[broker] = append(sr.Errors[broker], err.Error())
		fmt.Fprintf(co.Log, "%s %s: %v\n", name, broker, err)
	}

	notApplicable := func(broker, why string) {
		sr.NotApplicable = append(sr.NotApplicable, broker)
		fmt.Fprintf(co.Log, "%s %s: n/a (%s)\n", name, broker, why)
	}
	if mqhubOnly(name) {
		for _, bn := range co.Brokers {
			if bn != BrokerMqhub {
				notApplicable(bn, "needs mqhub's messaging flow")
			}
		}
	}

	for round := range co.Rounds {
		for _, bn := range co.Brokers {
			if ctx.Err() != nil {
				break
			}
			if slices.Contains(sr.NotApplicable, bn) {
				continue
			}
			if err := unavailable[bn]; err != nil {
				fail(bn, fmt.Errorf("round %d skipped: %w", round+1, err))
				continue
			}
			res, err := co.runOnce(ctx, name, bn)
			if errors.Is(err, ErrNotSupported) {
				// The broker lacks what the scenario measures; more
				// rounds would say the same.
				notApplicable(bn, err.Error())
				continue
			}
			if err != nil {
				if errors.Is(err, errBrokerStart) {
					// Retrying would only repeat the message, and a
					// hanging start would cost its timeout every time.
					unavailable[bn] = err
				}
				fail(bn, fmt.Errorf("round %d: %w", round+1, err))
				continue
			}
			sr.Runs[bn] = append(sr.Runs[bn], res)
			fmt.Fprintf(co.Log, "%s round %d/%d %s: %s(%.1fs)\n", name, round+1, co.Rounds, bn, keyFigures(sc.Key, res.Figures), res.ElapsedS)
		}
	}

	for bn, runs := range sr.Runs {
		sr.Medians[bn] = medians(runs)
	}
	if len(co.Brokers) >= 2 {
		a, b := sr.Medians[co.Brokers[0]], sr.Medians[co.Brokers[1]]
		sr.Ratios = map[string]float64{}
		for fig, va := range a {
			if vb, ok := b[fig]; ok {
				if r, ok := Ratio(va, vb); ok {
					sr.Ratios[fig] = r
				}
			}
		}
	}
	return sr, failures
}

// errBrokerStart marks a run that failed because its broker did not start.
var errBrokerStart = errors.New("broker did not start")

// runOnce starts a fresh broker, runs the scenario once against it and
// stops it. A fresh broker per run keeps runs independent: memory a broker
// kept from an earlier run would skew RSS figures, and leftover sessions or
// a degraded broker would bleed into the next round.
func (co CompareOptions) runOnce(ctx context.Context, scenario, broker string) (*Result, error) {
	withJWT := broker == BrokerMqhub && mqhubOnly(scenario)
	b, err := co.startBroker(ctx, broker, withJWT)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBrokerStart, err)
	}
	defer func() {
		b.Stop()
		_ = os.RemoveAll(b.dir)
	}()
	o := co.Base
	o.Target, o.PID = b.Addr, b.PID()
	if withJWT {
		o.JWTSecretFile = filepath.Join(b.dir, jwtSecretFile)
	}
	res, err := Run(ctx, scenario, o)
	if err != nil {
		if b.Exited() {
			return nil, fmt.Errorf("%w; broker exited; log: %s", err, b.logTail())
		}
		return nil, err
	}
	if b.Exited() {
		return nil, fmt.Errorf("broker exited during the run; log: %s", b.logTail())
	}
	return res, nil
}

// startBroker starts a broker in a fresh temp dir; withJWT (mqhub only) adds a
// random HS256 secret, dir/jwtSecretFile, as --jwt-hmac-secret-file.
// Anonymous logins stay on either way.
func (co CompareOptions) startBroker(ctx context.Context, name string, withJWT bool) (*Broker, error) {
	dir, err := os.MkdirTemp("", "mqhub-bench-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir for %s: %w", name, err)
	}
	var b *Broker
	switch {
	case name == BrokerMqhub && withJWT:
		b, err = startMqhubWithJWT(ctx, co.MqhubBin, dir)
	case name == BrokerMqhub:
		b, err = StartMqhub(ctx, co.MqhubBin, dir)
	default:
		b, err = StartMosquitto(ctx, co.MosquittoBin, dir)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// startMqhubWithJWT is StartMqhub with JWT logins: it writes a fresh
// random secret to dir/jwtSecretFile and adds --jwt-hmac-secret-file to
// MqhubArgs. Only the scenarios that need it get it, so every other run
// starts mqhub with exactly the command line the docs show.
func startMqhubWithJWT(ctx context.Context, bin, dir string) (*Broker, error) {
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("%w: mqhub at %s: %w", ErrBrokerMissing, bin, err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails on Linux
	secret := filepath.Join(dir, jwtSecretFile)
	// Hex: 64 printable bytes, comfortably over the hub's 32-byte minimum,
	// and no stray newline for either side to trim.
	if err := os.WriteFile(secret, []byte(hex.EncodeToString(raw[:])), 0o600); err != nil {
		return nil, fmt.Errorf("write jwt secret: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, fmt.Errorf("create mqhub data dir: %w", err)
	}
	args := append(MqhubArgs(data, port), "--jwt-hmac-secret-file", secret)
	return startBroker(ctx, "mqhub", bin, args, dir, port)
}

// medians returns, for every figure any run reported, the median over the
// runs that reported it.
func medians(runs []*Result) map[string]float64 {
	vals := map[string][]float64{}
	for _, r := range runs {
		for k, v := range r.Figures {
			vals[k] = append(vals[k], v)
		}
	}
	out := make(map[string]float64, len(vals))
	for k, vs := range vals {
		out[k] = Median(vs)
	}
	return out
}

func keyFigures(keys []string, figs map[string]float64) string {
	s := ""
	for _, k := range keys {
		if v, ok := figs[k]; ok {
			s += fmt.Sprintf("%s=%s ", k, formatFigure(v))
		}
	}
	return s
}

// writeTable prints one row per scenario and key figure: the median per
// broker and the ratio of the first two brokers.
func writeTable(w io.Writer, rep *CompareReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "scenario\tfigure\t"
	for _, b := range rep.Brokers {
		head += b + "\t"
	}
	if len(rep.Brokers) >= 2 {
		head += rep.Brokers[0] + "/" + rep.Brokers[1] + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, sr := range rep.Scenarios {
		for _, fig := range sr.Key {
			row := sr.Scenario + "\t" + fig + "\t"
			for _, b := range rep.Brokers {
				if slices.Contains(sr.NotApplicable, b) {
					row += "n/a\t"
					continue
				}
				v, ok := sr.Medians[b][fig]
				if !ok {
					v = math.NaN()
				}
				row += formatFigure(v) + "\t"
			}
			if len(rep.Brokers) >= 2 {
				if r, ok := sr.Ratios[fig]; ok {
					row += fmt.Sprintf("%.2f", r) + "\t"
				} else {
					row += "-\t"
				}
			}
			fmt.Fprintln(tw, row)
		}
		for _, b := range sortedKeys(sr.Errors) {
			fmt.Fprintf(tw, "%s\t%s errors\t%d\t\n", sr.Scenario, b, len(sr.Errors[b]))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// writeReportFiles writes compare.json and one SVG per scenario.
func writeReportFiles(dir string, rep *CompareReport) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode compare report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compare.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write compare report: %w", err)
	}
	for _, sr := range rep.Scenarios {
		groups := make([]BarGroup, 0, len(sr.Key))
		for _, fig := range sr.Key {
			g := BarGroup{Label: fig}
			for _, b := range rep.Brokers {
				v, ok := sr.Medians[b][fig]
				if !ok {
					v = math.NaN()
				}
				g.Values = append(g.Values, v)
			}
			groups = append(groups, g)
		}
		path := filepath.Join(dir, sr.Scenario+".svg")
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		title := fmt.Sprintf("%s: median of %d rounds", sr.Scenario, rep.Rounds)
		err = WriteBarChart(f, title, rep.Brokers, groups)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
