package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// apiDaemon is a daemon on a test host with an API client.
type apiDaemon struct {
	*daemonProc
	socket string
	conf   string
	c      pb.MptcpdServiceClient
}

// apiConfig is the test daemons' configuration: the test paths' veth
// interfaces ("p*") get subflow endpoints; extra is appended.
func apiConfig(dir, extra string) string {
	return fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
[api]
socket = %q
[[rule]]
name = "test paths"
interfaces = ["p*"]
kinds = ["veth"]
flags = ["subflow"]
%s`, filepath.Join(dir, "state"), filepath.Join(dir, "api.sock"), extra)
}

// startAPIDaemon starts mptcpd on h with conf and connects to its API.
func startAPIDaemon(t *testing.T, bin string, h *testbed.Host, conf string) *apiDaemon {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "mptcpd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &apiDaemon{daemonProc: startDaemon(t, bin, "--config", path, "--netns", h.NS), conf: path}
	d.waitState("READY=1")
	for _, line := range strings.Split(conf, "\n") {
		if v, ok := strings.CutPrefix(line, "socket = "); ok {
			d.socket = strings.Trim(v, `"`)
		}
	}
	conn, c, err := api.Dial(d.socket, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	d.c = c
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode checks a call's gRPC code and that the restored error matches
// the sentinel.
func wantCode(t *testing.T, what string, err error, code codes.Code, sentinel error) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: code %v (%v), want %v", what, got, err, code)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("%s: %v does not match %v", what, err, sentinel)
	}
}

// apiEndpoints lists the endpoints through the API as "addr owner" strings.
func apiEndpoints(t *testing.T, c pb.MptcpdServiceClient) map[string]*pb.Endpoint {
	t.Helper()
	resp, err := c.ListEndpoints(ctxT(t), &pb.ListEndpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*pb.Endpoint{}
	for _, ep := range resp.GetEndpoints() {
		out[ep.GetAddress()] = ep
	}
	return out
}

// TestAPIEndToEnd runs the daemon on a test host with two paths to a
// server and drives it through its API: status, endpoints with their
// owners (checked against `ip mptcp`), limits, a live MPTCP connection with
// its subflows (checked against the kernel's own events), the policy
// (validate, dry run, apply, refusal), and mode refusals.
func TestAPIEndToEnd(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h, srv := bed.Host("h"), bed.Host("srv")
	paths := bed.Paths(h, srv, 2)
	// The server announces its second path's address and accepts joins.
	sc := newClient(t, srv)
	if err := sc.SetLimits(genl.Limits{Subflows: 4, AddAddrAccepted: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.AddEndpoint(genl.Endpoint{Addr: paths[1].B4, Flags: genl.FlagSignal}); err != nil {
		t.Fatal(err)
	}
	h.MustIP("mptcp", "endpoint", "add", "192.0.2.200", "id", "50", "signal")

	d := startAPIDaemon(t, bin, h, apiConfig(t.TempDir(), ""))
	c := d.c

	// Status.
	st, err := c.GetStatus(ctxT(t), &pb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s := st.GetStatus()
	if s.GetMode() != pb.Mode_MODE_KERNEL || !s.GetReady() || !s.GetCapabilities().GetFamily() ||
		s.GetCounts().GetEndpointsPolicy() != 4 || s.GetCounts().GetEndpointsForeign() != 1 || s.GetNetns() != h.NS {
		t.Fatalf("status = %v; want kernel mode, ready, 4 policy endpoints and 1 foreign in %s", s, h.NS)
	}

	// Endpoints with owners, as the kernel has them.
	eps := apiEndpoints(t, c)
	for _, p := range paths {
		for _, a := range []netip.Addr{p.A4, p.A6} {
			ep := eps[a.String()]
			if ep.GetOwner() != pb.Owner_OWNER_POLICY || ep.GetRule() != "test paths" || ep.GetInterfaceName() != p.AIf ||
				!slices.Equal(ep.GetFlags(), []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}) {
				t.Errorf("endpoint %s = %v; want a policy subflow endpoint of rule \"test paths\" on %s", a, ep, p.AIf)
			}
		}
	}
	if ep := eps["192.0.2.200"]; ep.GetOwner() != pb.Owner_OWNER_FOREIGN || ep.GetId() != 50 {
		t.Errorf("foreign endpoint = %v", ep)
	}
	if len(eps) != len(ipEndpoints(t, h)) {
		t.Errorf("the API lists %d endpoints, ip mptcp %d", len(eps), len(ipEndpoints(t, h)))
	}

	// An endpoint on request: created, changed, refused twice, deleted.
	created, err := c.CreateEndpoint(ctxT(t), &pb.CreateEndpointRequest{Address: "198.51.100.99",
		Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetEndpoint().GetId()
	if created.GetEndpoint().GetOwner() != pb.Owner_OWNER_API || !slices.Contains(endpointSet(t, h, true), fmt.Sprintf("%d 198.51.100.99 signal", id)) {
		t.Fatalf("created %v; kernel has %q", created.GetEndpoint(), endpointSet(t, h, true))
	}
	_, err = c.CreateEndpoint(ctxT(t), &pb.CreateEndpointRequest{Address: "198.51.100.99", Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL}})
	wantCode(t, "creating it again", err, codes.AlreadyExists, genl.ErrExists)
	if _, err := c.UpdateEndpoint(ctxT(t), &pb.UpdateEndpointRequest{Id: id, Backup: new(true)}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(endpointSet(t, h, false), "198.51.100.99 signal,backup") {
		t.Fatalf("after UpdateEndpoint backup the kernel has %q", endpointSet(t, h, false))
	}
	before := endpointSet(t, h, true)
	_, err = c.DeleteEndpoint(ctxT(t), &pb.DeleteEndpointRequest{Id: eps[paths[0].A4.String()].GetId()})
	wantCode(t, "deleting a policy endpoint", err, codes.FailedPrecondition, pm.ErrOwnedByPolicy)
	_, err = c.DeleteEndpoint(ctxT(t), &pb.DeleteEndpointRequest{Id: 200})
	wantCode(t, "deleting a missing endpoint", err, codes.NotFound, genl.ErrNotFound)
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Fatalf("refused calls changed the endpoints from %q to %q", before, got)
	}
	if _, err := c.DeleteEndpoint(ctxT(t), &pb.DeleteEndpointRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(endpointSet(t, h, false), func(s string) bool { return strings.HasPrefix(s, "198.51.100.99 ") }) {
		t.Fatal("the deleted endpoint is still in the kernel")
	}

	// Limits.
	if _, err := c.SetLimits(ctxT(t), &pb.SetLimitsRequest{Limits: &pb.Limits{Subflows: 3, AddAddrAccepted: 2}}); err != nil {
		t.Fatal(err)
	}
	if l := ipLimits(t, h); l != (genl.Limits{Subflows: 3, AddAddrAccepted: 2}) {
		t.Fatalf("after SetLimits the kernel has %+v", l)
	}
	if gl, err := c.GetLimits(ctxT(t), &pb.GetLimitsRequest{}); err != nil || !gl.GetExplicit() || gl.GetLimits().GetSubflows() != 3 {
		t.Fatalf("GetLimits = %v, %v", gl, err)
	}

	// A live connection, with the subflows the kernel reported.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := newClient(t, h).Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, port := echoListener(t, srv, 4)
	conn, err := h.Dial(ctxT(t), netip.AddrPortFrom(paths[0].A4, 0), netip.AddrPortFrom(paths[0].B4, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn, 200_000)
	var token uint32
	tuples := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(tuples) < 2 && time.Now().Before(deadline) {
		evs, err := sub.Receive()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			switch e.Type {
			case genl.EventEstablished:
				token = e.Token
				tuples[e.Local.String()+" "+e.Remote.String()] = true
			case genl.EventSubEstablished:
				tuples[e.Local.String()+" "+e.Remote.String()] = true
			}
		}
	}
	if token == 0 || len(tuples) < 2 {
		t.Fatalf("the kernel reported token %#x and subflows %v; want a connection with 2 subflows", token, tuples)
	}
	roundTrip(t, conn, 100_000)
	// The API's established subflows must be those the kernel announced:
	// when the API shows one the events have not yet, read more events;
	// when the events show one the API lacks, list again.
	listed := func() (*pb.Connection, map[string]bool) {
		list, err := c.ListConnections(ctxT(t), &pb.ListConnectionsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var found *pb.Connection
		for _, cn := range list.GetConnections() {
			if cn.GetToken() == token {
				found = cn
			}
		}
		if found == nil {
			t.Fatalf("connection %#x not listed: %v", token, list)
		}
		got := map[string]bool{}
		for _, sf := range found.GetSubflows() {
			if sf.GetState() != "established" {
				continue // a join still in SYN-SENT, which no event announced yet
			}
			got[netip.AddrPortFrom(netip.MustParseAddr(sf.GetLocalAddress()), uint16(sf.GetLocalPort())).String()+" "+
				netip.AddrPortFrom(netip.MustParseAddr(sf.GetRemoteAddress()), uint16(sf.GetRemotePort())).String()] = true
			if sf.GetRtt().AsDuration() <= 0 {
				t.Errorf("subflow %v has no RTT", sf)
			}
		}
		return found, got
	}
	found, got := listed()
	for deadline := time.Now().Add(10 * time.Second); !maps.Equal(got, tuples); {
		if time.Now().After(deadline) {
			t.Fatalf("the API lists subflows %v, the kernel reported %v", got, tuples)
		}
		extra := false
		for k := range got {
			extra = extra || !tuples[k]
		}
		if !extra {
			time.Sleep(50 * time.Millisecond)
			found, got = listed()
			continue
		}
		evs, err := sub.Receive()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			switch e.Type {
			case genl.EventSubEstablished:
				tuples[e.Local.String()+" "+e.Remote.String()] = true
			case genl.EventSubClosed:
				delete(tuples, e.Local.String()+" "+e.Remote.String())
			}
		}
	}
	if found.GetLocalAddress() != paths[0].A4.String() || found.GetRemotePort() != uint32(port) ||
		found.GetBytesSent() < 300_000 || found.GetBytesReceived() < 300_000 || found.GetFallback() {
		t.Fatalf("connection = %v; want %s → port %d, 300 kB each way, not fallen back", found, paths[0].A4, port)
	}
	one, err := c.GetConnection(ctxT(t), &pb.GetConnectionRequest{Token: token})
	if err != nil || one.GetConnection().GetToken() != token || len(one.GetConnection().GetSubflows()) != len(tuples) {
		t.Fatalf("GetConnection = %v, %v", one, err)
	}
	_, err = c.GetConnection(ctxT(t), &pb.GetConnectionRequest{Token: token ^ 0x5a5a5a5a})
	wantCode(t, "GetConnection of an unknown token", err, codes.NotFound, genl.ErrNotFound)

	// Per-connection calls belong to userspace mode.
	_, err = c.Announce(ctxT(t), &pb.AnnounceRequest{Token: token, Address: paths[1].A4.String(), Id: 7})
	wantCode(t, "Announce in kernel mode", err, codes.FailedPrecondition, pm.ErrWrongMode)

	// The policy: validated and dry-run without a change, then applied.
	pol, err := c.GetPolicy(ctxT(t), &pb.GetPolicyRequest{})
	if err != nil || !strings.Contains(pol.GetDocument(), "test paths") {
		t.Fatalf("GetPolicy = %v, %v", pol, err)
	}
	backupDoc := strings.Replace(pol.GetDocument(), `flags = ['subflow']`, `flags = ['subflow', 'backup']`, 1)
	if backupDoc == pol.GetDocument() {
		t.Fatalf("cannot find the rule's flags in the policy document:\n%s", pol.GetDocument())
	}
	before = endpointSet(t, h, true)
	val, err := c.ValidatePolicy(ctxT(t), &pb.ValidatePolicyRequest{Document: backupDoc})
	if err != nil {
		t.Fatal(err)
	}
	dry, err := c.ApplyPolicy(ctxT(t), &pb.ApplyPolicyRequest{Document: backupDoc, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, plan := range []*pb.Plan{val.GetPlan(), dry.GetPlan()} {
		if n := len(plan.GetChanges()); n != 4 || plan.GetChanges()[0].GetAction() != pb.ChangeAction_CHANGE_ACTION_UPDATE {
			t.Fatalf("plan = %v; want 4 updates", plan)
		}
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Fatalf("validate and dry run changed the endpoints from %q to %q", before, got)
	}
	_, err = c.ApplyPolicy(ctxT(t), &pb.ApplyPolicyRequest{Document: strings.Replace(backupDoc, "'backup'", "'bakup'", 1)})
	wantCode(t, "a bad policy", err, codes.InvalidArgument, genl.ErrInvalid)
	if !strings.Contains(err.Error(), "rule[1].flags") {
		t.Errorf("the refusal %q does not name the key", err)
	}
	if _, err := c.ApplyPolicy(ctxT(t), &pb.ApplyPolicyRequest{Document: backupDoc}); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if !slices.Contains(endpointSet(t, h, false), p.A4.String()+" subflow,backup") {
			t.Fatalf("after ApplyPolicy the kernel has %q", endpointSet(t, h, false))
		}
	}
	if pol, _ := c.GetPolicy(ctxT(t), &pb.GetPolicyRequest{}); pol.GetSource() != "api" {
		t.Errorf("policy source = %q after ApplyPolicy, want api", pol.GetSource())
	}
	// The connection survived all of it.
	roundTrip(t, conn, 10_000)
}

// TestAPIWatch checks the watch stream's order against the real daemon: a
// snapshot (the endpoints, links and a live connection), one
// SNAPSHOT_END, then live events — an address added and the endpoint
// the daemon made of it, a new connection — with filters applied.
func TestAPIWatch(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h, srv := bed.Host("h"), bed.Host("srv")
	paths := bed.Paths(h, srv, 1)
	d := startAPIDaemon(t, bin, h, apiConfig(t.TempDir(), ""))
	_, port := echoListener(t, srv, 4)
	first, err := h.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(paths[0].B4, port))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	roundTrip(t, first, 1000)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := d.c.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var snapshot []*pb.WatchResponse
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch ended in the snapshot: %v", err)
		}
		if ev.GetKind() == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
			break
		}
		if !ev.GetSnapshot() {
			t.Fatalf("a live event %v before the end of the snapshot", ev)
		}
		snapshot = append(snapshot, ev)
	}
	has := func(evs []*pb.WatchResponse, kind pb.EventKind, match func(*pb.WatchResponse) bool) bool {
		return slices.ContainsFunc(evs, func(e *pb.WatchResponse) bool { return e.GetKind() == kind && match(e) })
	}
	if !has(snapshot, pb.EventKind_EVENT_KIND_ENDPOINT_ADDED, func(e *pb.WatchResponse) bool { return e.GetEndpoint().GetAddress() == paths[0].A4.String() }) ||
		!has(snapshot, pb.EventKind_EVENT_KIND_LINK_UP, func(e *pb.WatchResponse) bool { return e.GetLink().GetName() == paths[0].AIf }) ||
		!has(snapshot, pb.EventKind_EVENT_KIND_CONNECTION_ESTABLISHED, func(e *pb.WatchResponse) bool {
			return e.GetConnection().GetRemotePort() == uint32(port) && e.GetToken() != 0
		}) {
		t.Fatalf("the snapshot lacks the endpoint, the link or the connection:\n%v", snapshot)
	}

	// Live: an address, and the endpoint the daemon makes of it.
	h.MustIP("addr", "add", "203.0.113.50/24", "dev", paths[0].AIf)
	second, err := h.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(paths[0].B4, port))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	var live []*pb.WatchResponse
	for !has(live, pb.EventKind_EVENT_KIND_ENDPOINT_ADDED, func(e *pb.WatchResponse) bool { return e.GetEndpoint().GetAddress() == "203.0.113.50" }) ||
		!has(live, pb.EventKind_EVENT_KIND_CONNECTION_ESTABLISHED, func(*pb.WatchResponse) bool { return true }) {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch ended (%v); live events so far:\n%v", err, live)
		}
		if ev.GetSnapshot() || ev.GetKind() == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
			t.Fatalf("snapshot event %v after the marker", ev)
		}
		live = append(live, ev)
	}
	ia := slices.IndexFunc(live, func(e *pb.WatchResponse) bool {
		return e.GetKind() == pb.EventKind_EVENT_KIND_ADDRESS_ADDED && e.GetAddress().GetAddress() == "203.0.113.50"
	})
	ie := slices.IndexFunc(live, func(e *pb.WatchResponse) bool { return e.GetKind() == pb.EventKind_EVENT_KIND_ENDPOINT_ADDED })
	if ia < 0 || ia > ie || live[ie].GetReason() == "" {
		t.Fatalf("want ADDRESS_ADDED before ENDPOINT_ADDED (with a reason); live events:\n%v", live)
	}
	cancel()

	// Filters: only this connection's events.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	var tok uint32
	for _, e := range live {
		if e.GetKind() == pb.EventKind_EVENT_KIND_CONNECTION_ESTABLISHED {
			tok = e.GetToken()
		}
	}
	filtered, err := d.c.Watch(ctx2, &pb.WatchRequest{Tokens: []uint32{tok}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		ev, err := filtered.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetKind() == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
			break
		}
		if ev.GetToken() != tok {
			t.Fatalf("filtered on token %#x, got %v", tok, ev)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("filtered snapshot has %d events, want the one connection", n)
	}
	_ = second.Close()
	ev, err := filtered.Recv()
	if err != nil || ev.GetToken() != tok || ev.GetKind() != pb.EventKind_EVENT_KIND_CONNECTION_CLOSED && ev.GetKind() != pb.EventKind_EVENT_KIND_SUBFLOW_CLOSED {
		t.Fatalf("after closing the connection: %v, %v; want its close events", ev, err)
	}
}

// TestAPIRefusesBadInput sends each mutating RPC bad input to the real
// daemon: every one is INVALID_ARGUMENT naming the field, and the kernel's
// endpoints and limits are as before.
func TestAPIRefusesBadInput(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h := bed.Host("h")
	bed.Paths(h, bed.Host("srv"), 1)
	d := startAPIDaemon(t, bin, h, apiConfig(t.TempDir(), ""))
	c := d.c
	eps, limits := endpointSet(t, h, true), ipLimits(t, h)
	sk := func(mod func(*pb.SubflowKey)) *pb.SubflowKey {
		k := &pb.SubflowKey{Token: 1, LocalAddress: "192.0.2.1", LocalPort: 1000, RemoteAddress: "192.0.2.2", RemotePort: 80}
		mod(k)
		return k
	}
	calls := []struct {
		name, field string
		call        func(context.Context) error
	}{
		{"CreateEndpoint no address", "address", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{})
			return err
		}},
		{"CreateEndpoint bad address", "address", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.300"})
			return err
		}},
		{"CreateEndpoint multicast", "address", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "ff02::1"})
			return err
		}},
		{"CreateEndpoint port", "port", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.9", Port: 70000})
			return err
		}},
		{"CreateEndpoint port without signal", "port", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.9", Port: 80,
				Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}})
			return err
		}},
		{"CreateEndpoint implicit", "flags", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.9",
				Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_IMPLICIT}})
			return err
		}},
		{"CreateEndpoint unknown flag", "flags[0]", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.9", Flags: []pb.EndpointFlag{42}})
			return err
		}},
		{"CreateEndpoint id", "id", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.9", Id: 256})
			return err
		}},
		{"CreateEndpoint interface", "interface_name", func(ctx context.Context) error {
			_, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Address: "192.0.2.9", InterfaceName: "nosuch0"})
			return err
		}},
		{"UpdateEndpoint id 0", "id", func(ctx context.Context) error {
			_, err := c.UpdateEndpoint(ctx, &pb.UpdateEndpointRequest{Backup: new(true)})
			return err
		}},
		{"UpdateEndpoint nothing", "backup", func(ctx context.Context) error {
			_, err := c.UpdateEndpoint(ctx, &pb.UpdateEndpointRequest{Id: 1})
			return err
		}},
		{"DeleteEndpoint id", "id", func(ctx context.Context) error {
			_, err := c.DeleteEndpoint(ctx, &pb.DeleteEndpointRequest{Id: 300})
			return err
		}},
		{"SetLimits missing", "limits", func(ctx context.Context) error {
			_, err := c.SetLimits(ctx, &pb.SetLimitsRequest{})
			return err
		}},
		{"SetLimits too high", "limits.subflows", func(ctx context.Context) error {
			_, err := c.SetLimits(ctx, &pb.SetLimitsRequest{Limits: &pb.Limits{Subflows: 9}})
			return err
		}},
		{"ApplyPolicy empty", "document", func(ctx context.Context) error {
			_, err := c.ApplyPolicy(ctx, &pb.ApplyPolicyRequest{})
			return err
		}},
		{"ApplyPolicy bad", "document", func(ctx context.Context) error {
			_, err := c.ApplyPolicy(ctx, &pb.ApplyPolicyRequest{Document: "mode = \"kernal\"\n"})
			return err
		}},
		{"ApplyPolicy other netns", "document", func(ctx context.Context) error {
			_, err := c.ApplyPolicy(ctx, &pb.ApplyPolicyRequest{Document: "netns = \"elsewhere\"\n"})
			return err
		}},
		{"ListConnections page size", "page_size", func(ctx context.Context) error {
			_, err := c.ListConnections(ctx, &pb.ListConnectionsRequest{PageSize: 100000})
			return err
		}},
		{"ListConnections page token", "page_token", func(ctx context.Context) error {
			_, err := c.ListConnections(ctx, &pb.ListConnectionsRequest{PageToken: "x"})
			return err
		}},
		{"GetConnection token", "token", func(ctx context.Context) error {
			_, err := c.GetConnection(ctx, &pb.GetConnectionRequest{})
			return err
		}},
		{"Announce address", "address", func(ctx context.Context) error {
			_, err := c.Announce(ctx, &pb.AnnounceRequest{Token: 1, Address: "::", Id: 1})
			return err
		}},
		{"Withdraw id", "id", func(ctx context.Context) error {
			_, err := c.Withdraw(ctx, &pb.WithdrawRequest{Token: 1})
			return err
		}},
		{"CreateSubflow families", "remote_address", func(ctx context.Context) error {
			_, err := c.CreateSubflow(ctx, &pb.CreateSubflowRequest{Token: 1, LocalAddress: "192.0.2.1", RemoteAddress: "2001:db8::1", RemotePort: 80})
			return err
		}},
		{"CreateSubflow remote port", "remote_port", func(ctx context.Context) error {
			_, err := c.CreateSubflow(ctx, &pb.CreateSubflowRequest{Token: 1, LocalAddress: "192.0.2.1", RemoteAddress: "192.0.2.2"})
			return err
		}},
		{"DestroySubflow missing", "subflow", func(ctx context.Context) error {
			_, err := c.DestroySubflow(ctx, &pb.DestroySubflowRequest{})
			return err
		}},
		{"SetSubflowBackup local port", "subflow.local_port", func(ctx context.Context) error {
			_, err := c.SetSubflowBackup(ctx, &pb.SetSubflowBackupRequest{Subflow: sk(func(k *pb.SubflowKey) { k.LocalPort = 0 })})
			return err
		}},
		{"Watch kind", "kinds[0]", func(ctx context.Context) error {
			s, err := c.Watch(ctx, &pb.WatchRequest{Kinds: []pb.EventKind{99}})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	}
	for _, tc := range calls {
		err := tc.call(ctxT(t))
		var ae *api.Error
		if status.Code(err) != codes.InvalidArgument || !errors.As(err, &ae) || ae.Field != tc.field || !errors.Is(err, genl.ErrInvalid) {
			t.Errorf("%s: %v (field %q); want INVALID_ARGUMENT naming %q", tc.name, err, fieldOf(err), tc.field)
		}
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, eps) {
		t.Errorf("bad requests changed the endpoints from %q to %q", eps, got)
	}
	if got := ipLimits(t, h); got != limits {
		t.Errorf("bad requests changed the limits from %+v to %+v", limits, got)
	}
}

func fieldOf(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Field
	}
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestAPIMetricsAndInsecureTCP runs the daemon with a Prometheus endpoint
// and an insecure loopback TCP listener: the metrics report the reconcile
// runs and the endpoints by owner, and the insecure listener serves reads
// but refuses writes.
func TestAPIMetricsAndInsecureTCP(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h := bed.Host("h")
	bed.Paths(h, bed.Host("srv"), 1)
	mport, aport := freePort(t), freePort(t)
	conf := apiConfig(t.TempDir(), fmt.Sprintf("[api.tcp]\nlisten = \"127.0.0.1:%d\"\ninsecure = true\n[metrics]\nlisten = \"127.0.0.1:%d\"\n", aport, mport))
	startAPIDaemon(t, bin, h, conf)

	resp, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mptcpd_reconcile_runs_total 1", `mptcpd_endpoints{owner="policy"} 2`, "mptcpd_connections 0"} {
		if !strings.Contains(resp, want) {
			t.Errorf("metrics lack %q:\n%s", want, resp)
		}
	}

	conn, c, err := api.Dial(fmt.Sprintf("127.0.0.1:%d", aport), nil, true, grpc.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := c.ListEndpoints(ctxT(t), &pb.ListEndpointsRequest{}); err != nil {
		t.Fatalf("a read on the insecure listener: %v", err)
	}
	_, err = c.FlushEndpoints(ctxT(t), &pb.FlushEndpointsRequest{})
	wantCode(t, "a write on the insecure listener", err, codes.PermissionDenied, os.ErrPermission)
}

func httpGet(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
