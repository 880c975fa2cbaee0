package genl

import (
	"encoding/binary"
	"errors"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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
	return initClient(c, dial, o)
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
	sent := c.sent[:0]
	buf := c.buf[:0]
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

const nlmsgHeaderLen = 16 // struct nlmsghdr

// nlmsgAlign rounds n up to the alignment of netlink messages.
func nlmsgAlign(n int) int { return (n + 3) &^ 3 }
