package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
)

// Options configure a Manager.
type Options struct {
	// Kernels are the workers' kernel clients, one per worker (each with a
	// socket of its own); their number is the number of workers.
	Kernels []Kernel
	// Lister lists the connections for Resync.
	Lister Lister
	// Policy is the first policy.
	Policy *Policy
	// Log gets a debug line per decision (and warnings for failures).
	Log *slog.Logger
	// OnDecision, if set, is called with every decision, from the worker
	// that made it; it must be quick and must not call the Manager.
	OnDecision func(Decision)
	// Listen opens an MPTCP listener in the managed namespace, for
	// announcements on a port of their own; nil disables them.
	Listen func(netip.AddrPort) (io.Closer, error)
	// Queue is each worker's queue of events (default 4096).
	Queue int
	// PendingTimeout is how long a subflow asked for may go unreported
	// before it counts as failed (default 30 s).
	PendingTimeout time.Duration
}

// Manager is the userspace path manager of one namespace.
type Manager struct {
	opts    Options
	workers []*worker
	policy  atomic.Pointer[Policy]
	log     *slog.Logger

	// mu guards the listeners, which change only with the policy.
	mu        sync.Mutex
	listeners map[netip.AddrPort]io.Closer
}

// New returns a Manager; Run starts it.
func New(opts Options) (*Manager, error) {
	if len(opts.Kernels) == 0 {
		return nil, errors.New("userspace: no kernel client")
	}
	if opts.Policy == nil {
		return nil, errors.New("userspace: no policy")
	}
	if opts.Queue <= 0 {
		opts.Queue = 4096
	}
	if opts.PendingTimeout <= 0 {
		opts.PendingTimeout = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: opts, log: opts.Log, listeners: map[netip.AddrPort]io.Closer{}}
	m.policy.Store(opts.Policy)
	for _, k := range opts.Kernels {
		w := &worker{m: m, k: k, ch: make(chan message, opts.Queue), conns: map[uint32]*conn{}, timer: time.NewTimer(time.Hour)}
		w.timer.Stop()
		m.workers = append(m.workers, w)
	}
	return m, nil
}

// Run runs the workers until ctx ends, then closes the listeners.
func (m *Manager) Run(ctx context.Context) error {
	m.syncListeners()
	var wg sync.WaitGroup
	for _, w := range m.workers {
		wg.Go(func() { w.run(ctx) })
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, l := range m.listeners {
		if l != nil {
			_ = l.Close()
		}
		delete(m.listeners, a)
	}
	return nil
}

func (m *Manager) worker(token uint32) *worker {
	return m.workers[int(token%uint32(len(m.workers)))]
}

// Handle decides on kernel events, in order, on the caller's goroutine:
// each under the lock of its connection's worker, with that worker's
// kernel socket. Handing events to the worker goroutines instead would
// cost a goroutine wake-up (tens of microseconds on a busy host) on the
// path from ESTABLISHED to the next subflow; the workers' goroutines do
// the rest (retries, timeouts, policy changes, adoption).
func (m *Manager) Handle(evs []genl.Event) {
	for i := range evs {
		e := &evs[i]
		if e.Token == 0 {
			continue // listener events concern no connection
		}
		w := m.worker(e.Token)
		w.mu.Lock()
		w.event(e)
		w.mu.Unlock()
	}
}

// SetPolicy replaces the policy and brings every connection to it before
// it returns.
func (m *Manager) SetPolicy(p *Policy) {
	prev := m.policy.Swap(p)
	m.syncListeners()
	for _, w := range m.workers {
		w.mu.Lock()
		w.newPolicy(prev, p)
		w.mu.Unlock()
	}
}

// Policy returns the policy in force.
func (m *Manager) Policy() *Policy { return m.policy.Load() }

// Resync lists the namespace's connections and brings the Manager's state
// to them: connections it did not know are adopted, with the subflows they
// have, and brought to their policy; connections gone are forgotten. It
// is what the Manager does at start and after events were lost.
func (m *Manager) Resync(ctx context.Context) error {
	at := time.Now()
	list, err := m.opts.Lister.Connections(ctx, diag.Filter{States: diag.AllStates})
	if err != nil {
		return fmt.Errorf("listing connections: %w", err)
	}
	var listeners []netip.AddrPort
	for _, c := range list {
		if c.State == diag.StateListen {
			listeners = append(listeners, c.Local)
		}
	}
	shards := make([][]diag.Connection, len(m.workers))
	for _, c := range list {
		if c.State == diag.StateListen || c.Token == 0 {
			continue
		}
		i := int(c.Token % uint32(len(m.workers)))
		shards[i] = append(shards[i], c)
	}
	done := make(chan struct{}, len(m.workers))
	for i, w := range m.workers {
		select {
		case w.ch <- message{adopt: shards[i], listeners: listeners, listedAt: at, done: done}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for range m.workers {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Info returns what the Manager knows of the connection.
func (m *Manager) Info(token uint32) (ConnInfo, bool) {
	w := m.worker(token)
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.conns[token]
	if !ok {
		return ConnInfo{}, false
	}
	return w.info(c), true
}

// Connections returns the number of connections the Manager tracks.
func (m *Manager) Connections() int {
	n := 0
	for _, w := range m.workers {
		w.mu.Lock()
		n += len(w.conns)
		w.mu.Unlock()
	}
	return n
}

// syncListeners keeps an MPTCP listener on every address and port the
// policy in force announces with a port of its own, unless another socket
// (the application's) already listens there. The policy is read under mu,
// so that of two calls racing, the one that runs last applies the newest
// policy, not one a newer call has already replaced.
func (m *Manager) syncListeners() {
	if m.opts.Listen == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.policy.Load()
	want := map[netip.AddrPort]bool{}
	for i := range p.cfg.Rules {
		r := &p.cfg.Rules[i]
		if !r.Announce || r.AnnouncePort == 0 {
			continue
		}
		for _, l := range p.locals {
			want[netip.AddrPortFrom(l.Addr, r.AnnouncePort)] = true
		}
	}
	for a, l := range m.listeners {
		if !want[a] {
			if l != nil {
				_ = l.Close()
				m.decide(Decision{Action: ActionStopListen, Local: a, Reason: "no rule announces this address and port any more"})
			}
			delete(m.listeners, a)
		}
	}
	for a := range want {
		if _, ok := m.listeners[a]; ok {
			continue
		}
		l, err := m.opts.Listen(a)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			m.listeners[a] = nil // the application listens there
		case err != nil:
			m.log.Warn("cannot listen for joins to an announced port", "addr", a, "error", err)
		default:
			m.listeners[a] = l
			m.decide(Decision{Action: ActionListen, Local: a, Reason: "announced with a port no application listens on"})
		}
	}
}

// decide reports a decision.
func (m *Manager) decide(d Decision) {
	if m.log.Enabled(context.Background(), slog.LevelDebug) {
		m.log.Debug("decision", "action", string(d.Action), "token", d.Token, "local", d.Local, "remote", d.Remote,
			"local_id", d.LocalID, "remote_id", d.RemoteID, "backup", d.Backup, "rule", d.Rule, "reason", d.Reason, "error", d.Err)
	}
	if m.opts.OnDecision != nil {
		m.opts.OnDecision(d)
	}
}

// sortedTokens returns the tokens of conns in order (for deterministic
// work in tests and logs).
func sortedTokens(conns map[uint32]*conn) []uint32 {
	out := make([]uint32, 0, len(conns))
	for t := range conns {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
