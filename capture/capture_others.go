//go:build !linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// errUnsupported is returned by everything that touches the kernel: the
// capture rules and socket options exist on Linux only.
var errUnsupported = fmt.Errorf("traffic capture needs Linux: %w", errors.ErrUnsupported)

// Rules is the capture configuration Install put in a network namespace.
type Rules struct{}

// Install fails: capture needs Linux.
func Install(ctx context.Context, cfg Config) (*Rules, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, errUnsupported
}

// Remove does nothing.
func (r *Rules) Remove() error { return nil }

// Release does nothing.
func (r *Rules) Release() {}

// Describe returns an empty string.
func (r *Rules) Describe() string { return "" }

// Script returns an empty string.
func (r *Rules) Script() string { return "" }

// OriginalDst fails: capture needs Linux.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errUnsupported }

// ListenTransparent fails: capture needs Linux.
func ListenTransparent(ctx context.Context, network, addr string) (net.Listener, error) {
	return nil, errUnsupported
}

// MarkDialer does nothing: firewall marks exist on Linux only.
func MarkDialer(d *net.Dialer, mark uint32) {}

// Listener accepts captured connections.
type Listener struct{}

// Listen fails: capture needs Linux.
func Listen(ctx context.Context, mode Mode, network, addr string, log *slog.Logger) (*Listener, error) {
	return nil, errUnsupported
}

// Addr returns nil.
func (l *Listener) Addr() net.Addr { return nil }

// Close does nothing.
func (l *Listener) Close() error { return nil }

// Accept fails: capture needs Linux.
func (l *Listener) Accept() (Accepted, error) { return Accepted{}, errUnsupported }
