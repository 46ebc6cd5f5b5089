package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newGroupCmd returns `mqhub group`: the groups of a running hub, managed
// through its HTTP API as one of its users. Unlike `mqhub user` it needs
// the hub running, and it can do only what that user may do.
func newGroupCmd() *cobra.Command {
	hub := &hubFlags{}
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Manage groups on a running hub (through its HTTP API)",
		Long: `List, show, create, rename and delete groups, and add and remove members,
on a running hub, through its HTTP API.

The commands act as a user of the hub: --user with --password-stdin,
--password or MQHUB_PASSWORD (else a prompt on the terminal), or a JWT
with --token. Each flag falls back to an environment variable: MQHUB_URL,
MQHUB_USER, MQHUB_PASSWORD, MQHUB_TOKEN. A user sees the groups it is a
member of; the owner of a group and admins may change it; any member may
leave (remove itself). Admins see every group with list --all.`,
	}
	hub.register(cmd)
	cmd.AddCommand(newGroupListCmd(hub), newGroupShowCmd(hub), newGroupCreateCmd(hub), newGroupRenameCmd(hub),
		newGroupDeleteCmd(hub), newGroupAddCmd(hub), newGroupRemoveCmd(hub))
	return cmd
}

// group is a group as the hub's API shows it.
type group struct {
	Name    string   `json:"name"`
	Title   string   `json:"title"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
	Created string   `json:"created"`
}

// groupPath is the API path of a group, or of something under it.
func groupPath(name string, under ...string) string {
	p := "/v1/groups/" + url.PathEscape(name)
	for _, u := range under {
		p += "/" + url.PathEscape(u)
	}
	return p
}

func members(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}

func newGroupListCmd(hub *hubFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--all]",
		Short: "List your groups: name, title, number of members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			path := "/v1/groups"
			if all {
				path += "?all=1"
			}
			var groups []group
			if err := c.do(cmd.Context(), http.MethodGet, path, nil, &groups); err != nil {
				return err
			}
			for _, g := range groups {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", g.Name, g.Title, members(len(g.Members)))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every group of the hub, not only yours (admins only)")
	return cmd
}

func newGroupShowCmd(hub *hubFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a group: title, owner, creation time and members",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			var g group
			if err := c.do(cmd.Context(), http.MethodGet, groupPath(args[0]), nil, &g); err != nil {
				return err
			}
			printGroup(cmd.OutOrStdout(), g)
			return nil
		},
	}
}

// printGroup writes a group's fields, then its members one a line.
func printGroup(w io.Writer, g group) {
	created := g.Created
	if t, err := time.Parse(time.RFC3339Nano, g.Created); err == nil {
		created = t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "name:     %s\ntitle:    %s\nowner:    %s\ncreated:  %s\nmembers:  %d\n",
		g.Name, g.Title, g.Owner, created, len(g.Members))
	for _, m := range g.Members {
		if m == g.Owner {
			m += " (owner)"
		}
		fmt.Fprintf(w, "  %s\n", m)
	}
}

func newGroupCreateCmd(hub *hubFlags) *cobra.Command {
	var title string
	var memberNames []string
	cmd := &cobra.Command{
		Use:   "create NAME [--title T] [--member U ...]",
		Short: "Create a group; you own it and are a member",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			req := map[string]any{"name": args[0], "title": title, "members": memberNames}
			if memberNames == nil {
				req["members"] = []string{}
			}
			var g group
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/groups", req, &g); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group %s created (owner %s, %s)\n", g.Name, g.Owner, members(len(g.Members)))
			return nil
		},
	}
	cmd.Flags().StringVar(&title, "title", "", "the group's title")
	cmd.Flags().StringArrayVar(&memberNames, "member", nil, "a member besides you (repeat for more)")
	return cmd
}

func newGroupRenameCmd(hub *hubFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rename NAME TITLE",
		Short: "Change a group's title (owner or admin)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			var g group
			if err := c.do(cmd.Context(), http.MethodPatch, groupPath(args[0]), map[string]string{"title": args[1]}, &g); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group %s renamed to %q\n", g.Name, g.Title)
			return nil
		},
	}
}

func newGroupDeleteCmd(hub *hubFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a group (owner or admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, groupPath(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group %s deleted\n", args[0])
			return nil
		},
	}
}

func newGroupAddCmd(hub *hubFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME USER...",
		Short: "Add members to a group (owner or admin)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			var g group
			if err := c.do(cmd.Context(), http.MethodPost, groupPath(args[0], "members"), map[string][]string{"users": args[1:]}, &g); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group %s: added %s (%s)\n", g.Name, strings.Join(args[1:], ", "), members(len(g.Members)))
			return nil
		},
	}
}

// newGroupRemoveCmd removes members one request each, as the API does; it
// stops at the first failure, after reporting the removals done.
func newGroupRemoveCmd(hub *hubFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME USER...",
		Short: "Remove members from a group (owner or admin; anyone may remove themself)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client(cmd)
			if err != nil {
				return err
			}
			for _, user := range args[1:] {
				var g group
				if err := c.do(cmd.Context(), http.MethodDelete, groupPath(args[0], "members", user), nil, &g); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "group %s: removed %s (%s)\n", g.Name, user, members(len(g.Members)))
			}
			return nil
		},
	}
}
