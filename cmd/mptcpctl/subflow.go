package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// connAnnotations are those of the per-connection commands, which need
// the userspace mode.
func connAnnotations() map[string]string {
	return map[string]string{
		annAction: "changing connections",
		annSee:    "`mptcpctl connection show TOKEN` shows a connection's subflows",
		annMode:   "per-connection commands need mptcpd in userspace mode (mode = \"userspace\"); `mptcpctl status` shows the mode in use",
	}
}

func (a *app) subflowCmd() *cobra.Command {
	c := group("subflow", "Open and close the subflows of a connection (userspace mode)",
		`In userspace mode mptcpd is the path manager and connections get the
subflows it, or you, ask for. subflow add opens one, subflow delete closes
one, subflow backup sets or clears a subflow's backup flag. TOKEN names
the connection (decimal, or hex after 0x; see connection list).`, "sf")
	c.AddCommand(a.subflowAddCmd(), a.subflowDeleteCmd(), a.subflowBackupCmd())
	return c
}

func (a *app) subflowAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "add TOKEN LOCAL[:PORT] REMOTE:PORT [id ID] [backup] [dev IFNAME]",
		Short: "Open a subflow on a connection",
		Long: `subflow add opens a subflow of the connection TOKEN from the local
address LOCAL (and port, if given) to REMOTE:PORT. Write IPv6 addresses
with a port in brackets: [2001:db8::1]:443. The words after them:

    id ID        the local address's ID, as announced to the peer (1 to 255);
                 leave it out for the initial subflow's address (ID 0)
    backup       mark the subflow backup
    dev IFNAME   bind the subflow to the interface`,
		Example: `  mptcpctl subflow add 0x1f2e3d4c 198.51.100.7 203.0.113.5:443 id 2
  mptcpctl subflow add 0x1f2e3d4c 2001:db8:1::7 [2001:db8::5]:443 id 3 backup dev wwan0`,
		Annotations:       connAnnotations(),
		Args:              minArgs(3, "TOKEN, LOCAL[:PORT] and REMOTE:PORT, then id ID, backup, dev IFNAME"),
		ValidArgsFunction: a.completeSubflowAdd,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseSubflowAdd(args)
			if err != nil {
				return err
			}
			local := hostPort(req.GetLocalAddress(), req.GetLocalPort())
			remote := hostPort(req.GetRemoteAddress(), req.GetRemotePort())
			what := fmt.Sprintf("opening a subflow %s -> %s on connection %s", local, remote, formatToken(req.GetToken()))
			resp, err := rpc(a, cmd, what, func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.CreateSubflowResponse, error) {
				return c.CreateSubflow(ctx, req)
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			_, err = fmt.Fprintf(a.stdout, "opening subflow %s -> %s on connection %s\n", local, remote, formatToken(req.GetToken()))
			return err
		},
	}
}

// subflowEnds reads TOKEN LOCAL[:PORT] REMOTE:PORT, the local port
// optional when localPortOptional.
func subflowEnds(args []string, localPortOptional bool) (token uint32, local netip.Addr, lport uint32, remote netip.Addr, rport uint32, err error) {
	if token, err = parseToken(args[0]); err != nil {
		return
	}
	if local, lport, err = parseAddrPort("LOCAL", args[1], localPortOptional); err != nil {
		return
	}
	if remote, rport, err = parseAddrPort("REMOTE", args[2], false); err != nil {
		return
	}
	if local.Is4() != remote.Is4() {
		err = invalidf("LOCAL %s and REMOTE %s are of different families: give both IPv4 or both IPv6", local, remote)
	}
	return
}

func parseSubflowAdd(args []string) (*mptcpdv1.CreateSubflowRequest, error) {
	token, local, lport, remote, rport, err := subflowEnds(args, true)
	if err != nil {
		return nil, err
	}
	req := &mptcpdv1.CreateSubflowRequest{
		Token:         token,
		LocalAddress:  local.String(),
		LocalPort:     lport,
		RemoteAddress: remote.String(),
		RemotePort:    rport,
	}
	err = parseWords(args[3:], []keyword{
		{"id", "ID", func(v string) (err error) { req.LocalId, err = parseID("id", v, 0); return err }},
		{"dev", "IFNAME", func(v string) (err error) { req.InterfaceName, err = parseIfName(v); return err }},
	}, func(w string) (bool, error) {
		if w != "backup" {
			return false, nil
		}
		if req.Backup {
			return true, usageErrorf("backup given twice")
		}
		req.Backup = true
		return true, nil
	}, "id ID, backup or dev IFNAME")
	if err != nil {
		return nil, err
	}
	return req, nil
}

// parseSubflowKey reads TOKEN LOCAL:PORT REMOTE:PORT.
func parseSubflowKey(args []string) (*mptcpdv1.SubflowKey, error) {
	token, local, lport, remote, rport, err := subflowEnds(args, false)
	if err != nil {
		return nil, err
	}
	return &mptcpdv1.SubflowKey{
		Token:         token,
		LocalAddress:  local.String(),
		LocalPort:     lport,
		RemoteAddress: remote.String(),
		RemotePort:    rport,
	}, nil
}

func keyString(k *mptcpdv1.SubflowKey) string {
	return fmt.Sprintf("%s -> %s on connection %s",
		hostPort(k.GetLocalAddress(), k.GetLocalPort()), hostPort(k.GetRemoteAddress(), k.GetRemotePort()), formatToken(k.GetToken()))
}

func (a *app) subflowDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete TOKEN LOCAL:PORT REMOTE:PORT",
		Aliases: []string{"del"},
		Short:   "Close a subflow of a connection",
		Long: `subflow delete closes the subflow of the connection TOKEN between
LOCAL:PORT and REMOTE:PORT, as connection show lists them.`,
		Example:           `  mptcpctl subflow delete 0x1f2e3d4c 198.51.100.7:40312 203.0.113.5:443`,
		Annotations:       connAnnotations(),
		Args:              exactArgs(3, "TOKEN LOCAL:PORT REMOTE:PORT"),
		ValidArgsFunction: a.completeSubflowKey,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := parseSubflowKey(args)
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("closing subflow %s", keyString(key)), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.DestroySubflowResponse, error) {
				return c.DestroySubflow(ctx, &mptcpdv1.DestroySubflowRequest{Subflow: key})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			_, err = fmt.Fprintf(a.stdout, "closing subflow %s\n", keyString(key))
			return err
		},
	}
}

func (a *app) subflowBackupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup TOKEN LOCAL:PORT REMOTE:PORT on|off",
		Short: "Set or clear a subflow's backup flag",
		Long: `subflow backup marks the subflow of the connection TOKEN between
LOCAL:PORT and REMOTE:PORT as a backup path (on) or a regular one (off),
and tells the peer (MP_PRIO).`,
		Example:           `  mptcpctl subflow backup 0x1f2e3d4c 198.51.100.7:40312 203.0.113.5:443 on`,
		Annotations:       connAnnotations(),
		Args:              exactArgs(4, "TOKEN LOCAL:PORT REMOTE:PORT on|off"),
		ValidArgsFunction: a.completeSubflowKey,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := parseSubflowKey(args)
			if err != nil {
				return err
			}
			backup, err := parseOnOff("backup", args[3])
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("setting backup %s on subflow %s", args[3], keyString(key)), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.SetSubflowBackupResponse, error) {
				return c.SetSubflowBackup(ctx, &mptcpdv1.SetSubflowBackupRequest{Subflow: key, Backup: backup})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			_, err = fmt.Fprintf(a.stdout, "backup %s for subflow %s\n", args[3], keyString(key))
			return err
		},
	}
}

func (a *app) announceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "announce TOKEN ADDRESS id ID [port PORT]",
		Short: "Announce a local address to a connection's peer (userspace mode)",
		Long: `announce sends ADD_ADDR on the connection TOKEN: it tells the peer it
may open subflows to ADDRESS (and PORT, if given), known by the address
ID ID (1 to 255). withdraw takes the announcement back.`,
		Example:           `  mptcpctl announce 0x1f2e3d4c 198.51.100.7 id 2`,
		Annotations:       connAnnotations(),
		Args:              minArgs(4, "TOKEN ADDRESS id ID [port PORT]"),
		ValidArgsFunction: a.completeAnnounce,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseAnnounce(args)
			if err != nil {
				return err
			}
			addr := hostPort(req.GetAddress(), req.GetPort())
			resp, err := rpc(a, cmd, fmt.Sprintf("announcing %s on connection %s", addr, formatToken(req.GetToken())), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.AnnounceResponse, error) {
				return c.Announce(ctx, req)
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			_, err = fmt.Fprintf(a.stdout, "announced %s as id %d on connection %s\n", addr, req.GetId(), formatToken(req.GetToken()))
			return err
		},
	}
}

func parseAnnounce(args []string) (*mptcpdv1.AnnounceRequest, error) {
	token, err := parseToken(args[0])
	if err != nil {
		return nil, err
	}
	ip, err := parseAddr("ADDRESS", args[1])
	if err != nil {
		return nil, err
	}
	req := &mptcpdv1.AnnounceRequest{Token: token, Address: ip.String()}
	err = parseWords(args[2:], []keyword{
		{"id", "ID", func(v string) (err error) { req.Id, err = parseID("id", v, 1); return err }},
		{"port", "PORT", func(v string) (err error) { req.Port, err = parsePort("port", v); return err }},
	}, nil, "id ID or port PORT")
	if err != nil {
		return nil, err
	}
	if req.Id == 0 {
		return nil, usageErrorf("announce: give the address ID: id ID")
	}
	return req, nil
}

func (a *app) withdrawCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "withdraw TOKEN [id] ID",
		Aliases: []string{"remove"},
		Short:   "Withdraw an announced address from a connection's peer (userspace mode)",
		Long: `withdraw sends REMOVE_ADDR on the connection TOKEN for the address
announced with ID: the peer stops using it and closes its subflows.`,
		Example:           `  mptcpctl withdraw 0x1f2e3d4c 2`,
		Annotations:       connAnnotations(),
		Args:              minArgs(2, "TOKEN and the announced address ID"),
		ValidArgsFunction: a.completeToken,
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := parseToken(args[0])
			if err != nil {
				return err
			}
			id, rest, err := parseIDArgs("address ID", args[1:])
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return usageErrorf("withdraw takes TOKEN and one ID, not %q too", rest)
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("withdrawing id %d on connection %s", id, formatToken(token)), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.WithdrawResponse, error) {
				return c.Withdraw(ctx, &mptcpdv1.WithdrawRequest{Token: token, Id: id})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			_, err = fmt.Fprintf(a.stdout, "withdrew id %d on connection %s\n", id, formatToken(token))
			return err
		},
	}
}
