package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mptcpd/mptcpd/genl"
	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// Annotations shared by the commands that change endpoints.
func endpointAnnotations() map[string]string {
	return map[string]string{
		annAction: "changing endpoints",
		annSee:    "`mptcpctl endpoint show` lists the endpoints",
		annMode:   "endpoints belong to the kernel mode; `mptcpctl status` shows the mode in use",
	}
}

func (a *app) endpointCmd() *cobra.Command {
	c := group("endpoint", "Show and change the endpoints of the kernel's path manager",
		`An endpoint is a local address the kernel's in-kernel path manager may
use: to open subflows from (subflow, fullmesh), to announce to peers
(signal), to keep as a backup path (backup). mptcpd derives endpoints from
interface addresses by its policy, and adds those asked for here; others
come from ip mptcp, NetworkManager or the kernel itself. The OWNER column
says which: policy, api or foreign.`, "ep")
	c.AddCommand(a.endpointAddCmd(), a.endpointDeleteCmd(), a.endpointChangeCmd(), a.endpointShowCmd(), a.endpointFlushCmd())
	return c
}

func (a *app) endpointAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "add ADDRESS [port PORT] [dev IFNAME] [id ID] [signal|subflow|backup|fullmesh|laminar ...]",
		Short: "Add an endpoint",
		Long: `endpoint add adds ADDRESS as an endpoint that mptcpd keeps until it is
deleted (or mptcpd stops). The words after the address are those of
ip-mptcp(8), in any order:

    port PORT     the port announced with a signal endpoint, and listened on
    dev IFNAME    the interface the endpoint is bound to
    id ID         the endpoint's ID, 1 to 255; by default mptcpd picks one
    signal        announce the address to peers (ADD_ADDR)
    subflow       open a subflow from the address to the peer
    backup        subflows from the address are backup paths
    fullmesh      open a subflow from the address to every peer address
    laminar       use the address once per connection towards announced
                  peer addresses (Linux 6.18 and later)

Give signal, subflow or both. Flags may also be joined by commas:
signal,backup.`,
		Example: `  mptcpctl endpoint add 192.0.2.10 dev eth1 subflow
  mptcpctl endpoint add 2001:db8::10 id 7 signal port 8443
  mptcpctl endpoint add 198.51.100.4 subflow backup`,
		Annotations:       endpointAnnotations(),
		Args:              minArgs(1, "ADDRESS and then ip-mptcp words: port PORT, dev IFNAME, id ID, flags"),
		ValidArgsFunction: a.completeEndpointAdd,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseEndpointAdd(args)
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("adding endpoint %s", req.GetAddress()), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.CreateEndpointResponse, error) {
				return c.CreateEndpoint(ctx, req)
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printEndpoints(resp.GetEndpoint())
		},
	}
}

// parseEndpointAdd reads ADDRESS [port PORT] [dev IFNAME] [id ID] [FLAG...].
func parseEndpointAdd(args []string) (*mptcpdv1.CreateEndpointRequest, error) {
	ip, err := parseAddr("ADDRESS", args[0])
	if err != nil {
		return nil, err
	}
	req := &mptcpdv1.CreateEndpointRequest{Address: ip.String()}
	var flags genl.EndpointFlags
	err = parseWords(args[1:], []keyword{
		{"port", "PORT", func(v string) (err error) { req.Port, err = parsePort("port", v); return err }},
		{"dev", "IFNAME", func(v string) (err error) { req.InterfaceName, err = parseIfName(v); return err }},
		{"id", "ID", func(v string) (err error) { req.Id, err = parseID("id", v, 1); return err }},
	}, func(w string) (bool, error) {
		f, ok, err := parseFlagWord(w)
		flags |= f
		return ok, err
	}, "port PORT, dev IFNAME, id ID, or a flag: "+strings.Join(requestFlagWords(), ", "))
	if err != nil {
		return nil, err
	}
	switch {
	case flags&(genl.FlagSignal|genl.FlagSubflow) == 0:
		return nil, invalidf("endpoint add %s: give signal, subflow or both; an endpoint with neither is never used", args[0])
	case flags&genl.FlagSignal != 0 && flags&genl.FlagFullmesh != 0:
		return nil, invalidf("endpoint add %s: signal and fullmesh cannot be combined (the kernel refuses it); use subflow fullmesh", args[0])
	}
	req.Flags = toEnums(flags)
	return req, nil
}

func (a *app) endpointDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete [id] ID",
		Aliases: []string{"del"},
		Short:   "Delete an endpoint",
		Long: `endpoint delete removes the endpoint with ID. Endpoints that mptcpd's
policy derives are refused: change the policy instead.`,
		Example:           `  mptcpctl endpoint delete 7`,
		Annotations:       endpointAnnotations(),
		Args:              minArgs(1, "the endpoint's ID"),
		ValidArgsFunction: a.completeEndpointID,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, rest, err := parseIDArgs("endpoint ID", args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return usageErrorf("endpoint delete takes one ID, not %q too", rest)
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("deleting endpoint %d", id), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.DeleteEndpointResponse, error) {
				return c.DeleteEndpoint(ctx, &mptcpdv1.DeleteEndpointRequest{Id: id})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printEndpoints(resp.GetEndpoint())
		},
	}
}

func (a *app) endpointChangeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "change [id] ID [backup|nobackup] [fullmesh|nofullmesh]",
		Aliases: []string{"set"},
		Short:   "Change an endpoint's backup and fullmesh flags",
		Long: `endpoint change sets (backup, fullmesh) or clears (nobackup,
nofullmesh) flags of the endpoint with ID. Flags not named stay as they
are.`,
		Example:           `  mptcpctl endpoint change 3 backup nofullmesh`,
		Annotations:       endpointAnnotations(),
		Args:              minArgs(2, "the endpoint's ID and backup, nobackup, fullmesh or nofullmesh"),
		ValidArgsFunction: a.completeEndpointChange,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseEndpointChange(args)
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("changing endpoint %d", req.GetId()), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.UpdateEndpointResponse, error) {
				return c.UpdateEndpoint(ctx, req)
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printEndpoints(resp.GetEndpoint())
		},
	}
}

// parseEndpointChange reads [id] ID and the change words.
func parseEndpointChange(args []string) (*mptcpdv1.UpdateEndpointRequest, error) {
	id, words, err := parseIDArgs("endpoint ID", args)
	if err != nil {
		return nil, err
	}
	req := &mptcpdv1.UpdateEndpointRequest{Id: id}
	set := func(field **bool, name string, v bool) error {
		if *field != nil {
			return usageErrorf("endpoint change: %s given twice (backup/nobackup, fullmesh/nofullmesh)", name)
		}
		*field = &v
		return nil
	}
	err = parseWords(words, nil, func(w string) (bool, error) {
		switch w {
		case "backup", "nobackup":
			return true, set(&req.Backup, "backup", w == "backup")
		case "fullmesh", "nofullmesh":
			return true, set(&req.Fullmesh, "fullmesh", w == "fullmesh")
		}
		return false, nil
	}, "backup, nobackup, fullmesh or nofullmesh")
	if err != nil {
		return nil, err
	}
	if req.Backup == nil && req.Fullmesh == nil {
		return nil, usageErrorf("endpoint change %d: say what to change: backup, nobackup, fullmesh or nofullmesh", id)
	}
	return req, nil
}

func (a *app) endpointShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show [[id] ID]",
		Aliases: []string{"list", "ls"},
		Short:   "Show the endpoints, or one",
		Long: `endpoint show lists the endpoints with their flags, interface, owner
(policy, api or foreign) and, for the policy's, the rule that selected
them. With an ID it shows that endpoint alone.`,
		Annotations:       map[string]string{annSee: "`mptcpctl endpoint show` lists the endpoints"},
		ValidArgsFunction: a.completeEndpointID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return a.listEndpoints(cmd)
			}
			id, rest, err := parseIDArgs("endpoint ID", args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return usageErrorf("endpoint show takes at most one ID, not %q too", rest)
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("getting endpoint %d", id), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.GetEndpointResponse, error) {
				return c.GetEndpoint(ctx, &mptcpdv1.GetEndpointRequest{Id: id})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printEndpoints(resp.GetEndpoint())
		},
	}
}

func (a *app) listEndpoints(cmd *cobra.Command) error {
	resp, err := rpc(a, cmd, "listing endpoints", func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.ListEndpointsResponse, error) {
		return c.ListEndpoints(ctx, &mptcpdv1.ListEndpointsRequest{})
	})
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.printJSON(resp)
	}
	return a.printEndpoints(resp.GetEndpoints()...)
}

func (a *app) endpointFlushCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "flush",
		Short: "Delete every endpoint the policy does not derive",
		Long: `endpoint flush deletes every endpoint that mptcpd's policy does not
derive (those added with endpoint add, and foreign ones) and lists them.
The policy's endpoints stay.`,
		Annotations:       endpointAnnotations(),
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := rpc(a, cmd, "flushing endpoints", func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.FlushEndpointsResponse, error) {
				return c.FlushEndpoints(ctx, &mptcpdv1.FlushEndpointsRequest{})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			if len(resp.GetEndpoints()) == 0 {
				_, err := fmt.Fprintln(a.stdout, "no endpoints to delete: those left are the policy's")
				return err
			}
			fmt.Fprintf(a.stdout, "deleted %d endpoints:\n", len(resp.GetEndpoints()))
			return a.printEndpoints(resp.GetEndpoints()...)
		},
	}
}
