package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mptcpd/mptcpd/config"
	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// Dynamic shell completion. Values that live in mptcpd (endpoint IDs,
// connection tokens, subflows) are asked of it; when it cannot be reached
// the completion quietly offers nothing.

// completionTimeout bounds a question asked for completion: the shell is
// waiting.
const completionTimeout = 2 * time.Second

const noFiles = cobra.ShellCompDirectiveNoFileComp

// ask runs fn against the daemon for a completion, and gives up quietly.
func (a *app) ask(cmd *cobra.Command, fn func(context.Context, mptcpdv1.MptcpdServiceClient) []string) []string {
	c, err := a.connect()
	if err != nil {
		return nil
	}
	timeout := completionTimeout
	if a.timeout > 0 && a.timeout < timeout {
		timeout = a.timeout
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return fn(ctx, c)
}

// endpointIDs offers the endpoints' IDs, described by address and flags.
func (a *app) endpointIDs(cmd *cobra.Command) []string {
	return a.ask(cmd, func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) []string {
		resp, err := c.ListEndpoints(ctx, &mptcpdv1.ListEndpointsRequest{})
		if err != nil {
			return nil
		}
		var out []string
		for _, e := range resp.GetEndpoints() {
			desc := strings.TrimSpace(fmt.Sprintf("%s %s %s", hostPort(e.GetAddress(), e.GetPort()), flagString(e.GetFlags()), e.GetInterfaceName()))
			if o := ownerString(e.GetOwner()); o != "" {
				desc += " (" + o + ")"
			}
			out = append(out, cobra.CompletionWithDesc(num(e.GetId()), desc))
		}
		return out
	})
}

// tokens offers the connections' tokens, described by their addresses.
func (a *app) tokens(cmd *cobra.Command) []string {
	return a.ask(cmd, func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) []string {
		conns, err := listConnections(ctx, c, false)
		if err != nil {
			return nil
		}
		var out []string
		for _, c := range conns {
			desc := hostPort(c.GetLocalAddress(), c.GetLocalPort()) + " -> " + hostPort(c.GetRemoteAddress(), c.GetRemotePort())
			out = append(out, cobra.CompletionWithDesc(formatToken(c.GetToken()), desc))
		}
		return out
	})
}

// subflowEnds offers the local (which 0) or remote (which 1) ends of the
// subflows of the connection token names.
func (a *app) subflowEnds(cmd *cobra.Command, token string, which int) []string {
	t, err := parseToken(token)
	if err != nil {
		return nil
	}
	return a.ask(cmd, func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) []string {
		resp, err := c.GetConnection(ctx, &mptcpdv1.GetConnectionRequest{Token: t})
		if err != nil {
			return nil
		}
		var out []string
		seen := make(map[string]bool)
		for _, s := range resp.GetConnection().GetSubflows() {
			local := hostPort(s.GetLocalAddress(), s.GetLocalPort())
			remote := hostPort(s.GetRemoteAddress(), s.GetRemotePort())
			v, desc := local, "to "+remote
			if which == 1 {
				v, desc = remote, "from "+local
			}
			if !seen[v] {
				seen[v] = true
				out = append(out, cobra.CompletionWithDesc(v, desc))
			}
		}
		return out
	})
}

// completeToken completes the first argument with tokens.
func (a *app) completeToken(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, noFiles
	}
	return a.tokens(cmd), noFiles
}

// completeEndpointID completes [id] ID.
func (a *app) completeEndpointID(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 || (len(args) == 1 && args[0] == "id") {
		return a.endpointIDs(cmd), noFiles
	}
	return nil, noFiles
}

func (a *app) completeEndpointChange(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 || (len(args) == 1 && args[0] == "id") {
		return a.endpointIDs(cmd), noFiles
	}
	return unused(args, []string{"backup", "nobackup", "fullmesh", "nofullmesh"}), noFiles
}

// completeEndpointAdd offers the ip-mptcp words after the address.
func (a *app) completeEndpointAdd(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 || valueExpected(args, "port", "dev", "id") {
		return nil, noFiles
	}
	return unused(args, append([]string{"port", "dev", "id"}, requestFlagWords()...)), noFiles
}

func (a *app) completeLimitsSet(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if valueExpected(args, "subflows", "add_addr_accepted") {
		return []string{"0", "1", "2", "3", "4", "5", "6", "7", "8"}, noFiles
	}
	return unused(args, []string{"subflows", "add_addr_accepted"}), noFiles
}

func (a *app) completeSubflowAdd(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	switch {
	case len(args) == 0:
		return a.tokens(cmd), noFiles
	case len(args) < 3 || valueExpected(args, "id", "dev"):
		return nil, noFiles
	}
	return unused(args, []string{"id", "backup", "dev"}), noFiles
}

// completeSubflowKey completes TOKEN LOCAL:PORT REMOTE:PORT [on|off].
func (a *app) completeSubflowKey(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.tokens(cmd), noFiles
	case 1, 2:
		return a.subflowEnds(cmd, args[0], len(args)-1), noFiles
	case 3:
		if cmd.Name() == "backup" {
			return []string{"on", "off"}, noFiles
		}
	}
	return nil, noFiles
}

func (a *app) completeAnnounce(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	switch {
	case len(args) == 0:
		return a.tokens(cmd), noFiles
	case len(args) == 1 || valueExpected(args, "id", "port"):
		return nil, noFiles
	}
	return unused(args, []string{"id", "port"}), noFiles
}

// completeNetns offers the namespaces that have an mptcpd socket.
func (a *app) completeNetns(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	matches, _ := filepath.Glob(filepath.Join(a.socketDir, config.SocketName("*")))
	var out []string
	prefix, suffix, _ := strings.Cut(config.SocketName("*"), "*")
	for _, m := range matches {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), prefix), suffix)
		if fi, err := os.Stat(m); err == nil && fi.Mode().Type() == os.ModeSocket && name != "" {
			out = append(out, name)
		}
	}
	return out, noFiles
}

// completeFile completes a file name.
func completeFile(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, noFiles
	}
	return nil, cobra.ShellCompDirectiveDefault
}

// valueExpected says whether the last word is a keyword awaiting its
// value.
func valueExpected(args []string, keys ...string) bool {
	if len(args) == 0 {
		return false
	}
	last := args[len(args)-1]
	for _, k := range keys {
		if last == k {
			return true
		}
	}
	return false
}

// unused returns the words not yet in args.
func unused(args, words []string) []string {
	var out []string
	for _, w := range words {
		found := false
		for _, a := range args {
			if a == w {
				found = true
			}
		}
		if !found {
			out = append(out, w)
		}
	}
	return out
}
