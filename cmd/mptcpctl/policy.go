package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// maxPolicySize bounds a policy document, well under gRPC's default
// message size.
const maxPolicySize = 1 << 20

func (a *app) policyCmd() *cobra.Command {
	c := group("policy", "Show, check and apply mptcpd's policy",
		`The policy is the configuration document mptcpd runs by, in the language
of /etc/mptcpd/mptcpd.toml: its mode, its rules for turning interface
addresses into endpoints, its limits. policy show prints the running one;
policy check and policy apply take a new one, from a FILE or from
standard input (-), and print the plan: the endpoints it adds, removes
and changes, the limits before and after, and the addresses it leaves
out and why.`)
	c.AddCommand(a.policyShowCmd(), a.policyCheckCmd(), a.policyApplyCmd())
	return c
}

func (a *app) policyShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the running policy",
		Long: `policy show prints the running policy as a TOML document, after
comment lines saying where it came from and when it was applied. The
output is a valid policy: edit it and give it to policy apply.`,
		Example:           `  mptcpctl policy show > policy.toml`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := rpc(a, cmd, "getting the policy", func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.GetPolicyResponse, error) {
				return c.GetPolicy(ctx, &mptcpdv1.GetPolicyRequest{})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			fmt.Fprintf(a.stdout, "# source: %s\n", resp.GetSource())
			if applied := a.timeString(resp.GetApplied()); applied != "" {
				fmt.Fprintf(a.stdout, "# applied: %s\n", applied)
			}
			doc := resp.GetDocument()
			if doc != "" && !strings.HasSuffix(doc, "\n") {
				doc += "\n"
			}
			_, err = io.WriteString(a.stdout, doc)
			return err
		},
	}
}

func (a *app) policyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "check FILE",
		Aliases: []string{"validate"},
		Short:   "Check a policy and print what applying it would change",
		Long: `policy check has mptcpd check the policy in FILE (- for standard input)
and print what applying it now would change. Nothing is changed.`,
		Example:           `  mptcpctl policy check /etc/mptcpd/mptcpd.toml`,
		Args:              exactArgs(1, "one FILE (- for standard input)"),
		ValidArgsFunction: completeFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := a.readPolicy(args[0])
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("checking the policy in %s", args[0]), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.ValidatePolicyResponse, error) {
				return c.ValidatePolicy(ctx, &mptcpdv1.ValidatePolicyRequest{Document: doc})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printPlan(resp.GetPlan(), "the policy is valid; applying it now would change:", "the policy is valid; applying it now would change nothing")
		},
	}
}

func (a *app) policyApplyCmd() *cobra.Command {
	var dryRun bool
	c := &cobra.Command{
		Use:   "apply FILE [--dry-run]",
		Short: "Replace the running policy",
		Long: `policy apply replaces the running policy with the one in FILE (- for
standard input), all or nothing, and prints what it changed. With
--dry-run it only prints what it would change.`,
		Example: `  mptcpctl policy apply --dry-run new.toml
  mptcpctl policy show | sed 's/subflows = 2/subflows = 4/' | mptcpctl policy apply -`,
		Annotations:       map[string]string{annAction: "applying a policy"},
		Args:              exactArgs(1, "one FILE (- for standard input)"),
		ValidArgsFunction: completeFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := a.readPolicy(args[0])
			if err != nil {
				return err
			}
			resp, err := rpc(a, cmd, fmt.Sprintf("applying the policy in %s", args[0]), func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.ApplyPolicyResponse, error) {
				return c.ApplyPolicy(ctx, &mptcpdv1.ApplyPolicyRequest{Document: doc, DryRun: dryRun})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			if dryRun {
				return a.printPlan(resp.GetPlan(), "dry run; applying the policy would change:", "dry run; applying the policy would change nothing")
			}
			return a.printPlan(resp.GetPlan(), "applied the policy; changed:", "applied the policy; nothing changed")
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only print what would change")
	return c
}

// readPolicy reads a policy document from the file name, or standard
// input for "-".
func (a *app) readPolicy(name string) (string, error) {
	var r io.Reader = a.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return "", invalidf("reading the policy: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPolicySize+1))
	if err != nil {
		return "", fmt.Errorf("reading the policy from %s: %w", name, err)
	}
	if len(b) > maxPolicySize {
		return "", invalidf("policy %s is larger than %d bytes", name, maxPolicySize)
	}
	return string(b), nil
}

// printPlan writes a plan under head, or none when it changes nothing.
func (a *app) printPlan(p *mptcpdv1.Plan, head, none string) error {
	before, after := p.GetLimitsBefore(), p.GetLimitsAfter()
	limitsChange := before != nil && after != nil &&
		(before.GetSubflows() != after.GetSubflows() || before.GetAddAddrAccepted() != after.GetAddAddrAccepted())
	if len(p.GetChanges()) == 0 && !limitsChange {
		fmt.Fprintln(a.stdout, none)
	} else {
		fmt.Fprintln(a.stdout, head)
	}
	if len(p.GetChanges()) > 0 {
		t := newTable(a.stdout, append([]string{"ACTION"}, append(endpointHeader(), "REASON")...)...)
		for _, c := range p.GetChanges() {
			t.row(append([]string{actionString(c.GetAction())}, append(endpointRow(c.GetEndpoint()), c.GetReason())...)...)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if before != nil || after != nil {
		fmt.Fprintf(a.stdout, "limits: subflows %s, add_addr_accepted %s\n",
			limitChange(before.GetSubflows(), after.GetSubflows()),
			limitChange(before.GetAddAddrAccepted(), after.GetAddAddrAccepted()))
	}
	if len(p.GetSkipped()) > 0 {
		fmt.Fprintln(a.stdout, "\naddresses left out:")
		t := newTable(a.stdout, "ADDRESS", "DEV", "REASON")
		for _, s := range p.GetSkipped() {
			t.row(s.GetAddress(), s.GetInterfaceName(), s.GetReason())
		}
		return t.flush()
	}
	return nil
}

func limitChange(before, after uint32) string {
	if before == after {
		return num(after) + " (unchanged)"
	}
	return fmt.Sprintf("%d -> %d", before, after)
}

func actionString(a mptcpdv1.ChangeAction) string {
	switch a {
	case mptcpdv1.ChangeAction_CHANGE_ACTION_ADD:
		return "add"
	case mptcpdv1.ChangeAction_CHANGE_ACTION_REMOVE:
		return "remove"
	case mptcpdv1.ChangeAction_CHANGE_ACTION_UPDATE:
		return "change"
	}
	return "?"
}
