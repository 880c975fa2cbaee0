// Package nlread reads a netlink socket at the least cost to the Go
// runtime on the way from a message to the code that handles it.
//
// The reader waits in the runtime's network poller, whose thread, when a
// message wakes it, runs the reading goroutine itself. It then reads the
// datagram with one recvfrom(2) made as a raw system call (the socket is
// non-blocking, so the call cannot block). A system call made the usual
// way, from a program that was idle, first wakes the runtime's monitor
// thread (sysmon), which sleeps while every P is idle and must watch
// system calls: one thread wake-up more on the critical path, a few
// microseconds each, and a burst of the monitor's 20 µs ticks after it.
// A blocking read on the goroutine's own thread pays the same wake-up on
// its way out of the kernel.
package nlread

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader reads one netlink socket. Read and Close must not run at once;
// SetReadDeadline may be called from any goroutine at any time.
type Reader struct {
	f  *os.File // a duplicate of the socket, in the runtime's poller
	rc syscall.RawConn
}

// New reads sock, a netlink socket, through a duplicate of its descriptor
// (the caller may close sock's owner after New, and must not read sock
// through it any more).
func New(sock syscall.RawConn) (*Reader, error) {
	fd := -1
	var derr error
	if err := sock.Control(func(sfd uintptr) { fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("nlread: duplicating the socket: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("nlread: duplicating the socket: %w", os.NewSyscallError("fcntl", derr))
	}
	// The description is shared with sock's, which the netlink package made
	// non-blocking already; os.NewFile puts a non-blocking descriptor in
	// the poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("nlread: %w", os.NewSyscallError("fcntl", err))
	}
	f := os.NewFile(uintptr(fd), "netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("nlread: %w", err)
	}
	return &Reader{f: f, rc: rc}, nil
}

// FD returns the descriptor r reads, for socket options; it must not be
// read or closed.
func (r *Reader) FD() int {
	fd := -1
	_ = r.rc.Control(func(sfd uintptr) { fd = int(sfd) })
	return fd
}

// Read reads one datagram into buf (which must not be empty), waiting for
// one. It returns the datagram's length, which exceeds len(buf) when the
// datagram did not fit (the rest is lost), and an error wrapping
// os.ErrDeadlineExceeded once the read deadline has passed. Errors of the
// system call, such as ENOBUFS when the kernel dropped messages, are
// returned as *os.SyscallError.
func (r *Reader) Read(buf []byte) (int, error) {
	for {
		var (
			n     int
			errno syscall.Errno
		)
		err := r.rc.Read(func(fd uintptr) bool {
			// MSG_TRUNC: n is the datagram's length even if it did not fit.
			r1, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
				unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
			n, errno = int(r1), e
			return e != unix.EAGAIN
		})
		switch {
		case err != nil:
			return 0, err
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return 0, os.NewSyscallError("recvfrom", errno)
		}
		return n, nil
	}
}

// SetReadDeadline makes Read return an error wrapping
// os.ErrDeadlineExceeded, at once if it is waiting, once t has come; the
// zero time takes the deadline away.
func (r *Reader) SetReadDeadline(t time.Time) error { return r.f.SetReadDeadline(t) }

// Close releases the descriptor; a Read waiting returns.
func (r *Reader) Close() error { return r.f.Close() }
