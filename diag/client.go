package diag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// Client lists the MPTCP connections of one network namespace through
// NETLINK_SOCK_DIAG. Its methods are safe for concurrent use; they take
// turns on the client's one netlink socket.
//
// Listing needs no privileges: any user sees every socket of the
// namespace (the UID of each is reported), but only CAP_NET_ADMIN gets
// socket marks, which this package does not use.
type Client struct {
	mu   sync.Mutex
	t    transport // nil once closed
	last int       // connections in the last listing: the next one's capacity
}

// transport runs inet_diag requests. The Linux one speaks netlink; tests
// use a fake replaying captured replies.
type transport interface {
	// dump sends req and calls fn with the payload (struct inet_diag_msg
	// and attributes) of each reply, valid only during the call. It
	// returns ctx's error, wrapped, when ctx ends first; an error reply
	// from the kernel matches its errno with errors.Is.
	dump(ctx context.Context, req request, fn func(msg []byte) error) error
	close() error
}

// Option configures New.
type Option func(*options)

type options struct {
	netNS int // file descriptor of a network namespace; 0: the caller's
}

// WithNetNS makes the client list the sockets of the network namespace
// open at fd (for example a file under /run/netns, see package netns): its
// netlink socket is opened inside that namespace. The client keeps a
// duplicate of fd, so the caller may close fd once New returns. Entering
// another namespace needs CAP_SYS_ADMIN.
func WithNetNS(fd int) Option { return func(o *options) { o.netNS = fd } }

func buildOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Close closes the client's netlink socket. Calls after Close return
// ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t == nil {
		return nil
	}
	err := c.t.close()
	c.t = nil
	if err != nil {
		return fmt.Errorf("diag: closing netlink socket: %w", err)
	}
	return nil
}

// Connections lists the MPTCP connections of the namespace that f selects,
// each with its subflows, in the kernel's order.
//
// It takes one MPTCP dump per address family and, unless f.NoSubflows, one
// TCP dump per family the subflows may have (IPv4, and IPv6 when there is
// an IPv6 connection); plain TCP sockets in the TCP dumps are skipped
// without being decoded further than their header. The dumps are not one
// atomic snapshot (see Connection).
//
// Errors: ErrUnavailable when the kernel cannot list MPTCP sockets,
// ErrClosed, and ctx's error when ctx ends first.
func (c *Client) Connections(ctx context.Context, f Filter) ([]Connection, error) {
	const op = "diag: listing MPTCP connections"
	families, err := f.families()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	states := f.States
	if states == 0 {
		states = DefaultStates
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	col := newCollector(f.Tokens, c.last+c.last/8)
	for _, fam := range families {
		req := request{family: fam, protocol: protoMPTCP, states: states, ext: extInfo}
		if err := c.t.dump(ctx, req, col.addConnection); err != nil {
			return nil, fmt.Errorf("%s: %s MPTCP sockets: %w", op, fam, mapDumpError(err))
		}
	}
	if !f.NoSubflows {
		if err := c.subflows(ctx, col); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	conns := col.connections()
	if len(f.Tokens) == 0 {
		c.last = len(conns)
	}
	return conns, nil
}

// Connection returns the MPTCP connection with the given local token, with
// its subflows. It finds the connection with one exact request instead of a
// dump, then dumps the TCP sockets for its subflows.
//
// Errors: ErrNotFound (wrapping the kernel's ENOENT) when no connection has
// the token, ErrClosed, ErrUnavailable, and ctx's error.
func (c *Client) Connection(ctx context.Context, token uint32) (Connection, error) {
	op := fmt.Sprintf("diag: getting MPTCP connection %08x", token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t == nil {
		return Connection{}, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	col := newCollector(nil, 1)
	req := request{family: IPv4, protocol: protoMPTCP, ext: extInfo, exact: true, token: token}
	if err := c.t.dump(ctx, req, col.addConnection); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Connection{}, fmt.Errorf("%s: %w: %w", op, ErrNotFound, err)
		}
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	if len(col.conns) != 1 || col.conns[0].Token != token {
		return Connection{}, fmt.Errorf("%s: %w (the kernel answered with %d connections)", op, ErrNotFound, len(col.conns))
	}
	if err := c.subflows(ctx, col); err != nil {
		return Connection{}, fmt.Errorf("%s: %w", op, err)
	}
	return col.connections()[0], nil
}

// subflows dumps the TCP sockets of the families the collected
// connections' subflows can have: IPv4 for any connection (an IPv6 socket
// may have IPv4 subflows), IPv6 only for IPv6 connections.
func (c *Client) subflows(ctx context.Context, col *collector) error {
	var v4, v6 bool
	for i := range col.conns {
		if col.conns[i].State == StateListen {
			continue
		}
		v4 = true
		v6 = v6 || col.conns[i].Family == IPv6
	}
	for _, fam := range []Family{IPv4, IPv6} {
		if fam == IPv4 && !v4 || fam == IPv6 && !v6 {
			continue
		}
		req := request{family: fam, protocol: protoTCP, states: subflowStates, ext: extInfo}
		if err := c.t.dump(ctx, req, col.addSubflow); err != nil {
			return fmt.Errorf("%s TCP sockets: %w", fam, err)
		}
	}
	return nil
}

// mapDumpError marks the error of a dump of MPTCP sockets: the kernel
// answers ENOENT when it has no inet_diag handler for IPPROTO_MPTCP.
func mapDumpError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// families returns the families f selects.
func (f Filter) families() ([]Family, error) {
	switch f.Family {
	case 0:
		return []Family{IPv4, IPv6}, nil
	case IPv4, IPv6:
		return []Family{f.Family}, nil
	}
	return nil, fmt.Errorf("invalid filter: unknown family %d (want 0, IPv4 or IPv6)", uint8(f.Family))
}
