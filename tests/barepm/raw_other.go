//go:build !linux

package main

import (
	"context"
	"errors"

	"github.com/mptcpd/mptcpd/genl"
)

func runRaw(context.Context, genl.Endpoint) error {
	return errors.New("-raw needs Linux")
}
