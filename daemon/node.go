package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/metrics"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/pm"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// node is one running daemon: the namespace it manages, its kernel
// clients, and the state the API reports. It is the API's Backend.
type node struct {
	// conv is the converter role, when enabled; fb the fallback client
	// over kernel MPTCP, when [fallback] names a converter.
	conv    *converterRole
	fb      *mpx.Client
	log     *slog.Logger
	opts    Options
	nsfd    int
	caps    genl.Capabilities
	client  *genl.Client
	diag    *diag.Client
	rec     *pm.Reconciler
	broker  events.Broker
	metrics *metrics.Metrics
	started time.Time
	mode    string // the mode in use
	reason  string // why, when auto chose it

	kernelEvents atomic.Uint64
	// us is the userspace path manager (userspace mode), set at the
	// first reconcile; usDone reports its end.
	us     atomic.Pointer[userspace.Manager]
	usDone <-chan error
	// bg is the context of the daemon's background work.
	bg context.Context
	// kick tells the loop that the watcher was replaced.
	kick chan struct{}
	// subscribed is closed once the kernel's events are subscribed to
	// (at once when the kernel has no event group).
	subscribed     chan struct{}
	subscribedOnce sync.Once

	// mu serialises reconciles and guards the policy, the watcher and
	// the reconcile statistics.
	mu              sync.Mutex
	cfg             *config.Config
	source          string
	applied         time.Time
	w               *watcher
	ready           bool
	lastReconcile   *events.Reconcile
	reconcileRuns   uint64
	reconcileErrors uint64

	// stateMu guards the last interface state read, for interface names
	// and the watch snapshot, and the addresses already published from
	// the fast path (early), which the next diff of the state skips.
	stateMu sync.RWMutex
	state   netmon.State
	early   map[netip.Prefix]bool
}

// version is the daemon's version, from the build information.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// reconcile reads the interfaces and applies the policy; fresh reads
// everything from the kernel rather than the state kept from
// notifications. The caller holds n.mu.
func (n *node) reconcile(why string, fresh bool) error {
	start := time.Now()
	if fresh {
		n.w.mon.Refresh()
	}
	// The state read next has every change signalled so far: a signal
	// still waiting would only repeat this reconcile.
	select {
	case <-n.w.mon.Changes():
	default:
	}
	st, err := n.w.mon.State()
	var res pm.Result
	if err == nil {
		read := time.Since(start)
		n.publishInterfaceChanges(st)
		if n.conv != nil {
			wants, _ := pm.Desired(n.cfg, st)
			n.conv.update(n.cfg, st, wants)
		}
		if n.mode == "userspace" {
			err = n.reconcileUserspace(st)
			took := time.Since(start)
			n.reconcileRuns++
			if err != nil {
				n.reconcileErrors++
			}
			n.metrics.Reconciled(err)
			n.lastReconcile = &events.Reconcile{Time: start, Trigger: why, Err: err, Took: took}
			n.broker.Publish(events.Event{Kind: events.KindReconciled, Reconcile: n.lastReconcile})
			return err
		}
		res, err = n.rec.Reconcile(n.cfg, st)
		n.log.Debug("reconciled", "trigger", why, "changes", res.Changes(), "owned", len(res.Owned), "foreign", len(res.Foreign), "skipped", len(res.Skipped),
			"read_interfaces", read, "took", time.Since(start))
		for _, s := range res.Skipped {
			n.log.Debug("address not used", "addr", s.Addr, "interface", s.Interface, "reason", s.Reason)
		}
		n.metrics.Endpoints(len(res.Owned), len(res.Manual), len(res.Foreign))
		if res.Changes() > 0 {
			n.metrics.Latency(why, time.Since(start))
		}
	}
	took := time.Since(start)
	n.reconcileRuns++
	if err != nil {
		n.reconcileErrors++
	}
	n.metrics.Reconciled(err)
	n.lastReconcile = &events.Reconcile{Time: start, Trigger: why, Err: err, Changes: res.Changes() + limitChange(res), Took: took}
	n.broker.Publish(events.Event{Kind: events.KindReconciled, Reconcile: n.lastReconcile})
	return err
}

// reconcileUserspace gives the userspace path manager the policy for st,
// starting it the first time. The caller holds n.mu.
func (n *node) reconcileUserspace(st netmon.State) error {
	if m := n.us.Load(); m != nil {
		m.SetPolicy(userspacePolicy(n.cfg, st, m.Policy()))
		return nil
	}
	m, done, err := n.startUserspace(n.bg, st)
	if err != nil {
		return err
	}
	n.usDone = done
	n.us.Store(m)
	return nil
}

func limitChange(res pm.Result) int {
	if res.Limits != res.LimitsBefore {
		return 1
	}
	return 0
}

// publishInterfaceChanges publishes the links and addresses that differ
// from the last state read, and keeps st.
func (n *node) publishInterfaceChanges(st netmon.State) {
	n.stateMu.Lock()
	prev := n.state
	n.state = st
	early := n.early
	n.early = nil
	n.stateMu.Unlock()
	if n.broker.Subscribers() == 0 {
		return
	}
	for _, idx := range slices.Sorted(maps.Keys(st.Links)) {
		l := st.Links[idx]
		old, had := prev.Links[idx]
		if l.Running && (!had || !old.Running) {
			n.broker.Publish(events.Event{Kind: events.KindLinkUp, Link: &l})
		}
		if !l.Running && had && old.Running {
			n.broker.Publish(events.Event{Kind: events.KindLinkDown, Link: &l})
		}
	}
	for idx, l := range prev.Links {
		if _, still := st.Links[idx]; !still && l.Running {
			n.broker.Publish(events.Event{Kind: events.KindLinkDown, Link: &l, Reason: "interface removed"})
		}
	}
	key := func(a netmon.Addr) string { return fmt.Sprintf("%d/%s", a.Index, a.Prefix) }
	old := make(map[string]bool, len(prev.Addrs))
	for _, a := range prev.Addrs {
		old[key(a)] = true
	}
	cur := make(map[string]bool, len(st.Addrs))
	for _, a := range st.Addrs {
		cur[key(a)] = true
		if !old[key(a)] && !early[a.Prefix] {
			n.broker.Publish(events.Event{Kind: events.KindAddressAdded, Addr: &a})
		}
	}
	for _, a := range prev.Addrs {
		if !cur[key(a)] {
			n.broker.Publish(events.Event{Kind: events.KindAddressRemoved, Addr: &a})
		}
	}
}

// newAddrs is the fast path from a new address to its endpoint (kernel
// mode): called by the watcher as the kernel announces an address, before
// the full reconcile that follows. Watchers see the address before the
// endpoint made of it.
func (n *node) newAddrs(added []netmon.NewAddr) {
	if n.mode != "kernel" {
		return
	}
	if n.broker.Subscribers() > 0 {
		n.stateMu.Lock()
		if n.early == nil {
			n.early = map[netip.Prefix]bool{}
		}
		for _, a := range added {
			if _, known := n.state.Links[a.Addr.Index]; known && !slices.ContainsFunc(n.state.Addrs, func(x netmon.Addr) bool { return x.Prefix == a.Addr.Prefix && x.Index == a.Addr.Index }) && !n.early[a.Addr.Prefix] {
				n.early[a.Addr.Prefix] = true
				addr := a.Addr
				n.broker.Publish(events.Event{Kind: events.KindAddressAdded, Addr: &addr})
			}
		}
		n.stateMu.Unlock()
	}
	res, err := n.rec.AddNew(added)
	if !n.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if err != nil {
		// The full reconcile that follows tries again, and reports what
		// still fails.
		n.log.Debug("fast path failed; the full reconcile follows", "error", err)
	}
	for _, s := range res.Skipped {
		n.log.Debug("new address not made an endpoint at once", "addr", s.Addr, "interface", s.Interface, "reason", s.Reason)
	}
}

// onChange publishes a change the reconciler made.
func (n *node) onChange(c pm.Change) {
	owner := pm.OwnerPolicy
	if c.Manual {
		owner = pm.OwnerManual
	}
	info := pm.EndpointInfo{Endpoint: c.Endpoint, Owner: owner, Rule: c.Rule}
	e := events.Event{Reason: c.Reason, Endpoint: &info}
	switch c.Action {
	case pm.ActionAdd:
		e.Kind = events.KindEndpointAdded
	case pm.ActionRemove:
		e.Kind = events.KindEndpointRemoved
	case pm.ActionUpdate:
		e.Kind = events.KindEndpointChanged
	case pm.ActionLimits:
		l := c.Limits
		e = events.Event{Kind: events.KindLimitsChanged, Reason: c.Reason, Limits: &l}
	}
	n.broker.Publish(e)
}

// kernelEventsLoop publishes the kernel's MPTCP events until ctx ends.
func (n *node) kernelEventsLoop(ctx context.Context) {
	backoff := time.Second
	resubscribed := false
	for ctx.Err() == nil {
		sub, err := n.client.Subscribe(ctx)
		if err != nil {
			n.log.Warn("cannot subscribe to the kernel's MPTCP events; retrying", "error", err, "retry_in", backoff)
			n.metrics.NetlinkError("subscribe")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		n.subscribedOnce.Do(func() { close(n.subscribed) })
		if resubscribed {
			// Events between the two subscriptions are lost.
			if m := n.us.Load(); m != nil {
				if err := m.Resync(ctx); err != nil && ctx.Err() == nil {
					n.log.Error("resynchronising the userspace path manager", "error", err)
				}
			}
		}
		resubscribed = true
		for {
			evs, err := sub.Receive()
			if errors.Is(err, genl.ErrEventsLost) {
				n.log.Warn("kernel MPTCP events were lost (socket buffer overflowed)")
				n.metrics.NetlinkError("events_lost")
				n.broker.Publish(events.Event{Kind: events.KindEventsLost, Reason: "the kernel's event socket overflowed; re-read the state"})
				if m := n.us.Load(); m != nil {
					if err := m.Resync(ctx); err != nil && ctx.Err() == nil {
						n.log.Error("resynchronising the userspace path manager", "error", err)
					}
				}
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("reading kernel MPTCP events", "error", err)
					n.metrics.NetlinkError("events")
				}
				break
			}
			if m := n.us.Load(); m != nil {
				m.Handle(evs) // decisions first
			}
			for i := range evs {
				n.kernelEvent(&evs[i])
			}
		}
		_ = sub.Close()
	}
}

func (n *node) kernelEvent(e *genl.Event) {
	n.kernelEvents.Add(1)
	n.metrics.KernelEvent(e.Type.String())
	switch e.Type {
	case genl.EventSubEstablished:
		n.metrics.Subflow("established")
	case genl.EventSubClosed:
		if e.SubflowErr != 0 {
			n.metrics.Subflow("failed")
		} else {
			n.metrics.Subflow("closed")
		}
	}
	kind, ok := events.KernelKind(e.Type)
	if !ok {
		return
	}
	n.broker.Publish(events.Event{Kind: kind, Token: e.Token, Kernel: e})
}

// Backend.

func (n *node) Status(ctx context.Context) (api.Status, error) {
	n.mu.Lock()
	st := api.Status{
		Mode: n.mode, ConfiguredMode: string(n.cfg.Mode), ModeReason: n.reason,
		Version: version(), NetNS: n.cfg.NetNS, Started: n.started, Ready: n.ready,
		LastReconcile: n.lastReconcile, ReconcileRuns: n.reconcileRuns, ReconcileErrors: n.reconcileErrors,
		KernelEvents: n.kernelEvents.Load(),
	}
	n.mu.Unlock()
	caps, err := genl.Probe(genl.WithNetNS(n.nsfd))
	if err != nil {
		caps = n.caps
	}
	st.Capabilities = caps
	infos, err := n.rec.Endpoints()
	if err != nil {
		return st, err
	}
	for _, info := range infos {
		switch info.Owner {
		case pm.OwnerPolicy:
			st.EndpointsPolicy++
		case pm.OwnerManual:
			st.EndpointsManual++
		default:
			st.EndpointsForeign++
		}
	}
	conns, err := n.diag.Connections(ctx, diag.Filter{NoSubflows: true})
	if err != nil {
		return st, err
	}
	st.Connections = len(conns)
	for _, c := range conns {
		st.Subflows += int(c.Info.ExtraSubflows) + 1
	}
	return st, nil
}

func (n *node) Endpoints() ([]pm.EndpointInfo, error)      { return n.rec.Endpoints() }
func (n *node) Endpoint(id uint8) (pm.EndpointInfo, error) { return n.rec.Endpoint(id) }

func (n *node) AddEndpoint(ep genl.Endpoint, _ string) (pm.EndpointInfo, error) {
	got, err := n.rec.AddManual(ep)
	if err != nil {
		return pm.EndpointInfo{}, err
	}
	return pm.EndpointInfo{Endpoint: got, Owner: pm.OwnerManual}, nil
}

func (n *node) DeleteEndpoint(id uint8) (pm.EndpointInfo, error) {
	info, err := n.rec.Endpoint(id)
	if err != nil {
		return info, err
	}
	if _, err := n.rec.DeleteManual(id); err != nil {
		return info, err
	}
	return info, nil
}

func (n *node) SetEndpointFlags(id uint8, backup, fullmesh *bool) (pm.EndpointInfo, error) {
	info, err := n.rec.Endpoint(id)
	if err != nil {
		return info, err
	}
	ep, err := n.rec.SetManualFlags(id, backup, fullmesh)
	if err != nil {
		return info, err
	}
	info.Endpoint = ep
	return info, nil
}

func (n *node) FlushEndpoints() ([]pm.EndpointInfo, error) {
	before, err := n.rec.Endpoints()
	if err != nil {
		return nil, err
	}
	removed, err := n.rec.FlushManual()
	var out []pm.EndpointInfo
	for _, ep := range removed {
		if i := slices.IndexFunc(before, func(info pm.EndpointInfo) bool { return info.ID == ep.ID }); i >= 0 {
			out = append(out, before[i])
		}
	}
	return out, err
}

func (n *node) Limits() (genl.Limits, bool, error) {
	l, err := n.client.Limits()
	if err != nil {
		return l, false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return l, !n.cfg.Limits.Subflows.Auto && !n.cfg.Limits.AddAddrAccepted.Auto, nil
}

// SetLimits makes the running policy's limits explicit and applies them.
func (n *node) SetLimits(l genl.Limits) (genl.Limits, error) {
	if n.mode != "kernel" {
		return genl.Limits{}, fmt.Errorf("%w: the limits are the in-kernel path manager's; in %s mode the rules' max_subflows and userspace.peer.max_accepted apply", pm.ErrWrongMode, n.mode)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	next := *n.cfg
	next.Limits = config.Limits{
		Subflows:        config.Limit{Value: l.Subflows},
		AddAddrAccepted: config.Limit{Value: l.AddAddrAccepted},
	}
	if err := n.applyLocked(&next, "api"); err != nil {
		return genl.Limits{}, err
	}
	return n.client.Limits()
}

func (n *node) Policy() (api.Policy, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	doc, err := n.cfg.Marshal()
	if err != nil {
		return api.Policy{}, err
	}
	return api.Policy{Document: string(doc), Source: n.source, Applied: n.applied}, nil
}

// candidate parses a policy document and checks that it may replace the
// running one: keys that need a restart must not change.
func (n *node) candidate(doc string) (*config.Config, error) {
	next, err := config.Parse([]byte(doc), "policy")
	if err != nil {
		return nil, &api.FieldError{Field: "document", Message: err.Error()}
	}
	n.mu.Lock()
	cur := n.cfg
	n.mu.Unlock()
	if next.Mode != cur.Mode {
		return nil, &api.FieldError{Field: "document", Message: fmt.Sprintf("mode: %q cannot replace %q while mptcpd runs (change the configuration file and restart mptcpd)", next.Mode, cur.Mode)}
	}
	if next.NetNS != cur.NetNS || next.StateDir != cur.StateDir || next.API != cur.API || next.Metrics != cur.Metrics {
		return nil, &api.FieldError{Field: "document", Message: "netns, state_dir, [api] and [metrics] cannot change while mptcpd runs (leave them as GetPolicy shows them, or restart mptcpd)"}
	}
	return next, nil
}

// freshState reads the interfaces afresh. The caller holds n.mu.
func (n *node) freshState() (netmon.State, error) {
	n.w.mon.Refresh()
	st, err := n.w.mon.State()
	if err != nil {
		return st, fmt.Errorf("reading the interfaces: %w", err)
	}
	return st, nil
}

func (n *node) PlanPolicy(doc string) (pm.Result, error) {
	next, err := n.candidate(doc)
	if err != nil {
		return pm.Result{}, err
	}
	if n.mode != "kernel" {
		return pm.Result{}, nil // no endpoints to change: the rules apply to new decisions
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := n.freshState()
	if err != nil {
		return pm.Result{}, err
	}
	return n.rec.Plan(next, st)
}

func (n *node) ApplyPolicy(doc string) (pm.Result, error) {
	next, err := n.candidate(doc)
	if err != nil {
		return pm.Result{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mode != "kernel" {
		if err := n.applyLocked(next, "api"); err != nil {
			return pm.Result{}, err
		}
		n.log.Info("policy applied", "source", "api")
		n.broker.Publish(events.Event{Kind: events.KindPolicyApplied, Reason: "API request", Reconcile: n.lastReconcile})
		return pm.Result{}, nil
	}
	st, err := n.freshState()
	if err != nil {
		return pm.Result{}, err
	}
	res, err := n.rec.Reconcile(next, st)
	if err != nil {
		// All or nothing: put the running policy back.
		_, rerr := n.rec.Reconcile(n.cfg, st)
		if rerr != nil {
			return res, fmt.Errorf("applying the policy failed (%w), and restoring the previous one failed too: %w", err, rerr)
		}
		return res, fmt.Errorf("applying the policy failed; the previous policy is back in force: %w", err)
	}
	if err := n.switchWatcher(next); err != nil {
		n.log.Error("policy applied, but interfaces cannot be watched for it; keeping the old watcher", "error", err)
	}
	n.cfg, n.source, n.applied = next, "api", time.Now()
	setLevel(n.opts.LogLevel, next)
	n.log.Info("policy applied", "source", "api", "changes", res.Changes())
	n.broker.Publish(events.Event{Kind: events.KindPolicyApplied, Reason: "API request",
		Reconcile: &events.Reconcile{Time: n.applied, Trigger: "api", Changes: res.Changes() + limitChange(res)}})
	return res, nil
}

// applyLocked reconciles with next and makes it the running policy; on
// failure the running policy is reconciled again. The caller holds n.mu.
func (n *node) applyLocked(next *config.Config, source string) error {
	prev := n.cfg
	n.cfg = next
	if err := n.reconcile(source, true); err != nil {
		n.cfg = prev
		if rerr := n.reconcile(source+" rollback", true); rerr != nil {
			return fmt.Errorf("applying failed (%w), and restoring the previous policy failed too: %w", err, rerr)
		}
		return fmt.Errorf("applying failed; the previous policy is back in force: %w", err)
	}
	n.source, n.applied = source, time.Now()
	return nil
}

// switchWatcher restarts the interface watcher when the policy changes
// whether routes are needed. The caller holds n.mu.
func (n *node) switchWatcher(next *config.Config) error {
	if next.Addresses.RequireRoute == n.w.routes {
		return nil
	}
	nw, err := watch(n.w.ctx, n.nsfd, next.Addresses.RequireRoute, n.newAddrs)
	if err != nil {
		return err
	}
	n.w.close()
	n.w = nw
	select {
	case n.kick <- struct{}{}:
	default:
	}
	return nil
}

// Connections lists the kernel's connections, and the converter's
// sessions when the converter role runs.
func (n *node) Connections(ctx context.Context, f diag.Filter) ([]diag.Connection, error) {
	conns, err := n.diag.Connections(ctx, f)
	if err != nil || n.conv == nil && n.fb == nil {
		return conns, err
	}
	return append(conns, mpxConnections(n.fb, n.conv, f, nil)...), nil
}

// publishMPX publishes an event of the converter's sessions.
func (n *node) publishMPX(e mpx.Event) {
	if ev, ok := mpxEvent(e); ok {
		n.broker.Publish(ev)
	}
}

func (n *node) ConnectionPolicy(token uint32) (userspace.ConnInfo, bool) {
	if m := n.us.Load(); m != nil {
		return m.Info(token)
	}
	return userspace.ConnInfo{}, false
}

func (n *node) Connection(ctx context.Context, token uint32) (diag.Connection, error) {
	c, err := n.diag.Connection(ctx, token)
	if errors.Is(err, diag.ErrNotFound) && (n.conv != nil || n.fb != nil) {
		if conns := mpxConnections(n.fb, n.conv, diag.Filter{Tokens: []uint32{token}}, nil); len(conns) > 0 {
			return conns[0], nil
		}
	}
	if errors.Is(err, diag.ErrNotFound) {
		return c, fmt.Errorf("connection %#x: %w", token, genl.ErrUnknownToken)
	}
	return c, err
}

// userspaceOnly refuses per-connection calls outside userspace mode.
func (n *node) userspaceOnly(op string) error {
	if n.mode != "userspace" {
		return fmt.Errorf("%s: %w: per-connection calls need mode \"userspace\", and mptcpd runs in %s mode, where the kernel's path manager decides", op, pm.ErrWrongMode, n.mode)
	}
	return nil
}

func (n *node) Announce(token uint32, addr genl.Endpoint) error {
	if err := n.userspaceOnly("announce"); err != nil {
		return err
	}
	return n.client.Announce(token, addr)
}

func (n *node) Withdraw(token uint32, id uint8) error {
	if err := n.userspaceOnly("withdraw"); err != nil {
		return err
	}
	return n.client.Remove(token, id)
}

func (n *node) CreateSubflow(token uint32, local genl.Endpoint, remote netip.AddrPort) error {
	if err := n.userspaceOnly("create subflow"); err != nil {
		return err
	}
	return n.client.CreateSubflow(token, local, remote)
}

func (n *node) DestroySubflow(token uint32, local, remote netip.AddrPort) error {
	if err := n.userspaceOnly("destroy subflow"); err != nil {
		return err
	}
	return n.client.DestroySubflow(token, local, remote)
}

func (n *node) SetSubflowBackup(token uint32, local, remote netip.AddrPort, backup bool) error {
	if err := n.userspaceOnly("set subflow backup"); err != nil {
		return err
	}
	return n.client.SetSubflowBackup(token, local, remote, backup)
}

// Watch subscribes, then takes the snapshot: links, addresses, endpoints
// and connections.
func (n *node) Watch(ctx context.Context, size int) ([]events.Event, *events.Subscription, error) {
	sub := n.broker.Subscribe(size)
	now := time.Now()
	n.stateMu.RLock()
	st := n.state
	n.stateMu.RUnlock()
	snap := interfaceSnapshot(st, now)
	infos, err := n.rec.Endpoints()
	if err != nil {
		sub.Close()
		return nil, nil, err
	}
	for _, info := range infos {
		snap = append(snap, events.Event{Kind: events.KindEndpointAdded, Time: now, Endpoint: &info})
	}
	conns, err := n.Connections(ctx, diag.Filter{})
	if err != nil {
		sub.Close()
		return nil, nil, err
	}
	for _, c := range conns {
		snap = append(snap, events.Event{Kind: events.KindConnectionEstablished, Time: now, Token: c.Token, Connection: &c})
	}
	return snap, sub, nil
}

func (n *node) InterfaceName(index int) string {
	n.stateMu.RLock()
	defer n.stateMu.RUnlock()
	return n.state.Links[index].Name
}

func (n *node) InterfaceIndex(name string) int {
	n.stateMu.RLock()
	defer n.stateMu.RUnlock()
	return n.state.IndexOf(name)
}

// interfaceSnapshot is the start of a watch's snapshot: every link, up or
// down, by index, then every address.
func interfaceSnapshot(st netmon.State, now time.Time) []events.Event {
	var snap []events.Event
	for _, idx := range slices.Sorted(maps.Keys(st.Links)) {
		l := st.Links[idx]
		kind := events.KindLinkUp
		if !l.Running {
			kind = events.KindLinkDown
		}
		snap = append(snap, events.Event{Kind: kind, Time: now, Link: &l})
	}
	for _, a := range st.Addrs {
		snap = append(snap, events.Event{Kind: events.KindAddressAdded, Time: now, Addr: &a})
	}
	return snap
}
