package userspace

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/mptcpd/mptcpd/config"
)

// remote is an address of the peer a connection may open subflows to: the
// initial one (ID 0) or one the peer announced and the policy accepted.
type remote struct {
	id   uint8
	addr netip.AddrPort
}

// subflow is a subflow the Manager knows of: established, or asked for and
// not yet reported.
type subflow struct {
	local   netip.AddrPort // the port is 0 while pending
	remote  netip.AddrPort
	localID uint8
	backup  bool // this end marked it backup
	up      bool
	since   time.Time // when it was asked for (pending)
}

// slot is one subflow a strategy wants.
type slot struct {
	local  *Local // nil: the initial subflow's local address (ID 0)
	addr   netip.Addr
	remote netip.AddrPort
	backup bool
}

func (s slot) key() pairKey { return pairKey{s.addr, s.remote} }

// pairKey names the subflows between one local address and one remote
// address and port.
type pairKey struct {
	local  netip.Addr
	remote netip.AddrPort
}

// retryState is the backoff of a pair whose subflows keep failing.
type retryState struct {
	attempts int
	at       time.Time // not before
	gaveUp   bool
}

// conn is the Manager's state of one connection.
type conn struct {
	token       uint32
	server      bool
	local       netip.AddrPort // the initial subflow's ends
	remote      netip.AddrPort
	established bool
	denyJoinID0 bool
	rule        *config.UserspaceRule
	remotes     []remote
	subflows    []subflow
	announced   []uint8 // local IDs announced
	promoted    bool    // backup subflows promoted for want of a primary
	retries     map[pairKey]*retryState
	// Peer announcements: a token bucket and counts.
	tokens   float64
	filled   time.Time
	accepted int
	refused  int

	// initUsable: the initial subflow's local address has been usable,
	// so when it stops being usable its subflows close like any other's
	// (one that never was, outside the interface policy, is left alone).
	initUsable bool
}

// present counts the established subflows.
func (c *conn) present() int {
	n := 0
	for _, s := range c.subflows {
		if s.up {
			n++
		}
	}
	return n
}

// wanted returns the subflows the connection's strategy wants, the
// initial one first, at most the rule's cap.
func (c *conn) wanted(p *Policy) []slot {
	r := c.rule
	if r == nil || !c.established {
		return nil
	}
	init := slot{addr: c.local.Addr(), remote: c.remote, local: p.local(c.local.Addr())}
	slots := []slot{init}
	targets := c.targets()
	add := func(s slot) {
		if len(slots) < r.MaxSubflows {
			slots = append(slots, s)
		}
	}
	sameFamily := func(l *Local, r netip.AddrPort) bool { return l.Addr.Is4() == r.Addr().Unmap().Is4() }
	switch r.Strategy {
	case config.StrategyNone:
	case config.StrategyNDiffPorts:
		if c.denyJoinID0 {
			break // the peer accepts no join to its initial address
		}
		for range r.Subflows - 1 {
			add(init)
		}
	case config.StrategyFullmesh:
		for _, t := range targets {
			for i := range p.locals {
				l := &p.locals[i]
				if !sameFamily(l, t) || l.Addr == c.local.Addr() && t == c.remote {
					continue
				}
				add(slot{local: l, addr: l.Addr, remote: t, backup: l.Backup})
			}
		}
	case config.StrategyPerInterface, config.StrategyBackup:
		// One subflow per interface, to the first target of its family;
		// the initial subflow's interface has its one.
		initIf := int32(-1)
		if init.local != nil {
			initIf = init.local.IfIndex
		}
		seen := make([]int32, 1, 8)
		seen[0] = initIf
		for i := range p.locals {
			l := &p.locals[i]
			if slices.Contains(seen, l.IfIndex) {
				continue
			}
			for _, t := range targets {
				if sameFamily(l, t) {
					seen = append(seen, l.IfIndex)
					add(slot{local: l, addr: l.Addr, remote: t, backup: l.Backup})
					break
				}
			}
		}
	}
	return slots
}

// targets returns the peer addresses subflows may go to: the initial one
// (unless the peer refuses joins to it) and the accepted announcements.
func (c *conn) targets() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(c.remotes))
	for _, r := range c.remotes {
		if r.id == 0 && c.denyJoinID0 {
			continue
		}
		out = append(out, r.addr)
	}
	return out
}

// backoff returns the delay before attempt n (1-based) of re-creating a
// subflow: initial doubling up to max, with ±20 % jitter.
func backoff(rc config.UserspaceRetry, n int) time.Duration {
	d := rc.Initial.Duration
	for i := 1; i < n && d < rc.Max.Duration; i++ {
		d *= 2
	}
	d = min(d, rc.Max.Duration)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// allowAnnouncement takes a token from the connection's bucket.
func (c *conn) allowAnnouncement(peer config.UserspacePeer, now time.Time) bool {
	burst := float64(max(peer.MaxAccepted, 1))
	if c.filled.IsZero() {
		c.tokens, c.filled = burst, now
	}
	c.tokens = min(burst, c.tokens+now.Sub(c.filled).Seconds()*float64(peer.Rate))
	c.filled = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}
