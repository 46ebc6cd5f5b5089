package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/storage"
)

// groupHub is a running hub with anonymous access off, users alice, bob,
// carol and root (an admin), whose passwords are their names and "-pw",
// and an HS256 JWT secret.
type groupHub struct {
	url    string
	secret []byte
}

func startGroupHub(t *testing.T) *groupHub {
	t.Helper()
	// The commands read these; the tests say what they want.
	for _, v := range []string{"URL", "USER", "PASSWORD", "TOKEN"} {
		t.Setenv(broker.EnvPrefix+v, "")
	}
	// Hex, as an operator would write it: raw random bytes may end in a
	// newline, which the secret loader trims (then 31 bytes are refused:
	// 1 run in about 128 failed that way).
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secretFile := filepath.Join(t.TempDir(), "jwt.secret")
	secret := []byte(hex.EncodeToString(raw))
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	b := testutil.StartHub(t, func(c *broker.Config) {
		c.AllowAnonymous = false
		c.JWTHMACSecretFile = secretFile
		c.LogLevel = "warn"
	})
	for _, u := range []string{"alice", "bob", "carol", "root"} {
		// The lowest bcrypt cost keeps the test fast under -race.
		hash, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Store().PutUser(context.Background(), &storage.User{Name: u, PasswordHash: hash, Admin: u == "root"}); err != nil {
			t.Fatal(err)
		}
	}
	return &groupHub{url: "http://" + b.HTTPAddr(), secret: secret}
}

func (h *groupHub) token(t *testing.T, user string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(h.secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runGroup runs `mqhub group args...` in process with stdin and returns
// what it wrote to stdout. The error is what main prints after "mqhub: "
// before it exits with status 1.
func runGroup(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	registered := false
	for _, c := range root.Commands() {
		registered = registered || c.Name() == "group"
	}
	if !registered {
		root.AddCommand(newGroupCmd())
	}
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"group"}, args...))
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestGroupCommands runs a sequence of group commands, as several users,
// against one hub.
func TestGroupCommands(t *testing.T) {
	h := startGroupHub(t)
	steps := []struct {
		name    string
		user    string // logs in with --user and --password-stdin
		args    []string
		wantOut string // exact when wantErr is "", else a part of it
		wantErr string // exact
	}{
		{name: "create", user: "alice", args: []string{"create", "family", "--title", "Family", "--member", "bob"},
			wantOut: "group family created (owner alice, 2 members)\n"},
		{name: "create existing", user: "alice", args: []string{"create", "family"},
			wantErr: `group "family" already exists (HTTP 409 Conflict)`},
		{name: "create invalid name", user: "alice", args: []string{"create", "a/b"},
			wantErr: `group name "a/b" contains '/' (HTTP 400 Bad Request)`},
		{name: "add", user: "alice", args: []string{"add", "family", "carol"},
			wantOut: "group family: added carol (3 members)\n"},
		{name: "add without users", user: "alice", args: []string{"add", "family"},
			wantErr: "requires at least 2 arg(s), only received 1"},
		{name: "list as a member", user: "bob", args: []string{"list"},
			wantOut: "family\tFamily\t3 members\n"},
		{name: "rename as a member", user: "bob", args: []string{"rename", "family", "Bob's"},
			wantErr: `only the owner of group "family" (alice) or an admin may change it (HTTP 403 Forbidden)`},
		{name: "rename", user: "alice", args: []string{"rename", "family", "The Family"},
			wantOut: "group family renamed to \"The Family\"\n"},
		{name: "leave", user: "carol", args: []string{"remove", "family", "carol"},
			wantOut: "group family: removed carol (2 members)\n"},
		{name: "show as a former member", user: "carol", args: []string{"show", "family"},
			wantErr: `no group "family" (HTTP 404 Not Found)`},
		{name: "remove stops at the owner", user: "alice", args: []string{"remove", "family", "bob", "alice"},
			wantOut: "group family: removed bob (1 member)\n", wantErr: `the owner cannot leave the group: "alice" owns group "family" (HTTP 409 Conflict)`},
		{name: "list without groups", user: "bob", args: []string{"list"}, wantOut: ""},
		{name: "list all as an admin", user: "root", args: []string{"list", "--all"},
			wantOut: "family\tThe Family\t1 member\n"},
		{name: "list all as a user", user: "alice", args: []string{"list", "--all"},
			wantErr: "only admins may list every group (HTTP 403 Forbidden)"},
		{name: "delete as another user", user: "bob", args: []string{"delete", "family"},
			wantErr: `no group "family" (HTTP 404 Not Found)`},
		{name: "delete", user: "alice", args: []string{"delete", "family"}, wantOut: "group family deleted\n"},
		{name: "show deleted", user: "alice", args: []string{"show", "family"},
			wantErr: `no group "family" (HTTP 404 Not Found)`},
	}
	for _, st := range steps {
		args := append(st.args, "--url", h.url, "--user", st.user, "--password-stdin")
		out, err := runGroup(t, st.user+"-pw\n", args...)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantErr != "" && (err == nil || err.Error() != st.wantErr):
			t.Fatalf("%s: error %v, want %q", st.name, err, st.wantErr)
		case st.wantErr == "" && out != st.wantOut, !strings.Contains(out, st.wantOut):
			t.Fatalf("%s: output %q, want %q", st.name, out, st.wantOut)
		}
	}
}

func TestGroupShow(t *testing.T) {
	h := startGroupHub(t)
	login := []string{"--url", h.url, "--user", "bob", "--password", "bob-pw"}
	if _, err := runGroup(t, "", append([]string{"create", "café", "--title", "Café crème", "--member", "alice", "--member", "carol"}, login...)...); err != nil {
		t.Fatal(err)
	}
	out, err := runGroup(t, "", append([]string{"show", "café"}, login...)...)
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^name:     café
title:    Café crème
owner:    bob
created:  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ
members:  3
  alice
  bob \(owner\)
  carol
$`)
	if !want.MatchString(out) {
		t.Fatalf("show output:\n%s", out)
	}
}

// TestGroupLogin checks where the commands find the hub and the
// credentials: flags, else the environment; a token as Bearer.
func TestGroupLogin(t *testing.T) {
	h := startGroupHub(t)
	if _, err := runGroup(t, "", "create", "g", "--url", h.url, "--user", "alice", "--password", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	const listed = "g\t\t1 member\n"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		stdin   string
		args    []string
		wantErr string // part of the error; "" for success
	}{
		{name: "password flag", args: []string{"--url", h.url, "--user", "alice", "--password", "alice-pw"}},
		{name: "environment", env: map[string]string{"URL": h.url + "/", "USER": "alice", "PASSWORD": "alice-pw"}},
		{name: "token", args: []string{"--url", h.url, "--token", h.token(t, "alice")}},
		{name: "token from the environment", env: map[string]string{"URL": h.url, "TOKEN": h.token(t, "alice")}},
		{name: "flags win over the environment", env: map[string]string{"URL": "http://127.0.0.1:1", "TOKEN": h.token(t, "bob")},
			stdin: "alice-pw\n", args: []string{"--url", h.url, "--user", "alice", "--password-stdin"}},
		{name: "wrong password", stdin: "bob-pw\n", args: []string{"--url", h.url, "--user", "alice", "--password-stdin"},
			wantErr: "unknown user or wrong password (HTTP 401 Unauthorized)"},
		{name: "token of another hub", args: []string{"--url", h.url, "--token", (&groupHub{secret: make([]byte, 32)}).token(t, "alice")},
			wantErr: "(HTTP 401 Unauthorized)"},
		{name: "no credentials", args: []string{"--url", h.url}, wantErr: "no credentials: give --user"},
		{name: "no password", args: []string{"--url", h.url, "--user", "alice"}, wantErr: "no password: give --password-stdin"},
		{name: "empty password", stdin: "\n", args: []string{"--url", h.url, "--user", "alice", "--password-stdin"}, wantErr: "empty password"},
		{name: "token and password", args: []string{"--token", "x", "--password", "y"}, wantErr: "none of the others can be"},
		{name: "token and user", args: []string{"--token", "x", "--user", "y"}, wantErr: "none of the others can be"},
		{name: "not an HTTP URL", args: []string{"--url", "ftp://hub", "--user", "alice", "--password", "x"},
			wantErr: `hub URL "ftp://hub": want http://HOST:PORT`},
		{name: "hub not running", args: []string{"--url", "http://127.0.0.1:1", "--user", "alice", "--password", "x"},
			wantErr: "cannot reach the hub at http://127.0.0.1:1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(broker.EnvPrefix+k, v)
			}
			out, err := runGroup(t, tc.stdin, append([]string{"list"}, tc.args...)...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr == "" && out != listed:
				t.Fatalf("output %q, want %q", out, listed)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
