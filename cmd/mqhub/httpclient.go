package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqhub/mqhub/broker"
)

// defaultHubURL is where the commands that talk to a running hub find its
// HTTP listener by default: serve's --http-addr on this machine.
const defaultHubURL = "http://127.0.0.1:8080"

// hubRequestTimeout bounds one request to the hub, so that a hub that
// accepts the connection and never answers does not hang the command.
const hubRequestTimeout = 30 * time.Second

// hubFlags are the flags of the commands that talk to a running hub's
// HTTP API: where it is and who the caller is. Each falls back to an
// environment variable (MQHUB_URL, MQHUB_USER, MQHUB_PASSWORD,
// MQHUB_TOKEN) when not given.
type hubFlags struct {
	url   string
	user  string
	token string
	pw    passwordFlags
}

// register adds the flags to cmd as persistent flags, for its subcommands.
func (f *hubFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.url, "url", defaultHubURL, "the hub's HTTP address (env "+broker.EnvPrefix+"URL)")
	pf.StringVar(&f.user, "user", "", "log in as this user (env "+broker.EnvPrefix+"USER)")
	pf.StringVar(&f.pw.password, "password", "", "the user's password (visible in the process list and shell history; prefer --password-stdin or env "+broker.EnvPrefix+"PASSWORD)")
	pf.BoolVar(&f.pw.stdin, "password-stdin", false, "read the password from the first line of stdin")
	pf.StringVar(&f.token, "token", "", "log in with this JWT instead of a user and password (env "+broker.EnvPrefix+"TOKEN)")
	cmd.MarkFlagsMutuallyExclusive("password", "password-stdin", "token")
	cmd.MarkFlagsMutuallyExclusive("user", "token")
}

// flagOrEnv is the value of a flag the user gave, else of the environment
// variable MQHUB_<env>, else the flag's default.
func flagOrEnv(cmd *cobra.Command, flag, value, env string) string {
	if !cmd.Flags().Changed(flag) {
		if v := os.Getenv(broker.EnvPrefix + env); v != "" {
			return v
		}
	}
	return value
}

// client returns a client of the hub the flags name, logged in as they
// say. Flags win over the environment: --user or a password flag means
// a password login even when MQHUB_TOKEN is set.
func (f *hubFlags) client(cmd *cobra.Command) (*hubClient, error) {
	raw := flagOrEnv(cmd, "url", f.url, "URL")
	base, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("hub URL %q: want http://HOST:PORT or https://HOST:PORT", raw)
	}
	c := &hubClient{base: base.String(), http: &http.Client{Timeout: hubRequestTimeout}}
	passwordGiven := cmd.Flags().Changed("user") || cmd.Flags().Changed("password") || f.pw.stdin
	if token := flagOrEnv(cmd, "token", f.token, "TOKEN"); token != "" && !passwordGiven {
		c.authorization = "Bearer " + token
		return c, nil
	}
	user := flagOrEnv(cmd, "user", f.user, "USER")
	if user == "" {
		return nil, errors.New("no credentials: give --user (or " + broker.EnvPrefix + "USER) and a password, or --token (or " + broker.EnvPrefix + "TOKEN)")
	}
	pw, err := f.password(cmd)
	if err != nil {
		return nil, err
	}
	c.authorization = "Basic " + base64.StdEncoding.EncodeToString(append([]byte(user+":"), pw...))
	return c, nil
}

// password returns the login password from --password or
// --password-stdin, else MQHUB_PASSWORD, else asks once on the terminal.
func (f *hubFlags) password(cmd *cobra.Command) ([]byte, error) {
	var pw []byte
	switch {
	case cmd.Flags().Changed("password") || f.pw.stdin:
		p, err := f.pw.read(cmd)
		if err != nil {
			return nil, err
		}
		pw = p
	case os.Getenv(broker.EnvPrefix+"PASSWORD") != "":
		pw = []byte(os.Getenv(broker.EnvPrefix + "PASSWORD"))
	default:
		in, ok := cmd.InOrStdin().(*os.File)
		if !ok || !term.IsTerminal(int(in.Fd())) {
			return nil, errors.New("no password: give --password-stdin, --password or " + broker.EnvPrefix + "PASSWORD")
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		p, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		pw = p
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
}

// hubClient calls a running hub's JSON API.
type hubClient struct {
	base          string // scheme://host[:port][/prefix], no trailing slash
	authorization string // the Authorization header of every request
	http          *http.Client
}

// hubError is an error answer of the hub: its message and HTTP status.
type hubError struct {
	Status  int
	Message string
	status  string // "404 Not Found"
}

func (e *hubError) Error() string { return fmt.Sprintf("%s (HTTP %s)", e.Message, e.status) }

// do sends a request with in as its JSON body (none if nil) and decodes
// the JSON answer into out (if not nil). An answer other than 2xx is a
// *hubError with the hub's message.
func (c *hubClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", c.authorization)
	resp, err := c.http.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // without the method and URL, said below
		}
		return fmt.Errorf("cannot reach the hub at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer from the hub: %w", method, path, err)
	}
	return nil
}

// responseError reads an error answer: the hub's {"error": "..."}, else
// the first line of whatever else answered (a proxy, another server).
func responseError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	e := &hubError{Status: resp.StatusCode, status: resp.Status}
	var msg struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &msg) == nil && msg.Error != "" {
		e.Message = msg.Error
		return e
	}
	line, _, _ := bufio.NewReader(bytes.NewReader(raw)).ReadLine()
	e.Message = strings.TrimSpace(string(line))
	if len(e.Message) > 200 {
		e.Message = strings.ToValidUTF8(e.Message[:200], "") + "..."
	}
	if e.Message == "" {
		e.Message = "no error message"
	}
	return e
}
