package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/storage"
)

// runMQHub runs the root command in process with stdin and returns what
// it wrote to stdout.
func runMQHub(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func openTestStore(t *testing.T, dataDir string) *storage.Store {
	t.Helper()
	s, err := storage.Open(storage.Options{Dir: storeDir(dataDir), Logger: zerolog.Nop(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUserCommands runs a sequence of user commands against one data
// directory, then checks the store they leave.
func TestUserCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	steps := []struct {
		name    string
		stdin   string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "list before any store", args: []string{"list"}, wantErr: "no store in " + dir},
		{name: "passwd before any store", args: []string{"passwd", "alice", "--password", "x"}, wantErr: "no store in"},
		{name: "add admin", args: []string{"add", "alice", "--password", "s3cret", "--admin"}, wantOut: "user alice added"},
		{name: "add existing", args: []string{"add", "alice", "--password", "x"}, wantErr: `user "alice" already exists`},
		{name: "add from stdin", stdin: "hunter2\nignored\n", args: []string{"add", "bob", "--password-stdin"}, wantOut: "user bob added"},
		{name: "add from stdin with CRLF", stdin: "pw\r\n", args: []string{"add", "carol", "--password-stdin"}, wantOut: "user carol added"},
		{name: "add from stdin without newline", stdin: "last", args: []string{"add", "dave", "--password-stdin"}, wantOut: "user dave added"},
		{name: "add empty stdin", stdin: "\n", args: []string{"add", "erin", "--password-stdin"}, wantErr: "empty password"},
		{name: "add without password", args: []string{"add", "erin"}, wantErr: "give --password or --password-stdin"},
		{name: "add both password flags", args: []string{"add", "erin", "--password", "x", "--password-stdin"}, wantErr: "none of the others can be"},
		{name: "add password over 72 bytes", args: []string{"add", "erin", "--password", strings.Repeat("x", 73)}, wantErr: "longer than 72 bytes"},
		{name: "add invalid name", args: []string{"add", "a/b", "--password", "x"}, wantErr: `user name "a/b" contains '/'`},
		{name: "add without name", args: []string{"add", "--password", "x"}, wantErr: "accepts 1 arg"},
		{name: "passwd", args: []string{"passwd", "alice", "--password", "n3w"}, wantOut: "password of user alice changed"},
		{name: "passwd from stdin", stdin: "n3w-bob\n", args: []string{"passwd", "bob", "--password-stdin"}, wantOut: "password of user bob changed"},
		{name: "passwd missing user", args: []string{"passwd", "nobody", "--password", "x"}, wantErr: `no user "nobody"`},
		{name: "del", args: []string{"del", "dave"}, wantOut: "user dave deleted"},
		{name: "del missing user", args: []string{"del", "dave"}, wantErr: `no user "dave"`},
	}
	for _, st := range steps {
		args := append(append([]string{"user"}, st.args...), "--data-dir", dir)
		out, err := runMQHub(t, st.stdin, args...)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: error %v, want one containing %q", st.name, err, st.wantErr)
		case !strings.Contains(out, st.wantOut):
			t.Fatalf("%s: output %q, want %q", st.name, out, st.wantOut)
		}
	}

	out, err := runMQHub(t, "", "user", "list", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "$2") {
		t.Fatalf("list shows a hash:\n%s", out)
	}
	var rows [][]string
	for line := range strings.Lines(out) {
		rows = append(rows, strings.Fields(line))
	}
	if len(rows) != 4 || strings.Join(rows[0], " ") != "NAME ADMIN CREATED" {
		t.Fatalf("list output:\n%s", out)
	}
	for i, want := range [][2]string{{"alice", "yes"}, {"bob", "no"}, {"carol", "no"}} {
		row := rows[i+1]
		if len(row) != 3 || row[0] != want[0] || row[1] != want[1] || !strings.HasSuffix(row[2], "Z") {
			t.Fatalf("list row %d = %q, want %s %s <RFC 3339 time>", i+1, row, want[0], want[1])
		}
	}

	s := openTestStore(t, dir)
	defer s.Close()
	for _, tc := range []struct {
		user, pw, oldPW string
		admin           bool
	}{
		{"alice", "n3w", "s3cret", true},
		{"bob", "n3w-bob", "hunter2", false},
		{"carol", "pw", "pw\r", false},
	} {
		u, err := s.GetUser(tc.user)
		if err != nil {
			t.Fatal(err)
		}
		if !storage.CheckPassword(u.PasswordHash, []byte(tc.pw)) || storage.CheckPassword(u.PasswordHash, []byte(tc.oldPW)) {
			t.Errorf("%s: the stored hash does not match %q alone", tc.user, tc.pw)
		}
		if u.Admin != tc.admin || u.Created == 0 {
			t.Errorf("%s: %+v", tc.user, u)
		}
	}
	if _, err := s.GetUser("dave"); err == nil {
		t.Error("dave was not deleted")
	}
}

// TestUserCommandsWhileHubRuns holds the store open, as a running hub
// does, and checks every command says so instead of Badger's message.
func TestUserCommandsWhileHubRuns(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	defer s.Close()
	want := "the hub is running on " + dir + ": stop it, or use the HTTP admin API"
	for _, args := range [][]string{
		{"add", "alice", "--password", "x"},
		{"passwd", "alice", "--password", "x"},
		{"del", "alice"},
		{"list"},
	} {
		_, err := runMQHub(t, "", append(append([]string{"user"}, args...), "--data-dir", dir)...)
		if err == nil || err.Error() != want {
			t.Errorf("user %s: error %v, want %q", args[0], err, want)
		}
	}
}

// TestUserDataDir checks the data directory comes from --data-dir, else
// MQHUB_DATA_DIR, else the same default as serve.
func TestUserDataDir(t *testing.T) {
	serveDefault := newServeCmd().Flags().Lookup("data-dir").DefValue
	userDefault := newUserCmd().PersistentFlags().Lookup("data-dir").DefValue
	if userDefault != serveDefault {
		t.Fatalf("user --data-dir defaults to %q, serve to %q", userDefault, serveDefault)
	}

	env, flag := t.TempDir(), t.TempDir()
	t.Setenv("MQHUB_DATA_DIR", env)
	if _, err := runMQHub(t, "", "user", "add", "alice", "--password", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(storeDir(env)); err != nil {
		t.Fatalf("MQHUB_DATA_DIR ignored: %v", err)
	}
	if _, err := runMQHub(t, "", "user", "add", "alice", "--password", "x", "--data-dir", flag); err != nil {
		t.Fatalf("--data-dir does not win over MQHUB_DATA_DIR: %v", err)
	}
}
