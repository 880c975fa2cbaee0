package genl

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// Client is a client of the kernel's mptcp_pm family in one network
// namespace. Its methods are safe for concurrent use. Requests are answered
// by the kernel synchronously, so methods take no context; event
// subscriptions, which block, do.
type Client struct {
	c      *genetlink.Conn
	family genetlink.Family
	events uint32 // ID of the events multicast group; 0 when absent
	// dial opens another connection in the same namespace, for subscriptions.
	dial func() (*genetlink.Conn, error)
	opts options

	// mu pairs the requests sent on c with their answers.
	mu sync.Mutex
	// raw is c's descriptor, for sendTogether; nil when c has none (a
	// test's connection).
	raw syscall.RawConn
	// seq numbers the requests sendTogether writes; buf holds them, sent
	// their headers, and write writes buf, setting werr; under mu.
	seq   uint32
	buf   []byte
	sent  []netlink.Message
	write func(fd uintptr) bool
	werr  error
	// reqs is the socket of WithRawRequests, nil without it.
	reqs *rawRequests

	closeOnce sync.Once
	closeErr  error
}

// Option configures New, Probe and the sysctl helpers.
type Option func(*options)

type options struct {
	netNS       int  // file descriptor of a network namespace; 0: the caller's
	eventBuffer int  // receive buffer of event subscriptions, bytes
	directReads bool // subscriptions read events with raw system calls
	rawRequests bool // acknowledged requests go through a socket of their own
}

// WithNetNS makes the client work in the network namespace open at fd (for
// example a file under /run/netns, see package netns). The caller keeps fd
// open while the client is used. Entering another namespace needs
// CAP_SYS_ADMIN.
func WithNetNS(fd int) Option { return func(o *options) { o.netNS = fd } }

// WithEventBuffer sets the socket receive buffer of event subscriptions, in
// bytes (default 1 MiB; without CAP_NET_ADMIN the kernel caps it at
// net.core.rmem_max). A larger buffer loses events less often under bursts.
func WithEventBuffer(bytes int) Option { return func(o *options) { o.eventBuffer = bytes } }

// WithDirectEventReads makes subscriptions read each batch of events with
// one raw system call (see internal/nlread) rather than through the
// netlink package, which peeks at a batch's size first and makes both
// calls the usual way. A system call made the usual way by a program that
// was idle first wakes the runtime's monitor thread: a thread wake-up on
// the critical path of a decision, such as a userspace path manager's.
// Subscriptions on connections without a descriptor read as usual.
func WithDirectEventReads() Option { return func(o *options) { o.directReads = true } }

// WithRawRequests makes CreateEndpoint, SetLimitsAndCreateEndpoint and
// CreateSubflow go through a socket of the client's own that the
// runtime's network poller does not watch, written and read with raw
// system calls. The kernel answers such a request while the write is
// still in the kernel; on a socket the poller watches, each answer wakes
// the poller's thread right there, before the next request of the same
// write is handled, and a system call made the usual way by a program
// that was idle first wakes the runtime's monitor thread. For a client on
// the critical path from a new address to its endpoint, or from a
// connection's ESTABLISHED to its next subflow. Linux only; elsewhere, and
// if the socket cannot be had, the option does nothing.
func WithRawRequests() Option { return func(o *options) { o.rawRequests = true } }

func buildOptions(opts []Option) options {
	o := options{eventBuffer: 1 << 20}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// initClient resolves the family and its events group on an open
// connection and returns a Client that owns it.
func initClient(c *genetlink.Conn, dial func() (*genetlink.Conn, error), o options) (*Client, error) {
	f, err := c.GetFamily(FamilyName)
	if err != nil {
		_ = c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{Op: "resolve family " + FamilyName, Err: err, kinds: []error{ErrUnavailable}}
		}
		return nil, wrapNetlink("resolve family "+FamilyName, err)
	}
	cl := &Client{c: c, family: f, dial: dial, opts: o}
	if raw, err := c.SyscallConn(); err == nil {
		cl.raw = raw
	}
	for _, g := range f.Groups {
		if g.Name == EventsGroupName {
			cl.events = g.ID
		}
	}
	return cl, nil
}

// Close closes the client's netlink connection. Subscriptions opened from
// the client have their own connections and stay open.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.c.Close()
		if c.reqs != nil {
			c.mu.Lock()
			c.closeErr = errors.Join(c.closeErr, c.reqs.close())
			c.mu.Unlock()
		}
	})
	return c.closeErr
}

// Family returns the resolved generic-netlink family: its ID, the version
// the kernel implements and its multicast groups.
func (c *Client) Family() genetlink.Family { return c.family }

// EventsGroup returns the ID of the family's events multicast group
// (EventsGroupName), which programs reading the events on sockets of their
// own join; 0 when the kernel has none.
func (c *Client) EventsGroup() uint32 { return c.events }

// execute sends one request and returns the replies; every request of the
// client goes through here or executeInOrder, and every error is converted
// there.
func (c *Client) execute(op string, cmd command, flags netlink.HeaderFlags, encode func(*netlink.AttributeEncoder)) ([]genetlink.Message, error) {
	msg, err := message(op, cmd, encode)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs, err := c.c.Execute(msg, c.family.ID, netlink.Request|flags)
	if err != nil {
		return nil, wrapNetlink(op, err)
	}
	return msgs, nil
}

// request is a request that wants nothing back but its acknowledgement:
// SET_LIMITS, or ADD_ADDR. It is a plain value, so that building one costs
// no allocation on the way from a new address to its endpoint.
type request struct {
	op     string
	cmd    command
	limits Limits   // SET_LIMITS
	nest   addrNest // ADD_ADDR; SUBFLOW_CREATE's local end
	token  uint32   // SUBFLOW_CREATE
	remote addrNest // SUBFLOW_CREATE
}

// encode writes the request's attributes with the netlink package.
func (r request) encode(ae *netlink.AttributeEncoder) {
	switch r.cmd {
	case cmdSetLimits:
		ae.Uint32(uint16(pmAttrRcvAddAddrs), r.limits.AddAddrAccepted)
		ae.Uint32(uint16(pmAttrSubflows), r.limits.Subflows)
	case cmdAddAddr:
		r.nest.nest(ae, pmAttrAddr)
	case cmdSubflowCreate:
		ae.Uint32(uint16(pmAttrToken), r.token)
		r.nest.nest(ae, pmAttrAddr)
		r.remote.nest(ae, pmAttrAddrRemote)
	}
}

// appendAttrs appends the bytes encode writes, without allocating.
func (r request) appendAttrs(b []byte) []byte {
	switch r.cmd {
	case cmdSetLimits:
		b = appendU32Attr(b, uint16(pmAttrRcvAddAddrs), r.limits.AddAddrAccepted)
		return appendU32Attr(b, uint16(pmAttrSubflows), r.limits.Subflows)
	case cmdAddAddr:
		return r.nest.appendNest(b, pmAttrAddr)
	case cmdSubflowCreate:
		b = appendU32Attr(b, uint16(pmAttrToken), r.token)
		b = r.nest.appendNest(b, pmAttrAddr)
		return r.remote.appendNest(b, pmAttrAddrRemote)
	}
	return b
}

// executeInOrder sends requests one after the other without waiting for
// the answer to one before it sends the next, then reads every answer. The
// kernel handles them in order, each whatever became of the one before. It
// sets errs[i] to the error of reqs[i]; one that could not be sent has the
// error that stopped it, and the requests after it are not sent either.
func (c *Client) executeInOrder(errs []error, reqs ...request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reqs != nil {
		c.executeRaw(errs, reqs)
		return
	}
	sent, err := c.sendTogether(reqs)
	if errors.Is(err, errors.ErrUnsupported) {
		// A connection without a descriptor (a test's): one by one,
		// through the netlink package.
		sent, err = nil, nil
		for i, r := range reqs {
			m, merr := message(r.op, r.cmd, r.encode)
			if merr != nil {
				for j := i; j < len(errs); j++ {
					errs[j] = merr
				}
				return
			}
			var nm netlink.Message
			if nm, err = c.c.Send(m, c.family.ID, netlink.Request|netlink.Acknowledge); err != nil {
				break
			}
			sent = append(sent, nm)
		}
	}
	if err != nil {
		for j := len(sent); j < len(errs); j++ {
			errs[j] = wrapNetlink(reqs[len(sent)].op, err)
		}
	}
	for i, nm := range sent {
		_, raw, err := c.c.Receive()
		if err == nil {
			err = netlink.Validate(nm, raw)
		}
		if err != nil {
			errs[i] = wrapNetlink(reqs[i].op, err)
		}
	}
}

// message encodes a request.
func message(op string, cmd command, encode func(*netlink.AttributeEncoder)) (genetlink.Message, error) {
	var data []byte
	if encode != nil {
		ae := netlink.NewAttributeEncoder()
		encode(ae)
		b, err := ae.Encode()
		if err != nil {
			return genetlink.Message{}, invalidf(op, "encoding request: %v", err)
		}
		data = b
	}
	return genetlink.Message{
		Header: genetlink.Header{Command: uint8(cmd), Version: FamilyVersion},
		Data:   data,
	}, nil
}

// wrapNetlink converts an error of the netlink library into an *Error,
// keeping the kernel's extended-ACK text.
func wrapNetlink(op string, err error) error {
	// The errno sits in the innermost *netlink.OpError; the text may be on
	// any of them when errors are wrapped on the way up.
	var (
		cause   = err
		message string
	)
	for e := err; e != nil; e = errors.Unwrap(e) {
		if oe, ok := e.(*netlink.OpError); ok {
			cause = oe.Err
			if message == "" {
				message = oe.Message
			}
		}
	}
	return newError(op, cause, message)
}

// Endpoints returns the in-kernel path manager's endpoints (GET_ADDR dump).
func (c *Client) Endpoints() ([]Endpoint, error) {
	return c.dumpAddrs("list endpoints", nil)
}

// Endpoint returns the endpoint with the given ID (GET_ADDR).
// Errors: ErrNotFound, ErrInvalid for ID 0.
func (c *Client) Endpoint(id uint8) (Endpoint, error) {
	const op = "get endpoint"
	if id == 0 {
		return Endpoint{}, invalidf(op, "endpoint ID must be 1..255, got 0")
	}
	return c.getAddr(op, addrNest{id: id}, nil)
}

// AddEndpoint creates an endpoint of the in-kernel path manager (ADD_ADDR)
// and returns it as the kernel stored it, with the ID it chose if ep.ID was 0
// and the flags it kept.
//
// Errors: ErrExists (the address is already an endpoint), ErrIDInUse,
// ErrLimit (no room for another endpoint), ErrInvalid (a port without
// FlagSignal, FlagSignal with FlagFullmesh, FlagImplicit, no address),
// ErrPermission.
func (c *Client) AddEndpoint(ep Endpoint) (Endpoint, error) {
	if err := c.addAddr("add endpoint", ep); err != nil {
		return Endpoint{}, err
	}
	// The kernel does not return the endpoint it created; find it.
	eps, err := c.Endpoints()
	if err != nil {
		return Endpoint{}, fmt.Errorf("reading back the new endpoint: %w", err)
	}
	for _, got := range eps {
		if got.Addr == ep.Addr && (ep.ID == 0 || got.ID == ep.ID) && got.Port == ep.Port {
			return got, nil
		}
	}
	return Endpoint{}, fmt.Errorf("reading back the new endpoint: %s: %w", ep.Addr, ErrNotFound)
}

// CreateEndpoint creates an endpoint with the ID the caller chose (ADD_ADDR)
// and, unlike AddEndpoint, does not read it back: it costs one request, for
// callers in a hurry that know the ID and can do without the flags the
// kernel kept (it drops those it does not know).
//
// Errors: as AddEndpoint's; ErrInvalid for ID 0.
func (c *Client) CreateEndpoint(ep Endpoint) error {
	r, err := createRequest(ep)
	if err != nil {
		return err
	}
	// Written as prepared bytes, as SetLimitsAndCreateEndpoint writes its
	// pair: nothing is encoded or allocated before the request is out.
	var errs [1]error
	c.executeInOrder(errs[:], r)
	return errs[0]
}

// SetLimitsAndCreateEndpoint is SetLimits, then CreateEndpoint, sent back
// to back: the add does not wait for the answer to the limits. The kernel
// handles them in order, so the endpoint comes with the new limits in force
// (connections may open subflows from it at once), and sooner than with
// the two calls. The endpoint is created even if the limits are refused,
// and the other way round; each has its error. When ep is not valid,
// nothing is sent, and both errors are that one.
//
// Errors: limitsErr as SetLimits's, createErr as CreateEndpoint's.
func (c *Client) SetLimitsAndCreateEndpoint(l Limits, ep Endpoint) (limitsErr, createErr error) {
	r, err := createRequest(ep)
	if err != nil {
		return err, err
	}
	var errs [2]error
	c.executeInOrder(errs[:], setLimitsRequest(l), r)
	return errs[0], errs[1]
}

// addAddr sends ADD_ADDR for ep.
func (c *Client) addAddr(op string, ep Endpoint) error {
	r, err := addRequest(op, ep)
	if err != nil {
		return err
	}
	_, err = c.execute(r.op, r.cmd, netlink.Acknowledge, r.encode)
	return err
}

// createRequest is CreateEndpoint's request.
func createRequest(ep Endpoint) (request, error) {
	const op = "create endpoint"
	if ep.ID == 0 {
		return request{}, invalidf(op, "endpoint ID must be 1..255, got 0 (use AddEndpoint to let the kernel choose)")
	}
	return addRequest(op, ep)
}

// addRequest is ADD_ADDR for ep.
func addRequest(op string, ep Endpoint) (request, error) {
	if !ep.Addr.IsValid() {
		return request{}, invalidf(op, "endpoint address is required")
	}
	if ep.Flags&FlagImplicit != 0 {
		return request{}, invalidf(op, "flag implicit is set by the kernel only")
	}
	if err := checkIfIndex(op, ep.IfIndex); err != nil {
		return request{}, err
	}
	n := addrNest{id: ep.ID, addr: ep.Addr, port: ep.Port, flags: ep.Flags, ifIndex: ep.IfIndex}
	return request{op: op, cmd: cmdAddAddr, nest: n}, nil
}

// DeleteEndpoint deletes the endpoint with the given ID (DEL_ADDR); the
// kernel withdraws it from every connection (RM_ADDR) and closes its subflows.
// Errors: ErrNotFound, ErrInvalid for ID 0 (see DeleteAddressID0), ErrPermission.
func (c *Client) DeleteEndpoint(id uint8) error {
	const op = "delete endpoint"
	if id == 0 {
		return invalidf(op, "endpoint ID must be 1..255, got 0 (use DeleteAddressID0 for the initial subflows' address)")
	}
	_, err := c.execute(op, cmdDelAddr, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		addrNest{id: id}.nest(ae, pmAttrAddr)
	})
	return err
}

// DeleteAddressID0 withdraws addr where connections use it with address ID 0
// (their initial subflow's address): DEL_ADDR with ID 0 and the address.
// Errors: ErrNotFound, ErrInvalid, ErrPermission.
func (c *Client) DeleteAddressID0(addr netip.Addr) error {
	const op = "delete address id 0"
	if !addr.IsValid() {
		return invalidf(op, "address is required")
	}
	_, err := c.execute(op, cmdDelAddr, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		addrNest{withID: true, addr: addr}.nest(ae, pmAttrAddr)
	})
	return err
}

// FlushEndpoints deletes every endpoint (FLUSH_ADDRS).
// Errors: ErrPermission.
func (c *Client) FlushEndpoints() error {
	_, err := c.execute("flush endpoints", cmdFlushAddrs, netlink.Acknowledge, nil)
	return err
}

// SetEndpointFlags sets the changeable flags (FlagBackup, FlagFullmesh; other
// bits are ignored by the kernel) of the endpoint with the given ID
// (SET_FLAGS). Flags not given are cleared. A change of FlagBackup is
// signalled to peers with MP_PRIO on existing subflows.
// Errors: ErrNotFound, ErrInvalid, ErrPermission.
func (c *Client) SetEndpointFlags(id uint8, flags EndpointFlags) error {
	const op = "set endpoint flags"
	if id == 0 {
		return invalidf(op, "endpoint ID must be 1..255, got 0")
	}
	_, err := c.execute(op, cmdSetFlags, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		addrNest{id: id, flags: flags}.nest(ae, pmAttrAddr)
	})
	return err
}

// SetEndpointFlagsByAddr is SetEndpointFlags for the endpoint with the given
// address and port (port 0: the endpoint without a port).
func (c *Client) SetEndpointFlagsByAddr(addr netip.AddrPort, flags EndpointFlags) error {
	const op = "set endpoint flags"
	if !addr.Addr().IsValid() {
		return invalidf(op, "endpoint address is required")
	}
	_, err := c.execute(op, cmdSetFlags, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		addrNest{addr: addr.Addr(), port: addr.Port(), flags: flags}.nest(ae, pmAttrAddr)
	})
	return err
}

// Limits returns the in-kernel path manager's limits (GET_LIMITS).
func (c *Client) Limits() (Limits, error) {
	const op = "get limits"
	msgs, err := c.execute(op, cmdGetLimits, 0, nil)
	if err != nil {
		return Limits{}, err
	}
	if len(msgs) != 1 {
		return Limits{}, fmt.Errorf("mptcp_pm %s: want one reply, got %d", op, len(msgs))
	}
	return decodeLimits(msgs[0].Data)
}

// SetLimits sets both limits (SET_LIMITS).
// Errors: ErrLimit and ErrInvalid for a value above the kernel's maximum (8
// on current kernels), ErrPermission.
func (c *Client) SetLimits(l Limits) error {
	r := setLimitsRequest(l)
	_, err := c.execute(r.op, r.cmd, netlink.Acknowledge, r.encode)
	return err
}

// setLimitsRequest is SetLimits's request.
func setLimitsRequest(l Limits) request {
	return request{op: "set limits", cmd: cmdSetLimits, limits: l}
}

// LocalAddresses returns the local addresses of a connection managed by a
// userspace path manager (GET_ADDR dump with a token).
// Errors: ErrUnknownToken, ErrWrongPathManager, ErrPermission.
func (c *Client) LocalAddresses(token uint32) ([]Endpoint, error) {
	return c.dumpAddrs("list local addresses", &token)
}

// LocalAddress returns the local address with the given ID of a connection
// managed by a userspace path manager (GET_ADDR with a token).
// Errors: ErrNotFound, ErrUnknownToken, ErrWrongPathManager, ErrPermission.
func (c *Client) LocalAddress(token uint32, id uint8) (Endpoint, error) {
	return c.getAddr("get local address", addrNest{id: id, withID: true}, &token)
}

func (c *Client) getAddr(op string, n addrNest, token *uint32) (Endpoint, error) {
	msgs, err := c.execute(op, cmdGetAddr, 0, func(ae *netlink.AttributeEncoder) {
		n.nest(ae, pmAttrAddr)
		if token != nil {
			ae.Uint32(uint16(pmAttrToken), *token)
		}
	})
	if err != nil {
		return Endpoint{}, err
	}
	if len(msgs) != 1 {
		return Endpoint{}, fmt.Errorf("mptcp_pm %s: want one reply, got %d", op, len(msgs))
	}
	return decodeEndpointMessage(msgs[0].Data)
}

func (c *Client) dumpAddrs(op string, token *uint32) ([]Endpoint, error) {
	var encode func(*netlink.AttributeEncoder)
	if token != nil {
		encode = func(ae *netlink.AttributeEncoder) { ae.Uint32(uint16(pmAttrToken), *token) }
	}
	msgs, err := c.execute(op, cmdGetAddr, netlink.Dump, encode)
	if err != nil {
		return nil, err
	}
	eps := make([]Endpoint, 0, len(msgs))
	for _, m := range msgs {
		ep, err := decodeEndpointMessage(m.Data)
		if err != nil {
			return nil, fmt.Errorf("mptcp_pm %s: %w", op, err)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// Announce sends ADD_ADDR for a local address on the connection with the
// given token (ANNOUNCE; userspace path manager). addr.ID must not be 0;
// FlagSignal is always set. A listener for addr and port is the caller's job.
// Errors: ErrUnknownToken, ErrWrongPathManager, ErrIDInUse (the ID names
// another address on this connection), ErrInvalid, ErrPermission.
func (c *Client) Announce(token uint32, addr Endpoint) error {
	const op = "announce"
	if addr.ID == 0 {
		return invalidf(op, "address ID must be 1..255, got 0")
	}
	if !addr.Addr.IsValid() {
		return invalidf(op, "local address is required")
	}
	if err := checkIfIndex(op, addr.IfIndex); err != nil {
		return err
	}
	n := addrNest{id: addr.ID, addr: addr.Addr, port: addr.Port, flags: addr.Flags | FlagSignal, ifIndex: addr.IfIndex}
	_, err := c.execute(op, cmdAnnounce, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(uint16(pmAttrToken), token)
		n.nest(ae, pmAttrAddr)
	})
	return err
}

// Remove withdraws the local address with the given ID from the connection
// (REMOVE; userspace path manager): the peer gets RM_ADDR and subflows using
// the address are closed. ID 0 is the initial subflow's address.
// Errors: ErrNotFound, ErrUnknownToken, ErrWrongPathManager, ErrPermission.
func (c *Client) Remove(token uint32, id uint8) error {
	_, err := c.execute("remove", cmdRemove, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(uint16(pmAttrToken), token)
		ae.Uint8(uint16(pmAttrLocID), id)
	})
	return err
}

// CreateSubflow opens an MP_JOIN subflow on the connection from local to
// remote (SUBFLOW_CREATE; userspace path manager). local.ID 0 lets the
// kernel pick an ID for a new address; FlagBackup in local.Flags makes a
// backup subflow; local.IfIndex binds the subflow to a device.
// Errors: ErrUnknownToken, ErrWrongPathManager, ErrIDInUse, ErrInvalid
// (family mismatch, FlagSignal), ErrPermission; the errno of a failed
// connect (e.g. EHOSTUNREACH) otherwise.
func (c *Client) CreateSubflow(token uint32, local Endpoint, remote netip.AddrPort) error {
	const op = "create subflow"
	if !local.Addr.IsValid() {
		return invalidf(op, "local address is required")
	}
	if !remote.Addr().IsValid() || remote.Port() == 0 {
		return invalidf(op, "remote address and port are required, got %s", remote)
	}
	if err := checkIfIndex(op, local.IfIndex); err != nil {
		return err
	}
	// Written as prepared bytes, and through WithRawRequests's socket
	// when the client has one: a userspace path manager's decision waits
	// on it.
	var errs [1]error
	c.executeInOrder(errs[:], request{
		op:     op,
		cmd:    cmdSubflowCreate,
		token:  token,
		nest:   addrNest{id: local.ID, addr: local.Addr, port: local.Port, flags: local.Flags, ifIndex: local.IfIndex},
		remote: addrNest{addr: remote.Addr(), port: remote.Port()},
	})
	return errs[0]
}

// DestroySubflow closes the subflow local↔remote of the connection
// (SUBFLOW_DESTROY; userspace path manager). Both ports are required.
// Errors: ErrNotFound (no such subflow), ErrUnknownToken,
// ErrWrongPathManager, ErrInvalid, ErrPermission.
func (c *Client) DestroySubflow(token uint32, local, remote netip.AddrPort) error {
	const op = "destroy subflow"
	if !local.Addr().IsValid() || local.Port() == 0 || !remote.Addr().IsValid() || remote.Port() == 0 {
		return invalidf(op, "local and remote address and port are required, got %s and %s", local, remote)
	}
	_, err := c.execute(op, cmdSubflowDestroy, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(uint16(pmAttrToken), token)
		addrNest{addr: local.Addr(), port: local.Port()}.nest(ae, pmAttrAddr)
		addrNest{addr: remote.Addr(), port: remote.Port()}.nest(ae, pmAttrAddrRemote)
	})
	return err
}

// SetSubflowBackup sets or clears the backup flag of the subflow
// local↔remote and tells the peer with MP_PRIO (SET_FLAGS with a token;
// userspace path manager). local's port may be 0 to match any; remote's
// port is required.
// Errors: ErrNotFound, ErrUnknownToken, ErrWrongPathManager, ErrInvalid,
// ErrPermission.
func (c *Client) SetSubflowBackup(token uint32, local, remote netip.AddrPort, backup bool) error {
	const op = "set subflow backup"
	if !local.Addr().IsValid() || !remote.Addr().IsValid() || remote.Port() == 0 {
		return invalidf(op, "local address and remote address and port are required, got %s and %s", local, remote)
	}
	var flags EndpointFlags
	if backup {
		flags = FlagBackup
	}
	_, err := c.execute(op, cmdSetFlags, netlink.Acknowledge, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(uint16(pmAttrToken), token)
		addrNest{addr: local.Addr(), port: local.Port(), flags: flags}.nest(ae, pmAttrAddr)
		addrNest{addr: remote.Addr(), port: remote.Port()}.nest(ae, pmAttrAddrRemote)
	})
	return err
}

func checkIfIndex(op string, ifIndex int32) error {
	if ifIndex < 0 {
		return invalidf(op, "interface index must not be negative, got %d", ifIndex)
	}
	return nil
}
