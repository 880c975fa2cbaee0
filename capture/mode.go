package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Mode is how connections reach a Listener.
type Mode int

const (
	// Redirect: the listener is on Config.RedirectPort and reads each
	// connection's destination with SO_ORIGINAL_DST.
	Redirect Mode = iota + 1
	// TProxy: the listener is transparent, on Config.TProxyPort, and each
	// connection's destination is its local address.
	TProxy
)

func (m Mode) String() string {
	switch m {
	case Redirect:
		return "redirect"
	case TProxy:
		return "tproxy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ErrNotCaptured means a connection reached a capture listener directly,
// not through the capture rules; relaying it would only reach the
// listener again.
var ErrNotCaptured = errors.New("connection reached the capture listener directly, not through the capture rules")

// Accepted is a captured connection and the destination its client dialled.
type Accepted struct {
	Conn *net.TCPConn
	Dst  netip.AddrPort
}
