//go:build !linux

package genl

import "errors"

// New returns errors.ErrUnsupported: MPTCP path management is Linux-only.
func New(opts ...Option) (*Client, error) {
	return nil, errors.ErrUnsupported
}
