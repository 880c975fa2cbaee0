//go:build !linux

package load

import (
	"context"
	"errors"
	"syscall"
)

// Subflows returns how many subflows of the MPTCP connection c are
// established; only Linux can tell.
func Subflows(c syscall.Conn) (int, error) { return 0, errors.ErrUnsupported }

// WaitSubflows waits until the MPTCP connection c has at least n
// established subflows; only Linux can tell.
func WaitSubflows(ctx context.Context, c syscall.Conn, n int) error { return errors.ErrUnsupported }
