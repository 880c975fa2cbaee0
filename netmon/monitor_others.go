//go:build !linux

package netmon

import (
	"errors"
	"fmt"
)

// New returns errors.ErrUnsupported: rtnetlink exists only on Linux.
func New(opts ...Option) (*Monitor, error) {
	if _, err := newOptions(opts); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("netmon: watching links and addresses needs Linux rtnetlink: %w", errors.ErrUnsupported)
}
