package userspace_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// This file holds the fakes at the Manager's seams (the kernel's
// per-connection commands and the connection listing) and a harness that
// runs a Manager over them. Tests hand it kernel events and policies and
// assert what the fake kernel was asked to do, which is what the peer and
// the user would see.

// call is one command the fake kernel was given.
type call struct {
	op     string // announce, remove, create, destroy, backup
	token  uint32
	ep     genl.Endpoint  // announce, create
	local  netip.AddrPort // destroy, backup
	remote netip.AddrPort // create, destroy, backup
	id     uint8          // remove
	backup bool           // backup
}

// String writes the call in the manner of ip-mptcp(8), so that tests
// compare readable lines.
func (c call) String() string {
	var b strings.Builder
	switch c.op {
	case "announce":
		fmt.Fprintf(&b, "announce %d id %d %s", c.token, c.ep.ID, c.ep.Addr)
		if c.ep.Port != 0 {
			fmt.Fprintf(&b, " port %d", c.ep.Port)
		}
		if c.ep.Flags&genl.FlagSignal == 0 {
			b.WriteString(" (no signal flag)")
		}
	case "remove":
		fmt.Fprintf(&b, "remove %d id %d", c.token, c.id)
	case "create":
		fmt.Fprintf(&b, "create %d id %d %s", c.token, c.ep.ID, c.ep.Addr)
		if c.ep.IfIndex != 0 {
			fmt.Fprintf(&b, " dev %d", c.ep.IfIndex)
		}
		fmt.Fprintf(&b, " -> %s", c.remote)
		if c.ep.Flags&genl.FlagBackup != 0 {
			b.WriteString(" backup")
		}
	case "destroy":
		fmt.Fprintf(&b, "destroy %d %s -> %s", c.token, c.local, c.remote)
	case "backup":
		fmt.Fprintf(&b, "backup %d %s -> %s %s", c.token, c.local, c.remote, map[bool]string{true: "on", false: "off"}[c.backup])
	}
	return b.String()
}

// fakeKernel records the commands of one worker, and fails those that fail
// says to fail. It does nothing else: events are the test's to send.
type fakeKernel struct {
	// count counts every command, recorded or not.
	count atomic.Int64
	// noRecord keeps only the count (for benchmarks).
	noRecord bool

	mu    sync.Mutex
	calls []call
	fail  func(call) error
}

var _ userspace.Kernel = (*fakeKernel)(nil)

func (k *fakeKernel) do(c call) error {
	k.count.Add(1)
	if k.noRecord {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, c)
	if k.fail != nil {
		return k.fail(c)
	}
	return nil
}

func (k *fakeKernel) Announce(token uint32, ep genl.Endpoint) error {
	return k.do(call{op: "announce", token: token, ep: ep})
}

func (k *fakeKernel) Remove(token uint32, id uint8) error {
	return k.do(call{op: "remove", token: token, id: id})
}

func (k *fakeKernel) CreateSubflow(token uint32, local genl.Endpoint, remote netip.AddrPort) error {
	return k.do(call{op: "create", token: token, ep: local, remote: remote})
}

func (k *fakeKernel) DestroySubflow(token uint32, local, remote netip.AddrPort) error {
	return k.do(call{op: "destroy", token: token, local: local, remote: remote})
}

func (k *fakeKernel) SetSubflowBackup(token uint32, local, remote netip.AddrPort, backup bool) error {
	return k.do(call{op: "backup", token: token, local: local, remote: remote, backup: backup})
}

// setFail makes the kernel fail the commands f returns an error for (nil
// stops failing).
func (k *fakeKernel) setFail(f func(call) error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail = f
}

// lines returns the recorded commands, as strings; with ops, only those
// of these kinds.
func (k *fakeKernel) lines(ops ...string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, c := range k.calls {
		if len(ops) == 0 || slices.Contains(ops, c.op) {
			out = append(out, c.String())
		}
	}
	return out
}

// fakeLister lists the connections it is given.
type fakeLister struct {
	mu    sync.Mutex
	conns []diag.Connection
	err   error
}

func (l *fakeLister) Connections(_ context.Context, f diag.Filter) ([]diag.Connection, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	var out []diag.Connection
	for _, c := range l.conns {
		if f.States.Has(c.State) || f.States == 0 && c.State != diag.StateListen {
			out = append(out, c)
		}
	}
	return out, nil
}

func (l *fakeLister) set(conns ...diag.Connection) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = conns
}

// decisionLog keeps the decisions the Manager reports.
type decisionLog struct {
	mu   sync.Mutex
	list []userspace.Decision
}

func (d *decisionLog) add(dec userspace.Decision) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, dec)
}

// of returns the decisions about one connection, of the given actions (all
// with none).
func (d *decisionLog) of(token uint32, actions ...userspace.Action) []userspace.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []userspace.Decision
	for _, dec := range d.list {
		if dec.Token == token && (len(actions) == 0 || slices.Contains(actions, dec.Action)) {
			out = append(out, dec)
		}
	}
	return out
}

// all returns every decision.
func (d *decisionLog) all() []userspace.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.list)
}

// fastRetry is a retry policy that keeps tests quick.
const fastRetry = `
[userspace.retry]
initial = "1ms"
max = "4ms"
attempts = 3
`

// setup describes a harness.
type setup struct {
	// toml is the configuration file ([userspace] tables).
	toml string
	// locals are the usable local addresses; they are the host's own
	// addresses too, with own.
	locals []userspace.Local
	own    []netip.Addr
	// workers is the number of fake kernels (default 1).
	workers        int
	pendingTimeout time.Duration
	listen         func(netip.AddrPort) (io.Closer, error)
	// noRecord makes the kernels count only.
	noRecord bool
	// noDecisions leaves OnDecision unset.
	noDecisions bool
}

// harness runs a Manager over fake kernels.
type harness struct {
	tb      testing.TB
	m       *userspace.Manager
	cfg     *config.Config
	own     []netip.Addr
	kernels []*fakeKernel
	lister  *fakeLister
	dec     *decisionLog
	settles int
}

// parseConfig parses a configuration file, which must be valid.
func parseConfig(tb testing.TB, toml string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		tb.Fatalf("config.Parse: %v\n%s", err, toml)
	}
	return cfg
}

// start runs a Manager until the test ends.
func start(tb testing.TB, s setup) *harness {
	tb.Helper()
	h := &harness{tb: tb, cfg: parseConfig(tb, s.toml), own: s.own, lister: &fakeLister{}, dec: &decisionLog{}}
	opts := userspace.Options{Lister: h.lister, PendingTimeout: s.pendingTimeout}
	for range max(s.workers, 1) {
		k := &fakeKernel{noRecord: s.noRecord}
		h.kernels = append(h.kernels, k)
		opts.Kernels = append(opts.Kernels, k)
	}
	if !s.noDecisions {
		opts.OnDecision = h.dec.add
	}
	opts.Listen = s.listen
	opts.Policy = h.newPolicy(s.locals, nil)
	m, err := userspace.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	h.m = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("Run did not return within 10s of its context's end")
		}
	})
	return h
}

// newPolicy returns a policy of the harness's rules over locals.
func (h *harness) newPolicy(locals []userspace.Local, prev *userspace.Policy) *userspace.Policy {
	own := slices.Clone(h.own)
	for _, l := range locals {
		own = append(own, l.Addr)
	}
	return userspace.NewPolicy(&h.cfg.Userspace, locals, own, prev)
}

// setLocals gives the Manager a new policy over locals, with the same
// rules.
func (h *harness) setLocals(locals ...userspace.Local) *userspace.Policy {
	p := h.newPolicy(locals, h.m.Policy())
	h.m.SetPolicy(p)
	return p
}

// kernel returns the fake kernel of the worker of token.
func (h *harness) kernel(token uint32) *fakeKernel {
	return h.kernels[int(token%uint32(len(h.kernels)))]
}

// calls returns the commands given for one connection.
func (h *harness) calls(token uint32, ops ...string) []string {
	var out []string
	prefix := func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 1 && f[1] == fmt.Sprint(token)
	}
	for _, l := range h.kernel(token).lines(ops...) {
		if prefix(l) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor polls cond until it holds, for at most 10 s.
func (h *harness) waitFor(what string, cond func() bool) {
	h.tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.tb.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// waitCalls waits until the connection has had at least n commands (of
// the given kinds) and returns them all.
func (h *harness) waitCalls(token uint32, n int, ops ...string) []string {
	h.tb.Helper()
	var got []string
	h.waitFor(fmt.Sprintf("%d commands %v on token %d", n, ops, token), func() bool {
		got = h.calls(token, ops...)
		return len(got) >= n
	})
	return got
}

// waitDecision waits for a decision about token of the given action and
// returns the decisions of that action so far.
func (h *harness) waitDecision(token uint32, n int, action userspace.Action) []userspace.Decision {
	h.tb.Helper()
	var got []userspace.Decision
	h.waitFor(fmt.Sprintf("%d %s decisions on token %d", n, action, token), func() bool {
		got = h.dec.of(token, action)
		return len(got) >= n
	})
	return got
}

// sentinelBase is the first token of the connections settle makes; tests
// use smaller tokens.
const sentinelBase = 0xFFFF0000

// settle returns once every worker has handled everything handed to it
// before the call: a connection is opened and closed on each worker, and
// as a worker handles its messages in order, seeing the connection come
// and go means the earlier messages were handled. The sentinel
// connections are never established, so they make no command and no
// decision.
func (h *harness) settle() {
	h.tb.Helper()
	n := uint32(len(h.kernels))
	h.settles++
	for i := range n {
		base := sentinelBase + uint32(h.settles)*n*2
		tok := base - base%n + i // on worker i
		h.m.Handle([]genl.Event{{Type: genl.EventCreated, Token: tok}})
		h.waitFor("the sentinel connection", func() bool { _, ok := h.m.Info(tok); return ok })
		h.m.Handle([]genl.Event{{Type: genl.EventClosed, Token: tok}})
		h.waitFor("the sentinel connection to close", func() bool { _, ok := h.m.Info(tok); return !ok })
	}
}

// info returns the Manager's view of a connection, which must be tracked.
func (h *harness) info(token uint32) userspace.ConnInfo {
	h.tb.Helper()
	ci, ok := h.m.Info(token)
	if !ok {
		h.tb.Fatalf("Info(%d): the connection is not tracked", token)
	}
	return ci
}

// Event builders.

func addrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// open returns the CREATED and ESTABLISHED events of a connection.
func open(token uint32, server bool, local, remote string, flags genl.EventFlags) []genl.Event {
	if server {
		flags |= genl.EventFlagServerSide
	}
	c := genl.Event{Type: genl.EventCreated, Token: token, Local: addrPort(local), Remote: addrPort(remote), ServerSide: server, Flags: flags}
	e := c
	e.Type = genl.EventEstablished
	return []genl.Event{c, e}
}

// announced is the peer's ADD_ADDR of addr (with a port or not) as ID id.
func announced(token uint32, id uint8, addr string) genl.Event {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ap = netip.AddrPortFrom(netip.MustParseAddr(addr), 0)
	}
	return genl.Event{Type: genl.EventAnnounced, Token: token, RemoteID: id, Remote: ap}
}

func subEstablished(token uint32, localID uint8, local, remote string, backup bool) genl.Event {
	return genl.Event{Type: genl.EventSubEstablished, Token: token, LocalID: localID, Local: addrPort(local), Remote: addrPort(remote), Backup: backup}
}

// subClosed is a subflow's SUB_CLOSED, with the socket error it ended
// with (0 for none).
func subClosed(token uint32, local, remote string, errno syscall.Errno) genl.Event {
	return genl.Event{Type: genl.EventSubClosed, Token: token, Local: addrPort(local), Remote: addrPort(remote), SubflowErr: errno}
}

func closed(token uint32) genl.Event { return genl.Event{Type: genl.EventClosed, Token: token} }

// local returns a usable local address.
func local(addr string, ifindex int32, name string, backup bool) userspace.Local {
	return userspace.Local{Addr: netip.MustParseAddr(addr), IfIndex: ifindex, Interface: name, Backup: backup}
}
