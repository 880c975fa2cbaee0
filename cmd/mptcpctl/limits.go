package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

func (a *app) limitsCmd() *cobra.Command {
	c := group("limits", "Show and set the limits of the kernel's path manager",
		`The limits bound, per connection, how many additional subflows the
kernel's path manager opens or accepts (subflows) and how many addresses
announced by the peer it accepts (add_addr_accepted). Each is 0 to 8.`)
	c.AddCommand(a.limitsShowCmd(), a.limitsSetCmd())
	return c
}

func (a *app) limitsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show",
		Short:             "Show the limits",
		Long:              `limits show prints the limits, and whether the running policy states them or derives them.`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := rpc(a, cmd, "getting the limits", func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.GetLimitsResponse, error) {
				return c.GetLimits(ctx, &mptcpdv1.GetLimitsRequest{})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			source := "derived from the policy"
			if resp.GetExplicit() {
				source = "stated in the policy"
			}
			return a.printLimits(resp.GetLimits(), source)
		},
	}
}

func (a *app) printLimits(l *mptcpdv1.Limits, source string) error {
	t := newTable(a.stdout)
	t.row("subflows", num(l.GetSubflows()))
	t.row("add_addr_accepted", num(l.GetAddAddrAccepted()))
	if source != "" {
		t.row("source", source)
	}
	return t.flush()
}

func (a *app) limitsSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set [subflows N] [add_addr_accepted N]",
		Short: "Set the limits",
		Long: `limits set sets one limit or both, each 0 to 8; a limit not given keeps
its current value. The limits become explicit in the running policy.`,
		Example: `  mptcpctl limits set subflows 4 add_addr_accepted 4
  mptcpctl limits set subflows 2`,
		Annotations: map[string]string{
			annAction: "changing limits",
			annMode:   "limits belong to the kernel mode; `mptcpctl status` shows the mode in use",
		},
		Args:              minArgs(2, "subflows N, add_addr_accepted N, or both"),
		ValidArgsFunction: a.completeLimitsSet,
		RunE: func(cmd *cobra.Command, args []string) error {
			var subflows, accepted *uint32
			err := parseWords(args, []keyword{
				{"subflows", "N", func(v string) error {
					n, err := parseLimit("subflows", v)
					subflows = &n
					return err
				}},
				{"add_addr_accepted", "N", func(v string) error {
					n, err := parseLimit("add_addr_accepted", v)
					accepted = &n
					return err
				}},
			}, nil, "subflows N or add_addr_accepted N")
			if err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			ctx, cancel := a.call(cmd.Context())
			defer cancel()
			limits := &mptcpdv1.Limits{}
			if subflows == nil || accepted == nil {
				cur, err := c.GetLimits(ctx, &mptcpdv1.GetLimitsRequest{})
				if err != nil {
					return fmt.Errorf("getting the limits to keep the one not given: %w", err)
				}
				if l := cur.GetLimits(); l != nil {
					limits = proto.CloneOf(l)
				}
			}
			if subflows != nil {
				limits.Subflows = *subflows
			}
			if accepted != nil {
				limits.AddAddrAccepted = *accepted
			}
			resp, err := c.SetLimits(ctx, &mptcpdv1.SetLimitsRequest{Limits: limits})
			if err != nil {
				return fmt.Errorf("setting the limits: %w", err)
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printLimits(resp.GetLimits(), "")
		},
	}
}
