package netmon

import (
	"net/netip"
	"slices"
	"sync"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
)

// cache keeps a namespace's links and addresses up to date from the
// kernel's own notifications between full reads, so State after a change
// costs no dump. It is derived from the kernel only: it starts from a full
// read, applies every notification in order, and is thrown away (the next
// State reads everything again) when notifications were lost, when one
// cannot be decoded, and when the caller asks (Monitor.Refresh).
//
// A notification applied to a read that already saw its change is
// harmless: each one sets or deletes one object by its key, so replaying
// the notifications that arrived during a full read onto its result ends
// at the latest state.
type cache struct {
	mu      sync.Mutex
	valid   bool
	reading bool              // a full read is under way: journal notifications
	journal []netlink.Message // notifications that arrived during it
	links   map[uint32]*rtnetlink.LinkMessage
	conv    map[uint32]Link  // links converted, for linkLocked
	addrs   map[addrKey]Addr // the addresses State lists
}

// addrKey identifies an address as the kernel does: interface, family,
// prefix length and address (the prefix holds the last three).
type addrKey struct {
	index  int
	prefix netip.Prefix
}

func keyOf(a Addr) addrKey { return addrKey{a.Index, a.Prefix} }

// snapshot returns the state if the cache is valid.
func (c *cache) snapshot() (State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid || c.reading {
		return State{}, false
	}
	return c.stateLocked(), true
}

func (c *cache) stateLocked() State {
	links := make([]*rtnetlink.LinkMessage, 0, len(c.links))
	for _, l := range c.links {
		links = append(links, l)
	}
	addrs := make([]Addr, 0, len(c.addrs))
	for _, a := range c.addrs {
		addrs = append(addrs, a)
	}
	return assemble(links, addrs, nil)
}

// linkLocked returns the link with the given index as State has it.
func (c *cache) linkLocked(index uint32) (Link, bool) {
	l, ok := c.conv[index]
	if !ok {
		return Link{}, false
	}
	if _, in := c.links[uint32(l.ParentIndex)]; l.ParentIndex != 0 && !in {
		l.ParentIndex = 0 // in another namespace, as buildState finds
	}
	return l, true
}

// setLinkLocked keeps a link's message, and the link converted.
func (c *cache) setLinkLocked(m *rtnetlink.LinkMessage) {
	c.links[m.Index] = m
	if l, ok := linkFrom(m); ok {
		c.conv[m.Index] = l
	} else {
		delete(c.conv, m.Index)
	}
}

// begin starts a full read: notifications from here on are journalled.
func (c *cache) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading, c.journal = true, nil
}

// abort ends a full read that failed; the cache stays invalid.
func (c *cache) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading, c.journal, c.valid = false, nil, false
}

// install makes a full read the cache, replays the notifications that
// arrived during it, and returns the resulting state.
func (c *cache) install(links []*rtnetlink.LinkMessage, addrs []*rtnetlink.AddressMessage) State {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links = make(map[uint32]*rtnetlink.LinkMessage, len(links))
	c.conv = make(map[uint32]Link, len(links))
	for _, m := range links {
		c.setLinkLocked(m)
	}
	c.addrs = make(map[addrKey]Addr, len(addrs))
	for _, m := range addrs {
		if a, ok := addrFrom(m); ok {
			c.addrs[keyOf(a)] = a
		}
	}
	c.valid = true
	journal := c.journal
	c.reading, c.journal = false, nil
	c.applyLocked(journal)
	return c.stateLocked()
}

// invalidate makes the next State read everything afresh.
func (c *cache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.valid = false
}

// peek returns the addresses that notifications announce new or changed,
// with their links, when the cache is valid, without applying them: the
// caller hands them on first, then applies the notifications.
func (c *cache) peek(msgs []netlink.Message) []NewAddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		return nil
	}
	var added []NewAddr
	for _, nm := range msgs {
		switch nm.Header.Type {
		case rtmNewLink, rtmDelLink:
			// A link announced in the same breath: let applying decide.
			return nil
		case rtmNewAddr:
			if a, ok, err := decodeAddr(nm.Data); err == nil && ok {
				if l, ok := c.linkLocked(uint32(a.Index)); ok {
					added = append(added, NewAddr{Addr: a, Link: l})
				}
			}
		}
	}
	return added
}

// apply applies notifications to the cache, or journals them during a
// full read. It keeps no reference to msgs.
func (c *cache) apply(msgs []netlink.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading {
		// The messages' data may be the reader's buffer: keep copies.
		for _, m := range msgs {
			m.Data = slices.Clone(m.Data)
			c.journal = append(c.journal, m)
		}
	}
	c.applyLocked(msgs)
}

func (c *cache) applyLocked(msgs []netlink.Message) {
	if !c.valid {
		return
	}
	for _, nm := range msgs {
		switch nm.Header.Type {
		case rtmNewLink, rtmDelLink:
			var m rtnetlink.LinkMessage
			if err := m.UnmarshalBinary(nm.Data); err != nil {
				c.valid = false
				return
			}
			if nm.Header.Type == rtmDelLink {
				delete(c.links, m.Index)
				delete(c.conv, m.Index)
				for k := range c.addrs {
					if k.index == int(m.Index) {
						delete(c.addrs, k)
					}
				}
				continue
			}
			c.setLinkLocked(&m)
		case rtmNewAddr, rtmDelAddr:
			// Decoded straight, without rtnetlink: this is the way from a
			// new address to its endpoint.
			a, ok, err := decodeAddr(nm.Data)
			switch {
			case err != nil:
				c.valid = false
				return
			case !ok:
				// Not an address State lists.
			case nm.Header.Type == rtmDelAddr:
				delete(c.addrs, keyOf(a))
			default:
				c.addrs[keyOf(a)] = a
			}
		}
	}
}
