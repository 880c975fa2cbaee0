// Command barepm is the least a userspace path manager can do, as a
// baseline for mptcpd's benchmarks: in the network namespace it runs in,
// it gives every client connection that becomes established one more
// subflow, from one given local address to the connection's remote
// address, and does nothing else: no policy, no bookkeeping, no logging
// on the way. It uses the same kernel client as mptcpd.
//
//	barepm -local 192.0.2.17 -ifindex 3
//
// The namespace's path manager must be userspace
// (net.mptcp.path_manager). It runs until it is sent SIGTERM or SIGINT,
// and prints how many subflows it asked for and how many requests failed.
//
// With -raw it goes further down, with what mptcpd does on its own critical
// path and nothing else: it reads events as mptcpd does (internal/nlread:
// one raw recvfrom(2) per batch, after the runtime's poller), and writes
// each request with one raw write(2) on a socket of its own without
// waiting for the kernel's answer. That is as little as a Go program can
// do per decision; tests/barepm/c is the same in C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/mptcpd/mptcpd/genl"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "barepm:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("barepm", flag.ContinueOnError)
	local := fs.String("local", "", "the local address of the extra subflow (required)")
	ifIndex := fs.Int("ifindex", 0, "the interface to bind the extra subflow to (0: none)")
	id := fs.Uint("id", 1, "the local address ID of the extra subflow, 1..255")
	raw := fs.Bool("raw", false, "read events and send requests with raw system calls on one thread")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := netip.ParseAddr(*local)
	if err != nil {
		return fmt.Errorf("-local: %w", err)
	}
	if *id < 1 || *id > 255 {
		return fmt.Errorf("-id %d: want 1..255", *id)
	}
	if *ifIndex < 0 || *ifIndex > 1<<31-1 {
		return fmt.Errorf("-ifindex %d: want 0 or an interface index", *ifIndex)
	}
	ep := genl.Endpoint{Addr: addr, ID: uint8(*id), IfIndex: int32(*ifIndex)}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *raw {
		return runRaw(ctx, ep)
	}
	c, err := genl.New(genl.WithEventBuffer(32 << 20))
	if err != nil {
		return err
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx)
	if err != nil {
		return err
	}
	defer sub.Close()
	fmt.Println("ready")
	var asked, failed, lost int
	for {
		evs, err := sub.Receive()
		if errors.Is(err, genl.ErrEventsLost) {
			lost++
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		for i := range evs {
			e := &evs[i]
			if e.Type != genl.EventEstablished || e.ServerSide || e.Remote.Addr().Is4() != addr.Is4() {
				continue
			}
			asked++
			if err := c.CreateSubflow(e.Token, ep, e.Remote); err != nil {
				failed++
			}
		}
	}
	fmt.Printf("asked %d failed %d events-lost %d\n", asked, failed, lost)
	return nil
}
