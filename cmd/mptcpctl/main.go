// Command mptcpctl is the command line of mptcpd: it shows and changes a
// host's Multipath TCP endpoints, limits, connections and policy through
// the daemon's gRPC API, in the words of ip-mptcp(8).
//
// The command tree is built by newApp(...).rootCmd(); `mptcpctl gen-man
// DIR` writes its man pages.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
