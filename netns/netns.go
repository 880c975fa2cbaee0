// Package netns opens Linux network namespaces and runs code inside them.
//
// Network namespaces made by `ip netns add NAME` are bind-mounted at
// /run/netns/NAME. A namespace is handled as an open file; its descriptor is
// what genl.WithNetNS takes.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dir is where iproute2 keeps named network namespaces.
const Dir = "/run/netns"

// NS is an open network namespace.
type NS struct {
	f *os.File
}

// Open opens the named namespace under /run/netns, or the namespace file at
// name if it is an absolute path (e.g. /proc/PID/ns/net).
func Open(name string) (*NS, error) {
	path := name
	if !filepath.IsAbs(name) {
		if err := ValidName(name); err != nil {
			return nil, err
		}
		path = filepath.Join(Dir, name)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !filepath.IsAbs(name) {
			return nil, fmt.Errorf("network namespace %q does not exist (no %s; create it with `ip netns add %s`): %w", name, path, name, err)
		}
		return nil, fmt.Errorf("opening network namespace %q: %w", name, err)
	}
	return &NS{f: f}, nil
}

// ValidName checks a namespace name as iproute2 accepts it: not empty, not
// "." or "..", no slash, at most 255 bytes.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("network namespace name is empty")
	case name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0):
		return fmt.Errorf("invalid network namespace name %q: no '/', '.' or '..'", name)
	case len(name) > 255:
		return fmt.Errorf("network namespace name is %d bytes long, at most 255 allowed", len(name))
	}
	return nil
}

// FD returns the namespace's file descriptor, valid until Close.
func (n *NS) FD() int { return int(n.f.Fd()) }

// Close closes the namespace handle.
func (n *NS) Close() error { return n.f.Close() }

// Do runs fn on an operating-system thread inside the namespace. See the
// package-level Do.
func (n *NS) Do(fn func() error) error { return Do(n.FD(), fn) }
