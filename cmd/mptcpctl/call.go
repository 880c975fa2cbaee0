package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// rpc connects, calls fn with a context bound by --timeout, and wraps its
// error with what was being done ("adding endpoint 192.0.2.1"). Errors of
// connecting are returned as they are: they explain themselves.
func rpc[R any](a *app, cmd *cobra.Command, what string, fn func(context.Context, mptcpdv1.MptcpdServiceClient) (R, error)) (R, error) {
	c, err := a.connect()
	if err != nil {
		var zero R
		return zero, err
	}
	ctx, cancel := a.call(cmd.Context())
	defer cancel()
	resp, err := fn(ctx, c)
	if err != nil {
		return resp, fmt.Errorf("%s: %w", what, err)
	}
	return resp, nil
}
