//go:build !linux

package netns

import "errors"

// Do runs fn directly for fd 0; network namespaces exist only on Linux.
func Do(fd int, fn func() error) error {
	if fd == 0 {
		return fn()
	}
	return errors.ErrUnsupported
}
