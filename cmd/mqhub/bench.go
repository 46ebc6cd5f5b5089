package main

import "github.com/spf13/cobra"

// newBenchCmd is a placeholder until the bench package lands.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "load scenarios against any MQTT broker", Hidden: true}
}
