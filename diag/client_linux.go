package diag

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// New opens a Client in the caller's network namespace or the one given
// with WithNetNS. It fails only when the netlink socket cannot be opened;
// whether the kernel can list MPTCP sockets shows on the first listing
// (ErrUnavailable).
func New(opts ...Option) (*Client, error) {
	o := buildOptions(opts)
	t := &netlinkTransport{buf: make([]byte, recvBufferSize)}
	if o.netNS != 0 {
		// Our own handle on the namespace: the socket is reopened in it
		// after an interrupted dump, when the caller's fd may be gone.
		fd, err := unix.FcntlInt(uintptr(o.netNS), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return nil, fmt.Errorf("diag: duplicating network namespace fd %d: %w", o.netNS, err)
		}
		t.nsFD = fd
	}
	t.readFn = t.readOnce
	if err := t.open(); err != nil {
		_ = t.close()
		return nil, fmt.Errorf("diag: opening NETLINK_SOCK_DIAG socket: %w", err)
	}
	return &Client{t: t}, nil
}

// recvBufferSize is the size of the buffer datagrams are received into.
// The kernel sizes a dump's datagrams by the reader's buffer, up to 32 KiB.
const recvBufferSize = 64 << 10

// netlinkTransport is the transport over a NETLINK_SOCK_DIAG socket. The
// request goes out through netlink.Conn; replies are read with recvfrom
// through the socket's syscall.RawConn into one reused buffer and decoded
// in place, so a dump allocates nothing per datagram or message.
//
// A dump that stops early (an error, a cancelled context) leaves the kernel
// holding the rest of it, and the kernel refuses a new dump on that socket
// until it is read: the transport then closes the socket and opens a new
// one for the next request.
type netlinkTransport struct {
	nsFD int           // the namespace to open sockets in; 0: the caller's
	conn *netlink.Conn // nil after a dump that stopped early
	rc   syscall.RawConn
	buf  []byte

	// readFn is readOnce as a func value, made once so that receiving a
	// datagram allocates nothing; readOnce leaves its results in n, rerr.
	readFn func(fd uintptr) bool
	n      int
	rerr   error
}

func (t *netlinkTransport) open() error {
	// Strict: the kernel's extended-ACK text reaches our errors.
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{Strict: true, NetNS: t.nsFD})
	if err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		_ = c.Close()
		return err
	}
	t.conn, t.rc = c, rc
	return nil
}

// drop closes the socket; the next dump opens a new one.
func (t *netlinkTransport) drop() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn, t.rc = nil, nil
	return err
}

func (t *netlinkTransport) close() error {
	err := t.drop()
	if t.nsFD != 0 {
		if cerr := unix.Close(t.nsFD); err == nil {
			err = cerr
		}
		t.nsFD = 0
	}
	return err
}

// kernelError is an error the kernel answered a request with.
type kernelError struct {
	Errno   unix.Errno
	Message string // extended-ACK text, if any
}

func (e *kernelError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%v (kernel: %q)", e.Errno, e.Message)
	}
	return e.Errno.Error()
}

func (e *kernelError) Unwrap() error { return e.Errno }

func (t *netlinkTransport) dump(ctx context.Context, req request, fn func(msg []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.conn == nil {
		if err := t.open(); err != nil {
			return fmt.Errorf("reopening NETLINK_SOCK_DIAG socket: %w", err)
		}
	}
	conn := t.conn
	clean := false // the socket has no reply left pending
	defer func() {
		if !clean {
			_ = t.drop()
		}
	}()

	deadline, _ := ctx.Deadline() // zero: none
	if err := conn.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("setting read deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer func() {
		// If the context ended, its deadline may still be set on the
		// socket, now or later: the socket is dropped (clean is false).
		if !stop() && ctx.Err() != nil {
			clean = false
		}
	}()

	flags := netlink.Request
	if !req.exact {
		flags |= netlink.Dump
	}
	sent, err := conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.SOCK_DIAG_BY_FAMILY), Flags: flags},
		Data:   encodeRequest(req),
	})
	if err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	seq := sent.Header.Sequence
	for {
		n, err := t.recv()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The socket's deadline is the context's: report the
				// context's error, even if its timer has not fired yet.
				if ctxErr := ctx.Err(); ctxErr != nil {
					return fmt.Errorf("receiving reply: %w", ctxErr)
				}
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return fmt.Errorf("receiving reply: %w", context.DeadlineExceeded)
				}
			}
			return fmt.Errorf("receiving reply: %w", err)
		}
		done, err := parseDatagram(t.buf[:n], seq, fn)
		if re, ok := errors.AsType[*replyError](err); ok {
			clean = true // the kernel ended the request with the error
			return &kernelError{Errno: unix.Errno(re.errno), Message: re.message}
		}
		if err != nil {
			return err
		}
		if done {
			clean = true
			return nil
		}
	}
}

// recv receives one datagram into t.buf, waiting for it through the
// runtime's poller (which honours the socket's read deadline).
func (t *netlinkTransport) recv() (int, error) {
	t.n, t.rerr = 0, nil
	if err := t.rc.Read(t.readFn); err != nil {
		return 0, err
	}
	if t.rerr != nil {
		return 0, t.rerr
	}
	if t.n > len(t.buf) {
		return 0, fmt.Errorf("netlink datagram of %d bytes truncated to the %d-byte buffer", t.n, len(t.buf))
	}
	return t.n, nil
}

// readOnce is the syscall.RawConn read callback: false asks the poller to
// wait until the socket is readable.
func (t *netlinkTransport) readOnce(fd uintptr) bool {
	for {
		// MSG_TRUNC: the return value is the datagram's real length, so a
		// datagram larger than the buffer is detected.
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)),
			unix.MSG_TRUNC, 0, 0)
		switch e {
		case 0:
			t.n = int(r)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			t.rerr = os.NewSyscallError("recvfrom", e)
		}
		return true
	}
}
