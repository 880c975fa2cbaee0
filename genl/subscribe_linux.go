package genl

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// setReadBuffer sizes a subscription's receive buffer. With CAP_NET_ADMIN
// it may exceed net.core.rmem_max (SO_RCVBUFFORCE); otherwise the kernel
// caps it there.
func setReadBuffer(c *genetlink.Conn, bytes int) {
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		cerr := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
		})
		if cerr == nil && serr == nil {
			return
		}
	}
	// Best effort: a smaller buffer only means events are lost sooner,
	// which the caller is told about.
	_ = c.SetReadBuffer(bytes)
}

// rawEvents reads a subscription's socket with recvmsg(2), waiting with
// ppoll(2) on the reading goroutine's own thread rather than in the
// runtime's network poller: an event then wakes that thread directly, as
// it would wake a C daemon's event loop, instead of waking the poller's
// thread, which hands the goroutine over. For the userspace path manager
// that is one wake-up less between a connection's ESTABLISHED and its
// next subflow.
type rawEvents struct {
	// mu is held by receive; close takes it after stop has woken receive,
	// so the descriptors are never closed under it.
	mu   sync.Mutex
	fd   int // a duplicate of the socket's descriptor, -1 once closed
	wake int // an eventfd, readable once the subscription is to end
	buf  []byte
	msgs []netlink.Message
}

// newRawEvents returns a raw reader of c's socket, or an error when c has
// none (a fake connection in tests), in which case the subscription reads
// through c.
func newRawEvents(c *genetlink.Conn) (*rawEvents, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(sfd uintptr) { fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil, errors.Join(err, derr)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return &rawEvents{fd: fd, wake: wake, buf: make([]byte, receiveBuffer)}, nil
}

// receive reads one datagram of events, waiting for one; it returns
// os.ErrDeadlineExceeded once stop was called. The messages' data is
// valid until the next call.
func (r *rawEvents) receive() ([]genetlink.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil, os.ErrClosed
	}
	var n int
	for {
		var err error
		n, _, _, _, err = unix.Recvmsg(r.fd, r.buf, nil, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		if err == nil {
			break
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return nil, &netlink.OpError{Op: "receive", Err: os.NewSyscallError("recvmsg", err)}
		}
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}, {Fd: int32(r.wake), Events: unix.POLLIN}}
		if _, err := unix.Ppoll(fds, nil, nil); err != nil && err != unix.EINTR {
			return nil, os.NewSyscallError("ppoll", err)
		}
		if fds[1].Revents != 0 {
			return nil, os.ErrDeadlineExceeded
		}
	}
	if n > len(r.buf) {
		// Too long to read whole: as good as lost.
		return nil, &netlink.OpError{Op: "receive", Err: unix.ENOBUFS}
	}
	b := r.buf[:n]
	msgs := r.msgs[:0]
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			break
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		b = b[min(nlmsgAlign(l), len(b)):]
	}
	r.msgs = msgs
	out := make([]genetlink.Message, 0, len(msgs))
	for _, m := range msgs {
		var gm genetlink.Message
		if err := gm.UnmarshalBinary(m.Data); err != nil {
			return nil, err
		}
		out = append(out, gm)
	}
	return out, nil
}

// stop makes receive return at once, now and from then on.
func (r *rawEvents) stop() {
	one := [8]byte{1}
	_, _ = unix.Write(r.wake, one[:])
}

// close releases the descriptors, once receive has returned (stop makes
// it return).
func (r *rawEvents) close() {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
		_ = unix.Close(r.wake)
		r.fd = -1
	}
}
