package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/storage"
)

// newUserCmd returns `mqhub user`: offline management of the user store.
// It opens the store directly, so it works only while no hub runs on the
// data directory.
func newUserCmd() *cobra.Command {
	dataDir := broker.Default().DataDir
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the hub's users (while the hub is stopped)",
		Long: `Add, change, delete and list the users the hub authenticates.

These commands open the node's store directly, so they work only while the
hub is not running on that data directory; while it runs, use the HTTP
admin API. The data directory is --data-dir, else MQHUB_DATA_DIR, else
./data, as for serve.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", dataDir, "directory holding the node's data (as for serve)")
	dir := func(c *cobra.Command) string {
		if f := c.Flags().Lookup("data-dir"); f != nil && !f.Changed {
			if v := os.Getenv(broker.EnvPrefix + "DATA_DIR"); v != "" {
				return v
			}
		}
		return dataDir
	}
	cmd.AddCommand(newUserAddCmd(dir), newUserPasswdCmd(dir), newUserDelCmd(dir), newUserListCmd(dir))
	return cmd
}

// passwordFlags are the ways to give a password.
type passwordFlags struct {
	password string
	stdin    bool
}

func (p *passwordFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.password, "password", "", "the password (visible in the process list and shell history; prefer --password-stdin)")
	cmd.Flags().BoolVar(&p.stdin, "password-stdin", false, "read the password from the first line of stdin")
	cmd.MarkFlagsMutuallyExclusive("password", "password-stdin")
}

// read returns the password from the flag, from stdin, or by prompting
// on the terminal twice without echo.
func (p *passwordFlags) read(cmd *cobra.Command) ([]byte, error) {
	switch {
	case cmd.Flags().Changed("password"):
		return []byte(p.password), nil
	case p.stdin:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read password from stdin: %w", err)
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
	f, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("no password: give --password or --password-stdin")
	}
	prompt := func(label string) ([]byte, error) {
		fmt.Fprint(cmd.ErrOrStderr(), label)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return pw, err
	}
	pw, err := prompt("Password: ")
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	again, err := prompt("Again: ")
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	return pw, nil
}

func newUserAddCmd(dir func(*cobra.Command) string) *cobra.Command {
	var pw passwordFlags
	var admin bool
	cmd := &cobra.Command{
		Use:   "add NAME [--password P | --password-stdin] [--admin]",
		Short: "Add a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := storage.CheckUserName(name); err != nil {
				return userErr(err)
			}
			hash, err := hashFrom(cmd, &pw)
			if err != nil {
				return err
			}
			return withStore(cmd, dir(cmd), true, func(s *storage.Store) error {
				err := s.CreateUser(cmd.Context(), &storage.User{Name: name, PasswordHash: hash, Admin: admin})
				if errors.Is(err, storage.ErrExists) {
					return fmt.Errorf("user %q already exists (use `mqhub user passwd` to change the password)", name)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s added\n", name)
				return nil
			})
		},
	}
	pw.register(cmd)
	cmd.Flags().BoolVar(&admin, "admin", false, "make the user an administrator")
	return cmd
}

func newUserPasswdCmd(dir func(*cobra.Command) string) *cobra.Command {
	var pw passwordFlags
	cmd := &cobra.Command{
		Use:   "passwd NAME [--password P | --password-stdin]",
		Short: "Change a user's password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := storage.CheckUserName(name); err != nil {
				return userErr(err)
			}
			return withStore(cmd, dir(cmd), false, func(s *storage.Store) error {
				u, err := s.GetUser(name)
				if errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("no user %q", name)
				}
				if err != nil {
					return err
				}
				// Read the password only once the user is known to exist.
				if u.PasswordHash, err = hashFrom(cmd, &pw); err != nil {
					return err
				}
				// The hub is not running and we hold the store's lock:
				// nobody changes the user between GetUser and PutUser.
				if err := s.PutUser(cmd.Context(), u); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "password of user %s changed\n", name)
				return nil
			})
		},
	}
	pw.register(cmd)
	return cmd
}

func newUserDelCmd(dir func(*cobra.Command) string) *cobra.Command {
	return &cobra.Command{
		Use:   "del NAME",
		Short: "Delete a user and free the client IDs it owns",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := storage.CheckUserName(name); err != nil {
				return userErr(err)
			}
			return withStore(cmd, dir(cmd), false, func(s *storage.Store) error {
				err := s.DeleteUser(cmd.Context(), name)
				if errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("no user %q", name)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted\n", name)
				return nil
			})
		},
	}
}

func newUserListCmd(dir func(*cobra.Command) string) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the users: name, admin flag, creation time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, dir(cmd), false, func(s *storage.Store) error {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tADMIN\tCREATED")
				if err := s.ListUsers(func(u *storage.User) error {
					admin := "no"
					if u.Admin {
						admin = "yes"
					}
					created := time.Unix(0, u.Created).UTC().Format(time.RFC3339)
					_, err := fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, admin, created)
					return err
				}); err != nil {
					return err
				}
				return tw.Flush()
			})
		},
	}
}

// hashFrom reads the password the flags say and hashes it.
func hashFrom(cmd *cobra.Command, pw *passwordFlags) ([]byte, error) {
	p, err := pw.read(cmd)
	if err != nil {
		return nil, err
	}
	hash, err := storage.HashPassword(p)
	if err != nil {
		return nil, userErr(err)
	}
	return hash, nil
}

// userErr drops the package prefix from a validation error: the message
// is for the person at the terminal.
func userErr(err error) error {
	if errors.Is(err, storage.ErrInvalid) {
		return errors.New(strings.TrimPrefix(err.Error(), storage.ErrInvalid.Error()+": "))
	}
	return err
}

// storeDir is where broker.New keeps the store under the data directory.
func storeDir(dataDir string) string { return filepath.Join(dataDir, "store") }

// withStore opens the store under dataDir, runs fn and closes the store.
// Unless create is set, a data directory without a store is an error
// rather than a new empty store.
func withStore(cmd *cobra.Command, dataDir string, create bool, fn func(*storage.Store) error) (err error) {
	dir := storeDir(dataDir)
	if !create {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no store in %s (wrong --data-dir?)", dataDir)
		}
	}
	s, err := storage.Open(storage.Options{Dir: dir, Logger: zerolog.Nop(), GCInterval: -1})
	if err != nil {
		// Badger flocks its directory and does not wrap the error, so
		// the message is all there is to recognise.
		if strings.Contains(err.Error(), "directory lock") {
			return fmt.Errorf("the hub is running on %s: stop it, or use the HTTP admin API", dataDir)
		}
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(s)
}
