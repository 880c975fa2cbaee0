// Package netmon reads and watches a network namespace's links, addresses
// and routes over rtnetlink.
//
// A Monitor gives two things: State, a full fresh read of the namespace,
// and Changes, a wake-up channel that says "something changed, read State
// again". It hands out no deltas to keep: the kernel is the source of
// truth and the caller re-reads the whole state after every wake-up, which
// also makes lost notifications (a receive-buffer overflow) harmless. The
// one thing it passes on as it comes is a new address (WithNewAddrs), for a
// caller that acts on it at once, ahead of the re-read that follows.
//
//	m, err := netmon.New(netmon.WithNetNS(fd))
//	...
//	defer m.Close()
//	go m.Run(ctx)
//	for {
//		s, err := m.State()
//		switch {
//		case err == nil:
//			use(s)
//		case !errors.Is(err, netmon.ErrDumpInterrupted):
//			return err
//		} // else the next wake-up is on its way
//		select {
//		case <-m.Changes():
//		case <-ctx.Done():
//			return
//		}
//	}
package netmon

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
)

// Kind is what sort of interface a link is.
type Kind string

// The kinds of link. A link whose driver names a kind not listed here is
// KindOther.
const (
	KindPhysical  Kind = "physical" // a hardware NIC: Ethernet, Wi-Fi, InfiniBand
	KindVeth      Kind = "veth"
	KindBridge    Kind = "bridge"
	KindVLAN      Kind = "vlan"
	KindBond      Kind = "bond"
	KindWireGuard Kind = "wireguard"
	KindTun       Kind = "tun"  // tun and tap devices
	KindWWAN      Kind = "wwan" // cellular modems
	KindLoopback  Kind = "loopback"
	KindDummy     Kind = "dummy"
	KindMACVLAN   Kind = "macvlan"
	KindIPVLAN    Kind = "ipvlan"
	KindVXLAN     Kind = "vxlan"
	KindOther     Kind = "other"
)

// Link is a network interface.
type Link struct {
	Index int
	Name  string
	Kind  Kind
	// Up is true when the link is administratively up (IFF_UP).
	Up bool
	// Running is true when the link has carrier and is operationally up
	// (IFF_RUNNING or IFF_LOWER_UP); never without Up.
	Running bool
	// ParentIndex is the link this one is stacked on (a VLAN's, macvlan's
	// or ipvlan's lower device), 0 if none. A parent in another namespace
	// is not reported, nor is a veth's peer.
	ParentIndex int
}

// Addr is an IPv4 or IPv6 address on an interface.
type Addr struct {
	// Index is the interface's index.
	Index int
	// Prefix is the address with its prefix length. IPv6 link-local
	// addresses carry no zone; Index is the zone.
	Prefix netip.Prefix
	// Scope is the address scope (RT_SCOPE_UNIVERSE 0, RT_SCOPE_LINK 253,
	// RT_SCOPE_HOST 254, ...).
	Scope uint8
	// Temporary is an IPv6 privacy address (IFA_F_TEMPORARY).
	Temporary bool
	// Tentative is an IPv6 address whose duplicate-address detection has
	// not finished, or failed (IFA_F_TENTATIVE): not usable as a source yet.
	Tentative bool
	// Deprecated is an IPv6 address past its preferred lifetime
	// (IFA_F_DEPRECATED): still valid, not to be used for new connections.
	Deprecated bool
	// Permanent is an address without a lifetime (IFA_F_PERMANENT), as
	// configured by hand; SLAAC and DHCP addresses, which expire, lack it.
	Permanent bool
}

// Route is a unicast route, from any routing table.
type Route struct {
	// Dst is the destination; a default route is 0.0.0.0/0 or ::/0.
	Dst netip.Prefix
	// Index is the outgoing interface. A multipath route is listed once
	// per next hop.
	Index int
	// Table is the routing table (RT_TABLE_MAIN is 254).
	Table uint32
}

// State is a namespace's links, addresses and routes, read at one time.
type State struct {
	// Links are keyed by interface index.
	Links map[int]Link
	// Addrs are sorted by interface index, then prefix.
	Addrs []Addr
	// Routes are sorted by interface index, table, then destination. Routes
	// that name no interface (those using nexthop objects) are left out.
	Routes []Route
}

// IndexOf returns the index of the interface named name, 0 if there is
// none.
func (s State) IndexOf(name string) int {
	for idx, l := range s.Links {
		if l.Name == name {
			return idx
		}
	}
	return 0
}

// HasRoute reports whether the interface carries a route other than those
// to its own connected subnets: a default route, a route via a gateway, or
// any route in any table whose destination is not the subnet of one of the
// interface's addresses.
func (s State) HasRoute(index int) bool {
	for _, r := range s.Routes {
		if r.Index == index && !s.connected(r) {
			return true
		}
	}
	return false
}

// connected reports whether r is the route to the subnet of an address on
// its own interface, as the kernel adds for each address.
func (s State) connected(r Route) bool {
	for _, a := range s.Addrs {
		if a.Index == r.Index && a.Prefix.Masked() == r.Dst {
			return true
		}
	}
	return false
}

// ErrClosed is returned by a Monitor's methods after Close.
var ErrClosed = errors.New("netmon: monitor closed")

// ErrDumpInterrupted is returned by State when the kernel changed the
// namespace during each of several reads (it marks such a dump
// inconsistent). The change that interrupted the last read also signals
// Changes, so the caller can simply wait for the next wake-up.
var ErrDumpInterrupted = errors.New("netmon: the namespace kept changing while it was read")

// errEventsLost is what an eventSource returns when the kernel dropped
// notifications because the receive buffer overflowed (ENOBUFS).
var errEventsLost = errors.New("netmon: notifications lost")

// DefaultDebounce is the window in which a Monitor gathers the
// notifications that follow a signalled one into one more signal. It is
// zero: every batch of notifications is signalled at once, and the
// channel of size one is what coalesces a burst, so a change reaches the
// caller without delay.
const DefaultDebounce time.Duration = 0

// Option configures New.
type Option func(*options)

type options struct {
	netns      int
	debounce   time.Duration
	noRoutes   bool
	onNewAddrs func([]NewAddr)
}

// NewAddr is an address the kernel announced as new or changed, with its
// interface as State has it at that moment.
type NewAddr struct {
	Addr Addr
	Link Link
}

// WithNewAddrs makes Run call fn with the addresses the kernel announces
// as new or changed (RTM_NEWADDR: an address added, or its flags changed,
// as when IPv6 duplicate-address detection ends), each with its interface.
// fn is called from the goroutine that receives the notifications, before
// they are applied to the state kept from them and before Changes is
// signalled for them, so that a caller can act on a new address without
// waiting for a wake-up of its own; the signal follows as usual, and a
// caller must still re-read State then. fn is called only while the
// Monitor keeps links and addresses from notifications (WithoutRoutes) and
// that state is current: never with routes, nor between lost
// notifications and the full read that follows. fn must return quickly
// (notifications wait meanwhile) and must not call Run or Close.
func WithNewAddrs(fn func(added []NewAddr)) Option {
	return func(o *options) { o.onNewAddrs = fn }
}

// WithoutRoutes makes the Monitor neither read nor watch routes: State has
// no Routes and route changes do not signal Changes. On hosts with large
// routing tables (a full BGP table) this spares a dump of every route on
// every change; use it when nothing needs the routes.
func WithoutRoutes() Option { return func(o *options) { o.noRoutes = true } }

// WithNetNS makes the Monitor read and watch the network namespace open at
// fd (e.g. from netns.Open, or /proc/PID/ns/net) instead of the calling
// thread's. The descriptor is needed only during New.
func WithNetNS(fd int) Option { return func(o *options) { o.netns = fd } }

// WithDebounce sets the window in which notifications that follow a
// signalled one are gathered into one more signal (default
// DefaultDebounce). The first change after a quiet spell is always
// signalled at once. Zero signals for every batch the kernel delivers.
func WithDebounce(d time.Duration) Option { return func(o *options) { o.debounce = d } }

func newOptions(opts []Option) (options, error) {
	o := options{debounce: DefaultDebounce}
	for _, opt := range opts {
		opt(&o)
	}
	if o.debounce < 0 {
		return o, fmt.Errorf("netmon: debounce is %s, must not be negative", o.debounce)
	}
	if o.netns < 0 {
		return o, fmt.Errorf("netmon: network namespace descriptor is %d, must not be negative", o.netns)
	}
	return o, nil
}

// batch is what one read of the notification socket brought.
type batch struct {
	// changed is set when the notifications may change State.
	changed bool
	// added are the addresses announced new or changed (RTM_NEWADDR), when
	// the notifications update kept state; nil otherwise.
	added []NewAddr
}

// eventSource is a subscription to the kernel's notifications.
type eventSource interface {
	// next blocks until the next batch of notifications and returns what
	// it brought. It returns errEventsLost (wrapped) when the kernel
	// dropped some, and a deadline error once SetReadDeadline's time has
	// passed.
	next() (batch, error)
	// commit applies the batch next returned to the state kept from
	// notifications, if any. The pump calls it once it has handed the new
	// addresses on, before it signals Changes: what a new address takes on
	// its way to its endpoint comes first.
	commit()
	SetReadDeadline(t time.Time) error
	Close() error
}

// stateReader reads a namespace's whole state.
type stateReader interface {
	read() (State, error)
	Close() error
}

// Monitor reads and watches one network namespace. Its methods are safe
// for concurrent use.
type Monitor struct {
	debounce   time.Duration
	onNewAddrs func([]NewAddr)
	changes    chan struct{}
	src        eventSource
	rd         stateReader

	mu        sync.Mutex
	closed    bool
	running   bool
	cancelRun context.CancelFunc
	runDone   chan struct{}
}

func newMonitor(o options, src eventSource, rd stateReader) *Monitor {
	return &Monitor{debounce: o.debounce, onNewAddrs: o.onNewAddrs, changes: make(chan struct{}, 1), src: src, rd: rd}
}

// State returns the namespace's links, IPv4 and IPv6 addresses and (unless
// WithoutRoutes) routes as the kernel has them. With WithoutRoutes, links
// and addresses are kept from the kernel's notifications between full
// reads: the first State, any State after notifications were lost or after
// Refresh, reads everything afresh. A read the kernel marks as interrupted
// by a concurrent change is repeated; ErrDumpInterrupted says the changes
// went on for all the repeats. After Close it returns ErrClosed.
func (m *Monitor) State() (State, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return State{}, ErrClosed
	}
	return m.rd.read()
}

// Refresh makes the next State read everything afresh from the kernel
// instead of the state kept from notifications; callers resynchronising on
// a schedule or after a reload use it.
func (m *Monitor) Refresh() {
	if r, ok := m.rd.(interface{ invalidate() }); ok {
		r.invalidate()
	}
}

// Changes returns a channel that receives a value when the namespace's
// links, addresses or routes changed since the value before, while Run
// runs: the receiver should call State again. Changes are coalesced: the
// channel holds at most one value; the first change after a quiet spell is
// signalled at once, and the rest of a burst gives one wake-up per debounce
// window. The channel is never closed.
func (m *Monitor) Changes() <-chan struct{} { return m.changes }

// Run receives the kernel's notifications of link, address and route
// changes (the rtnetlink groups RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
// RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE and RTNLGRP_IPV6_ROUTE) and
// signals Changes, until ctx ends or the Monitor is closed; then it returns
// nil. Notifications are queued by the kernel from New on, so none are
// missed between New and Run. When the kernel drops notifications (its
// buffer overflowed) Run signals a change, since a fresh State covers
// whatever was lost, and goes on.
//
// Run returns an error if the subscription fails, if the Monitor is closed
// (ErrClosed), or if it is already running.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		cancel()
		return ErrClosed
	case m.running:
		m.mu.Unlock()
		cancel()
		return errors.New("netmon: Run is already running")
	}
	m.running, m.cancelRun, m.runDone = true, cancel, done
	m.mu.Unlock()
	// Deferred first, so run last: Close, waiting for done, returns when
	// Run has done everything else.
	defer func() {
		cancel()
		m.mu.Lock()
		m.running, m.cancelRun, m.runDone = false, nil, nil
		m.mu.Unlock()
		close(done)
	}()

	// A Run before this one unblocked the socket with a past deadline.
	if err := m.src.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("netmon: clearing the notification socket's deadline: %w", err)
	}

	// Closing order: mark stopped, unblock the pump's read, wait for it.
	var stopped atomic.Bool
	unblocked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		stopped.Store(true)
		_ = m.src.SetReadDeadline(time.Now())
	})
	defer func() {
		if !stop() {
			<-unblocked
		}
	}()

	kick := make(chan struct{}, 1)
	pumpDone := make(chan struct{})
	var pumpErr error
	go func() {
		defer close(pumpDone)
		pumpErr = m.pump(&stopped, kick)
	}()

	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	// Leading edge, then at most one signal per debounce window: a change
	// after a quiet spell is signalled at once; the rest of a burst is
	// gathered and signalled when the window ends.
	var (
		fire    <-chan time.Time
		pending bool
	)
	for {
		select {
		case <-kick:
			switch {
			case m.debounce == 0:
				m.signal()
			case fire == nil:
				m.signal()
				timer.Reset(m.debounce)
				fire = timer.C
			default:
				pending = true
			}
		case <-fire:
			fire = nil
			if pending {
				pending = false
				m.signal()
				timer.Reset(m.debounce)
				fire = timer.C
			}
		case <-pumpDone:
			return pumpErr
		case <-ctx.Done():
			<-pumpDone
			return nil
		}
	}
}

// pump reads notifications until stopped is set, hands new addresses to
// the WithNewAddrs callback, and nudges kick (size 1, never blocking) for
// each batch that may change State.
func (m *Monitor) pump(stopped *atomic.Bool, kick chan<- struct{}) error {
	for {
		b, err := m.src.next()
		if stopped.Load() {
			return nil
		}
		if err != nil {
			if !errors.Is(err, errEventsLost) {
				return fmt.Errorf("netmon: receiving rtnetlink notifications: %w", err)
			}
			b.changed = true // the caller re-reads everything: nothing is lost
		}
		if len(b.added) > 0 && m.onNewAddrs != nil {
			m.onNewAddrs(b.added)
		}
		if err == nil {
			m.src.commit()
		}
		switch {
		case !b.changed:
		case m.debounce == 0:
			m.signal() // no window to keep: spare the caller a hop
		default:
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
}

// signal puts a value in Changes unless one is already waiting there.
func (m *Monitor) signal() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// Close stops Run, waits for it to return, and closes the Monitor's
// sockets. Later calls do nothing.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	cancel, done := m.cancelRun, m.runDone
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	var errs []error
	if err := m.src.Close(); err != nil {
		errs = append(errs, fmt.Errorf("netmon: closing the notification socket: %w", err))
	}
	if err := m.rd.Close(); err != nil {
		errs = append(errs, fmt.Errorf("netmon: closing the query socket: %w", err))
	}
	return errors.Join(errs...)
}

// Kernel constants, from the uapi headers (checked against x/sys/unix in a
// Linux test); x/sys/unix defines them on Linux only.
const (
	afInet  = 2
	afInet6 = 10

	// include/uapi/linux/if_arp.h
	arphrdEther             = 1
	arphrdEEther            = 2
	arphrdIEEE802           = 6
	arphrdInfiniband        = 32
	arphrdRawIP             = 519
	arphrdLoopback          = 772
	arphrdIEEE80211         = 801
	arphrdIEEE80211Prism    = 802
	arphrdIEEE80211Radiotap = 803
	arphrdNone              = 0xfffe

	// include/uapi/linux/if.h
	iffUp      = 0x1
	iffRunning = 0x40
	iffLowerUp = 0x10000

	// include/uapi/linux/if_addr.h
	ifaFTemporary  = 0x01 // IFA_F_SECONDARY for IPv4
	ifaFDeprecated = 0x20
	ifaFTentative  = 0x40
	ifaFPermanent  = 0x80

	// include/uapi/linux/rtnetlink.h
	rtmNewLink  = 16
	rtmDelLink  = 17
	rtmNewAddr  = 20
	rtmDelAddr  = 21
	rtmNewRoute = 24
	rtmDelRoute = 25
	rtnUnicast  = 1
	rtmFCloned  = 0x200
)

// classify maps what the kernel says of a link to its Kind: the driver's
// link kind (IFLA_INFO_KIND) first, then the hardware type (ARPHRD_*).
// Cellular modems show up in several ways: the "wwan" and "rmnet" link
// kinds, raw-IP devices (ARPHRD_RAWIP), and driver-less devices named as
// the usbnet and rmnet drivers and systemd's predictable names for WWAN
// ("wwan*", "rmnet*", "ww*") with no hardware address (ARPHRD_NONE) or an
// Ethernet one.
func classify(linkKind string, arphrd uint16, name string) Kind {
	if arphrd == arphrdLoopback {
		return KindLoopback
	}
	switch linkKind {
	case "":
		// No driver link kind: a hardware device, or a modem.
	case "veth":
		return KindVeth
	case "bridge":
		return KindBridge
	case "vlan":
		return KindVLAN
	case "bond":
		return KindBond
	case "wireguard":
		return KindWireGuard
	case "tun":
		return KindTun
	case "dummy":
		return KindDummy
	case "macvlan":
		return KindMACVLAN
	case "ipvlan":
		return KindIPVLAN
	case "vxlan":
		return KindVXLAN
	case "wwan", "rmnet":
		return KindWWAN
	default:
		return KindOther
	}
	wwanName := strings.HasPrefix(name, "ww") || strings.HasPrefix(name, "rmnet")
	switch arphrd {
	case arphrdRawIP:
		return KindWWAN
	case arphrdNone:
		if wwanName {
			return KindWWAN
		}
		return KindOther
	case arphrdEther:
		if wwanName {
			return KindWWAN
		}
		return KindPhysical
	case arphrdEEther, arphrdIEEE802, arphrdInfiniband,
		arphrdIEEE80211, arphrdIEEE80211Prism, arphrdIEEE80211Radiotap:
		return KindPhysical
	}
	return KindOther
}

// linkFrom converts a link message. ParentIndex is the raw IFLA_LINK (not
// yet checked against the namespace's links) except for veth, where it is
// the peer.
func linkFrom(m *rtnetlink.LinkMessage) (Link, bool) {
	if m.Index == 0 || m.Index > maxIndex {
		return Link{}, false
	}
	l := Link{
		Index:   int(m.Index),
		Up:      m.Flags&iffUp != 0,
		Running: m.Flags&iffUp != 0 && m.Flags&(iffRunning|iffLowerUp) != 0,
	}
	var linkKind string
	if a := m.Attributes; a != nil {
		l.Name = a.Name
		if a.Info != nil {
			linkKind = a.Info.Kind
		}
		if a.Type != m.Index && a.Type <= maxIndex {
			l.ParentIndex = int(a.Type) // IFLA_LINK, decoded into Type
		}
	}
	l.Kind = classify(linkKind, m.Type, l.Name)
	if l.Kind == KindVeth {
		l.ParentIndex = 0
	}
	return l, true
}

// maxIndex is the largest interface index (the kernel's are positive ints).
const maxIndex = 1<<31 - 1

// addrFrom converts an IPv4 or IPv6 address message.
func addrFrom(m *rtnetlink.AddressMessage) (Addr, bool) {
	if m.Attributes == nil || m.Index == 0 || m.Index > maxIndex {
		return Addr{}, false
	}
	// IFA_LOCAL is the local address of a point-to-point link, where
	// IFA_ADDRESS is the peer's; otherwise IFA_ADDRESS is the address.
	ip := m.Attributes.Local
	if ip == nil {
		ip = m.Attributes.Address
	}
	addr, ok := ipFrom(m.Family, ip)
	if !ok || int(m.PrefixLength) > addr.BitLen() {
		return Addr{}, false
	}
	// ifa_flags holds the low 8 bits of IFA_FLAGS; kernels since 3.14 send
	// both, older ones only the header's.
	flags := uint32(m.Flags) | m.Attributes.Flags
	return Addr{
		Index:      int(m.Index),
		Prefix:     netip.PrefixFrom(addr, int(m.PrefixLength)),
		Scope:      m.Scope,
		Temporary:  m.Family == afInet6 && flags&ifaFTemporary != 0,
		Tentative:  flags&ifaFTentative != 0,
		Deprecated: flags&ifaFDeprecated != 0,
		Permanent:  flags&ifaFPermanent != 0,
	}, true
}

// errAddrMessage says an address message is malformed.
var errAddrMessage = errors.New("netmon: malformed address message")

// decodeAddr decodes an address message (struct ifaddrmsg and its
// attributes) into the Addr that addrFrom makes of rtnetlink's decoding of
// it, without rtnetlink's allocations (one or two per attribute): it runs
// for every new address, on the way to its endpoint. ok is false for an
// address State does not list; err is errAddrMessage for a message
// rtnetlink would not decode either.
func decodeAddr(b []byte) (a Addr, ok bool, err error) {
	const (
		ifaddrmsgLen = 8
		nlaHdrLen    = 4
		nlaTypeMask  = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

		// include/uapi/linux/if_addr.h
		ifaAddress   = 1
		ifaLocal     = 2
		ifaBroadcast = 4
		ifaAnycast   = 5
		ifaCacheinfo = 6
		ifaMulticast = 7
		ifaFlags     = 8
	)
	if len(b) < ifaddrmsgLen {
		return Addr{}, false, errAddrMessage
	}
	family, plen, scope := b[0], b[1], b[3]
	index := binary.NativeEndian.Uint32(b[4:8])
	var (
		local, address net.IP
		attrFlags      uint32
	)
	for attrs := b[ifaddrmsgLen:]; len(attrs) > 0; {
		if len(attrs) < nlaHdrLen {
			return Addr{}, false, errAddrMessage
		}
		l := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & nlaTypeMask
		var data []byte
		switch {
		case l == 0:
		case l < nlaHdrLen || l > len(attrs):
			return Addr{}, false, errAddrMessage
		default:
			data = attrs[nlaHdrLen:l]
		}
		ipLen := len(data) == net.IPv4len || len(data) == net.IPv6len
		switch typ {
		case ifaAddress, ifaLocal, ifaBroadcast, ifaAnycast, ifaMulticast:
			if !ipLen {
				return Addr{}, false, errAddrMessage
			}
			if typ == ifaAddress {
				address = data
			} else if typ == ifaLocal {
				local = data
			}
		case ifaCacheinfo:
			if len(data) != 16 {
				return Addr{}, false, errAddrMessage
			}
		case ifaFlags:
			if len(data) != 4 {
				return Addr{}, false, errAddrMessage
			}
			attrFlags = binary.NativeEndian.Uint32(data)
		}
		attrs = attrs[min(len(attrs), (max(l, nlaHdrLen)+3)&^3):]
	}
	if len(b) == ifaddrmsgLen || index == 0 || index > maxIndex {
		return Addr{}, false, nil // no attributes: rtnetlink leaves them nil
	}
	ip := local
	if ip == nil {
		ip = address
	}
	addr, ok := ipFrom(family, ip)
	if !ok || int(plen) > addr.BitLen() {
		return Addr{}, false, nil
	}
	// ifa_flags holds the low 8 bits of IFA_FLAGS, as in addrFrom.
	flags := uint32(b[2]) | attrFlags
	return Addr{
		Index:      int(index),
		Prefix:     netip.PrefixFrom(addr, int(plen)),
		Scope:      scope,
		Temporary:  family == afInet6 && flags&ifaFTemporary != 0,
		Tentative:  flags&ifaFTentative != 0,
		Deprecated: flags&ifaFDeprecated != 0,
		Permanent:  flags&ifaFPermanent != 0,
	}, true, nil
}

// ipFrom converts an address of the given family, which must have the
// family's length.
func ipFrom(family uint8, ip net.IP) (netip.Addr, bool) {
	switch {
	case family == afInet && len(ip) == net.IPv4len:
		return netip.AddrFrom4([4]byte(ip)), true
	case family == afInet6 && len(ip) == net.IPv6len:
		return netip.AddrFrom16([16]byte(ip)), true
	}
	return netip.Addr{}, false
}

// routesFrom converts a unicast IPv4 or IPv6 route message, one Route per
// next hop; other routes (local, broadcast, multicast, blackhole, cached
// clones, ...) give none.
func routesFrom(m *rtnetlink.RouteMessage) []Route {
	if !unicastRoute(m) {
		return nil
	}
	a := &m.Attributes
	dst, ok := ipFrom(m.Family, a.Dst)
	if a.Dst == nil {
		dst, ok = netip.IPv6Unspecified(), true
		if m.Family == afInet {
			dst = netip.IPv4Unspecified()
		}
	}
	if !ok || int(m.DstLength) > dst.BitLen() {
		return nil
	}
	r := Route{Dst: netip.PrefixFrom(dst, int(m.DstLength)).Masked(), Table: a.Table}
	if r.Table == 0 {
		r.Table = uint32(m.Table) // RTA_TABLE is absent on very old kernels
	}
	var routes []Route
	if a.OutIface != 0 && a.OutIface <= maxIndex {
		r.Index = int(a.OutIface)
		routes = append(routes, r)
	}
	for _, nh := range a.Multipath {
		if nh.Hop.IfIndex != 0 && nh.Hop.IfIndex <= maxIndex {
			r.Index = int(nh.Hop.IfIndex)
			routes = append(routes, r)
		}
	}
	return routes
}

func unicastRoute(m *rtnetlink.RouteMessage) bool {
	return (m.Family == afInet || m.Family == afInet6) && m.Type == rtnUnicast && m.Flags&rtmFCloned == 0
}

// relevant reports whether a notification may change State. Route
// notifications that State would not list (local, broadcast and multicast
// routes, cached clones) are not; anything that cannot be decoded is.
func relevant(nm netlink.Message) bool {
	switch nm.Header.Type {
	case rtmNewLink, rtmDelLink, rtmNewAddr, rtmDelAddr:
		return true
	case rtmNewRoute, rtmDelRoute:
		var m rtnetlink.RouteMessage
		if err := m.UnmarshalBinary(nm.Data); err != nil {
			return true
		}
		return unicastRoute(&m)
	}
	return false
}

// buildState converts dumped messages into a State.
func buildState(links []*rtnetlink.LinkMessage, addrs []*rtnetlink.AddressMessage, routes []*rtnetlink.RouteMessage) State {
	converted := make([]Addr, 0, len(addrs))
	for _, m := range addrs {
		if a, ok := addrFrom(m); ok {
			converted = append(converted, a)
		}
	}
	return assemble(links, converted, routes)
}

// assemble makes a State of links, addresses (its own to keep and sort)
// and routes.
func assemble(links []*rtnetlink.LinkMessage, addrs []Addr, routes []*rtnetlink.RouteMessage) State {
	s := State{Links: make(map[int]Link, len(links)), Addrs: addrs}
	for _, m := range links {
		if l, ok := linkFrom(m); ok {
			s.Links[l.Index] = l
		}
	}
	// rtnetlink/v2 does not decode IFLA_LINK_NETNSID, so a parent in
	// another namespace can only be told by its absence from this one.
	for i, l := range s.Links {
		if _, ok := s.Links[l.ParentIndex]; l.ParentIndex != 0 && !ok {
			l.ParentIndex = 0
			s.Links[i] = l
		}
	}
	for _, m := range routes {
		s.Routes = append(s.Routes, routesFrom(m)...)
	}
	slices.SortFunc(s.Addrs, func(a, b Addr) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), comparePrefix(a.Prefix, b.Prefix))
	})
	slices.SortFunc(s.Routes, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Table, b.Table), comparePrefix(a.Dst, b.Dst))
	})
	return s
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
