package netmon

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// eventBuffer is the notification socket's receive buffer. With
// CAP_NET_ADMIN it may exceed net.core.rmem_max; an overflow costs only a
// spurious full re-read.
const eventBuffer = 1 << 20

// dumpAttempts is how often State repeats a dump the kernel marked as
// interrupted by a concurrent change (NLM_F_DUMP_INTR).
const dumpAttempts = 8

// New opens a Monitor: a query socket for State and a notification socket
// subscribed to link, address and route changes, both in the namespace
// given by WithNetNS or else the calling thread's. Notifications queue from
// here on; Run delivers them.
func New(opts ...Option) (*Monitor, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: o.netns, Strict: true})
	if err != nil {
		return nil, fmt.Errorf("netmon: opening rtnetlink query socket: %w", err)
	}
	src, err := subscribe(o.netns, !o.noRoutes)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	rd := &reader{c: c, routes: !o.noRoutes}
	if o.noRoutes {
		// Links and addresses are kept from the notifications between full
		// reads. (Routes, when watched, are read afresh every time: a
		// large table changes often and is not worth mirroring here.)
		rd.cache = &cache{}
		src.cache = rd.cache
	}
	return newMonitor(o, src, rd), nil
}

// events is the notification socket.
type events struct {
	c     *netlink.Conn
	cache *cache // nil when State always reads afresh
}

func subscribe(netns int, routes bool) (*events, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netmon: opening rtnetlink notification socket: %w", err)
	}
	setReadBuffer(c, eventBuffer)
	groups := []uint32{unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR}
	if routes {
		groups = append(groups, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE)
	}
	for _, g := range groups {
		if err := c.JoinGroup(g); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("netmon: joining rtnetlink group %d: %w", g, err)
		}
	}
	return &events{c: c}, nil
}

// setReadBuffer sizes the socket's receive buffer past net.core.rmem_max
// when the process may (SO_RCVBUFFORCE), else up to it.
func setReadBuffer(c *netlink.Conn, bytes int) {
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
		}); err == nil && serr == nil {
			return
		}
	}
	// Best effort: a smaller buffer only overflows sooner, which costs a
	// re-read.
	_ = c.SetReadBuffer(bytes)
}

func (e *events) next() (bool, error) {
	msgs, err := e.c.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			if e.cache != nil {
				e.cache.invalidate()
			}
			return true, fmt.Errorf("%w: %w", errEventsLost, err)
		}
		return false, err
	}
	if e.cache != nil {
		e.cache.apply(msgs)
	}
	for _, m := range msgs {
		if relevant(m) {
			return true, nil
		}
	}
	return false, nil
}

func (e *events) SetReadDeadline(t time.Time) error { return e.c.SetReadDeadline(t) }
func (e *events) Close() error                      { return e.c.Close() }

// reader reads State over the query socket.
type reader struct {
	mu     sync.Mutex // one dump at a time: Send and Receive are paired by hand
	c      *rtnetlink.Conn
	routes bool   // read routes too
	cache  *cache // links and addresses kept between full reads, or nil
	full   int    // full reads so far, under mu
}

// invalidate makes the next read a full one.
func (r *reader) invalidate() {
	if r.cache != nil {
		r.cache.invalidate()
	}
}

func (r *reader) read() (State, error) {
	if r.cache != nil {
		if s, ok := r.cache.snapshot(); ok {
			return s, nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.full++
	if r.cache != nil {
		r.cache.begin()
	}
	links, err := dump[*rtnetlink.LinkMessage](r, "links", &rtnetlink.LinkMessage{}, unix.RTM_GETLINK)
	if err == nil {
		// Family AF_UNSPEC dumps every family: IPv4 and IPv6 in one request.
		var addrs []*rtnetlink.AddressMessage
		addrs, err = dump[*rtnetlink.AddressMessage](r, "addresses", &rtnetlink.AddressMessage{}, unix.RTM_GETADDR)
		if err == nil && r.cache != nil {
			return r.cache.install(links, addrs), nil
		}
		if err == nil {
			return r.readRoutes(links, addrs)
		}
	}
	if r.cache != nil {
		r.cache.abort()
	}
	return State{}, err
}

func (r *reader) readRoutes(links []*rtnetlink.LinkMessage, addrs []*rtnetlink.AddressMessage) (State, error) {
	var err error
	var routes []*rtnetlink.RouteMessage
	if r.routes {
		routes, err = dump[*rtnetlink.RouteMessage](r, "routes", &rtnetlink.RouteMessage{}, unix.RTM_GETROUTE)
		if err != nil {
			return State{}, err
		}
	}
	return buildState(links, addrs, routes), nil
}

// dump runs a dump request and returns the replies of type T. It repeats a
// dump the kernel marked inconsistent (NLM_F_DUMP_INTR, which Execute
// hides), as a concurrent change makes it.
func dump[T rtnetlink.Message](r *reader, what string, req rtnetlink.Message, typ uint16) ([]T, error) {
	for attempt := 1; ; attempt++ {
		sent, err := r.c.Send(req, typ, netlink.Request|netlink.Dump)
		if err != nil {
			return nil, fmt.Errorf("netmon: requesting %s: %w", what, err)
		}
		msgs, raw, err := r.c.Receive()
		if err == nil {
			err = netlink.Validate(sent, raw)
		}
		if err != nil {
			return nil, fmt.Errorf("netmon: reading %s: %w", what, err)
		}
		if interrupted(raw) && attempt < dumpAttempts {
			continue
		}
		if interrupted(raw) {
			return nil, fmt.Errorf("netmon: reading %s, %d times: %w", what, dumpAttempts, ErrDumpInterrupted)
		}
		out := make([]T, 0, len(msgs))
		for _, m := range msgs {
			if t, ok := m.(T); ok {
				out = append(out, t)
			}
		}
		return out, nil
	}
}

func interrupted(msgs []netlink.Message) bool {
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return true
		}
	}
	return false
}

func (r *reader) Close() error { return r.c.Close() }
