package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

const (
	// DefaultPageSize and MaxPageSize bound ListConnections' pages.
	DefaultPageSize = 1000
	MaxPageSize     = 10000
	// WatchBuffer is how many events a watcher may fall behind before it
	// is dropped with RESOURCE_EXHAUSTED.
	WatchBuffer = 8192
	// maxDocument is the largest policy document accepted.
	maxDocument = 1 << 20
)

// Server implements MptcpdService over a Backend. Every handler checks its
// request before calling the backend, so a bad request changes nothing.
type Server struct {
	pb.UnimplementedMptcpdServiceServer
	backend Backend
	// stopping is closed when the service stops, which ends the streams.
	stopping chan struct{}
	stopOnce sync.Once
	// pages keeps the listings of ListConnections between pages.
	pages listings
}

// NewServer returns a Server over backend.
func NewServer(backend Backend) *Server {
	return &Server{backend: backend, stopping: make(chan struct{})}
}

// Stop ends the Watch streams.
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

func (s *Server) GetStatus(ctx context.Context, _ *pb.GetStatusRequest) (*pb.GetStatusResponse, error) {
	st, err := s.backend.Status(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.GetStatusResponse{Status: s.statusToPB(st)}, nil
}

func (s *Server) ListEndpoints(context.Context, *pb.ListEndpointsRequest) (*pb.ListEndpointsResponse, error) {
	infos, err := s.backend.Endpoints()
	if err != nil {
		return nil, err
	}
	resp := &pb.ListEndpointsResponse{}
	for _, info := range infos {
		resp.Endpoints = append(resp.Endpoints, s.endpointToPB(info))
	}
	return resp, nil
}

// endpointID checks an endpoint ID field.
func endpointID(field string, id uint32, zeroOK bool) (uint8, error) {
	if id > 255 || id == 0 && !zeroOK {
		want := "1..255"
		if zeroOK {
			want = "1..255, or 0 to let mptcpd choose"
		}
		return 0, invalid(field, "%d is not an endpoint ID (want %s)", id, want)
	}
	return uint8(id), nil
}

func (s *Server) GetEndpoint(_ context.Context, req *pb.GetEndpointRequest) (*pb.GetEndpointResponse, error) {
	id, err := endpointID("id", req.GetId(), false)
	if err != nil {
		return nil, err
	}
	info, err := s.backend.Endpoint(id)
	if err != nil {
		return nil, err
	}
	return &pb.GetEndpointResponse{Endpoint: s.endpointToPB(info)}, nil
}

// address checks an address field: a unicast IPv4 or IPv6 address
// without zone.
func address(field, text string) (netip.Addr, error) {
	if text == "" {
		return netip.Addr{}, invalid(field, "missing (want an IPv4 or IPv6 address, e.g. 192.0.2.1 or 2001:db8::1)")
	}
	a, err := netip.ParseAddr(text)
	if err != nil {
		return a, invalid(field, "%q is not an IP address (want e.g. 192.0.2.1 or 2001:db8::1)", text)
	}
	switch {
	case a.Zone() != "":
		return a, invalid(field, "%q has a zone (give the address without %%zone)", text)
	case a.IsUnspecified() || a.IsMulticast():
		return a, invalid(field, "%s is not a unicast address", a)
	}
	return a.Unmap(), nil
}

// port checks a port field; zeroOK allows 0 for none.
func port(field string, p uint32, zeroOK bool) (uint16, error) {
	if p > 65535 || p == 0 && !zeroOK {
		return 0, invalid(field, "%d is not a port (want 1..65535%s)", p, map[bool]string{true: ", or 0 for none"}[zeroOK])
	}
	return uint16(p), nil
}

func (s *Server) CreateEndpoint(_ context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	addr, err := address("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	p, err := port("port", req.GetPort(), true)
	if err != nil {
		return nil, err
	}
	flags, err := flagsFromPB("flags", req.GetFlags())
	if err != nil {
		return nil, err
	}
	switch {
	case flags&genl.FlagImplicit != 0:
		return nil, invalid("flags", "IMPLICIT is set by the kernel, never in a request")
	case flags&genl.FlagSignal != 0 && flags&genl.FlagFullmesh != 0:
		return nil, invalid("flags", "SIGNAL and FULLMESH cannot be combined")
	case p != 0 && flags&genl.FlagSignal == 0:
		return nil, invalid("port", "a port needs the SIGNAL flag")
	}
	id, err := endpointID("id", req.GetId(), true)
	if err != nil {
		return nil, err
	}
	ep := genl.Endpoint{ID: id, Addr: addr, Port: p, Flags: flags}
	if name := req.GetInterfaceName(); name != "" {
		idx := s.backend.InterfaceIndex(name)
		if idx == 0 {
			return nil, invalid("interface_name", "no interface %q in the namespace mptcpd manages", name)
		}
		ep.IfIndex = int32(idx)
	}
	info, err := s.backend.AddEndpoint(ep, req.GetInterfaceName())
	if err != nil {
		return nil, err
	}
	return &pb.CreateEndpointResponse{Endpoint: s.endpointToPB(info)}, nil
}

func (s *Server) UpdateEndpoint(_ context.Context, req *pb.UpdateEndpointRequest) (*pb.UpdateEndpointResponse, error) {
	id, err := endpointID("id", req.GetId(), false)
	if err != nil {
		return nil, err
	}
	if req.Backup == nil && req.Fullmesh == nil {
		return nil, invalid("backup", "nothing to change: set backup, fullmesh or both")
	}
	info, err := s.backend.SetEndpointFlags(id, req.Backup, req.Fullmesh)
	if err != nil {
		return nil, err
	}
	return &pb.UpdateEndpointResponse{Endpoint: s.endpointToPB(info)}, nil
}

func (s *Server) DeleteEndpoint(_ context.Context, req *pb.DeleteEndpointRequest) (*pb.DeleteEndpointResponse, error) {
	id, err := endpointID("id", req.GetId(), false)
	if err != nil {
		return nil, err
	}
	info, err := s.backend.DeleteEndpoint(id)
	if err != nil {
		return nil, err
	}
	return &pb.DeleteEndpointResponse{Endpoint: s.endpointToPB(info)}, nil
}

func (s *Server) FlushEndpoints(context.Context, *pb.FlushEndpointsRequest) (*pb.FlushEndpointsResponse, error) {
	removed, err := s.backend.FlushEndpoints()
	resp := &pb.FlushEndpointsResponse{}
	for _, info := range removed {
		resp.Endpoints = append(resp.Endpoints, s.endpointToPB(info))
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) GetLimits(context.Context, *pb.GetLimitsRequest) (*pb.GetLimitsResponse, error) {
	l, explicit, err := s.backend.Limits()
	if err != nil {
		return nil, err
	}
	return &pb.GetLimitsResponse{Limits: limitsToPB(l), Explicit: explicit}, nil
}

func (s *Server) SetLimits(_ context.Context, req *pb.SetLimitsRequest) (*pb.SetLimitsResponse, error) {
	l := req.GetLimits()
	if l == nil {
		return nil, invalid("limits", "missing (set subflows and add_addr_accepted, each 0..8)")
	}
	for _, f := range []struct {
		name string
		v    uint32
	}{{"limits.subflows", l.GetSubflows()}, {"limits.add_addr_accepted", l.GetAddAddrAccepted()}} {
		if f.v > 8 {
			return nil, invalid(f.name, "%d is above the kernel's maximum of 8", f.v)
		}
	}
	got, err := s.backend.SetLimits(genl.Limits{Subflows: l.GetSubflows(), AddAddrAccepted: l.GetAddAddrAccepted()})
	if err != nil {
		return nil, err
	}
	return &pb.SetLimitsResponse{Limits: limitsToPB(got)}, nil
}

func (s *Server) GetPolicy(context.Context, *pb.GetPolicyRequest) (*pb.GetPolicyResponse, error) {
	p, err := s.backend.Policy()
	if err != nil {
		return nil, err
	}
	resp := &pb.GetPolicyResponse{Document: p.Document, Source: p.Source}
	if !p.Applied.IsZero() {
		resp.Applied = timestampOf(p.Applied)
	}
	return resp, nil
}

func document(doc string) error {
	switch {
	case doc == "":
		return invalid("document", "empty (want a TOML configuration document; an empty policy would still have to say mode = ...)")
	case len(doc) > maxDocument:
		return invalid("document", "%d bytes, more than the %d accepted", len(doc), maxDocument)
	}
	return nil
}

// policyError makes a document the configuration parser refused an
// INVALID_ARGUMENT naming the document, with the parser's line and key.
func policyError(err error) error {
	if errors.Is(err, genl.ErrInvalid) {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return &FieldError{Field: "document", Message: err.Error()}
		}
	}
	return err
}

func (s *Server) ValidatePolicy(_ context.Context, req *pb.ValidatePolicyRequest) (*pb.ValidatePolicyResponse, error) {
	if err := document(req.GetDocument()); err != nil {
		return nil, err
	}
	res, err := s.backend.PlanPolicy(req.GetDocument())
	if err != nil {
		return nil, policyError(err)
	}
	return &pb.ValidatePolicyResponse{Plan: s.planToPB(res)}, nil
}

func (s *Server) ApplyPolicy(_ context.Context, req *pb.ApplyPolicyRequest) (*pb.ApplyPolicyResponse, error) {
	if err := document(req.GetDocument()); err != nil {
		return nil, err
	}
	apply := s.backend.ApplyPolicy
	if req.GetDryRun() {
		apply = s.backend.PlanPolicy
	}
	res, err := apply(req.GetDocument())
	if err != nil {
		return nil, policyError(err)
	}
	return &pb.ApplyPolicyResponse{Plan: s.planToPB(res)}, nil
}

func (s *Server) ListConnections(ctx context.Context, req *pb.ListConnectionsRequest) (*pb.ListConnectionsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		return nil, invalid("page_size", "%d is more than the %d allowed", size, MaxPageSize)
	}
	// A page token is "<listing>@<last>": the listing the previous page
	// came from, kept for a while so that paging through thousands of
	// connections reads the kernel once, and the last connection of that
	// page (see pageToken), to go on from a fresh listing when the kept one
	// is gone. Connections come in order (see compareConns).
	var (
		after   func(diag.Connection) bool
		conns   []diag.Connection
		listing uint64
	)
	if tok := req.GetPageToken(); tok != "" {
		id, last, kept := strings.Cut(tok, "@")
		if !kept {
			last = tok
		}
		var ok bool
		if after, ok = parsePageToken(last); !ok {
			return nil, invalid("page_token", "%q is not a page token from a previous response", tok)
		}
		if kept {
			n, err := strconv.ParseUint(id, 10, 64)
			if err != nil {
				return nil, invalid("page_token", "%q is not a page token from a previous response", tok)
			}
			conns, listing = s.pages.get(n, req.GetListeners())
		}
	}
	if conns == nil {
		f := diag.Filter{}
		if req.GetListeners() {
			f.States = diag.AllStates
		}
		var err error
		if conns, err = s.backend.Connections(ctx, f); err != nil {
			return nil, err
		}
		slices.SortFunc(conns, compareConns)
		listing = 0
	}
	start := 0
	if after != nil {
		if start = slices.IndexFunc(conns, after); start < 0 {
			start = len(conns)
		}
	}
	end := min(start+size, len(conns))
	resp := &pb.ListConnectionsResponse{Connections: make([]*pb.Connection, 0, end-start)}
	for _, c := range conns[start:end] {
		resp.Connections = append(resp.Connections, s.connectionToPB(c))
	}
	switch {
	case end < len(conns):
		if listing == 0 {
			listing = s.pages.put(conns, req.GetListeners())
		}
		resp.NextPageToken = strconv.FormatUint(listing, 10) + "@" + pageToken(conns[end-1])
	case listing != 0:
		s.pages.drop(listing)
	}
	return resp, nil
}

// listings keeps the connection listings that clients are paging through.
type listings struct {
	mu   sync.Mutex
	last uint64
	kept map[uint64]*listingEntry
}

type listingEntry struct {
	conns     []diag.Connection
	listeners bool
	at        time.Time
}

const (
	// listingTTL is how long a listing is kept for its next page; a client
	// slower than that gets its next page from a fresh listing.
	listingTTL = 30 * time.Second
	// maxListings bounds the listings kept (the oldest goes first).
	maxListings = 4
)

// put keeps a listing and returns its ID (never 0).
func (l *listings) put(conns []diag.Connection, listeners bool) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kept == nil {
		l.kept = make(map[uint64]*listingEntry)
	}
	now := time.Now()
	for id, e := range l.kept {
		if now.Sub(e.at) > listingTTL {
			delete(l.kept, id)
		}
	}
	for len(l.kept) >= maxListings {
		delete(l.kept, slices.Min(slices.Collect(maps.Keys(l.kept))))
	}
	l.last++
	l.kept[l.last] = &listingEntry{conns: conns, listeners: listeners, at: now}
	return l.last
}

// get returns a kept listing, or nil.
func (l *listings) get(id uint64, listeners bool) ([]diag.Connection, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.kept[id]
	if !ok || e.listeners != listeners || time.Since(e.at) > listingTTL {
		return nil, 0
	}
	return e.conns, id
}

// drop forgets a listing whose last page was served.
func (l *listings) drop(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.kept, id)
}

// compareConns orders connections by token, then (listeners all have
// token 0) by local address and socket cookie.
func compareConns(a, b diag.Connection) int {
	return cmp.Or(cmp.Compare(a.Token, b.Token), a.Local.Compare(b.Local), cmp.Compare(a.Cookie, b.Cookie))
}

// pageToken is the page token of the page after c: its token, which names
// it, or for a listener, which has none, "0/local address/cookie".
func pageToken(c diag.Connection) string {
	if c.Token != 0 {
		return strconv.FormatUint(uint64(c.Token), 10)
	}
	local, _ := c.Local.MarshalText()
	return "0/" + string(local) + "/" + strconv.FormatUint(c.Cookie, 10)
}

// parsePageToken parses a pageToken into a test for the connections that
// come after it.
func parsePageToken(tok string) (after func(diag.Connection) bool, ok bool) {
	if t, err := strconv.ParseUint(tok, 10, 32); err == nil {
		return func(c diag.Connection) bool { return uint64(c.Token) > t }, true
	}
	rest, found := strings.CutPrefix(tok, "0/")
	if !found {
		return nil, false
	}
	local, cookie, found := strings.Cut(rest, "/")
	if !found {
		return nil, false
	}
	last := diag.Connection{}
	if err := last.Local.UnmarshalText([]byte(local)); err != nil {
		return nil, false
	}
	var err error
	if last.Cookie, err = strconv.ParseUint(cookie, 10, 64); err != nil {
		return nil, false
	}
	return func(c diag.Connection) bool { return compareConns(c, last) > 0 }, true
}

func token(field string, t uint32) (uint32, error) {
	if t == 0 {
		return 0, invalid(field, "missing (want the connection's token, as `mptcpctl connection list` shows it)")
	}
	return t, nil
}

func (s *Server) GetConnection(ctx context.Context, req *pb.GetConnectionRequest) (*pb.GetConnectionResponse, error) {
	t, err := token("token", req.GetToken())
	if err != nil {
		return nil, err
	}
	c, err := s.backend.Connection(ctx, t)
	if err != nil {
		return nil, err
	}
	return &pb.GetConnectionResponse{Connection: s.connectionToPB(c)}, nil
}

func (s *Server) Announce(_ context.Context, req *pb.AnnounceRequest) (*pb.AnnounceResponse, error) {
	t, err := token("token", req.GetToken())
	if err != nil {
		return nil, err
	}
	addr, err := address("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	id, err := endpointID("id", req.GetId(), false)
	if err != nil {
		return nil, err
	}
	p, err := port("port", req.GetPort(), true)
	if err != nil {
		return nil, err
	}
	if err := s.backend.Announce(t, genl.Endpoint{ID: id, Addr: addr, Port: p, Flags: genl.FlagSignal}); err != nil {
		return nil, err
	}
	return &pb.AnnounceResponse{}, nil
}

func (s *Server) Withdraw(_ context.Context, req *pb.WithdrawRequest) (*pb.WithdrawResponse, error) {
	t, err := token("token", req.GetToken())
	if err != nil {
		return nil, err
	}
	id, err := endpointID("id", req.GetId(), false)
	if err != nil {
		return nil, err
	}
	if err := s.backend.Withdraw(t, id); err != nil {
		return nil, err
	}
	return &pb.WithdrawResponse{}, nil
}

func (s *Server) CreateSubflow(_ context.Context, req *pb.CreateSubflowRequest) (*pb.CreateSubflowResponse, error) {
	t, err := token("token", req.GetToken())
	if err != nil {
		return nil, err
	}
	local, err := address("local_address", req.GetLocalAddress())
	if err != nil {
		return nil, err
	}
	lid, err := endpointID("local_id", req.GetLocalId(), true)
	if err != nil {
		return nil, err
	}
	lport, err := port("local_port", req.GetLocalPort(), true)
	if err != nil {
		return nil, err
	}
	remote, err := address("remote_address", req.GetRemoteAddress())
	if err != nil {
		return nil, err
	}
	rport, err := port("remote_port", req.GetRemotePort(), false)
	if err != nil {
		return nil, err
	}
	if local.Is4() != remote.Is4() {
		return nil, invalid("remote_address", "%s and local address %s are of different families", remote, local)
	}
	ep := genl.Endpoint{ID: lid, Addr: local, Port: lport}
	if req.GetBackup() {
		ep.Flags |= genl.FlagBackup
	}
	if name := req.GetInterfaceName(); name != "" {
		idx := s.backend.InterfaceIndex(name)
		if idx == 0 {
			return nil, invalid("interface_name", "no interface %q in the namespace mptcpd manages", name)
		}
		ep.IfIndex = int32(idx)
	}
	if err := s.backend.CreateSubflow(t, ep, netip.AddrPortFrom(remote, rport)); err != nil {
		return nil, err
	}
	return &pb.CreateSubflowResponse{}, nil
}

// subflowKey checks a SubflowKey.
func subflowKey(k *pb.SubflowKey) (tok uint32, local, remote netip.AddrPort, err error) {
	if k == nil {
		return 0, local, remote, invalid("subflow", "missing (give token, local and remote address and port)")
	}
	if tok, err = token("subflow.token", k.GetToken()); err != nil {
		return
	}
	la, err := address("subflow.local_address", k.GetLocalAddress())
	if err != nil {
		return
	}
	lp, err := port("subflow.local_port", k.GetLocalPort(), false)
	if err != nil {
		return
	}
	ra, err := address("subflow.remote_address", k.GetRemoteAddress())
	if err != nil {
		return
	}
	rp, err := port("subflow.remote_port", k.GetRemotePort(), false)
	if err != nil {
		return
	}
	if la.Is4() != ra.Is4() {
		return 0, local, remote, invalid("subflow.remote_address", "%s and local address %s are of different families", ra, la)
	}
	return tok, netip.AddrPortFrom(la, lp), netip.AddrPortFrom(ra, rp), nil
}

func (s *Server) DestroySubflow(_ context.Context, req *pb.DestroySubflowRequest) (*pb.DestroySubflowResponse, error) {
	t, local, remote, err := subflowKey(req.GetSubflow())
	if err != nil {
		return nil, err
	}
	if err := s.backend.DestroySubflow(t, local, remote); err != nil {
		return nil, err
	}
	return &pb.DestroySubflowResponse{}, nil
}

func (s *Server) SetSubflowBackup(_ context.Context, req *pb.SetSubflowBackupRequest) (*pb.SetSubflowBackupResponse, error) {
	t, local, remote, err := subflowKey(req.GetSubflow())
	if err != nil {
		return nil, err
	}
	if err := s.backend.SetSubflowBackup(t, local, remote, req.GetBackup()); err != nil {
		return nil, err
	}
	return &pb.SetSubflowBackupResponse{}, nil
}

// watchFilter is a Watch request's filter.
type watchFilter struct {
	kinds  map[pb.EventKind]bool
	tokens map[uint32]bool
}

func (f watchFilter) pass(r *pb.WatchResponse) bool {
	if len(f.kinds) > 0 && !f.kinds[r.GetKind()] {
		return false
	}
	if len(f.tokens) > 0 && !f.tokens[r.GetToken()] {
		return false
	}
	return true
}

func (s *Server) Watch(req *pb.WatchRequest, stream pb.MptcpdService_WatchServer) error {
	f := watchFilter{kinds: map[pb.EventKind]bool{}, tokens: map[uint32]bool{}}
	for i, k := range req.GetKinds() {
		if k == pb.EventKind_EVENT_KIND_UNSPECIFIED || !knownKind(k) {
			return invalid(fmt.Sprintf("kinds[%d]", i), "unknown event kind %d", int32(k))
		}
		f.kinds[k] = true
	}
	for i, t := range req.GetTokens() {
		if t == 0 {
			return invalid(fmt.Sprintf("tokens[%d]", i), "0 is not a connection token")
		}
		f.tokens[t] = true
	}
	ctx := stream.Context()
	snapshot, sub, err := s.backend.Watch(ctx, WatchBuffer)
	if err != nil {
		return err
	}
	defer sub.Close()
	for _, e := range snapshot {
		if r := s.eventToPB(e, true); f.pass(r) {
			if err := stream.Send(r); err != nil {
				return err
			}
		}
	}
	if err := stream.Send(&pb.WatchResponse{Kind: pb.EventKind_EVENT_KIND_SNAPSHOT_END, Time: timestampNow()}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return status.Error(codes.Unavailable, "mptcpd is stopping")
		case e, ok := <-sub.C():
			if !ok {
				if err := sub.Err(); err != nil {
					return err
				}
				return status.Error(codes.Unavailable, "mptcpd is stopping")
			}
			if r := s.eventToPB(e, false); f.pass(r) {
				if err := stream.Send(r); err != nil {
					return err
				}
			}
		}
	}
}
