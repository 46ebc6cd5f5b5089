// Command mqhub is the messaging hub: an MQTT 3.1.1/5.0 broker with a
// messaging flow on top. `mqhub serve` runs it; other subcommands manage
// and measure it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mqhub/mqhub/internal/version"
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
		Version:       version.String(), // --version
	}
	root.SetVersionTemplate("mqhub {{.Version}}\n")
	root.AddCommand(newServeCmd(), newBenchCmd(), newVersionCmd())
	root.AddCommand(newUserCmd())
	root.AddCommand(newGroupCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print mqhub's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "mqhub", version.String())
			return err
		},
	}
}
