// Package nlread reads a netlink socket on the reading goroutine's own
// thread, as a C daemon's event loop would: a message wakes that thread,
// where the runtime's network poller would wake a thread of its own first
// and hand the goroutine over to it.
//
// The reader blocks in recvmsg(2), so that a message costs one system call.
// Netlink sockets cannot be shut down, so a blocked read is ended by a
// message sent to the socket from a second socket of the same protocol,
// the waker; sending to another process's socket needs CAP_NET_ADMIN. When
// it is not allowed, the reader waits with ppoll(2) on the socket and an
// eventfd instead, which costs one system call more per message.
package nlread

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reader reads one netlink socket. Read and Close must not run at once;
// SetReadDeadline may be called from any goroutine at any time.
type Reader struct {
	fd int // a duplicate of the socket; blocking when waker >= 0

	// Waking a blocked read: waker sends wakeMsg, whose header carries
	// waker's port ID, to the socket's port ID, to.
	waker   int
	wakeMsg []byte
	to      unix.SockaddrNetlink
	// Or, without CAP_NET_ADMIN: an eventfd, readable once expired.
	eventfd int

	expired atomic.Bool

	mu     sync.Mutex
	timer  *time.Timer // a read deadline still to come
	gen    int         // counts SetReadDeadline calls, under mu
	closed bool        // under mu: the descriptors are gone
}

// New reads sock, a netlink socket, with a duplicate of its descriptor;
// waker is a socket of the same protocol in the same network namespace,
// used to wake a blocked read (the caller may close both sockets' owners
// after New). Once a waker may send to sock, the shared file description
// of sock is made blocking: the caller must not read sock through its
// owner any more.
func New(sock, waker syscall.RawConn) (*Reader, error) {
	fd, err := dup(sock)
	if err != nil {
		return nil, fmt.Errorf("nlread: duplicating the socket: %w", err)
	}
	r := &Reader{fd: fd, waker: -1, eventfd: -1}
	if err := r.openWaker(waker); err == nil {
		return r, nil
	}
	r.eventfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("nlread: %w", os.NewSyscallError("eventfd", err))
	}
	return r, nil
}

// FD returns the descriptor r reads, for socket options; it must not be
// read or closed.
func (r *Reader) FD() int { return r.fd }

// Polled reports whether r waits with ppoll(2) rather than in recvmsg(2):
// the process may not wake a blocked read with a message.
func (r *Reader) Polled() bool { return r.waker < 0 }

// openWaker duplicates waker and proves that it may send to r's socket by
// sending it a wake message, which Read will pass over; it makes r's
// socket blocking.
func (r *Reader) openWaker(waker syscall.RawConn) error {
	if waker == nil {
		return errors.ErrUnsupported
	}
	to, err := portID(r.fd)
	if err != nil {
		return err
	}
	wfd, err := dup(waker)
	if err != nil {
		return err
	}
	from, err := portID(wfd)
	if err != nil {
		_ = unix.Close(wfd)
		return err
	}
	msg := make([]byte, unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint32(msg[0:], unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_NOOP)
	binary.NativeEndian.PutUint32(msg[12:], from)
	r.waker, r.wakeMsg, r.to = wfd, msg, unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: to}
	if err := r.wake(); err != nil {
		_ = unix.Close(wfd)
		r.waker = -1
		return err
	}
	if err := unix.SetNonblock(r.fd, false); err != nil {
		_ = unix.Close(wfd)
		r.waker = -1
		return err
	}
	return nil
}

// wake sends the wake message to the socket. A full socket needs none:
// the reader has something to read, after which it sees the deadline.
func (r *Reader) wake() error {
	err := unix.Sendto(r.waker, r.wakeMsg, unix.MSG_DONTWAIT, &r.to)
	if err == unix.EAGAIN || err == unix.ENOBUFS {
		return nil
	}
	return err
}

// Read reads one datagram into buf, waiting for one. It returns the
// datagram's length, which exceeds len(buf) when the datagram did not fit
// (the rest is lost), and os.ErrDeadlineExceeded once the read deadline
// has passed. Errors of recvmsg, such as ENOBUFS when the kernel dropped
// messages, are returned as *os.SyscallError.
func (r *Reader) Read(buf []byte) (int, error) {
	if r.waker < 0 {
		return r.readPolled(buf)
	}
	for {
		if r.expired.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		// MSG_TRUNC: n is the datagram's length even if it did not fit.
		n, _, _, _, err := unix.Recvmsg(r.fd, buf, nil, unix.MSG_TRUNC)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, os.NewSyscallError("recvmsg", err)
		case r.isWake(buf[:min(n, len(buf))]):
			continue
		}
		return n, nil
	}
}

// isWake reports whether b is the waker's message.
func (r *Reader) isWake(b []byte) bool {
	return len(b) >= unix.NLMSG_HDRLEN &&
		binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_NOOP &&
		binary.NativeEndian.Uint32(b[12:]) == binary.NativeEndian.Uint32(r.wakeMsg[12:])
}

func (r *Reader) readPolled(buf []byte) (int, error) {
	for {
		n, _, _, _, err := unix.Recvmsg(r.fd, buf, nil, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		if err == nil {
			return n, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return 0, os.NewSyscallError("recvmsg", err)
		}
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}, {Fd: int32(r.eventfd), Events: unix.POLLIN}}
		if _, err := unix.Ppoll(fds, nil, nil); err != nil && err != unix.EINTR {
			return 0, os.NewSyscallError("ppoll", err)
		}
		if fds[1].Revents != 0 {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// SetReadDeadline makes Read return os.ErrDeadlineExceeded, at once if it
// is waiting, once t has come; the zero time takes the deadline away.
func (r *Reader) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return os.ErrClosed
	}
	r.gen++
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	switch {
	case t.IsZero():
		r.expired.Store(false)
		if r.eventfd >= 0 {
			var b [8]byte
			if _, err := unix.Read(r.eventfd, b[:]); err != nil && err != unix.EAGAIN {
				return os.NewSyscallError("read eventfd", err)
			}
		}
		return nil
	case !t.After(time.Now()):
		return r.expire()
	}
	gen := r.gen
	r.timer = time.AfterFunc(time.Until(t), func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.gen == gen {
			_ = r.expire()
		}
	})
	return nil
}

// expire ends a waiting Read, and those after it; r.mu must be held.
func (r *Reader) expire() error {
	r.expired.Store(true)
	if r.waker >= 0 {
		if err := r.wake(); err != nil {
			return os.NewSyscallError("sendto", err)
		}
		return nil
	}
	one := [8]byte{1} // a uint64 counter: any value but 0 makes it readable
	if _, err := unix.Write(r.eventfd, one[:]); err != nil && err != unix.EAGAIN {
		return os.NewSyscallError("write eventfd", err)
	}
	return nil
}

// Close releases the descriptors; Read must not be running (a deadline in
// the past makes it return). SetReadDeadline returns os.ErrClosed after.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return os.ErrClosed
	}
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.gen++
	errs := []error{unix.Close(r.fd)}
	if r.waker >= 0 {
		errs = append(errs, unix.Close(r.waker))
	}
	if r.eventfd >= 0 {
		errs = append(errs, unix.Close(r.eventfd))
	}
	return errors.Join(errs...)
}

// dup duplicates the descriptor of rc, close-on-exec.
func dup(rc syscall.RawConn) (int, error) {
	fd := -1
	var derr error
	if err := rc.Control(func(sfd uintptr) { fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

// portID returns the port ID the kernel gave the netlink socket fd.
func portID(fd int) (uint32, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, os.NewSyscallError("getsockname", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("nlread: descriptor %d is not a netlink socket", fd)
	}
	return nl.Pid, nil
}
