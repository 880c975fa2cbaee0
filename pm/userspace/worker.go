package userspace

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
)

// message is one thing for a worker to do: a kernel event, a new policy,
// or a listing to adopt.
type message struct {
	ev genl.Event

	policy, prev *Policy

	adopt     []diag.Connection
	listeners []netip.AddrPort
	listedAt  time.Time
	done      chan<- struct{}
}

// worker owns the connections whose token falls to it.
type worker struct {
	m  *Manager
	k  Kernel
	ch chan message

	// mu guards conns against readers (Info); the worker holds it while
	// it handles a message.
	mu    sync.Mutex
	conns map[uint32]*conn

	wakeups wakeHeap
	timer   *time.Timer
}

func (w *worker) run(ctx context.Context) {
	defer w.timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-w.ch:
			w.mu.Lock()
			w.handle(msg)
			w.mu.Unlock()
		case <-w.timer.C:
			w.mu.Lock()
			w.wake()
			w.mu.Unlock()
		}
	}
}

func (w *worker) handle(msg message) {
	switch {
	case msg.policy != nil:
		w.newPolicy(msg.prev, msg.policy)
	case msg.done != nil:
		w.adopt(msg.adopt, msg.listeners, msg.listedAt)
		msg.done <- struct{}{}
	default:
		w.event(&msg.ev)
	}
}

func (w *worker) policy() *Policy { return w.m.policy.Load() }

func (w *worker) decide(c *conn, d Decision) {
	d.Token = c.token
	if c.rule != nil {
		d.Rule = c.rule.Name
	}
	w.m.decide(d)
}

// newConn starts tracking a connection and matches its rule.
func (w *worker) newConn(token uint32, server bool, localAddr, remoteAddr netip.AddrPort) *conn {
	c := &conn{token: token, server: server, local: unmapPort(localAddr), remote: unmapPort(remoteAddr)}
	c.remotes = []remote{{id: 0, addr: c.remote}}
	w.match(c)
	w.conns[token] = c
	return c
}

func (w *worker) match(c *conn) {
	side := config.SideClient
	if c.server {
		side = config.SideServer
	}
	c.rule, _ = w.policy().cfg.Match(side, c.local, c.remote)
	if c.rule == nil {
		w.decide(c, Decision{Action: ActionMatch, Local: c.local, Remote: c.remote, Reason: "no rule matches: the connection is left alone"})
		return
	}
	w.decide(c, Decision{Action: ActionMatch, Local: c.local, Remote: c.remote, Reason: "first matching rule"})
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (w *worker) event(e *genl.Event) {
	c := w.conns[e.Token]
	switch e.Type {
	case genl.EventCreated:
		if c == nil {
			c = w.newConn(e.Token, e.ServerSide, e.Local, e.Remote)
		}
		c.denyJoinID0 = e.DenyJoinID0()
	case genl.EventEstablished:
		if c == nil {
			c = w.newConn(e.Token, e.ServerSide, e.Local, e.Remote)
		}
		c.denyJoinID0 = c.denyJoinID0 || e.DenyJoinID0()
		c.established = true
		if len(c.subflows) == 0 {
			c.subflows = append(c.subflows, subflow{local: c.local, remote: c.remote, up: true})
		}
		w.announce(c)
		w.reconcile(c)
	case genl.EventClosed:
		delete(w.conns, e.Token)
	case genl.EventAnnounced:
		if c != nil {
			w.announced(c, e)
		}
	case genl.EventRemoved:
		if c != nil {
			c.remotes = slices.DeleteFunc(c.remotes, func(r remote) bool { return r.id == e.RemoteID && r.id != 0 })
		}
	case genl.EventSubEstablished:
		if c != nil {
			w.subEstablished(c, e)
		}
	case genl.EventSubClosed:
		if c != nil {
			w.subClosed(c, e)
		}
	case genl.EventSubPriority:
		if c != nil {
			l, r := unmapPort(e.Local), unmapPort(e.Remote)
			for i := range c.subflows {
				if c.subflows[i].local == l && c.subflows[i].remote == r {
					c.subflows[i].backup = e.Backup
				}
			}
		}
	}
}

// announced decides on a peer's announcement.
func (w *worker) announced(c *conn, e *genl.Event) {
	p := w.policy()
	peer := p.cfg.Peer
	addr := e.Remote.Addr().Unmap()
	port := e.Remote.Port()
	if port == 0 {
		port = c.remote.Port()
	}
	ap := netip.AddrPortFrom(addr, port)
	// The rate applies to the announcements that would change something
	// (a new address accepted, an accepted ID moved): the refusals before
	// it are cheap, and must not use up the burst of a peer that announces
	// all its addresses at once, or an allowed address announced just
	// after a refused one would be lost (the peer does not repeat it).
	var why refusal
	i := -1
	switch {
	case e.RemoteID == 0:
		why = refusedID0
	case p.own[addr]:
		why = refusedOwn
	case !peer.Admits(addr):
		why = refusedPolicy
	default:
		i = slices.IndexFunc(c.remotes, func(r remote) bool { return r.id == e.RemoteID })
		switch {
		case i < 0 && c.accepted >= peer.MaxAccepted:
			why = refusedCap
		case !c.allowAnnouncement(peer, time.Now()):
			why = refusedRate
		}
	}
	if why != 0 {
		w.refuse(c, why, ap, e.RemoteID)
		return
	}
	if i >= 0 {
		c.remotes[i].addr = ap // the peer re-announced the ID
	} else {
		c.accepted++
		c.remotes = append(c.remotes, remote{id: e.RemoteID, addr: ap})
	}
	w.decide(c, Decision{Action: ActionAccept, Remote: ap, RemoteID: e.RemoteID, Reason: "allowed by userspace.peer"})
	w.reconcile(c)
}

// refusal is why an announcement was refused.
type refusal uint8

const (
	refusedRate refusal = iota + 1
	refusedID0
	refusedOwn
	refusedPolicy
	refusedCap
)

// refuse counts a refused announcement and reports the first few; the
// reason is formatted only for those, so a flood costs no allocation.
func (w *worker) refuse(c *conn, why refusal, ap netip.AddrPort, id uint8) {
	c.refused++
	if c.refused > maxRefusalsReported {
		return
	}
	peer := w.policy().cfg.Peer
	d := Decision{Action: ActionRefuse, Remote: ap, RemoteID: id}
	switch why {
	case refusedRate:
		d.Action = ActionRateLimited
		d.Reason = fmt.Sprintf("more than %d announcements per second from this peer (userspace.peer.rate)", peer.Rate)
	case refusedID0:
		d.Reason = "an announcement with address ID 0"
	case refusedOwn:
		d.Reason = "an address of this host"
	case refusedPolicy:
		_, d.Reason = peer.Allows(ap.Addr())
	case refusedCap:
		d.Reason = fmt.Sprintf("already %d announcements accepted on this connection (userspace.peer.max_accepted)", c.accepted)
	}
	w.decide(c, d)
}

func (w *worker) subEstablished(c *conn, e *genl.Event) {
	l, r := unmapPort(e.Local), unmapPort(e.Remote)
	key := pairKey{l.Addr(), r}
	delete(c.retries, key)
	for i := range c.subflows {
		s := &c.subflows[i]
		if s.local == l && s.remote == r {
			s.up, s.backup, s.localID = true, e.Backup, e.LocalID
			return
		}
	}
	for i := range c.subflows {
		s := &c.subflows[i]
		if !s.up && s.local.Addr() == l.Addr() && s.remote == r {
			s.local, s.up, s.backup, s.localID = l, true, e.Backup, e.LocalID
			w.backupCheck(c)
			return
		}
	}
	// One the peer opened, or one the Manager did not ask for.
	c.subflows = append(c.subflows, subflow{local: l, remote: r, localID: e.LocalID, backup: e.Backup, up: true})
	w.backupCheck(c)
}

func (w *worker) subClosed(c *conn, e *genl.Event) {
	l, r := unmapPort(e.Local), unmapPort(e.Remote)
	i := slices.IndexFunc(c.subflows, func(s subflow) bool { return s.local == l && s.remote == r })
	if i < 0 {
		i = slices.IndexFunc(c.subflows, func(s subflow) bool { return !s.up && s.local.Addr() == l.Addr() && s.remote == r })
	}
	if i < 0 {
		return
	}
	c.subflows = slices.Delete(c.subflows, i, i+1)
	key := pairKey{l.Addr(), r}
	if w.wants(c, key) {
		reason := "closed"
		if e.SubflowErr != 0 {
			reason = "closed with error: " + e.SubflowErr.Error()
		}
		w.failed(c, key, reason)
	}
	w.reconcile(c)
}

// wants reports whether the connection's strategy wants a subflow of the
// pair that it may ask for (not the initial one over an address that is
// not usable).
func (w *worker) wants(c *conn, key pairKey) bool {
	for i, s := range c.wanted(w.policy()) {
		if s.key() == key && (i > 0 || s.local != nil && !c.server) {
			return true
		}
	}
	return false
}

// giveUp stops asking for a pair's subflow until the interfaces change.
func (w *worker) giveUp(c *conn, key pairKey, reason string) {
	if c.retries == nil {
		c.retries = map[pairKey]*retryState{}
	}
	c.retries[key] = &retryState{gaveUp: true}
	w.decide(c, Decision{Action: ActionGiveUp, Local: netip.AddrPortFrom(key.local, 0), Remote: key.remote, Reason: reason})
}

// failed schedules the re-creation of a pair's subflow, with backoff, or
// gives up on it.
func (w *worker) failed(c *conn, key pairKey, reason string) {
	rc := w.policy().cfg.Retry
	if c.retries == nil {
		c.retries = map[pairKey]*retryState{}
	}
	st := c.retries[key]
	if st == nil {
		st = &retryState{}
		c.retries[key] = st
	}
	st.attempts++
	local := netip.AddrPortFrom(key.local, 0)
	if st.attempts > rc.Attempts {
		st.gaveUp = true
		w.decide(c, Decision{Action: ActionGiveUp, Local: local, Remote: key.remote,
			Reason: fmt.Sprintf("%s; %d attempts made (userspace.retry.attempts)", reason, rc.Attempts)})
		return
	}
	d := backoff(rc, st.attempts)
	st.at = time.Now().Add(d)
	w.schedule(c.token, st.at)
	w.decide(c, Decision{Action: ActionRetry, Local: local, Remote: key.remote,
		Reason: fmt.Sprintf("%s; attempt %d in %s", reason, st.attempts, d.Round(time.Millisecond))})
}

// reconcile asks for the subflows the strategy wants and the connection
// lacks, and closes those over local addresses no longer usable.
func (w *worker) reconcile(c *conn) {
	if !c.established || c.rule == nil {
		return
	}
	p := w.policy()
	if p.local(c.local.Addr()) != nil {
		c.initUsable = true
	}
	slots := c.wanted(p)
	now := time.Now()
	taken := make([]bool, len(c.subflows))
	for i, s := range slots {
		if j := w.cover(c, s, taken); j >= 0 {
			taken[j] = true
			continue
		}
		st := c.retries[s.key()]
		switch {
		case i == 0 && (s.local == nil || c.server):
			continue // the initial path is gone: its address is not usable, or the peer opened it (a server does not dial its client)
		case st != nil && st.gaveUp:
			continue
		case st != nil && st.at.After(now):
			continue // its retry timer is set
		}
		if w.create(c, s) {
			taken = append(taken, true)
		}
	}
	// Subflows over addresses that are gone. Those over the initial
	// address too if it was usable (its link lost carrier, say), so that
	// traffic moves to the others at once, but never the connection's
	// last subflow.
	for i := 0; i < len(c.subflows); i++ {
		s := c.subflows[i]
		if s.local.Addr() == c.local.Addr() && (!c.initUsable || c.present() <= 1) || p.local(s.local.Addr()) != nil || !s.up {
			continue
		}
		err := w.k.DestroySubflow(c.token, s.local, s.remote)
		w.decide(c, Decision{Action: ActionDestroy, Local: s.local, Remote: s.remote, LocalID: s.localID,
			Reason: "its local address is no longer usable", Err: err})
		if err == nil {
			c.subflows = slices.Delete(c.subflows, i, i+1)
			i--
		}
	}
	w.backupCheck(c)
}

// cover returns the index of an untaken subflow that fills slot s, or -1.
func (w *worker) cover(c *conn, s slot, taken []bool) int {
	for i, sf := range c.subflows {
		if !taken[i] && sf.local.Addr() == s.addr && sf.remote == s.remote {
			return i
		}
	}
	return -1
}

// create asks the kernel for the subflow of slot s and reports whether
// it did.
func (w *worker) create(c *conn, s slot) bool {
	ep := genl.Endpoint{Addr: s.addr}
	if s.local != nil {
		ep.ID, ep.IfIndex = s.local.ID, s.local.IfIndex
	} else {
		ep.ID = initialID
	}
	if s.backup {
		ep.Flags |= genl.FlagBackup
	}
	err := w.k.CreateSubflow(c.token, ep, s.remote)
	local := netip.AddrPortFrom(s.addr, 0)
	d := Decision{Action: ActionCreate, Local: local, Remote: s.remote, LocalID: ep.ID, Backup: s.backup,
		Reason: createReasons[c.rule.Strategy]}
	if err != nil {
		d.Action, d.Err = ActionFailed, err
		w.decide(c, d)
		if errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
			// No route from this address to the peer: retrying will not
			// help until the interfaces change (see newPolicy).
			w.giveUp(c, s.key(), "no route from this local address to the peer address")
			return false
		}
		w.failed(c, s.key(), "the kernel refused to create it: "+err.Error())
		return false
	}
	w.decide(c, d)
	c.subflows = append(c.subflows, subflow{local: local, remote: s.remote, localID: ep.ID, backup: s.backup, since: time.Now()})
	w.schedule(c.token, time.Now().Add(w.m.opts.PendingTimeout))
	return true
}

// createReasons are the reasons of the subflows each strategy asks for.
var createReasons = map[config.Strategy]string{
	config.StrategyFullmesh:     "strategy fullmesh wants it",
	config.StrategyPerInterface: "strategy per-interface wants it",
	config.StrategyNDiffPorts:   "strategy ndiffports wants it",
	config.StrategyBackup:       "strategy backup wants it",
}

// maxRefusalsReported is how many refused announcements per connection
// are reported one by one; the rest are only counted.
const maxRefusalsReported = 8

// initialID is the address ID used for subflows from the initial
// subflow's local address when the policy does not make it usable (ID 0
// is the initial subflow's own and cannot be asked for).
const initialID = 255

// announce sends ADD_ADDR for the usable local addresses on a server-side
// connection whose rule says so, once each.
func (w *worker) announce(c *conn) {
	if !c.server || c.rule == nil || !c.rule.Announce || !c.established {
		return
	}
	for _, l := range w.policy().locals {
		if l.Addr == c.local.Addr() || slices.Contains(c.announced, l.ID) {
			continue
		}
		ep := genl.Endpoint{ID: l.ID, Addr: l.Addr, Port: c.rule.AnnouncePort, Flags: genl.FlagSignal}
		err := w.k.Announce(c.token, ep)
		w.decide(c, Decision{Action: ActionAnnounce, Local: netip.AddrPortFrom(l.Addr, c.rule.AnnouncePort), LocalID: l.ID,
			Reason: "rule announces usable local addresses", Err: err})
		if err == nil {
			c.announced = append(c.announced, l.ID)
		}
	}
}

// backupCheck promotes the backup subflows of a backup-strategy
// connection that has no primary subflow left, and demotes them again when
// a primary is back.
func (w *worker) backupCheck(c *conn) {
	if c.rule == nil || c.rule.Strategy != config.StrategyBackup {
		return
	}
	primaries, backups := 0, 0
	for _, s := range c.subflows {
		if !s.up {
			continue
		}
		if l := w.policy().local(s.local.Addr()); l != nil && l.Backup {
			backups++
		} else {
			primaries++
		}
	}
	switch {
	case primaries == 0 && backups > 0 && !c.promoted:
		c.promoted = true
		w.setBackup(c, false, ActionPromote, "no primary subflow is left")
	case primaries > 0 && c.promoted:
		c.promoted = false
		w.setBackup(c, true, ActionDemote, "a primary subflow is back")
	}
}

func (w *worker) setBackup(c *conn, backup bool, action Action, reason string) {
	for i := range c.subflows {
		s := &c.subflows[i]
		l := w.policy().local(s.local.Addr())
		if !s.up || l == nil || !l.Backup {
			continue
		}
		err := w.k.SetSubflowBackup(c.token, s.local, s.remote, backup)
		w.decide(c, Decision{Action: action, Local: s.local, Remote: s.remote, LocalID: s.localID, Backup: backup, Reason: reason, Err: err})
		if err == nil {
			s.backup = backup
		}
	}
}

// newPolicy brings every connection to a new policy: rules matched again,
// announcements withdrawn for addresses gone and made for new ones,
// subflows over new addresses created (their retries forgotten), those
// over addresses gone closed.
func (w *worker) newPolicy(prev, p *Policy) {
	for _, t := range sortedTokens(w.conns) {
		c := w.conns[t]
		if prev == nil || prev.cfg != p.cfg {
			w.match(c)
		}
		for _, id := range slices.Clone(c.announced) {
			if slices.ContainsFunc(p.locals, func(l Local) bool { return l.ID == id }) {
				continue
			}
			err := w.k.Remove(c.token, id)
			w.decide(c, Decision{Action: ActionWithdraw, LocalID: id, Reason: "the address is no longer usable", Err: err})
			c.announced = slices.DeleteFunc(c.announced, func(x uint8) bool { return x == id })
		}
		// The interfaces changed: pairs given up on or waiting get a new
		// chance (an address or a route may have come back).
		clear(c.retries)
		w.announce(c)
		w.reconcile(c)
	}
}

// adopt takes over the listed connections of this worker.
func (w *worker) adopt(list []diag.Connection, listeners []netip.AddrPort, at time.Time) {
	listed := make(map[uint32]bool, len(list))
	for i := range list {
		lc := &list[i]
		listed[lc.Token] = true
		c := w.conns[lc.Token]
		if c == nil {
			server := slices.ContainsFunc(listeners, func(l netip.AddrPort) bool {
				return l.Port() == lc.Local.Port() && (l.Addr().IsUnspecified() || l.Addr().Unmap() == lc.Local.Addr().Unmap())
			})
			c = w.newConn(lc.Token, server, lc.Local, lc.Remote)
			w.decide(c, Decision{Action: ActionAdopt, Local: c.local, Remote: c.remote, Reason: "found in the kernel's connection listing"})
		}
		c.established = c.established || lc.State == diag.StateEstablished
		var subs []subflow
		for _, s := range lc.Subflows {
			if s.State != diag.StateEstablished {
				continue
			}
			subs = append(subs, subflow{local: unmapPort(s.Local), remote: unmapPort(s.Remote), localID: s.LocalID, backup: s.BackupLocal, up: true})
			if s.RemoteID != 0 && !slices.ContainsFunc(c.remotes, func(r remote) bool { return r.id == s.RemoteID }) {
				c.remotes = append(c.remotes, remote{id: s.RemoteID, addr: unmapPort(s.Remote)})
				c.accepted++
			}
		}
		// Subflows asked for after the listing was taken stay, pending or
		// already established (events are handled while the listing is
		// read): forgetting one would have it asked for twice.
		for _, s := range c.subflows {
			if s.since.After(at) && !slices.ContainsFunc(subs, func(x subflow) bool { return x.local == s.local && x.remote == s.remote }) {
				subs = append(subs, s)
			}
		}
		c.subflows = subs
		w.reconcile(c)
	}
	for t, c := range w.conns {
		if !listed[t] && !c.seenAfter(at) {
			delete(w.conns, t)
		}
	}
}

// seenAfter reports whether the connection has a subflow asked for after t
// (so it is newer than a listing taken at t).
func (c *conn) seenAfter(t time.Time) bool {
	return slices.ContainsFunc(c.subflows, func(s subflow) bool { return s.since.After(t) })
}

// schedule makes the worker wake at t for the connection.
func (w *worker) schedule(token uint32, t time.Time) {
	heap.Push(&w.wakeups, wakeup{at: t, token: token})
	if w.wakeups[0].at.Equal(t) && w.timer != nil {
		w.timer.Reset(max(time.Until(t), 0))
	}
}

// wake handles the wakeups that are due: pending subflows that never got
// an answer count as failed, and retries are made.
func (w *worker) wake() {
	now := time.Now()
	due := map[uint32]bool{}
	for len(w.wakeups) > 0 && !w.wakeups[0].at.After(now) {
		due[heap.Pop(&w.wakeups).(wakeup).token] = true
	}
	for t := range due {
		c := w.conns[t]
		if c == nil {
			continue
		}
		for i := 0; i < len(c.subflows); i++ {
			s := c.subflows[i]
			if !s.up && now.Sub(s.since) >= w.m.opts.PendingTimeout {
				c.subflows = slices.Delete(c.subflows, i, i+1)
				i--
				w.failed(c, pairKey{s.local.Addr(), s.remote}, "no answer from the kernel")
			}
		}
		w.reconcile(c)
	}
	if len(w.wakeups) > 0 {
		w.timer.Reset(max(time.Until(w.wakeups[0].at), 0))
	}
}

func (w *worker) info(c *conn) ConnInfo {
	info := ConnInfo{Token: c.token, Server: c.server, Present: c.present(), Accepted: c.accepted, Refused: c.refused}
	if c.rule != nil {
		info.Rule, info.Strategy = c.rule.Name, string(c.rule.Strategy)
		info.Wanted = len(c.wanted(w.policy()))
	}
	return info
}

// wakeup is a time a worker must look at a connection again.
type wakeup struct {
	at    time.Time
	token uint32
}

// wakeHeap is a min-heap of wakeups by time.
type wakeHeap []wakeup

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h wakeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *wakeHeap) Push(x any)        { *h = append(*h, x.(wakeup)) }
func (h *wakeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
