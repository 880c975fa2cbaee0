package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// snapshotEndLine is printed where the snapshot ends and live events begin.
const snapshotEndLine = "-- end of snapshot; live events follow --"

func (a *app) monitorCmd() *cobra.Command {
	var kinds, tokens []string
	c := &cobra.Command{
		Use:   "monitor [--kind KIND ...] [--token TOKEN ...]",
		Short: "Print events as they happen",
		Long: `monitor prints what happens, one line per event, as ip mptcp monitor
does: connections and subflows coming and going, announcements, interface
and address changes, and mptcpd's own changes to endpoints, limits and
policy. It starts with a snapshot of the current endpoints, interfaces
and connections (lines marked "snapshot"), then a line saying the
snapshot ended, then live events until interrupted (Ctrl-C).

--kind keeps only events of that kind, --token only events of that
connection; each may be repeated or take a comma-separated list. With -o
json every event is one JSON object on its own line. --timeout does not
apply: monitor runs until stopped.`,
		Example: `  mptcpctl monitor
  mptcpctl monitor --kind subflow-established,subflow-closed --token 0x1f2e3d4c
  mptcpctl monitor -o json | jq -c 'select(.kind == "EVENT_KIND_SUBFLOW_CLOSED")'`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := parseWatch(kinds, tokens)
			if err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			stream, err := c.Watch(ctx, req)
			if err != nil {
				return fmt.Errorf("watching events: %w", err)
			}
			for {
				ev, err := stream.Recv()
				switch {
				case ctx.Err() != nil:
					return nil // interrupted: the end the user asked for
				case errors.Is(err, io.EOF):
					return &exitError{code: exitUnreachable, err: errors.New("mptcpd ended the event stream (is it stopping?)")}
				case err != nil:
					return fmt.Errorf("watching events: %w", err)
				}
				if err := a.printEvent(ev); err != nil {
					return err
				}
			}
		},
	}
	c.Flags().StringSliceVar(&kinds, "kind", nil, "only events of this `KIND` (e.g. subflow-established; see completion)")
	c.Flags().StringSliceVar(&tokens, "token", nil, "only events of the connection with this `TOKEN`")
	_ = c.RegisterFlagCompletionFunc("kind", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return kindNames(), cobra.ShellCompDirectiveNoFileComp
	})
	_ = c.RegisterFlagCompletionFunc("token", a.completeToken)
	return c
}

// kindName writes an event kind as --kind takes it: connection-created.
func kindName(k mptcpdv1.EventKind) string {
	name, ok := mptcpdv1.EventKind_name[int32(k)]
	if !ok {
		return fmt.Sprintf("kind-%d", k)
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "EVENT_KIND_")), "_", "-")
}

// kindNames lists the kinds --kind takes, sorted.
func kindNames() []string {
	var names []string
	for n := range mptcpdv1.EventKind_name {
		k := mptcpdv1.EventKind(n)
		if k != mptcpdv1.EventKind_EVENT_KIND_UNSPECIFIED && k != mptcpdv1.EventKind_EVENT_KIND_SNAPSHOT_END {
			names = append(names, kindName(k))
		}
	}
	sort.Strings(names)
	return names
}

// parseKind reads an event kind: connection-created, connection_created or
// EVENT_KIND_CONNECTION_CREATED.
func parseKind(s string) (mptcpdv1.EventKind, error) {
	name := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	if !strings.HasPrefix(name, "EVENT_KIND_") {
		name = "EVENT_KIND_" + name
	}
	v, ok := mptcpdv1.EventKind_value[name]
	if !ok || v == int32(mptcpdv1.EventKind_EVENT_KIND_UNSPECIFIED) {
		return 0, invalidf("unknown event kind %q: want one of %s", s, strings.Join(kindNames(), ", "))
	}
	return mptcpdv1.EventKind(v), nil
}

func parseWatch(kinds, tokens []string) (*mptcpdv1.WatchRequest, error) {
	req := &mptcpdv1.WatchRequest{}
	for _, s := range kinds {
		k, err := parseKind(s)
		if err != nil {
			return nil, err
		}
		req.Kinds = append(req.Kinds, k)
	}
	for _, s := range tokens {
		t, err := parseToken(s)
		if err != nil {
			return nil, fmt.Errorf("--token: %w", err)
		}
		req.Tokens = append(req.Tokens, t)
	}
	return req, nil
}

// printEvent writes one event: a line of JSON, or a line like ip mptcp
// monitor's.
func (a *app) printEvent(ev *mptcpdv1.WatchResponse) error {
	if a.jsonOutput() {
		b, err := marshalJSON(ev, false)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	if ev.GetKind() == mptcpdv1.EventKind_EVENT_KIND_SNAPSHOT_END {
		_, err := fmt.Fprintln(a.stdout, snapshotEndLine)
		return err
	}
	_, err := fmt.Fprintln(a.stdout, a.eventLine(ev))
	return err
}

// quote quotes s for a key=value pair, "" staying "".
func quote(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

// eventLine writes an event as TIME KIND key=value...; snapshot events
// say "snapshot" where live ones have their time.
func (a *app) eventLine(ev *mptcpdv1.WatchResponse) string {
	when := "-"
	switch {
	case ev.GetSnapshot():
		when = "snapshot"
	case ev.GetTime() != nil:
		when = ev.GetTime().AsTime().In(a.loc).Format("15:04:05.000")
	}
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"="+v)
		}
	}
	if ev.GetToken() != 0 {
		add("token", formatToken(ev.GetToken()))
	}
	switch d := ev.GetDetail().(type) {
	case *mptcpdv1.WatchResponse_Connection:
		c := d.Connection
		add("saddr", hostPort(c.GetLocalAddress(), c.GetLocalPort()))
		add("daddr", hostPort(c.GetRemoteAddress(), c.GetRemotePort()))
		add("state", c.GetState())
		if len(c.GetSubflows()) > 0 {
			add("subflows", num(uint32(len(c.GetSubflows()))))
		}
		if c.GetFallback() {
			add("fallback", "yes")
		}
	case *mptcpdv1.WatchResponse_Subflow:
		s := d.Subflow
		add("saddr", hostPort(s.GetLocalAddress(), s.GetLocalPort()))
		add("daddr", hostPort(s.GetRemoteAddress(), s.GetRemotePort()))
		add("locid", num(s.GetLocalId()))
		add("remid", num(s.GetRemoteId()))
		add("backup", backupString(s.GetBackup(), s.GetRemoteBackup()))
		add("dev", s.GetInterfaceName())
	case *mptcpdv1.WatchResponse_Announcement:
		n := d.Announcement
		add("remid", num(n.GetRemoteId()))
		add("addr", hostPort(n.GetAddress(), n.GetPort()))
	case *mptcpdv1.WatchResponse_Listener:
		add("addr", hostPort(d.Listener.GetAddress(), d.Listener.GetPort()))
	case *mptcpdv1.WatchResponse_Link:
		l := d.Link
		add("dev", l.GetName())
		add("index", num(l.GetIndex()))
		add("kind", l.GetKind())
		add("up", yesNo(l.GetUp()))
		add("carrier", yesNo(l.GetCarrier()))
	case *mptcpdv1.WatchResponse_Address:
		ad := d.Address
		add("addr", fmt.Sprintf("%s/%d", ad.GetAddress(), ad.GetPrefixLength()))
		add("dev", ad.GetInterfaceName())
	case *mptcpdv1.WatchResponse_Endpoint:
		e := d.Endpoint
		add("id", num(e.GetId()))
		add("addr", hostPort(e.GetAddress(), e.GetPort()))
		add("flags", flagString(e.GetFlags()))
		add("dev", e.GetInterfaceName())
		add("owner", ownerString(e.GetOwner()))
		add("rule", e.GetRule())
	case *mptcpdv1.WatchResponse_Limits:
		add("subflows", num(d.Limits.GetSubflows()))
		add("add_addr_accepted", num(d.Limits.GetAddAddrAccepted()))
	case *mptcpdv1.WatchResponse_Decision:
		dc := d.Decision
		add("action", dc.GetAction())
		add("saddr", hostPort(dc.GetLocalAddress(), dc.GetLocalPort()))
		add("daddr", hostPort(dc.GetRemoteAddress(), dc.GetRemotePort()))
		if dc.GetLocalId() != 0 {
			add("locid", num(dc.GetLocalId()))
		}
		if dc.GetRemoteId() != 0 {
			add("remid", num(dc.GetRemoteId()))
		}
		if dc.GetBackup() {
			add("backup", "yes")
		}
		add("rule", quote(dc.GetRule()))
		add("error", quote(dc.GetError()))
	case *mptcpdv1.WatchResponse_Reconcile:
		r := d.Reconcile
		add("trigger", quote(r.GetTrigger()))
		add("changes", num(r.GetChanges()))
		add("took", durationString(r.GetTook()))
		add("error", quote(r.GetError()))
	}
	add("reason", quote(ev.GetReason()))
	return strings.TrimRight(fmt.Sprintf("%-12s  %-22s  %s", when, kindName(ev.GetKind()), strings.Join(kv, " ")), " ")
}
