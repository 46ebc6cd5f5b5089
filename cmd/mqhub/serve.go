package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mqhub/mqhub/broker"
)

func newServeCmd() *cobra.Command {
	cfg := broker.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub: MQTT (TCP, TLS, WebSocket) and HTTP listeners",
		Long: `Run one mqhub node.

Every option can be given as a flag, as an environment variable
(MQHUB_ and the flag name in upper case with _ for -, e.g.
MQHUB_MAX_PACKET_SIZE=2MiB) or as a key of the YAML file named by --config
(e.g. "max-packet-size: 2MiB"). Flags win over the environment, which wins
over the file. Sizes take KiB/MiB/GiB, durations take s/m/h.

Without --allow-anonymous every client must log in: with a user of the
store (mqhub user add NAME --data-dir DIR, while the hub is stopped), a JWT
as the password (--jwt-* keys), or a TLS client certificate. See
docs/security.md. --allow-anonymous makes an open broker for development.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := broker.Resolve(cmd.Flags(), &cfg, os.Environ()); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", indent(err))
			}
			return serve(cmd.Context(), cfg)
		},
	}
	cfg.BindFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}

// serve runs the hub until SIGINT or SIGTERM, then shuts it down
// gracefully. SIGHUP reloads the ACL file and the TLS certificate (see
// Broker.Reload) and the hub goes on serving.
func serve(ctx context.Context, cfg broker.Config) error {
	log := broker.NewLogger(cfg, os.Stderr)
	// Every signal is caught before anything starts: SIGHUP's default
	// action would end the process with no shutdown at all.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	b, err := broker.New(cfg, log)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		_ = b.Shutdown(context.Background()) // releases the store; nothing was served, so nothing is logged
		return err
	}
	for {
		select {
		case <-hup:
			_ = b.Reload() // logs what was reloaded, or why not
		case <-ctx.Done():
			stop() // a second SIGINT/SIGTERM now kills the process the default way
			log.Info().Msg("signal received")
			shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			return b.Shutdown(shutdownCtx)
		}
	}
}

// indented prints one problem per line under the heading.
type indented struct{ err error }

func indent(err error) error { return indented{err} }

func (e indented) Error() string {
	return "  - " + strings.ReplaceAll(e.err.Error(), "\n", "\n  - ")
}

func (e indented) Unwrap() error { return e.err }
