package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestConfigurationDocListsEveryOption keeps docs/configuration.md in step
// with the flags: every option appears there with its default.
func TestConfigurationDocListsEveryOption(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	serve := newServeCmd()
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		def := f.DefValue
		if def == "" {
			def = "(empty)"
		}
		row := "| `--" + f.Name + "` |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/configuration.md has no row for --%s", f.Name)
			return
		}
		line := string(doc)[strings.Index(string(doc), row):]
		line = line[:strings.Index(line, "\n")]
		if !strings.Contains(line, "`"+def+"`") {
			t.Errorf("docs/configuration.md: --%s default is %q, the row says %s", f.Name, def, line)
		}
	})
}
