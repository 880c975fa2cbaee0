//go:build !linux

package genl

import (
	"errors"

	"github.com/mdlayher/genetlink"
)

func setReadBuffer(c *genetlink.Conn, bytes int) { _ = c.SetReadBuffer(bytes) }

// rawEvents is a raw reader of a subscription's socket, which only Linux
// has; newRawEvents always fails and the subscription reads through its
// connection.
type rawEvents struct{}

func newRawEvents(*genetlink.Conn) (*rawEvents, error) { return nil, errors.ErrUnsupported }

func (*rawEvents) receive() ([]genetlink.Message, error) { return nil, errors.ErrUnsupported }
func (*rawEvents) stop()                                 {}
func (*rawEvents) close()                                {}
