package genl

import (
	"github.com/mdlayher/genetlink"
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
