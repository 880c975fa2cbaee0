package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) at level
// SOL_IP and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) at
// level SOL_IPV6; both are 80.
const soOriginalDst = 80

// OriginalDst returns the destination a redirected connection was made to,
// as connection tracking recorded it before REDIRECT rewrote it
// (SO_ORIGINAL_DST). A connection that was not redirected yields its own
// local address; the kernel reports ENOENT when it tracks no such
// connection. IPv4 connections accepted on a dual-stack socket are asked
// at the IPv4 level and yield an IPv4 address.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	remote, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || remote == nil {
		return netip.AddrPort{}, errors.New("original destination: connection has no remote TCP address")
	}
	// The kernel fills exactly the layout of the level asked (and does not
	// update the length), so the buffer has that layout's size.
	level, size := unix.SOL_IPV6, sizeofSockaddrInet6
	if remote.AddrPort().Addr().Unmap().Is4() {
		level, size = unix.SOL_IP, sizeofSockaddrInet4
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var buf [sizeofSockaddrInet6]byte
	n := uint32(size)
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if errno != 0 {
		return netip.AddrPort{}, fmt.Errorf("original destination of %s: %w", remote, os.NewSyscallError("getsockopt SO_ORIGINAL_DST", errno))
	}
	if n > uint32(size) {
		return netip.AddrPort{}, fmt.Errorf("original destination of %s: kernel returned %d bytes, more than the %d asked for", remote, n, size)
	}
	ap, err := decodeSockaddr(buf[:n])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of %s: %w", remote, err)
	}
	return ap, nil
}

// ListenTransparent opens a TCP listener with IP_TRANSPARENT (tcp4) or
// IPV6_TRANSPARENT (tcp6, and "tcp" on a dual-stack socket, where it covers
// IPv4 too) set, as TPROXY needs: the kernel hands it connections addressed
// to other hosts, and each accepted connection's LocalAddr is the
// destination the client dialled. Bind it to the wildcard address and
// Config.TProxyPort. Needs CAP_NET_ADMIN. The listener belongs to the
// calling thread's network namespace; ctx bounds only the setup.
func ListenTransparent(ctx context.Context, network, addr string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("transparent listener: network %q is not tcp, tcp4 or tcp6", network)
	}
	lc := net.ListenConfig{Control: func(network, _ string, rc syscall.RawConn) error {
		level, opt, name := unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
		if network == "tcp6" {
			level, opt, name = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
		}
		return setsockoptInt(rc, level, opt, 1, name)
	}}
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("transparent listener on %s: %w", addr, hint(err))
	}
	return ln, nil
}

// MarkDialer makes every socket d dials carry the firewall mark (SO_MARK),
// so the capture rules leave it alone (Config.Mark). It keeps d's existing
// Control or ControlContext function, running it first. Setting a mark
// needs CAP_NET_ADMIN; without it dials fail with a permission error.
func MarkDialer(d *net.Dialer, mark uint32) {
	setMark := func(rc syscall.RawConn) error {
		return setsockoptInt(rc, unix.SOL_SOCKET, unix.SO_MARK, int(mark), "SO_MARK")
	}
	if prev := d.ControlContext; prev != nil {
		d.ControlContext = func(ctx context.Context, network, address string, rc syscall.RawConn) error {
			if err := prev(ctx, network, address, rc); err != nil {
				return err
			}
			return setMark(rc)
		}
		return
	}
	prev := d.Control
	d.Control = func(network, address string, rc syscall.RawConn) error {
		if prev != nil {
			if err := prev(network, address, rc); err != nil {
				return err
			}
		}
		return setMark(rc)
	}
}

func setsockoptInt(rc syscall.RawConn, level, opt, value int, name string) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, value)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt %s: %w", name, hint(serr))
	}
	return nil
}

// Listener accepts captured connections and tells where each was going.
type Listener struct {
	ln   *net.TCPListener
	mode Mode
	port uint16
	log  *slog.Logger
}

// Listen opens a capture listener for mode on network ("tcp", "tcp4" or
// "tcp6") and addr. For Redirect, listen on the loopback addresses or the
// wildcard address at Config.RedirectPort; for TProxy, on the wildcard
// address at Config.TProxyPort (the listener is made transparent). Accept
// logs on log (nil: slog.Default()) the connections it turns away. The
// listener belongs to the calling thread's network namespace.
func Listen(ctx context.Context, mode Mode, network, addr string, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.Default()
	}
	var (
		ln  net.Listener
		err error
	)
	switch mode {
	case Redirect:
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return nil, fmt.Errorf("capture listener: network %q is not tcp, tcp4 or tcp6", network)
		}
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, network, addr)
	case TProxy:
		ln, err = ListenTransparent(ctx, network, addr)
	default:
		return nil, fmt.Errorf("capture listener: unknown mode %d", int(mode))
	}
	if err != nil {
		return nil, fmt.Errorf("capture listener (%s): %w", mode, err)
	}
	tl := ln.(*net.TCPListener)
	port := tl.Addr().(*net.TCPAddr).AddrPort().Port()
	return &Listener{ln: tl, mode: mode, port: port, log: log.With("listener", tl.Addr().String(), "mode", mode.String())}, nil
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close closes the listener; a blocked Accept returns net.ErrClosed.
func (l *Listener) Close() error { return l.ln.Close() }

// Accept waits for the next captured connection and returns it with its
// original destination. Connections whose destination cannot be told, or
// that reached the listener directly (ErrNotCaptured), are logged and
// closed, and Accept waits for the next; it returns an error only when the
// listener fails or is closed.
func (l *Listener) Accept() (Accepted, error) {
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			return Accepted{}, err
		}
		dst, err := l.destination(c)
		if err != nil {
			l.log.Warn("refusing connection", "remote", c.RemoteAddr().String(), "local", c.LocalAddr().String(), "err", err)
			_ = c.Close()
			continue
		}
		return Accepted{Conn: c, Dst: dst}, nil
	}
}

// destination returns where c's client was going.
//
// A redirected connection's tracked original destination differs from its
// local address; when they are equal the client dialled the listener
// itself. A transparent listener cannot tell a direct connection from a
// captured one by addresses alone (both have the destination as local
// address), so a destination on the listener's own port is refused: it is
// the listener, or something the daemon could not tell from it.
func (l *Listener) destination(c *net.TCPConn) (netip.AddrPort, error) {
	local := unmapped(c.LocalAddr().(*net.TCPAddr).AddrPort())
	var dst netip.AddrPort
	switch l.mode {
	case Redirect:
		var err error
		if dst, err = OriginalDst(c); err != nil {
			return netip.AddrPort{}, err
		}
		dst = unmapped(dst)
		if dst == local {
			return netip.AddrPort{}, ErrNotCaptured
		}
	case TProxy:
		dst = local
		if dst.Port() == l.port {
			return netip.AddrPort{}, fmt.Errorf("destination %s is on the listener's own port: %w", dst, ErrNotCaptured)
		}
	}
	if dst.Addr().IsLoopback() || dst.Addr().IsUnspecified() {
		// The rules never capture loopback destinations.
		return netip.AddrPort{}, fmt.Errorf("destination %s: %w", dst, ErrNotCaptured)
	}
	return dst, nil
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
