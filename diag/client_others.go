//go:build !linux

package diag

import "errors"

// New returns errors.ErrUnsupported: NETLINK_SOCK_DIAG is Linux-only.
func New(opts ...Option) (*Client, error) {
	return nil, errors.ErrUnsupported
}
