package broker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mqhub/mqhub/broker"
)

// resolve runs the command-line path: defaults, flags, env, file.
func resolve(t *testing.T, args []string, env []string) (broker.Config, error) {
	t.Helper()
	cfg := broker.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cfg.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	err := broker.Resolve(fs, &cfg, env)
	return cfg, err
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mqhub.yaml")
	if err := os.WriteFile(file, []byte("mqtt-addr: 127.0.0.1:1001\nws_addr: 127.0.0.1:1002\nmax-packet-size: 2MiB\nconnect-timeout: 3s\nallow-anonymous: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := resolve(t,
		[]string{"--config", file, "--mqtt-addr", "127.0.0.1:3001"},
		[]string{"MQHUB_MQTT_ADDR=127.0.0.1:2001", "MQHUB_WS_ADDR=127.0.0.1:2002", "MQHUB_REQUIRE_TOOLS=1", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"flag beats env and file", cfg.MQTTAddr, "127.0.0.1:3001"},
		{"env beats file", cfg.WSAddr, "127.0.0.1:2002"},
		{"file beats default", cfg.MaxPacketSize.String(), "2MiB"},
		{"file duration", cfg.ConnectTimeout.String(), (3 * time.Second).String()},
		{"default stays", cfg.HTTPAddr, ":8080"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if !cfg.AllowAnonymous {
		t.Error("allow-anonymous from the file was not applied")
	}
}

func TestConfigListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte("no-such-option: 1\nmax-clients: many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := resolve(t,
		[]string{"--config", file, "--mqtt-addr", "nohostport", "--log-format", "xml", "--ws-path", "mqtt"},
		[]string{"MQHUB_CONNECT_TIMEOUT=soon"})
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, want := range []string{"no-such-option", "max-clients", "mqtt-addr", "log-format", "ws-path", "MQHUB_CONNECT_TIMEOUT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*broker.Config)
		want   string // "" means valid
	}{
		{"defaults", func(*broker.Config) {}, ""},
		{"every listener disabled", func(c *broker.Config) { c.MQTTAddr, c.WSAddr = "", "" }, "no MQTT listener"},
		{"same port twice", func(c *broker.Config) { c.WSAddr = c.MQTTAddr }, "already used"},
		{"packet size too small", func(c *broker.Config) { c.MaxPacketSize = 10 }, "max-packet-size"},
		{"zero connect timeout", func(c *broker.Config) { c.ConnectTimeout = 0 }, "connect-timeout"},
		{"receive maximum zero", func(c *broker.Config) { c.ReceiveMaximum = 0 }, "receive-maximum"},
		{"client auth without CA", func(c *broker.Config) { c.TLSClientAuth = broker.ClientAuthRequire }, "tls-client-ca"},
		{"unknown client auth", func(c *broker.Config) { c.TLSClientAuth = "maybe" }, "tls-client-auth"},
		{"bad log level", func(c *broker.Config) { c.LogLevel = "loud" }, "log-level"},
		{"keep-alive cap in whole seconds", func(c *broker.Config) { c.MaxKeepalive = 300 * time.Second }, ""},
		{"keep-alive cap with a fraction", func(c *broker.Config) { c.MaxKeepalive = 1500 * time.Millisecond }, "max-keepalive"},
		{"keep-alive cap beyond MQTT's", func(c *broker.Config) { c.MaxKeepalive = 65536 * time.Second }, "max-keepalive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := broker.Default()
			tc.change(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want broker.ByteSize
		ok   bool
	}{
		{"1048576", broker.MiB, true}, {"1MiB", broker.MiB, true}, {"512KiB", 512 * broker.KiB, true},
		{"2mb", 2 * broker.MiB, true}, {"1 GiB", broker.GiB, true}, {"-1", 0, false}, {"lots", 0, false},
		{"99999999999GiB", 0, false},
	} {
		got, err := broker.ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			back, err := broker.ParseByteSize(got.String())
			if err != nil || back != got {
				t.Errorf("%v does not round-trip through %q", got, got.String())
			}
		}
	}
}
