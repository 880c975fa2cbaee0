//go:build !linux

package genl

import "github.com/mdlayher/genetlink"

func setReadBuffer(c *genetlink.Conn, bytes int) { _ = c.SetReadBuffer(bytes) }
