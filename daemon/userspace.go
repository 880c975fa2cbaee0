package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/netns"
	"github.com/mptcpd/mptcpd/pm"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// maxWorkers bounds the userspace path manager's workers (one kernel
// socket each).
const maxWorkers = 16

// startUserspace opens the workers' kernel sockets and starts the
// userspace path manager with the policy for st. It runs until ctx ends.
func (n *node) startUserspace(ctx context.Context, st netmon.State) (*userspace.Manager, <-chan error, error) {
	workers := min(max(runtime.GOMAXPROCS(0), 1), maxWorkers)
	var kernels []userspace.Kernel
	var clients []*genl.Client
	for range workers {
		c, err := genl.New(genl.WithNetNS(n.nsfd))
		if err != nil {
			for _, c := range clients {
				_ = c.Close()
			}
			return nil, nil, fmt.Errorf("opening the userspace path manager's kernel sockets: %w", err)
		}
		clients = append(clients, c)
		kernels = append(kernels, c)
	}
	m, err := userspace.New(userspace.Options{
		Kernels:    kernels,
		Lister:     n.diag,
		Policy:     userspacePolicy(n.cfg, st, nil),
		Log:        n.log,
		OnDecision: n.onDecision,
		Listen:     n.listen,
	})
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() {
		err := m.Run(ctx)
		for _, c := range clients {
			_ = c.Close()
		}
		done <- err
	}()
	if err := m.Resync(ctx); err != nil {
		n.log.Warn("reading the live connections at start", "error", err)
	}
	return m, done, nil
}

// userspacePolicy makes the userspace path manager's policy: the usable
// local addresses are those kernel mode would make endpoints of, backup
// when their rule has the backup flag.
func userspacePolicy(cfg *config.Config, st netmon.State, prev *userspace.Policy) *userspace.Policy {
	wants, _ := pm.Desired(cfg, st)
	locals := make([]userspace.Local, 0, len(wants))
	for _, w := range wants {
		if w.Port != 0 {
			continue // the same address, announced on a port: one local address
		}
		locals = append(locals, userspace.Local{Addr: w.Addr, IfIndex: w.IfIndex, Interface: w.Interface, Backup: w.Flags&genl.FlagBackup != 0})
	}
	own := make([]netip.Addr, 0, len(st.Addrs))
	for _, a := range st.Addrs {
		own = append(own, a.Prefix.Addr())
	}
	return userspace.NewPolicy(&cfg.Userspace, locals, own, prev)
}

// onDecision publishes a decision of the userspace path manager.
func (n *node) onDecision(d userspace.Decision) {
	if n.broker.Subscribers() == 0 {
		return
	}
	n.broker.Publish(events.Event{Kind: events.KindDecision, Token: d.Token, Reason: d.Reason, Decision: &d})
}

// listen opens an MPTCP listener in the managed namespace that accepts
// nothing: joins to it attach to their connections, and a plain
// connection is closed at once.
func (n *node) listen(addr netip.AddrPort) (io.Closer, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	var ln net.Listener
	open := func() error {
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", addr.String())
		return err
	}
	var err error
	if n.nsfd == 0 {
		err = open()
	} else {
		err = netns.Do(n.nsfd, open)
	}
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return ln, nil
}
