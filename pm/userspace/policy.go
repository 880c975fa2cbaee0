package userspace

import (
	"net/netip"
	"slices"

	"github.com/mptcpd/mptcpd/config"
)

// Policy is an immutable snapshot of what the Manager decides by: the
// rules, the usable local addresses and the host's own addresses. A new
// one replaces it as a whole (SetPolicy).
type Policy struct {
	cfg    *config.Userspace
	locals []Local
	byAddr map[netip.Addr]*Local
	own    map[netip.Addr]bool
}

// NewPolicy returns a policy of the rules in cfg over the usable local
// addresses locals (IDs are given to those without one, stably: an
// address keeps the ID it had in prev) and the host's own addresses own
// (every address of every interface, usable or not: peers announcing one
// of them are refused).
func NewPolicy(cfg *config.Userspace, locals []Local, own []netip.Addr, prev *Policy) *Policy {
	p := &Policy{cfg: cfg, byAddr: make(map[netip.Addr]*Local, len(locals)), own: make(map[netip.Addr]bool, len(own))}
	for _, a := range own {
		p.own[a.Unmap()] = true
	}
	var used [256]bool
	p.locals = slices.Clone(locals)
	for i := range p.locals {
		l := &p.locals[i]
		l.Addr = l.Addr.Unmap()
		if prev != nil {
			if old, ok := prev.byAddr[l.Addr]; ok && l.ID == 0 {
				l.ID = old.ID
			}
		}
		if l.ID != 0 && !used[l.ID] {
			used[l.ID] = true
		} else {
			l.ID = 0
		}
	}
	next := 1
	for i := range p.locals {
		l := &p.locals[i]
		for l.ID == 0 && next < 256 {
			if !used[next] {
				l.ID = uint8(next)
				used[next] = true
			}
			next++
		}
		if l.ID != 0 {
			p.byAddr[l.Addr] = l
		}
	}
	p.locals = slices.DeleteFunc(p.locals, func(l Local) bool { return l.ID == 0 })
	return p
}

// Locals returns the usable local addresses with their IDs.
func (p *Policy) Locals() []Local { return slices.Clone(p.locals) }

// local returns the usable local address addr, or nil.
func (p *Policy) local(addr netip.Addr) *Local { return p.byAddr[addr.Unmap()] }
