package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show mptcpd's mode, the kernel's MPTCP and the last reconcile",
		Long: `status shows the mode mptcpd runs in and why, what the kernel offers
(the mptcp_pm family, net.mptcp.enabled, the path managers), how many
endpoints, connections and subflows there are, and how the last
reconcile of the policy with the kernel went.`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := rpc(a, cmd, "getting the status", func(ctx context.Context, c mptcpdv1.MptcpdServiceClient) (*mptcpdv1.GetStatusResponse, error) {
				return c.GetStatus(ctx, &mptcpdv1.GetStatusRequest{})
			})
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(resp)
			}
			return a.printStatus(resp.GetStatus())
		},
	}
}

func (a *app) printStatus(s *mptcpdv1.Status) error {
	t := newTable(a.stdout)
	mode := modeString(s.GetMode())
	if s.GetConfiguredMode() != "" {
		mode += " (configured: " + s.GetConfiguredMode() + ")"
	}
	t.row("mode:", mode)
	if s.GetModeReason() != "" {
		t.row("why:", s.GetModeReason())
	}
	t.row("ready:", yesNo(s.GetReady()))
	t.row("version:", s.GetVersion())
	netns := s.GetNetns()
	if netns == "" {
		netns = "(mptcpd's own)"
	}
	t.row("netns:", netns)
	started := a.timeString(s.GetStarted())
	if up := roundDuration(s.GetUptime()); up != "" {
		started += " (up " + up + ")"
	}
	t.row("started:", started)

	c := s.GetCapabilities()
	family := "missing"
	if c.GetFamily() {
		family = fmt.Sprintf("mptcp_pm version %d", c.GetFamilyVersion())
	}
	t.row("kernel:", fmt.Sprintf("%s, events %s, net.mptcp.enabled %s", family, yesNo(c.GetEventsGroup()), yesNo(c.GetEnabled())))
	pms := c.GetPathManager()
	if len(c.GetPathManagers()) > 0 {
		pms += " (available: " + strings.Join(c.GetPathManagers(), ", ") + ")"
	}
	t.row("path manager:", pms)

	n := s.GetCounts()
	t.row("endpoints:", fmt.Sprintf("%d policy, %d api, %d foreign", n.GetEndpointsPolicy(), n.GetEndpointsApi(), n.GetEndpointsForeign()))
	t.row("connections:", fmt.Sprintf("%d, with %d subflows", n.GetConnections(), n.GetSubflows()))
	t.row("kernel events:", num(n.GetKernelEvents()))
	t.row("reconciles:", fmt.Sprintf("%d, %d failed", n.GetReconcileRuns(), n.GetReconcileErrors()))
	if r := s.GetLastReconcile(); r != nil {
		last := fmt.Sprintf("%s after %s: %d changes in %s", a.timeString(r.GetTime()), r.GetTrigger(), r.GetChanges(), durationString(r.GetTook()))
		if r.GetError() != "" {
			last += "; failed: " + r.GetError()
		}
		t.row("last reconcile:", last)
	}
	return t.flush()
}
