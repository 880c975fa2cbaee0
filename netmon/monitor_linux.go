package netmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/internal/nlread"
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

// notificationBuffer is what one read of the notification socket takes.
// The kernel sends each notification in a datagram of its own, and the
// largest, a link's, takes a few KiB (notifications carry no VF details);
// one that does not fit counts as lost.
const notificationBuffer = 64 << 10

// events is the notification socket, read with one raw system call per
// datagram (see internal/nlread).
type events struct {
	r     *nlread.Reader
	buf   []byte
	msgs  []netlink.Message // the last datagram's, their data in buf
	cache *cache            // nil when State always reads afresh
	// pending are the messages next returned, for commit.
	pending []netlink.Message
}

func subscribe(netns int, routes bool) (*events, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netmon: opening rtnetlink notification socket: %w", err)
	}
	defer c.Close() // the reader keeps a descriptor of its own
	setReadBuffer(c, eventBuffer)
	groups := []uint32{unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR}
	if routes {
		groups = append(groups, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE)
	}
	for _, g := range groups {
		if err := c.JoinGroup(g); err != nil {
			return nil, fmt.Errorf("netmon: joining rtnetlink group %d: %w", g, err)
		}
	}
	src, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netmon: rtnetlink notification socket: %w", err)
	}
	r, err := nlread.New(src)
	if err != nil {
		return nil, fmt.Errorf("netmon: %w", err)
	}
	return &events{r: r, buf: make([]byte, notificationBuffer)}, nil
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

func (e *events) next() (batch, error) {
	msgs, err := e.receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, errUnreadable) {
			if e.cache != nil {
				e.cache.invalidate()
			}
			return batch{changed: true}, fmt.Errorf("%w: %w", errEventsLost, err)
		}
		return batch{}, err
	}
	var b batch
	if e.cache != nil {
		b.added = e.cache.peek(msgs)
		e.pending = msgs
	}
	b.changed = slices.ContainsFunc(msgs, relevant)
	return b, nil
}

func (e *events) commit() {
	if e.cache != nil && e.pending != nil {
		e.cache.apply(e.pending)
	}
	e.pending = nil
}

// errUnreadable says a datagram of notifications could not be read: it
// did not fit notificationBuffer, or its framing was broken. What it said
// is lost; a full read makes up for it.
var errUnreadable = errors.New("netmon: unreadable notification")

// receive reads one datagram of notifications, waiting for one if none is
// queued. It reads it with a single system call (internal/nlread), into a
// buffer kept for the purpose, where netlink.Conn.Receive first peeks at
// the size: one system call less on the way from a new address to its
// endpoint. The messages
// are valid until the next call.
func (e *events) receive() ([]netlink.Message, error) {
	n, err := e.r.Read(e.buf)
	if err != nil {
		return nil, err
	}
	if nlmsgAlign(n) > len(e.buf) {
		return nil, fmt.Errorf("%w: %d bytes do not fit the buffer", errUnreadable, n)
	}
	// The messages' data stays in the buffer, valid until the next read:
	// nothing keeps it (the cache copies what it journals).
	clear(e.buf[n:nlmsgAlign(n)]) // the padding the framing wants
	b := e.buf[:nlmsgAlign(n)]
	msgs := e.msgs[:0]
	defer func() { e.msgs = msgs[:0] }()
	for len(b) > 0 {
		var m netlink.Message
		l := 0
		if len(b) >= unix.NLMSG_HDRLEN {
			l = nlmsgAlign(int(binary.NativeEndian.Uint32(b)))
		}
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, fmt.Errorf("%w: a message of %d bytes in a datagram of %d", errUnreadable, l, n)
		}
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return nil, fmt.Errorf("%w: %w", errUnreadable, err)
		}
		msgs = append(msgs, m)
		b = b[l:]
	}
	return msgs, nil
}

// nlmsgAlign rounds n up to the alignment of netlink messages (NLMSG_ALIGN).
func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// SetReadDeadline makes receive return os.ErrDeadlineExceeded, at once
// if it is waiting, once t has come; the zero time takes the deadline away.
func (e *events) SetReadDeadline(t time.Time) error { return e.r.SetReadDeadline(t) }

// Close closes the socket; receive must not be running.
func (e *events) Close() error { return e.r.Close() }

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
