package netmon

import (
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
	addrs   map[addrKey]*rtnetlink.AddressMessage
}

// addrKey identifies an address as the kernel does: interface, family,
// prefix length and address.
type addrKey struct {
	index  uint32
	family uint8
	plen   uint8
	ip     string
}

func keyOfAddr(m *rtnetlink.AddressMessage) (addrKey, bool) {
	if m.Attributes == nil {
		return addrKey{}, false
	}
	ip := m.Attributes.Local
	if ip == nil {
		ip = m.Attributes.Address
	}
	if ip == nil {
		return addrKey{}, false
	}
	return addrKey{m.Index, m.Family, m.PrefixLength, string(ip)}, true
}

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
	addrs := make([]*rtnetlink.AddressMessage, 0, len(c.addrs))
	for _, a := range c.addrs {
		addrs = append(addrs, a)
	}
	return buildState(links, addrs, nil)
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
	for _, l := range links {
		c.links[l.Index] = l
	}
	c.addrs = make(map[addrKey]*rtnetlink.AddressMessage, len(addrs))
	for _, a := range addrs {
		if k, ok := keyOfAddr(a); ok {
			c.addrs[k] = a
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

// apply applies notifications to the cache, or journals them during a
// full read.
func (c *cache) apply(msgs []netlink.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading {
		c.journal = append(c.journal, msgs...)
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
				for k := range c.addrs {
					if k.index == m.Index {
						delete(c.addrs, k)
					}
				}
				continue
			}
			c.links[m.Index] = &m
		case rtmNewAddr, rtmDelAddr:
			var m rtnetlink.AddressMessage
			if err := m.UnmarshalBinary(nm.Data); err != nil {
				c.valid = false
				return
			}
			k, ok := keyOfAddr(&m)
			if !ok {
				c.valid = false
				return
			}
			if nm.Header.Type == rtmDelAddr {
				delete(c.addrs, k)
				continue
			}
			c.addrs[k] = &m
		}
	}
}
