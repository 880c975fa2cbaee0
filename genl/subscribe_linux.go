package genl

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/internal/nlread"
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

// rawEvents reads a subscription's socket with one raw system call per
// datagram (see internal/nlread), where the netlink package peeks at the
// size first and makes both calls the usual way, each of which wakes the
// runtime's monitor thread when the program was idle. For the userspace
// path manager that is one wake-up less between a connection's
// ESTABLISHED and its next subflow.
type rawEvents struct {
	r *nlread.Reader
	// mu is held by receive; close takes it after stop has woken receive,
	// so the reader is never closed under it.
	mu     sync.Mutex
	closed bool // under mu
	buf    []byte
	msgs   []netlink.Message
}

// newRawEvents returns a raw reader of c's socket, or an error when c has
// none (a fake connection in tests), in which case the subscription reads
// through c.
func newRawEvents(c *genetlink.Conn) (*rawEvents, error) {
	src, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r, err := nlread.New(src)
	if err != nil {
		return nil, err
	}
	return &rawEvents{r: r, buf: make([]byte, receiveBuffer)}, nil
}

// receive reads one datagram of events, waiting for one; it returns
// os.ErrDeadlineExceeded once stop was called. The messages' data is
// valid until the next call.
func (r *rawEvents) receive() ([]genetlink.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, os.ErrClosed
	}
	n, err := r.r.Read(r.buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, err
	}
	if err != nil {
		return nil, &netlink.OpError{Op: "receive", Err: err}
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

// stop makes receive return at once, now and from then on; after close it
// does nothing.
func (r *rawEvents) stop() { _ = r.r.SetReadDeadline(time.Now()) }

// close releases the reader, once receive has returned (stop makes it
// return).
func (r *rawEvents) close() {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		_ = r.r.Close()
		r.closed = true
	}
}
