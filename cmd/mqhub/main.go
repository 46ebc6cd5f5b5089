// Command mqhub is the messaging hub: an MQTT 3.1.1/5.0 broker with a
// messaging flow on top. `mqhub serve` runs it; other subcommands manage
// and measure it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mqhub:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mqhub",
		Short:         "mqhub is a messaging hub on MQTT",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newBenchCmd())
	root.AddCommand(newUserCmd())
	root.AddCommand(newGroupCmd())
	return root
}
