//go:build !linux

package genl

import (
	"errors"

	"github.com/mdlayher/netlink"
)

// New returns errors.ErrUnsupported: MPTCP path management is Linux-only.
func New(opts ...Option) (*Client, error) {
	return nil, errors.ErrUnsupported
}

// sendTogether needs Linux netlink.
func (c *Client) sendTogether([]request) ([]netlink.Message, error) {
	return nil, errors.ErrUnsupported
}

// rawRequests is WithRawRequests's socket, which only Linux has.
type rawRequests struct{}

func (*rawRequests) close() error { return nil }

func (c *Client) executeRaw([]error, []request) {}
