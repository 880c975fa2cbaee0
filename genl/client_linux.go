package genl

import (
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// New opens a Client of the mptcp_pm family, in the caller's network
// namespace or the one given with WithNetNS.
// Errors: ErrUnavailable when the kernel has no mptcp_pm family (no MPTCP,
// or Linux < 5.7).
func New(opts ...Option) (*Client, error) {
	o := buildOptions(opts)
	dial := func() (*genetlink.Conn, error) {
		// Strict: the kernel's extended-ACK text reaches our errors.
		return genetlink.Dial(&netlink.Config{Strict: true, NetNS: o.netNS})
	}
	c, err := dial()
	if err != nil {
		return nil, wrapNetlink("open netlink socket", err)
	}
	return initClient(c, dial, o)
}
