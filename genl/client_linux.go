package genl

import (
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
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
