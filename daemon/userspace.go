package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

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
		// Subflows are asked for on sockets the runtime does not poll (see
		// genl.WithRawRequests): a decision waits on the request.
		c, err := genl.New(genl.WithNetNS(n.nsfd), genl.WithRawRequests())
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
		Kernels:        kernels,
		Lister:         n.diag,
		Policy:         userspacePolicy(n.cfg, st, nil),
		Log:            n.log,
		OnDecision:     n.onDecision,
		Listen:         n.listen,
		PendingTimeout: pendingTimeout(n.nsfd),
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
	// The kernel's events go to the Manager from now on, before it reads
	// the connections: a connection that opens after the listing is known
	// from its events (those that came before the Manager existed are
	// covered by the listing; the Manager takes both in either order).
	n.us.Store(m)
	// And the listing is read once they are subscribed to: a connection
	// opened before the subscription is in it.
	select {
	case <-n.subscribed:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		n.log.Warn("the kernel's MPTCP events are not subscribed to yet; connections may be missed until a resync")
	}
	if err := m.Resync(ctx); err != nil {
		n.log.Warn("reading the live connections at start", "error", err)
	}
	return m, done, nil
}

// pendingTimeout is how long a subflow asked for may go unreported before
// the userspace path manager counts it as failed and asks again. The
// kernel reports every join's end, a SYN that nobody answers included,
// but only once it gives up on it: after 1+2+4+… seconds, one term per
// SYN sent (net.ipv4.tcp_syn_retries, default 6: 127 s). A shorter
// timeout would ask again while the first join still waits in SYN-SENT,
// and joins into a black hole would pile up; so it is that, and a margin.
func pendingTimeout(nsfd int) time.Duration {
	retries := 6
	_ = netns.Do(nsfd, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syn_retries")
		if err != nil {
			return err
		}
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v >= 1 {
			retries = v
		}
		return nil
	})
	retries = min(retries, 10) // the kernel allows 127: bound it
	return time.Duration(1<<(retries+1)-1)*time.Second + 10*time.Second
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
