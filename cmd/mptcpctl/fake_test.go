package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// fakeServer is an mptcpd API with canned state. It records every request
// it gets, and fails the methods named in errs with their error (made
// with api.ToStatus, as mptcpd does).
type fakeServer struct {
	mptcpdv1.UnimplementedMptcpdServiceServer

	mu   sync.Mutex
	reqs []proto.Message
	errs map[string]error
	// block makes the named method wait until its caller gives up.
	block map[string]bool
	// watchEnds makes Watch return after its events instead of waiting.
	watchEnds bool
}

// epoch is the time of everything the fake reports.
var epoch = time.Date(2026, time.November, 20, 12, 0, 0, 0, time.UTC)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(epoch.Add(d)) }

func (f *fakeServer) record(method string, ctx context.Context, req proto.Message) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req))
	err, block := f.errs[method], f.block[method]
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// requests returns the requests received so far.
func (f *fakeServer) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.reqs...)
}

func (f *fakeServer) failWith(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs = make(map[string]error)
	}
	f.errs[method] = err
}

func (f *fakeServer) blockIn(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.block == nil {
		f.block = make(map[string]bool)
	}
	f.block[method] = true
}

// shortTempDir returns a temporary directory whose path is short enough
// for a socket in it (t.TempDir's may not be).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mptcpctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveFake serves f on a unix socket and returns the socket's path.
func serveFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	return serveFakeAt(t, f, filepath.Join(shortTempDir(t), "mptcpd.sock"))
}

// serveFakeAt serves f on the unix socket sock.
func serveFakeAt(t *testing.T, f *fakeServer, sock string) string {
	t.Helper()
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	mptcpdv1.RegisterMptcpdServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return sock
}

// result is what one run of mptcpctl did.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs mptcpctl with args against the server at sock (none when
// sock is ""), with stdin, timestamps in UTC.
func runCLI(t *testing.T, sock, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runCLIContext(ctx, t, sock, stdin, &bytes.Buffer{}, args...)
}

func runCLIContext(ctx context.Context, t *testing.T, sock, stdin string, stdout syncWriter, args ...string) result {
	t.Helper()
	var stderr bytes.Buffer
	a := newApp(strings.NewReader(stdin), stdout, &stderr)
	a.loc = time.UTC
	if sock != "" {
		args = append(args, "--server", sock)
	}
	code := a.run(ctx, args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

type syncWriter interface {
	Write([]byte) (int, error)
	String() string
}

// lineWriter collects output and calls done once it holds n lines.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int
	done func()
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Count(w.buf.String(), "\n") >= w.n && w.done != nil {
		w.done()
		w.done = nil
	}
	return n, err
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// The canned state.

func fakeEndpoints() []*mptcpdv1.Endpoint {
	return []*mptcpdv1.Endpoint{
		{Id: 1, Address: "192.0.2.10", Flags: []mptcpdv1.EndpointFlag{mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SIGNAL, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}, InterfaceIndex: 2, InterfaceName: "eth0", Owner: mptcpdv1.Owner_OWNER_POLICY, Rule: "wired"},
		{Id: 2, Address: "2001:db8::10", Port: 8443, Flags: []mptcpdv1.EndpointFlag{mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SIGNAL}, Owner: mptcpdv1.Owner_OWNER_API},
		{Id: 3, Address: "198.51.100.4", Flags: []mptcpdv1.EndpointFlag{mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_BACKUP}, InterfaceIndex: 5, InterfaceName: "wwan0", Owner: mptcpdv1.Owner_OWNER_FOREIGN},
	}
}

func fakeConnections() []*mptcpdv1.Connection {
	return []*mptcpdv1.Connection{
		{
			Token: 0x1f2e3d4c, LocalAddress: "192.0.2.10", LocalPort: 40312, RemoteAddress: "203.0.113.5", RemotePort: 443, Rule: "clients", Strategy: "fullmesh", SubflowsWanted: 2, AnnouncementsAccepted: 1, AnnouncementsRefused: 3,
			State: "established", AddAddrSignal: 1, AddAddrAccepted: 1, LocalAddrUsed: 1,
			BytesSent: 123456, BytesReceived: 654321, BytesAcked: 123000, BytesRetransmitted: 456, Uid: 1000, Inode: 98765,
			Subflows: []*mptcpdv1.Subflow{
				{LocalAddress: "192.0.2.10", LocalPort: 40312, RemoteAddress: "203.0.113.5", RemotePort: 443, State: "established",
					Rtt: durationpb.New(12500 * time.Microsecond), BytesSent: 100000, BytesReceived: 600000, BytesAcked: 100000, InterfaceName: "eth0"},
				{LocalAddress: "198.51.100.4", LocalPort: 51000, RemoteAddress: "203.0.113.5", RemotePort: 443, LocalId: 3, Backup: true, State: "established",
					Rtt: durationpb.New(48 * time.Millisecond), BytesSent: 23456, BytesReceived: 54321, BytesAcked: 23000, Retransmits: 2, InterfaceName: "wwan0"},
			},
		},
		{Token: 0x2a, LocalAddress: "2001:db8::10", LocalPort: 8443, RemoteAddress: "2001:db8:ff::1", RemotePort: 50022, State: "established", Fallback: true, BytesSent: 10, BytesReceived: 20,
			Subflows: []*mptcpdv1.Subflow{{LocalAddress: "2001:db8::10", LocalPort: 8443, RemoteAddress: "2001:db8:ff::1", RemotePort: 50022, State: "established"}}},
		{Token: 0xdeadbeef, LocalAddress: "192.0.2.10", LocalPort: 5201, RemoteAddress: "203.0.113.9", RemotePort: 34000, State: "syn-sent"},
	}
}

func fakeListener() *mptcpdv1.Connection {
	return &mptcpdv1.Connection{Token: 0x77, LocalAddress: "0.0.0.0", LocalPort: 5201, State: "listen"}
}

func fakePlan() *mptcpdv1.Plan {
	return &mptcpdv1.Plan{
		Changes: []*mptcpdv1.EndpointChange{
			{Action: mptcpdv1.ChangeAction_CHANGE_ACTION_ADD, Endpoint: &mptcpdv1.Endpoint{Id: 4, Address: "198.51.100.7", Flags: []mptcpdv1.EndpointFlag{mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}, InterfaceName: "wlan0", Owner: mptcpdv1.Owner_OWNER_POLICY, Rule: "wifi"}, Reason: "wlan0 matches rule wifi"},
			{Action: mptcpdv1.ChangeAction_CHANGE_ACTION_REMOVE, Endpoint: &mptcpdv1.Endpoint{Id: 1, Address: "192.0.2.10", Flags: []mptcpdv1.EndpointFlag{mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SIGNAL, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}, InterfaceName: "eth0", Owner: mptcpdv1.Owner_OWNER_POLICY, Rule: "wired"}, Reason: "no rule selects eth0"},
		},
		LimitsBefore: &mptcpdv1.Limits{Subflows: 2, AddAddrAccepted: 2},
		LimitsAfter:  &mptcpdv1.Limits{Subflows: 4, AddAddrAccepted: 2},
		Skipped:      []*mptcpdv1.SkippedAddress{{Address: "fe80::1", InterfaceName: "wlan0", Reason: "link-local"}},
	}
}

// fakeEvents are what Watch sends: a snapshot, its end, live events.
func fakeEvents() []*mptcpdv1.WatchResponse {
	eps := fakeEndpoints()
	conns := fakeConnections()
	return []*mptcpdv1.WatchResponse{
		{Kind: mptcpdv1.EventKind_EVENT_KIND_ENDPOINT_ADDED, Time: ts(0), Snapshot: true, Detail: &mptcpdv1.WatchResponse_Endpoint{Endpoint: eps[0]}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_LINK_UP, Time: ts(0), Snapshot: true, Detail: &mptcpdv1.WatchResponse_Link{Link: &mptcpdv1.Link{Index: 2, Name: "eth0", Kind: "physical", Up: true, Carrier: true}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_ADDRESS_ADDED, Time: ts(0), Snapshot: true, Detail: &mptcpdv1.WatchResponse_Address{Address: &mptcpdv1.Address{Address: "192.0.2.10", PrefixLength: 24, InterfaceIndex: 2, InterfaceName: "eth0"}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_CONNECTION_ESTABLISHED, Time: ts(0), Snapshot: true, Token: conns[0].Token, Detail: &mptcpdv1.WatchResponse_Connection{Connection: conns[0]}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_SNAPSHOT_END, Time: ts(0)},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_CONNECTION_CREATED, Time: ts(1500 * time.Millisecond), Token: 0x99, Detail: &mptcpdv1.WatchResponse_Connection{Connection: &mptcpdv1.Connection{Token: 0x99, LocalAddress: "192.0.2.10", LocalPort: 40400, RemoteAddress: "203.0.113.5", RemotePort: 443}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_ANNOUNCED, Time: ts(1600 * time.Millisecond), Token: 0x99, Detail: &mptcpdv1.WatchResponse_Announcement{Announcement: &mptcpdv1.Announcement{RemoteId: 1, Address: "203.0.113.6", Port: 443}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED, Time: ts(1700 * time.Millisecond), Token: 0x99, Detail: &mptcpdv1.WatchResponse_Subflow{Subflow: conns[0].Subflows[1]}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_SUBFLOW_CLOSED, Time: ts(2 * time.Second), Token: 0x99, Reason: "connection reset by peer", Detail: &mptcpdv1.WatchResponse_Subflow{Subflow: conns[0].Subflows[1]}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_LIMITS_CHANGED, Time: ts(3 * time.Second), Reason: "api", Detail: &mptcpdv1.WatchResponse_Limits{Limits: &mptcpdv1.Limits{Subflows: 4, AddAddrAccepted: 2}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_RECONCILED, Time: ts(3 * time.Second), Detail: &mptcpdv1.WatchResponse_Reconcile{Reconcile: &mptcpdv1.Reconcile{Time: ts(3 * time.Second), Trigger: "api", Changes: 1, Took: durationpb.New(1200 * time.Microsecond)}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_LISTENER_CREATED, Time: ts(4 * time.Second), Detail: &mptcpdv1.WatchResponse_Listener{Listener: &mptcpdv1.Listener{Address: "::", Port: 5201}}},
		{Kind: mptcpdv1.EventKind_EVENT_KIND_EVENTS_LOST, Time: ts(5 * time.Second), Reason: "kernel event socket overflowed; state re-read"},
	}
}

// The methods.

func (f *fakeServer) GetStatus(ctx context.Context, req *mptcpdv1.GetStatusRequest) (*mptcpdv1.GetStatusResponse, error) {
	if err := f.record("GetStatus", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.GetStatusResponse{Status: &mptcpdv1.Status{
		Mode: mptcpdv1.Mode_MODE_KERNEL, ConfiguredMode: "auto", ModeReason: "the kernel has the in-kernel path manager",
		Version: "0.1.0", Started: ts(-3 * time.Hour), Uptime: durationpb.New(3*time.Hour + 12*time.Second + 300*time.Millisecond),
		Capabilities:  &mptcpdv1.Capabilities{Family: true, FamilyVersion: 1, EventsGroup: true, Enabled: true, PathManagers: []string{"kernel", "userspace"}, PathManager: "kernel"},
		Counts:        &mptcpdv1.Counts{EndpointsPolicy: 1, EndpointsApi: 1, EndpointsForeign: 1, Connections: 3, Subflows: 3, ReconcileRuns: 12, ReconcileErrors: 1, KernelEvents: 345},
		LastReconcile: &mptcpdv1.Reconcile{Time: ts(-time.Minute), Trigger: "interface change", Changes: 2, Took: durationpb.New(1500 * time.Microsecond)},
		Ready:         true,
	}}, nil
}

func (f *fakeServer) ListEndpoints(ctx context.Context, req *mptcpdv1.ListEndpointsRequest) (*mptcpdv1.ListEndpointsResponse, error) {
	if err := f.record("ListEndpoints", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.ListEndpointsResponse{Endpoints: fakeEndpoints()}, nil
}

func (f *fakeServer) GetEndpoint(ctx context.Context, req *mptcpdv1.GetEndpointRequest) (*mptcpdv1.GetEndpointResponse, error) {
	if err := f.record("GetEndpoint", ctx, req); err != nil {
		return nil, err
	}
	for _, e := range fakeEndpoints() {
		if e.Id == req.Id {
			return &mptcpdv1.GetEndpointResponse{Endpoint: e}, nil
		}
	}
	return nil, errNotFound("endpoint", req.Id)
}

func (f *fakeServer) CreateEndpoint(ctx context.Context, req *mptcpdv1.CreateEndpointRequest) (*mptcpdv1.CreateEndpointResponse, error) {
	if err := f.record("CreateEndpoint", ctx, req); err != nil {
		return nil, err
	}
	id := req.Id
	if id == 0 {
		id = 4
	}
	return &mptcpdv1.CreateEndpointResponse{Endpoint: &mptcpdv1.Endpoint{
		Id: id, Address: req.Address, Port: req.Port, Flags: req.Flags, InterfaceName: req.InterfaceName, Owner: mptcpdv1.Owner_OWNER_API,
	}}, nil
}

func (f *fakeServer) UpdateEndpoint(ctx context.Context, req *mptcpdv1.UpdateEndpointRequest) (*mptcpdv1.UpdateEndpointResponse, error) {
	if err := f.record("UpdateEndpoint", ctx, req); err != nil {
		return nil, err
	}
	e := fakeEndpoints()[2]
	e.Flags = []mptcpdv1.EndpointFlag{mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_FULLMESH}
	return &mptcpdv1.UpdateEndpointResponse{Endpoint: e}, nil
}

func (f *fakeServer) DeleteEndpoint(ctx context.Context, req *mptcpdv1.DeleteEndpointRequest) (*mptcpdv1.DeleteEndpointResponse, error) {
	if err := f.record("DeleteEndpoint", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.DeleteEndpointResponse{Endpoint: fakeEndpoints()[1]}, nil
}

func (f *fakeServer) FlushEndpoints(ctx context.Context, req *mptcpdv1.FlushEndpointsRequest) (*mptcpdv1.FlushEndpointsResponse, error) {
	if err := f.record("FlushEndpoints", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.FlushEndpointsResponse{Endpoints: fakeEndpoints()[1:]}, nil
}

func (f *fakeServer) GetLimits(ctx context.Context, req *mptcpdv1.GetLimitsRequest) (*mptcpdv1.GetLimitsResponse, error) {
	if err := f.record("GetLimits", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.GetLimitsResponse{Limits: &mptcpdv1.Limits{Subflows: 2, AddAddrAccepted: 3}, Explicit: true}, nil
}

func (f *fakeServer) SetLimits(ctx context.Context, req *mptcpdv1.SetLimitsRequest) (*mptcpdv1.SetLimitsResponse, error) {
	if err := f.record("SetLimits", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.SetLimitsResponse{Limits: req.Limits}, nil
}

func (f *fakeServer) GetPolicy(ctx context.Context, req *mptcpdv1.GetPolicyRequest) (*mptcpdv1.GetPolicyResponse, error) {
	if err := f.record("GetPolicy", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.GetPolicyResponse{
		Document: "mode = \"kernel\"\n\n[limits]\nsubflows = 2\nadd_addr_accepted = 3\n\n[[rule]]\nname = \"wired\"\ninterfaces = [\"eth*\"]\nflags = [\"signal\", \"subflow\"]\n",
		Source:   "/etc/mptcpd/mptcpd.toml",
		Applied:  ts(-3 * time.Hour),
	}, nil
}

func (f *fakeServer) ValidatePolicy(ctx context.Context, req *mptcpdv1.ValidatePolicyRequest) (*mptcpdv1.ValidatePolicyResponse, error) {
	if err := f.record("ValidatePolicy", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.ValidatePolicyResponse{Plan: fakePlan()}, nil
}

func (f *fakeServer) ApplyPolicy(ctx context.Context, req *mptcpdv1.ApplyPolicyRequest) (*mptcpdv1.ApplyPolicyResponse, error) {
	if err := f.record("ApplyPolicy", ctx, req); err != nil {
		return nil, err
	}
	return &mptcpdv1.ApplyPolicyResponse{Plan: fakePlan()}, nil
}

// ListConnections hands out the connections a page of two at a time,
// whatever page size is asked for, so that the client must follow
// next_page_token.
func (f *fakeServer) ListConnections(ctx context.Context, req *mptcpdv1.ListConnectionsRequest) (*mptcpdv1.ListConnectionsResponse, error) {
	if err := f.record("ListConnections", ctx, req); err != nil {
		return nil, err
	}
	conns := fakeConnections()
	if req.Listeners {
		conns = append(conns, fakeListener())
	}
	start := 0
	if req.PageToken != "" {
		start = int(req.PageToken[0] - '0')
	}
	end := min(start+2, len(conns))
	resp := &mptcpdv1.ListConnectionsResponse{Connections: conns[start:end]}
	if end < len(conns) {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

func (f *fakeServer) GetConnection(ctx context.Context, req *mptcpdv1.GetConnectionRequest) (*mptcpdv1.GetConnectionResponse, error) {
	if err := f.record("GetConnection", ctx, req); err != nil {
		return nil, err
	}
	for _, c := range fakeConnections() {
		if c.Token == req.Token {
			return &mptcpdv1.GetConnectionResponse{Connection: c}, nil
		}
	}
	return nil, errUnknownToken(req.Token)
}

func (f *fakeServer) Announce(ctx context.Context, req *mptcpdv1.AnnounceRequest) (*mptcpdv1.AnnounceResponse, error) {
	return &mptcpdv1.AnnounceResponse{}, f.record("Announce", ctx, req)
}

func (f *fakeServer) Withdraw(ctx context.Context, req *mptcpdv1.WithdrawRequest) (*mptcpdv1.WithdrawResponse, error) {
	return &mptcpdv1.WithdrawResponse{}, f.record("Withdraw", ctx, req)
}

func (f *fakeServer) CreateSubflow(ctx context.Context, req *mptcpdv1.CreateSubflowRequest) (*mptcpdv1.CreateSubflowResponse, error) {
	return &mptcpdv1.CreateSubflowResponse{}, f.record("CreateSubflow", ctx, req)
}

func (f *fakeServer) DestroySubflow(ctx context.Context, req *mptcpdv1.DestroySubflowRequest) (*mptcpdv1.DestroySubflowResponse, error) {
	return &mptcpdv1.DestroySubflowResponse{}, f.record("DestroySubflow", ctx, req)
}

func (f *fakeServer) SetSubflowBackup(ctx context.Context, req *mptcpdv1.SetSubflowBackupRequest) (*mptcpdv1.SetSubflowBackupResponse, error) {
	return &mptcpdv1.SetSubflowBackupResponse{}, f.record("SetSubflowBackup", ctx, req)
}

// Watch sends the events, then waits for the client to go (or, with
// watchEnds, ends the stream).
func (f *fakeServer) Watch(req *mptcpdv1.WatchRequest, stream grpc.ServerStreamingServer[mptcpdv1.WatchResponse]) error {
	if err := f.record("Watch", stream.Context(), req); err != nil {
		return err
	}
	for _, ev := range fakeEvents() {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	f.mu.Lock()
	ends := f.watchEnds
	f.mu.Unlock()
	if ends {
		return nil
	}
	<-stream.Context().Done()
	return nil
}

func errNotFound(what string, id uint32) error {
	return api.ToStatus(fmt.Errorf("%s %d: %w", what, id, genl.ErrNotFound))
}

func errUnknownToken(token uint32) error {
	return api.ToStatus(fmt.Errorf("connection %#x: %w", token, genl.ErrUnknownToken))
}
