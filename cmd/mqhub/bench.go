package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqhub/mqhub/bench"
)

// newBenchCmd returns `mqhub bench`: one subcommand per load scenario, run
// against any MQTT broker, plus `compare`, which runs them all against
// mqhub and mosquitto side by side.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench SCENARIO --target host:port",
		Short: "load scenarios against any MQTT broker, and a comparison with mosquitto",
		Long: `Run a load scenario against any MQTT 5 broker. Progress goes to stderr;
exactly one JSON line of results goes to stdout. Options left at 0 take the
scenario's own defaults (e.g. fanout: 1000 subscribers at 20 msg/s for 5s).`,
	}
	for _, sc := range bench.Scenarios() {
		cmd.AddCommand(newScenarioCmd(sc))
	}
	cmd.AddCommand(newCompareCmd())
	return cmd
}

// scenarioFlags are the flags every scenario and compare share.
type scenarioFlags struct {
	clients     int
	rate        float64
	duration    time.Duration
	count       int
	payloadSize int
	qos         int
	inflight    int
	maxBacklog  int
	hold        time.Duration
	settle      time.Duration
	queueOnly   bool
	keepAlive   time.Duration
	timeout     time.Duration
	noProgress  bool
}

func (f *scenarioFlags) register(fs *pflag.FlagSet) {
	fs.IntVarP(&f.clients, "clients", "n", 0, "publishers / pairs / subscribers / connections / sessions (0 = scenario default)")
	fs.Float64Var(&f.rate, "rate", 0, "messages per second per sender (0 = scenario default, -1 = as fast as possible)")
	fs.DurationVar(&f.duration, "duration", 0, "length of the sending phase (0 = scenario default)")
	fs.IntVar(&f.count, "count", 0, "messages per sender (per session for offline-drain; 0 = bounded by duration)")
	fs.IntVar(&f.payloadSize, "payload-size", bench.DefaultPayloadSize, fmt.Sprintf("payload bytes (at least %d)", bench.PayloadHeaderSize))
	fs.IntVar(&f.qos, "qos", -1, "QoS for fanout (0 or 1; -1 = scenario default); fixed by the other scenarios")
	fs.IntVar(&f.inflight, "inflight", 0, "concurrent QoS 1 publishes per fanin publisher, and read receipts per receipts recipient (0 = 16)")
	fs.IntVar(&f.maxBacklog, "max-backlog", 0, "fanin: messages sent but not yet received before publishers wait (0 = 20000, -1 = unbounded)")
	fs.DurationVar(&f.hold, "hold", 0, "how long conns holds its connections (0 = 5s)")
	fs.DurationVar(&f.settle, "settle", 0, "offline-drain: wait this long after queueing, then read the broker's RSS again (with --pid)")
	fs.BoolVar(&f.queueOnly, "queue-only", false, "offline-drain: stop once the messages are queued (memory against the number queued); the sessions stay on the broker")
	fs.DurationVar(&f.keepAlive, "keepalive", 0, "MQTT keepalive of every client (0 = 30s)")
	fs.DurationVar(&f.timeout, "timeout", 0, "hard limit for one scenario run (0 = derived from duration and hold)")
	fs.BoolVar(&f.noProgress, "no-progress", false, "do not draw a progress bar on stderr")
}

func (f *scenarioFlags) options() bench.Options {
	o := bench.Options{
		Clients: f.clients, Rate: f.rate, Duration: f.duration, Count: f.count,
		PayloadSize: f.payloadSize, QoS: f.qos, Inflight: f.inflight, MaxBacklog: f.maxBacklog, Hold: f.hold,
		Settle: f.settle, QueueOnly: f.queueOnly,
		KeepAlive: f.keepAlive, Timeout: f.timeout,
	}
	if !f.noProgress {
		o.Progress = os.Stderr
	}
	return o
}

func newScenarioCmd(sc bench.Scenario) *cobra.Command {
	var (
		flags              scenarioFlags
		target, user, pass string
		jwtSecretFile      string
		pid                int
	)
	cmd := &cobra.Command{
		Use:   sc.Name + " --target host:port",
		Short: sc.Summary,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := flags.options()
			o.Target, o.Username, o.Password, o.PID = target, user, pass, pid
			o.JWTSecretFile = jwtSecretFile
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := bench.Run(ctx, sc.Name, o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	fs := cmd.Flags()
	flags.register(fs)
	fs.StringVar(&target, "target", "", "broker address host:port (required)")
	fs.StringVar(&user, "username", "", "MQTT username for every client")
	fs.StringVar(&pass, "password", "", "MQTT password for every client")
	fs.IntVar(&pid, "pid", 0, "broker process id, to read its RSS from /proc/PID/status")
	if sc.Name == "receipts" {
		// Only receipts logs in as users (one JWT per user; --username
		// and --password are not used): receipts flow between users.
		fs.StringVar(&jwtSecretFile, "jwt-secret-file", "", "HS256 secret the hub verifies JWTs with (its --jwt-hmac-secret-file); each user logs in with a token signed with it, --username and --password are ignored (required)")
	}
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

func newCompareCmd() *cobra.Command {
	var (
		flags     scenarioFlags
		co        bench.CompareOptions
		scenarios []string
		brokers   []string
	)
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "run the scenarios against mqhub and mosquitto alternately; table of medians, JSON and SVG",
		Long: `Start mqhub (--mqhub-bin serve --allow-anonymous --data-dir TMP --mqtt-addr
127.0.0.1:PORT --ws-addr "" --http-addr "") and mosquitto (--mosquitto-bin with a
generated config) on free loopback ports, run each scenario against both
alternately for --rounds rounds, print a table of medians and the ratio
mqhub/mosquitto, and write compare.json and one SVG per scenario into --out.
Every run gets a freshly started broker, so runs do not share state.
receipts runs against mqhub only (mosquitto has no receipts: n/a), started
with --jwt-hmac-secret-file and a random secret generated in its temp dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			co.Base = flags.options()
			co.Scenarios, co.Brokers = scenarios, brokers
			co.Table = cmd.OutOrStdout()
			co.Log = cmd.ErrOrStderr()
			if co.MqhubBin == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find mqhub binary: %w", err)
				}
				co.MqhubBin = exe
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err := bench.Compare(ctx, co)
			return err
		},
	}
	fs := cmd.Flags()
	flags.register(fs)
	fs.StringVar(&co.MqhubBin, "mqhub-bin", "", "mqhub binary to compare (default: this executable)")
	fs.StringVar(&co.MosquittoBin, "mosquitto-bin", bench.DefaultMosquittoBin, "mosquitto binary")
	fs.StringSliceVar(&brokers, "brokers", bench.DefaultBrokers(), "brokers to run, in order (mqhub, mosquitto)")
	fs.StringSliceVar(&scenarios, "scenarios", bench.DefaultCompareScenarios(), "scenarios to run")
	fs.IntVar(&co.Rounds, "rounds", 3, "rounds per scenario and broker (medians are reported)")
	fs.StringVar(&co.Out, "out", "bench/out", "directory for compare.json and the SVG plots")
	return cmd
}
