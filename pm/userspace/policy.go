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
	// last is the last ID given to a new address.
	last   uint8
	cfg    *config.Userspace
	locals []Local
	byAddr map[netip.Addr]*Local
	own    map[netip.Addr]bool
}

// NewPolicy returns a policy of the rules in cfg over the usable local
// addresses locals, each given an ID (an address keeps the ID it had in
// prev), and the host's own addresses own
// (every address of every interface, usable or not: peers announcing one
// of them are refused).
func NewPolicy(cfg *config.Userspace, locals []Local, own []netip.Addr, prev *Policy) *Policy {
	p := &Policy{cfg: cfg, byAddr: make(map[netip.Addr]*Local, len(locals)), own: make(map[netip.Addr]bool, len(own))}
	for _, a := range own {
		p.own[a.Unmap()] = true
	}
	// An address keeps its ID; a new address gets the ID after the last
	// one given, wrapping round, and never one an address of the previous
	// policy had: a peer could still hold that ID for the old address.
	var used [256]bool
	if prev != nil {
		for _, l := range prev.locals {
			used[l.ID] = true
		}
		p.last = prev.last
	}
	p.locals = slices.Clone(locals)
	kept := map[uint8]bool{}
	for i := range p.locals {
		l := &p.locals[i]
		l.Addr = l.Addr.Unmap()
		l.ID = 0
		if prev != nil {
			if old, ok := prev.byAddr[l.Addr]; ok && !kept[old.ID] {
				l.ID = old.ID
				kept[old.ID] = true
			}
		}
	}
	for i := range p.locals {
		l := &p.locals[i]
		if l.ID == 0 {
			l.ID = nextID(&used, &p.last)
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

// nextID returns the first ID after *last that is not used (wrapping
// round, skipping 0) and marks it used; 0 when all are.
func nextID(used *[256]bool, last *uint8) uint8 {
	for n, id := 0, *last; n < 255; n++ {
		id++
		if id == 0 {
			id = 1
		}
		if !used[id] {
			used[id] = true
			*last = id
			return id
		}
	}
	return 0
}
