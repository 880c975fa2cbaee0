package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

func (a *app) connectionCmd() *cobra.Command {
	c := group("connection", "List MPTCP connections and show their subflows",
		`connection list and show report the host's MPTCP connections as the
kernel sees them: addresses, state, what the path manager did, bytes,
and each subflow with its address IDs, backup flags, state and RTT. The
TOKEN they show names a connection in the per-connection commands
(subflow, announce, withdraw, monitor --token).`, "conn")
	c.AddCommand(a.connectionListCmd(), a.connectionShowCmd())
	return c
}

func (a *app) connectionListCmd() *cobra.Command {
	var listeners bool
	c := &cobra.Command{
		Use:               "list",
		Aliases:           []string{"ls"},
		Short:             "List the MPTCP connections",
		Long:              `connection list lists the MPTCP connections, ordered by token; --listeners adds the listening sockets.`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conns, err := rpc(a, cmd, "listing connections", func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) ([]*mptcpdv1.Connection, error) {
				return listConnections(ctx, c, listeners)
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(&mptcpdv1.ListConnectionsResponse{Connections: conns})
			}
			t := newTable(a.stdout, "TOKEN", "LOCAL", "REMOTE", "STATE", "SUBFLOWS", "SENT", "RECEIVED")
			for _, c := range conns {
				state := c.GetState()
				if c.GetFallback() {
					state += " (fallback to TCP)"
				}
				if c.GetDatapath() == mptcpdv1.Datapath_DATAPATH_MPX {
					state += " (mpx to " + c.GetDestination() + ")"
				}
				t.row(formatToken(c.GetToken()),
					hostPort(c.GetLocalAddress(), c.GetLocalPort()),
					hostPort(c.GetRemoteAddress(), c.GetRemotePort()),
					state, num(uint32(len(c.GetSubflows()))),
					num(c.GetBytesSent()), num(c.GetBytesReceived()))
			}
			return t.flush()
		},
	}
	c.Flags().BoolVar(&listeners, "listeners", false, "list listening sockets too")
	return c
}

// listConnections reads every page of connections. Its errors do not say
// what was being done: the caller does.
func listConnections(ctx context.Context, c mptcpdv1.MptcpdServiceClient, listeners bool) ([]*mptcpdv1.Connection, error) {
	var all []*mptcpdv1.Connection
	req := &mptcpdv1.ListConnectionsRequest{Listeners: listeners}
	seen := make(map[string]bool)
	for {
		resp, err := c.ListConnections(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, resp.GetConnections()...)
		next := resp.GetNextPageToken()
		if next == "" {
			return all, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("mptcpd returned page token %q twice", next)
		}
		seen[next] = true
		req = &mptcpdv1.ListConnectionsRequest{Listeners: listeners, PageToken: next}
	}
}

func (a *app) connectionShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show TOKEN",
		Short:             "Show a connection and its subflows",
		Long:              `connection show prints the connection with TOKEN (decimal, or hex after 0x) and each of its subflows.`,
		Example:           `  mptcpctl connection show 0x1f2e3d4c`,
		Args:              exactArgs(1, "one TOKEN"),
		ValidArgsFunction: a.completeToken,
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := parseToken(args[0])
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("getting connection %s", formatToken(token)), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.GetConnectionResponse, error) {
				return c.GetConnection(ctx, &mptcpdv1.GetConnectionRequest{Token: token})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printConnection(resp.GetConnection())
		},
	}
}

func (a *app) printConnection(c *mptcpdv1.Connection) error {
	t := newTable(a.stdout)
	t.row("token:", formatToken(c.GetToken()))
	t.row("local:", hostPort(c.GetLocalAddress(), c.GetLocalPort()))
	t.row("remote:", hostPort(c.GetRemoteAddress(), c.GetRemotePort()))
	t.row("state:", c.GetState())
	t.row("fallback to TCP:", yesNo(c.GetFallback()))
	if c.GetDatapath() == mptcpdv1.Datapath_DATAPATH_MPX {
		side := "client"
		if c.GetConverterSide() {
			side = "converter"
		}
		t.row("datapath:", fmt.Sprintf("mpx session %#016x to %s, %s side", c.GetMpxToken(), c.GetDestination(), side))
	}
	if c.GetRule() != "" {
		side := "client"
		if c.GetServerSide() {
			side = "server"
		}
		t.row("policy:", fmt.Sprintf("rule %q, strategy %s, %s side, %d subflows wanted",
			c.GetRule(), c.GetStrategy(), side, c.GetSubflowsWanted()))
		t.row("announcements:", fmt.Sprintf("%d accepted, %d refused", c.GetAnnouncementsAccepted(), c.GetAnnouncementsRefused()))
	}
	t.row("path manager:", fmt.Sprintf("announced %d, accepted %d, local addresses used %d",
		c.GetAddAddrSignal(), c.GetAddAddrAccepted(), c.GetLocalAddrUsed()))
	t.row("bytes:", fmt.Sprintf("%d sent, %d received, %d acked, %d retransmitted",
		c.GetBytesSent(), c.GetBytesReceived(), c.GetBytesAcked(), c.GetBytesRetransmitted()))
	if c.GetUid() != 0 || c.GetInode() != 0 {
		t.row("socket:", fmt.Sprintf("uid %d, inode %d", c.GetUid(), c.GetInode()))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(c.GetSubflows()) == 0 {
		_, err := fmt.Fprintln(a.stdout, "\nno subflows")
		return err
	}
	fmt.Fprintf(a.stdout, "\n%d subflows:\n", len(c.GetSubflows()))
	t = newTable(a.stdout, "LOCAL", "REMOTE", "LOCID", "REMID", "BACKUP", "DEV", "STATE", "RTT", "SENT", "RECEIVED", "ACKED", "RETRANS")
	for _, s := range c.GetSubflows() {
		t.row(hostPort(s.GetLocalAddress(), s.GetLocalPort()),
			hostPort(s.GetRemoteAddress(), s.GetRemotePort()),
			num(s.GetLocalId()), num(s.GetRemoteId()),
			backupString(s.GetBackup(), s.GetRemoteBackup()),
			s.GetInterfaceName(), s.GetState(), durationString(s.GetRtt()),
			num(s.GetBytesSent()), num(s.GetBytesReceived()), num(s.GetBytesAcked()), num(s.GetRetransmits()))
	}
	return t.flush()
}

// backupString says which ends marked a subflow backup.
func backupString(local, remote bool) string {
	switch {
	case local && remote:
		return "both"
	case local:
		return "local"
	case remote:
		return "remote"
	}
	return "no"
}
