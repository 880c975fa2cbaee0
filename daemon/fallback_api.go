package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/pm"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// mpxConnection is a fallback session in the connection inventory's form.
func mpxConnection(s mpx.Stats, converter bool, ifIndex func(netip.Addr) int) diag.Connection {
	c := diag.Connection{
		Token: uint32(s.Token),
		State: diag.StateEstablished,
		MPX:   &diag.MPXSession{Token: s.Token, Destination: s.Dest.String(), Converter: converter},
	}
	c.Info.BytesSent, c.Info.BytesReceived, c.Info.BytesAcked = s.BytesSent, s.BytesRecv, s.BytesAcked
	if ap := s.Dest.AddrPort(); ap.IsValid() && !converter {
		c.Remote = ap
	}
	for i, sf := range s.Subflows {
		if i == 0 {
			c.Local = sf.Local
			if !c.Remote.IsValid() {
				c.Remote = sf.Remote
			}
		}
		family := diag.Family(2)
		if sf.Local.Addr().Is6() {
			family = 10
		}
		c.Family = family
		d := diag.Subflow{
			Family: family, Local: sf.Local, Remote: sf.Remote, State: diag.StateEstablished,
			LocalID: sf.LocalID, RemoteID: sf.RemoteID, LocalToken: uint32(s.Token),
			BackupLocal: sf.Backup, BackupRemote: sf.PeerBackup, FullyEstablished: true,
		}
		d.RTT = sf.RTT
		d.BytesSent, d.BytesReceived = sf.BytesSent, sf.BytesRecv
		if ifIndex != nil {
			d.Interface = ifIndex(sf.Local.Addr())
		}
		c.Subflows = append(c.Subflows, d)
	}
	if len(c.Subflows) > 0 {
		c.Info.ExtraSubflows = uint8(len(c.Subflows) - 1)
	}
	return c
}

// mpxEvent turns a session event into the event stream's form, with the
// kernel's event types, so that watchers need not care which datapath
// carries a connection.
func mpxEvent(e mpx.Event) (events.Event, bool) {
	var t genl.EventType
	var kind events.Kind
	switch e.Kind {
	case mpx.EventCreated:
		t, kind = genl.EventCreated, events.KindConnectionCreated
	case mpx.EventEstablished:
		t, kind = genl.EventEstablished, events.KindConnectionEstablished
	case mpx.EventClosed:
		t, kind = genl.EventClosed, events.KindConnectionClosed
	case mpx.EventSubEstablished:
		t, kind = genl.EventSubEstablished, events.KindSubflowEstablished
	case mpx.EventSubClosed, mpx.EventSubStale:
		t, kind = genl.EventSubClosed, events.KindSubflowClosed
	case mpx.EventSubPriority:
		t, kind = genl.EventSubPriority, events.KindSubflowPriority
	case mpx.EventAnnounced:
		t, kind = genl.EventAnnounced, events.KindAnnounced
	case mpx.EventRemoved:
		t, kind = genl.EventRemoved, events.KindRemoved
	default:
		return events.Event{}, false
	}
	ke := &genl.Event{Type: t, Token: uint32(e.Token), Local: e.Subflow.Local, Remote: e.Subflow.Remote,
		LocalID: e.Subflow.LocalID, RemoteID: e.Subflow.RemoteID, Backup: e.Subflow.Backup || e.Subflow.PeerBackup}
	if e.Kind == mpx.EventAnnounced || e.Kind == mpx.EventRemoved {
		ke.Remote, ke.RemoteID = e.Addr, e.AddrID
	}
	reason := "fallback datapath (MPX)"
	switch {
	case e.Kind == mpx.EventSubStale:
		reason += ": subflow stale, its data sent again on the others"
	case e.Err != nil:
		reason += ": " + e.Err.Error()
	}
	return events.Event{Kind: kind, Time: time.Now(), Token: uint32(e.Token), Reason: reason, Kernel: ke}, true
}

// fallbackNode is the API's backend in fallback mode: no kernel path
// manager; the endpoints are the fallback's paths, the connections its
// sessions.
type fallbackNode struct {
	started time.Time
	nsfd    int
	reason  string
	source  string
	client  *mpx.Client
	conv    *converterRole
	broker  *events.Broker
	ready   atomic.Bool

	mu     sync.Mutex
	cfg    *config.Config
	state  netmon.State
	paths  []mpx.Path
	limits mpx.Limits
}

var _ api.Backend = (*fallbackNode)(nil)

func (f *fallbackNode) wrongMode(op string) error {
	return fmt.Errorf("%s: %w: mptcpd runs in fallback mode, where the kernel's MPTCP is not used; the paths follow the [[rule]] tables of the configuration (edit them and reload)", op, pm.ErrWrongMode)
}

func (f *fallbackNode) update(cfg *config.Config, st netmon.State, paths []mpx.Path, limits mpx.Limits) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg, f.state, f.paths, f.limits = cfg, st, slices.Clone(paths), limits
}

func (f *fallbackNode) Status(ctx context.Context) (api.Status, error) {
	f.mu.Lock()
	st := api.Status{
		Mode: "fallback", ConfiguredMode: string(f.cfg.Mode), ModeReason: f.reason,
		Version: version(), NetNS: f.cfg.NetNS, Started: f.started, Ready: f.ready.Load(),
		EndpointsPolicy: len(f.paths),
	}
	f.mu.Unlock()
	st.Capabilities, _ = genl.Probe(genl.WithNetNS(f.nsfd))
	conns, _ := f.Connections(ctx, diag.Filter{})
	st.Connections = len(conns)
	for _, c := range conns {
		st.Subflows += len(c.Subflows)
	}
	return st, nil
}

func (f *fallbackNode) Endpoints() ([]pm.EndpointInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]pm.EndpointInfo, 0, len(f.paths))
	for _, p := range f.paths {
		flags := genl.FlagSubflow
		if p.Backup {
			flags |= genl.FlagBackup
		}
		if p.Fullmesh {
			flags |= genl.FlagFullmesh
		}
		ep := genl.Endpoint{ID: p.ID, Addr: p.Addr, Flags: flags, IfIndex: int32(f.state.IndexOf(p.Dev))}
		out = append(out, pm.EndpointInfo{Endpoint: ep, Owner: pm.OwnerPolicy, Rule: "fallback path"})
	}
	return out, nil
}

func (f *fallbackNode) Endpoint(id uint8) (pm.EndpointInfo, error) {
	eps, _ := f.Endpoints()
	for _, ep := range eps {
		if ep.ID == id {
			return ep, nil
		}
	}
	return pm.EndpointInfo{}, fmt.Errorf("endpoint %d: %w", id, genl.ErrNotFound)
}

func (f *fallbackNode) AddEndpoint(genl.Endpoint, string) (pm.EndpointInfo, error) {
	return pm.EndpointInfo{}, f.wrongMode("add endpoint")
}

func (f *fallbackNode) DeleteEndpoint(uint8) (pm.EndpointInfo, error) {
	return pm.EndpointInfo{}, f.wrongMode("delete endpoint")
}

func (f *fallbackNode) SetEndpointFlags(uint8, *bool, *bool) (pm.EndpointInfo, error) {
	return pm.EndpointInfo{}, f.wrongMode("change endpoint")
}

func (f *fallbackNode) FlushEndpoints() ([]pm.EndpointInfo, error) {
	return nil, f.wrongMode("flush endpoints")
}

func (f *fallbackNode) Limits() (genl.Limits, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	explicit := !f.cfg.Limits.Subflows.Auto || !f.cfg.Limits.AddAddrAccepted.Auto
	return genl.Limits{Subflows: uint32(f.limits.Subflows), AddAddrAccepted: uint32(f.limits.AddAddrAccepted)}, explicit, nil
}

func (f *fallbackNode) SetLimits(genl.Limits) (genl.Limits, error) {
	return genl.Limits{}, f.wrongMode("set limits")
}

func (f *fallbackNode) Policy() (api.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	doc, err := f.cfg.Marshal()
	if err != nil {
		return api.Policy{}, err
	}
	return api.Policy{Document: string(doc), Source: f.source, Applied: f.started}, nil
}

func (f *fallbackNode) PlanPolicy(string) (pm.Result, error) {
	return pm.Result{}, f.wrongMode("plan policy")
}

func (f *fallbackNode) ApplyPolicy(string) (pm.Result, error) {
	return pm.Result{}, f.wrongMode("apply policy")
}

// ifIndex finds the interface that holds a local address.
func (f *fallbackNode) ifIndex(a netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ad := range f.state.Addrs {
		if ad.Prefix.Addr() == a {
			return ad.Index
		}
	}
	return 0
}

func (f *fallbackNode) Connections(_ context.Context, filter diag.Filter) ([]diag.Connection, error) {
	return mpxConnections(f.client, f.conv, filter, f.ifIndex), nil
}

// mpxConnections lists the sessions of the fallback roles that run.
func mpxConnections(client *mpx.Client, conv *converterRole, filter diag.Filter, ifIndex func(netip.Addr) int) []diag.Connection {
	var out []diag.Connection
	add := func(sessions []*mpx.Conn, converter bool) {
		for _, s := range sessions {
			c := mpxConnection(s.Stats(), converter, ifIndex)
			if len(filter.Tokens) > 0 && !slices.Contains(filter.Tokens, c.Token) {
				continue
			}
			if filter.NoSubflows {
				c.Subflows = nil
			}
			out = append(out, c)
		}
	}
	if client != nil {
		add(client.Sessions(), false)
	}
	if conv != nil {
		add(conv.conv.Sessions(), true)
	}
	slices.SortFunc(out, func(a, b diag.Connection) int { return int(int64(a.Token) - int64(b.Token)) })
	return out
}

func (f *fallbackNode) Connection(ctx context.Context, token uint32) (diag.Connection, error) {
	conns, _ := f.Connections(ctx, diag.Filter{Tokens: []uint32{token}})
	if len(conns) == 0 {
		return diag.Connection{}, fmt.Errorf("connection %#x: %w", token, genl.ErrUnknownToken)
	}
	return conns[0], nil
}

func (f *fallbackNode) ConnectionPolicy(uint32) (userspace.ConnInfo, bool) {
	return userspace.ConnInfo{}, false
}

func (f *fallbackNode) Announce(uint32, genl.Endpoint) error { return f.wrongMode("announce") }
func (f *fallbackNode) Withdraw(uint32, uint8) error         { return f.wrongMode("withdraw") }
func (f *fallbackNode) CreateSubflow(uint32, genl.Endpoint, netip.AddrPort) error {
	return f.wrongMode("create subflow")
}
func (f *fallbackNode) DestroySubflow(uint32, netip.AddrPort, netip.AddrPort) error {
	return f.wrongMode("destroy subflow")
}
func (f *fallbackNode) SetSubflowBackup(uint32, netip.AddrPort, netip.AddrPort, bool) error {
	return f.wrongMode("set subflow backup")
}

// Watch subscribes, then takes the snapshot: links, addresses, the paths
// (as endpoints) and the sessions.
func (f *fallbackNode) Watch(ctx context.Context, size int) ([]events.Event, *events.Subscription, error) {
	sub := f.broker.Subscribe(size)
	now := time.Now()
	f.mu.Lock()
	st := f.state
	f.mu.Unlock()
	snap := interfaceSnapshot(st, now)
	eps, _ := f.Endpoints()
	for _, ep := range eps {
		snap = append(snap, events.Event{Kind: events.KindEndpointAdded, Time: now, Endpoint: &ep})
	}
	conns, _ := f.Connections(ctx, diag.Filter{})
	for _, c := range conns {
		snap = append(snap, events.Event{Kind: events.KindConnectionEstablished, Time: now, Token: c.Token, Connection: &c})
	}
	return snap, sub, nil
}

func (f *fallbackNode) InterfaceName(index int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Links[index].Name
}

func (f *fallbackNode) InterfaceIndex(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.IndexOf(name)
}
