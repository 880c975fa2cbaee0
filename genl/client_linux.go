package genl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/netns"
)

// receiveBuffer is the size of the buffer replies and events are read
// into: netlink_dump() in the kernel expects readers to offer 32 KiB, and
// no mptcp_pm message comes near it.
const receiveBuffer = 32 << 10

// New opens a Client of the mptcp_pm family, in the caller's network
// namespace or the one given with WithNetNS.
// Errors: ErrUnavailable when the kernel has no mptcp_pm family (no MPTCP,
// or Linux < 5.7).
func New(opts ...Option) (*Client, error) {
	o := buildOptions(opts)
	dial := func() (*genetlink.Conn, error) {
		// Strict: the kernel's extended-ACK text reaches our errors. A
		// buffer of the size the kernel expects (it caps a dump's datagram
		// at 32 KiB) spares each reply the read that peeks at its size.
		return genetlink.Dial(&netlink.Config{Strict: true, NetNS: o.netNS, MessageBufferSize: receiveBuffer})
	}
	c, err := dial()
	if err != nil {
		return nil, wrapNetlink("open netlink socket", err)
	}
	cl, err := initClient(c, dial, o)
	if err != nil || !o.rawRequests {
		return cl, err
	}
	// Without it the client works as well, only through the poller.
	if r, err := openRawRequests(o.netNS); err == nil {
		cl.reqs = r
	}
	return cl, nil
}

// sendTogether writes requests in one write(2) on the connection's
// descriptor, bypassing the netlink package's send path: a request
// written so costs one system call and little work beside, on the way from
// a new address to its endpoint. It returns the requests' headers, for the
// caller to read their answers, or errors.ErrUnsupported when the
// connection has no descriptor. c.mu is held.
func (c *Client) sendTogether(reqs []request) ([]netlink.Message, error) {
	if c.raw == nil {
		return nil, errors.ErrUnsupported
	}
	buf, sent := c.appendRequests(c.buf[:0], c.sent[:0], reqs)
	c.buf, c.sent = buf, sent
	if c.write == nil {
		c.write = func(fd uintptr) bool {
			_, c.werr = unix.Write(int(fd), c.buf)
			return c.werr != unix.EAGAIN
		}
	}
	if err := c.raw.Write(c.write); err != nil {
		return nil, err
	}
	if c.werr != nil {
		return nil, os.NewSyscallError("write", c.werr)
	}
	return sent, nil
}

// appendRequests appends reqs to buf, numbered from c.seq on, and their
// headers to sent. c.mu is held.
func (c *Client) appendRequests(buf []byte, sent []netlink.Message, reqs []request) ([]byte, []netlink.Message) {
	for _, r := range reqs {
		c.seq++
		h := netlink.Header{
			Type:     netlink.HeaderType(c.family.ID),
			Flags:    netlink.Request | netlink.Acknowledge,
			Sequence: c.seq,
		}
		start := len(buf)
		buf = append(buf, make([]byte, nlmsgHeaderLen)...)
		buf = append(buf, uint8(r.cmd), FamilyVersion, 0, 0) // struct genlmsghdr
		buf = r.appendAttrs(buf)
		h.Length = uint32(len(buf) - start) // attributes keep it aligned
		binary.NativeEndian.PutUint32(buf[start:], h.Length)
		binary.NativeEndian.PutUint16(buf[start+4:], uint16(h.Type))
		binary.NativeEndian.PutUint16(buf[start+6:], uint16(h.Flags))
		binary.NativeEndian.PutUint32(buf[start+8:], h.Sequence)
		sent = append(sent, netlink.Message{Header: h})
	}
	return buf, sent
}

const nlmsgHeaderLen = 16 // struct nlmsghdr

// nlmsgAlign rounds n up to the alignment of netlink messages.
func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// rawRequests is WithRawRequests's socket: never in the runtime's network
// poller, so that the kernel's answers wake no thread.
type rawRequests struct {
	fd  int
	buf []byte // the requests written, then each answer read
}

// openRawRequests opens the socket in the namespace open at netNS (0: the
// caller's), with the kernel's error text on and its copy of the request
// off (NETLINK_EXT_ACK, NETLINK_CAP_ACK).
func openRawRequests(netNS int) (*rawRequests, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	}
	var (
		fd  int
		err error
	)
	if netNS > 0 {
		err = netns.Do(netNS, func() error {
			var serr error
			fd, serr = open()
			return serr
		})
	} else {
		fd, err = open()
	}
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	for _, opt := range []int{unix.NETLINK_EXT_ACK, unix.NETLINK_CAP_ACK} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, opt, 1); err != nil {
			_ = unix.Close(fd)
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return &rawRequests{fd: fd, buf: make([]byte, 0, receiveBuffer)}, nil
}

func (r *rawRequests) close() error { return unix.Close(r.fd) }

// executeRaw is executeInOrder on the WithRawRequests socket: one write,
// then an answer per request, each an acknowledgement or an error. c.mu is
// held.
func (c *Client) executeRaw(errs []error, reqs []request) {
	r := c.reqs
	buf, sent := c.appendRequests(r.buf[:0], c.sent[:0], reqs)
	c.sent = sent
	fail := func(from int, err error) {
		for j := from; j < len(errs); j++ {
			errs[j] = wrapNetlink(reqs[from].op, err)
		}
	}
	// Raw system calls: the kernel handles the requests within the write
	// and queues the answers before it returns, so neither call waits for
	// anything, and neither wakes the runtime's monitor thread.
	for {
		_, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(r.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			fail(0, os.NewSyscallError("write", errno))
			return
		}
		break
	}
	buf = buf[:cap(buf)]
	for i := 0; i < len(sent); {
		r1, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_DONTWAIT, 0, 0)
		n := int(r1)
		var err error
		if errno == unix.EAGAIN {
			// Not queued yet after all: wait for it the usual way.
			n, _, _, _, err = unix.Recvmsg(r.fd, buf, nil, 0)
		} else if errno != 0 {
			err = errno
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fail(i, os.NewSyscallError("recvfrom", err))
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			fail(i, fmt.Errorf("reading the answer: %w", err))
			return
		}
		for _, m := range msgs {
			// Answers to requests of an earlier, failed exchange are
			// passed over.
			if i >= len(sent) || m.Header.Seq != sent[i].Header.Sequence {
				continue
			}
			errs[i] = answerError(reqs[i].op, m)
			i++
		}
	}
}

// answerError returns the error an answer to an acknowledged request
// carries, nil for an acknowledgement.
func answerError(op string, m syscall.NetlinkMessage) error {
	if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
		return newError(op, fmt.Errorf("answer of type %d where an acknowledgement was due", m.Header.Type), "")
	}
	errno := -int32(binary.NativeEndian.Uint32(m.Data))
	if errno == 0 {
		return nil
	}
	// With NETLINK_CAP_ACK the request's header alone follows the errno;
	// then, with NLM_F_ACK_TLVS, the extended acknowledgement.
	var text string
	if m.Header.Flags&unix.NLM_F_ACK_TLVS != 0 && len(m.Data) >= 4+nlmsgHeaderLen {
		if ad, err := netlink.NewAttributeDecoder(m.Data[4+nlmsgHeaderLen:]); err == nil {
			for ad.Next() {
				if ad.Type() == unix.NLMSGERR_ATTR_MSG {
					text = ad.String()
				}
			}
		}
	}
	return newError(op, unix.Errno(errno), text)
}
