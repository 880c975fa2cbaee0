package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// userspaceConfig is a daemon configuration in userspace mode: the test
// paths' interfaces are usable (those matching backupIf, if any, as
// backup), and rules is the [[userspace.rule]] tables.
func userspaceConfig(dir, backupIf, rules string) string {
	conf := strings.Replace(apiConfig(dir, ""), `state_dir =`, "mode = \"userspace\"\nstate_dir =", 1)
	if backupIf != "" {
		conf = strings.Replace(conf, "[[rule]]\n", fmt.Sprintf("[[rule]]\nname = \"backup paths\"\ninterfaces = [%q]\nkinds = [\"veth\"]\nflags = [\"subflow\", \"backup\"]\n\n[[rule]]\n", backupIf), 1)
	}
	return conf + "\n" + rules
}

// subflowSet returns the established subflows of the connection from
// local in h's namespace, as "local>remote" with the local port left out,
// sorted, and whether they are backup.
func subflowSet(t *testing.T, dc *diag.Client, local netip.AddrPort) (pairs []string, backup map[string]bool) {
	t.Helper()
	list, err := dc.Connections(context.Background(), diag.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	backup = map[string]bool{}
	for _, c := range list {
		if netip.AddrPortFrom(c.Local.Addr().Unmap(), c.Local.Port()) != local {
			continue
		}
		for _, s := range c.Subflows {
			if s.State != diag.StateEstablished {
				continue
			}
			k := s.Local.Addr().Unmap().String() + ">" + netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port()).String()
			pairs = append(pairs, k)
			backup[k] = s.BackupLocal
		}
	}
	slices.Sort(pairs)
	return pairs, backup
}

// waitSubflows waits until the connection from local has exactly want.
func waitSubflows(t *testing.T, dc *diag.Client, local netip.AddrPort, what string, want []string) map[string]bool {
	t.Helper()
	slices.Sort(want)
	var got []string
	var backup map[string]bool
	if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		got, backup = subflowSet(t, dc, local)
		return slices.Equal(got, want), nil
	}); err != nil {
		t.Fatalf("%s: subflows %q, want %q", what, got, want)
	}
	return backup
}

// waitSubflows is the function waitSubflows, showing both hosts' sockets
// when it fails.
func (b *userspaceBed) waitSubflows(t *testing.T, local netip.AddrPort, what string, want []string) map[string]bool {
	t.Helper()
	defer b.dumpOnFailure(t)
	return waitSubflows(t, b.dc, local, what, want)
}

// dumpOnFailure logs both hosts' TCP and MPTCP sockets if the test failed.
func (b *userspaceBed) dumpOnFailure(t *testing.T) {
	if !t.Failed() || b.dumped {
		return
	}
	b.dumped = true
	for _, h := range []*testbed.Host{b.h, b.srv} {
		out, _ := exec.Command("ip", "netns", "exec", h.NS, "ss", "-tanMi").CombinedOutput()
		t.Logf("sockets of host %s:\n%s", h.Name, out)
	}
}

func pair(local netip.Addr, remote netip.AddrPort) string {
	return local.String() + ">" + remote.String()
}

// userspaceBed is a client h running mptcpd in userspace mode and a
// server srv (the kernel's in-kernel path manager, accepting joins),
// joined by n paths, with an echo server on srv.
type userspaceBed struct {
	h, srv *testbed.Host
	paths  []testbed.Path
	dc     *diag.Client
	port   uint16
	dumped bool
}

func newUserspaceBed(t *testing.T, n int, conf func(dir string) string) (*userspaceBed, *apiDaemon) {
	t.Helper()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	b := &userspaceBed{h: bed.Host("h"), srv: bed.Host("srv")}
	b.paths = bed.Paths(b.h, b.srv, n)
	if err := newClient(t, b.srv).SetLimits(genl.Limits{Subflows: 8, AddAddrAccepted: 8}); err != nil {
		t.Fatal(err)
	}
	d := startAPIDaemon(t, bin, b.h, conf(t.TempDir()))
	dc, err := diag.New(diag.WithNetNS(b.h.FD()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	b.dc = dc
	return b, d
}

// dial opens an MPTCP connection from h's first path to srv's, and
// returns it with its local and remote address.
func (b *userspaceBed) dial(t *testing.T, family int, port uint16) (net.Conn, netip.AddrPort, netip.AddrPort) {
	t.Helper()
	remote := netip.AddrPortFrom(b.paths[0].Addr(b.srv, family), port)
	c, err := b.h.Dial(ctxT(t), netip.AddrPortFrom(b.paths[0].Addr(b.h, family), 0), remote)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return c, netip.AddrPortFrom(l.Addr().Unmap(), l.Port()), remote
}

// crossRoutes gives each of h's paths a route to every subnet of srv, as
// a multi-homed host has a way out of each interface: a subflow bound to
// path i's interface can then reach srv's address on path j.
func (b *userspaceBed) crossRoutes(t *testing.T) {
	t.Helper()
	for i, pi := range b.paths {
		for j, pj := range b.paths {
			if i == j {
				continue
			}
			// A metric per interface: IPv4 takes one route per prefix and
			// metric.
			metric := fmt.Sprint(1000 + i)
			b.h.MustIP("route", "add", netip.PrefixFrom(pj.B4, 28).Masked().String(), "via", pi.B4.String(), "dev", pi.AIf, "metric", metric)
			b.h.MustIP("-6", "route", "add", netip.PrefixFrom(pj.B6, 64).Masked().String(), "via", pi.B6.String(), "dev", pi.AIf, "metric", metric)
		}
	}
}

// TestUserspaceFullmesh: every usable local address to every known peer
// address — the initial one, then the one the peer announces — for IPv4
// and IPv6, with data flowing.
func TestUserspaceFullmesh(t *testing.T) {
	t.Parallel()
	forEachFamily(t, func(t *testing.T, family int) {
		b, _ := newUserspaceBed(t, 2, func(dir string) string {
			return userspaceConfig(dir, "", "[[userspace.rule]]\nname = \"mesh\"\nside = \"client\"\nstrategy = \"fullmesh\"\n")
		})
		b.crossRoutes(t)
		_, port := echoListener(t, b.srv, family)
		c, local, remote := b.dial(t, family, port)
		roundTrip(t, c, 20_000)
		a0, a1 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family)
		b.waitSubflows(t, local, "fullmesh to the initial address", []string{pair(a0, remote), pair(a1, remote)})

		// The server announces its second address: two more subflows.
		if _, err := newClient(t, b.srv).AddEndpoint(genl.Endpoint{Addr: b.paths[1].Addr(b.srv, family), Flags: genl.FlagSignal}); err != nil {
			t.Fatal(err)
		}
		c2, local2, remote2 := b.dial(t, family, port)
		roundTrip(t, c2, 20_000)
		second := netip.AddrPortFrom(b.paths[1].Addr(b.srv, family), port)
		b.waitSubflows(t, local2, "fullmesh with an announced address",
			[]string{pair(a0, remote2), pair(a1, remote2), pair(a0, second), pair(a1, second)})
		roundTrip(t, c2, 200_000)
	})
}

// The tests below drive the userspace path manager on live connections:
// every strategy, cuts of a path and its return, backup promotion, the
// peer-announcement policy and a flood of announcements, and a restart of
// the daemon under live connections. Each asserts what a user can see: the
// subflows established on the connection (the kernel's sock_diag listing),
// the bytes delivered, and the daemon's decisions on its API.

// upmWatchdog bounds every test below: a hang fails with the stacks.
const upmWatchdog = 90 * time.Second

// fixedEchoListener opens an MPTCP echo server on the wildcard address of
// the family in host h, on a fixed port (each test host is a namespace of
// its own, so fixed ports cannot clash).
func fixedEchoListener(t *testing.T, h *testbed.Host, family int, port uint16) {
	t.Helper()
	network := map[int]string{4: "tcp4", 6: "tcp6"}[family]
	wildcard := map[int]string{4: "0.0.0.0", 6: "::"}[family]
	ln, err := h.Listen(network, net.JoinHostPort(wildcard, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("listening on port %d in host %s: %v", port, h.Name, err)
	}
	echoServer(t, ln)
}

// liveSubflows returns the established subflows of the connection from
// local in the namespace of dc.
func liveSubflows(t *testing.T, dc *diag.Client, local netip.AddrPort) []diag.Subflow {
	t.Helper()
	list, err := dc.Connections(context.Background(), diag.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []diag.Subflow
	for _, c := range list {
		if netip.AddrPortFrom(c.Local.Addr().Unmap(), c.Local.Port()) != local {
			continue
		}
		for _, s := range c.Subflows {
			if s.State == diag.StateEstablished {
				out = append(out, s)
			}
		}
	}
	return out
}

// subflowTuples returns the established subflows of the connection from
// local as full four-tuples "local>remote", sorted: a subflow re-created
// has a new local port, so equal tuples mean the very same subflows.
func subflowTuples(t *testing.T, dc *diag.Client, local netip.AddrPort) []string {
	t.Helper()
	var out []string
	for _, s := range liveSubflows(t, dc, local) {
		out = append(out, unmapped(s.Local).String()+">"+unmapped(s.Remote).String())
	}
	slices.Sort(out)
	return out
}

func unmapped(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// stableSubflows checks that the connection from local keeps exactly want
// for the whole of d: nothing more is created, nothing torn down.
func stableSubflows(t *testing.T, dc *diag.Client, local netip.AddrPort, what string, want []string, d time.Duration) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if got, _ := subflowSet(t, dc, local); !slices.Equal(got, want) {
			t.Fatalf("%s: subflows changed to %q, want %q to stay", what, got, want)
		}
	}
}

// apiConnection returns the API's view of the connection from local.
func apiConnection(t *testing.T, d *apiDaemon, local netip.AddrPort) *pb.Connection {
	t.Helper()
	resp, err := d.c.ListConnections(ctxT(t), &pb.ListConnectionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetConnections() {
		if c.GetLocalAddress() == local.Addr().String() && c.GetLocalPort() == uint32(local.Port()) {
			return c
		}
	}
	t.Fatalf("the API lists no connection from %s: %v", local, resp.GetConnections())
	return nil
}

// wantPolicy checks the rule, strategy and wanted subflows the API shows
// for the connection from local.
func wantPolicy(t *testing.T, d *apiDaemon, local netip.AddrPort, rule, strategy string, wanted int) {
	t.Helper()
	c := apiConnection(t, d, local)
	if c.GetRule() != rule || c.GetStrategy() != strategy || c.GetSubflowsWanted() != uint32(wanted) {
		t.Errorf("connection from %s: rule %q strategy %q wanted %d; want rule %q strategy %q wanted %d",
			local, c.GetRule(), c.GetStrategy(), c.GetSubflowsWanted(), rule, strategy, wanted)
	}
}

// decisionLog gathers the daemon's decisions from its Watch stream.
type decisionLog struct {
	mu     sync.Mutex
	list   []*pb.WatchResponse
	err    error
	notify chan struct{} // closed and replaced on every change
}

// watchDecisions subscribes to the daemon's decisions; it returns once the
// subscription is live (the snapshot has ended), so every later decision
// is seen.
func watchDecisions(t *testing.T, d *apiDaemon) *decisionLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := d.c.Watch(ctx, &pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_DECISION}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// Only the end marker passes the filter: the snapshot has no
	// decisions.
	if ev, err := stream.Recv(); err != nil || ev.GetKind() != pb.EventKind_EVENT_KIND_SNAPSHOT_END {
		cancel()
		t.Fatalf("watch: %v, %v; want the end of the snapshot", ev, err)
	}
	l := &decisionLog{notify: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := stream.Recv()
			l.mu.Lock()
			if err != nil {
				if ctx.Err() == nil {
					l.err = err
				}
			} else {
				l.list = append(l.list, ev)
			}
			close(l.notify)
			l.notify = make(chan struct{})
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l
}

// matching returns the decisions so far that match.
func (l *decisionLog) matching(match func(*pb.WatchResponse) bool) []*pb.WatchResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*pb.WatchResponse
	for _, ev := range l.list {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// wait waits until n decisions match, and returns them.
func (l *decisionLog) wait(t *testing.T, what string, n int, timeout time.Duration, match func(*pb.WatchResponse) bool) []*pb.WatchResponse {
	t.Helper()
	deadline := time.After(timeout)
	for {
		got := l.matching(match)
		if len(got) >= n {
			return got
		}
		l.mu.Lock()
		err, notify := l.err, l.notify
		l.mu.Unlock()
		if err != nil {
			t.Fatalf("waiting for %s: the watch stream failed: %v", what, err)
		}
		select {
		case <-notify:
		case <-deadline:
			t.Fatalf("no %d× %s within %s; decisions so far:\n%s", n, what, timeout, l.dump())
		}
	}
}

func (l *decisionLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, ev := range l.list {
		d := ev.GetDecision()
		fmt.Fprintf(&b, "  %#x %s %s:%d>%s:%d backup=%v rule=%q reason=%q error=%q\n", ev.GetToken(), d.GetAction(),
			d.GetLocalAddress(), d.GetLocalPort(), d.GetRemoteAddress(), d.GetRemotePort(), d.GetBackup(), d.GetRule(), ev.GetReason(), d.GetError())
	}
	return b.String()
}

// action matches the decisions of one action on one connection (token 0:
// any).
func decisionIs(a string, token uint32) func(*pb.WatchResponse) bool {
	return func(ev *pb.WatchResponse) bool {
		return ev.GetDecision().GetAction() == a && (token == 0 || ev.GetToken() == token)
	}
}

// dialData is dial followed by a first exchange of data: a client's
// connection is fully established, and the kernel reports it established
// (so the path manager starts), only once data has flowed.
func (b *userspaceBed) dialData(t *testing.T, family int, port uint16) (net.Conn, netip.AddrPort, netip.AddrPort) {
	t.Helper()
	c, local, remote := b.dial(t, family, port)
	roundTrip(t, c, 1000)
	return c, local, remote
}

// nft runs nft in host h's namespace (the root namespace's rules are never
// touched).
func nft(t *testing.T, h *testbed.Host, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in host %s: %v: %s", strings.Join(args, " "), h.Name, err, out)
	}
}

// requireNft skips, or under CI fails, without the nft command.
func requireNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the nft command is missing (apt-get install nftables)")
		}
		t.Skip("skipping: the nft command is missing (apt-get install nftables)")
	}
}

// tokenOf returns the local token of the connection from local in the
// namespace of dc.
func tokenOf(t *testing.T, dc *diag.Client, local netip.AddrPort) uint32 {
	t.Helper()
	list, err := dc.Connections(context.Background(), diag.Filter{NoSubflows: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if unmapped(c.Local) == local {
			return c.Token
		}
	}
	t.Fatalf("no connection from %s", local)
	return 0
}

// TestUserspaceStrategies: each strategy opens exactly the subflows it
// promises on a live connection, for IPv4 and IPv6 — per-interface one
// subflow per local interface, ndiffports three over the initial path from
// distinct local ports, backup one per interface with the backup
// interface's marked backup, none only the initial subflow, and fullmesh
// capped by max_subflows — all at once on connections told apart by their
// remote port, the first matching rule winning (the last rule matches
// every client connection, and the ndiffports rule shadows the
// per-interface rule's second port).
func TestUserspaceStrategies(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, upmWatchdog)()
	forEachFamily(t, func(t *testing.T, family int) {
		const portPerIf, portNDiff, portBackup, portNone, portMesh = 5001, 5002, 5003, 5004, 5005
		rules := fmt.Sprintf(`
[[userspace.rule]]
name = "ndiff"
side = "client"
remote_ports = [%d]
strategy = "ndiffports"
subflows = 3

[[userspace.rule]]
name = "per-if"
side = "client"
remote_ports = [%d, %d]
strategy = "per-interface"

[[userspace.rule]]
name = "reserve"
remote_ports = [%d]
strategy = "backup"

[[userspace.rule]]
name = "quiet"
remote_ports = [%d]
strategy = "none"

[[userspace.rule]]
name = "capped mesh"
side = "client"
strategy = "fullmesh"
max_subflows = 2
`, portNDiff, portPerIf, portNDiff, portBackup, portNone)
		// Path 2's interface is a backup interface.
		b, d := newUserspaceBed(t, 3, func(dir string) string { return userspaceConfig(dir, "p2srv", rules) })
		b.crossRoutes(t)
		for _, p := range []uint16{portPerIf, portNDiff, portBackup, portNone, portMesh} {
			fixedEchoListener(t, b.srv, family, p)
		}
		a0, a1, a2 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family), b.paths[2].Addr(b.h, family)

		// "none" first, so the others have settled by the time it is
		// checked: a late subflow on it would show.
		cNone, lNone, rNone := b.dialData(t, family, portNone)
		cPerIf, lPerIf, rPerIf := b.dialData(t, family, portPerIf)
		cNDiff, lNDiff, rNDiff := b.dialData(t, family, portNDiff)
		cBackup, lBackup, rBackup := b.dialData(t, family, portBackup)
		cMesh, lMesh, rMesh := b.dialData(t, family, portMesh)

		t.Run("per-interface", func(t *testing.T) {
			bk := b.waitSubflows(t, lPerIf, "per-interface", []string{pair(a0, rPerIf), pair(a1, rPerIf), pair(a2, rPerIf)})
			// Subflows from a backup address are marked backup, whatever
			// the strategy.
			if bk[pair(a0, rPerIf)] || bk[pair(a1, rPerIf)] || !bk[pair(a2, rPerIf)] {
				t.Errorf("backup flags %v; want only the backup interface's subflow (%s) backup", bk, a2)
			}
			roundTrip(t, cPerIf, 100_000)
			wantPolicy(t, d, lPerIf, "per-if", "per-interface", 3)
		})
		t.Run("ndiffports", func(t *testing.T) {
			b.waitSubflows(t, lNDiff, "ndiffports (shadowing per-interface)", []string{pair(a0, rNDiff), pair(a0, rNDiff), pair(a0, rNDiff)})
			ports := map[uint16]bool{}
			for _, s := range liveSubflows(t, b.dc, lNDiff) {
				ports[s.Local.Port()] = true
			}
			if len(ports) != 3 {
				t.Errorf("ndiffports subflows from local ports %v; want 3 different ports", ports)
			}
			roundTrip(t, cNDiff, 100_000)
			wantPolicy(t, d, lNDiff, "ndiff", "ndiffports", 3)
		})
		t.Run("backup", func(t *testing.T) {
			bk := b.waitSubflows(t, lBackup, "backup", []string{pair(a0, rBackup), pair(a1, rBackup), pair(a2, rBackup)})
			if bk[pair(a0, rBackup)] || bk[pair(a1, rBackup)] || !bk[pair(a2, rBackup)] {
				t.Errorf("backup flags %v; want the subflow over the backup interface (%s) backup and only it", bk, a2)
			}
			roundTrip(t, cBackup, 100_000)
			wantPolicy(t, d, lBackup, "reserve", "backup", 3)
		})
		t.Run("fullmesh capped", func(t *testing.T) {
			// Every local address to the one peer address would be 3; the
			// cap keeps the initial one and the first other address.
			b.waitSubflows(t, lMesh, "fullmesh with max_subflows 2", []string{pair(a0, rMesh), pair(a1, rMesh)})
			roundTrip(t, cMesh, 100_000)
			wantPolicy(t, d, lMesh, "capped mesh", "fullmesh", 2)
		})
		t.Run("none", func(t *testing.T) {
			b.waitSubflows(t, lNone, "none", []string{pair(a0, rNone)})
			roundTrip(t, cNone, 100_000)
			wantPolicy(t, d, lNone, "quiet", "none", 1)
		})
		// Nothing more comes on any of them.
		t.Run("stable", func(t *testing.T) {
			for _, c := range []struct {
				local netip.AddrPort
				want  []string
			}{
				{lNone, []string{pair(a0, rNone)}},
				{lPerIf, []string{pair(a0, rPerIf), pair(a1, rPerIf), pair(a2, rPerIf)}},
				{lNDiff, []string{pair(a0, rNDiff), pair(a0, rNDiff), pair(a0, rNDiff)}},
				{lBackup, []string{pair(a0, rBackup), pair(a1, rBackup), pair(a2, rBackup)}},
				{lMesh, []string{pair(a0, rMesh), pair(a1, rMesh)}},
			} {
				stableSubflows(t, b.dc, c.local, "after settling", c.want, 200*time.Millisecond)
			}
		})
	})
}

// pumpUntil exchanges data over c, 64 kB at a time, until done reports
// true; it fails the test if that takes longer than timeout. Traffic makes
// the kernel notice a cut path (a subflow only fails when it sends).
func pumpUntil(t *testing.T, c net.Conn, timeout time.Duration, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		if done() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%d exchanges)", what, timeout, i)
		}
		roundTrip(t, c, 64<<10)
	}
}

// retryAttempt parses a retry-subflow decision's reason ("…; attempt N in
// D") into its attempt number and delay.
func retryAttempt(t *testing.T, reason string) (int, time.Duration) {
	t.Helper()
	_, tail, ok := strings.Cut(reason, "; attempt ")
	if !ok {
		t.Fatalf("retry reason %q names no attempt", reason)
	}
	var n int
	var ds string
	if _, err := fmt.Sscanf(tail, "%d in %s", &n, &ds); err != nil {
		t.Fatalf("retry reason %q: %v", reason, err)
	}
	d, err := time.ParseDuration(ds)
	if err != nil {
		t.Fatalf("retry reason %q: %v", reason, err)
	}
	return n, d
}

// TestUserspacePathCut cuts path 1 of a per-interface connection and
// restores it, for IPv4 and IPv6, three ways: the peer's end of the link
// goes down (h loses carrier, so its address there is no longer usable
// and the daemon closes the subflow), an nftables rule in the server's
// namespace rejects TCP arriving over the path (the subflow is reset as
// soon as it sends, and every re-creation is refused), and one that drops
// it (a black hole: the subflow times out, with short TCP timeouts in h's
// namespace). In each the subflow over path 1 goes away, is retried with
// growing delays while the cut lasts (the nftables cuts), and is back once
// the path is.
func TestUserspacePathCut(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, upmWatchdog)()
	const rules = `
[userspace.retry]
initial = "200ms"
max = "1s"
attempts = 30

[[userspace.rule]]
name = "per interface"
side = "client"
strategy = "per-interface"
`
	forEachFamily(t, func(t *testing.T, family int) {
		for _, cut := range []string{"link-down", "reject", "drop"} {
			t.Run(cut, func(t *testing.T) {
				t.Parallel()
				if cut != "link-down" {
					requireNft(t)
				}
				b, d := newUserspaceBed(t, 2, func(dir string) string { return userspaceConfig(dir, "", rules) })
				defer b.dumpOnFailure(t)
				b.crossRoutes(t)
				if cut == "drop" {
					// A black-holed subflow times out after ~3 s of
					// retransmissions, a SYN into the hole after ~3 s.
					for k, v := range map[string]string{"net/ipv4/tcp_retries2": "3", "net/ipv4/tcp_syn_retries": "1"} {
						if err := b.h.WriteSysctl(k, v); err != nil {
							t.Fatal(err)
						}
					}
				}
				decisions := watchDecisions(t, d)
				_, port := echoListener(t, b.srv, family)
				c, local, remote := b.dialData(t, family, port)
				a0, a1 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family)
				both := []string{pair(a0, remote), pair(a1, remote)}
				b.waitSubflows(t, local, "before the cut", both)
				token := tokenOf(t, b.dc, local)
				hasA1 := func() bool {
					got, _ := subflowSet(t, b.dc, local)
					return slices.Contains(got, pair(a1, remote))
				}

				switch cut {
				case "link-down":
					// Linux flushes an interface's IPv6 addresses when it
					// goes down unless told to keep them.
					if err := b.srv.WriteSysctl("net/ipv6/conf/"+b.paths[1].BIf+"/keep_addr_on_down", "1"); err != nil {
						t.Fatal(err)
					}
					b.srv.MustIP("link", "set", b.paths[1].BIf, "down")
					b.waitSubflows(t, local, "with path 1 down", []string{pair(a0, remote)})
					decisions.wait(t, "destroy-subflow over path 1", 1, 5*time.Second, func(ev *pb.WatchResponse) bool {
						return decisionIs("destroy-subflow", token)(ev) && ev.GetDecision().GetLocalAddress() == a1.String() &&
							strings.Contains(ev.GetReason(), "no longer usable")
					})
					roundTrip(t, c, 200_000)
					stableSubflows(t, b.dc, local, "with path 1 down", []string{pair(a0, remote)}, 500*time.Millisecond)
					b.srv.MustIP("link", "set", b.paths[1].BIf, "up")
				default:
					verdict := "drop"
					if cut == "reject" {
						verdict = "reject with tcp reset"
					}
					nft(t, b.srv, "add", "table", "inet", "cut")
					nft(t, b.srv, "add", "chain", "inet", "cut", "input", "{ type filter hook input priority 0; }")
					nft(t, b.srv, "add", "rule", "inet", "cut", "input", "iifname", b.paths[1].BIf, "meta", "l4proto", "tcp", verdict)
					// The subflow fails only when it sends: keep data
					// flowing until it is gone. The data arrive over path 0.
					pumpUntil(t, c, 15*time.Second, "the subflow over the cut path closing", func() bool { return !hasA1() })
					// While the cut lasts, every re-creation fails, and
					// the delays grow. (Into the black hole each attempt
					// takes the ~3 s of a SYN's timeout: two are enough.)
					n := 3
					if cut == "drop" {
						n = 2
					}
					retries := decisions.wait(t, "retries of the subflow over path 1", n, 20*time.Second, func(ev *pb.WatchResponse) bool {
						return decisionIs("retry-subflow", token)(ev) && ev.GetDecision().GetLocalAddress() == a1.String()
					})
					var last time.Duration
					for i, ev := range retries[:n] {
						n, delay := retryAttempt(t, ev.GetReason())
						if n != i+1 || delay <= last {
							t.Errorf("retry %d: attempt %d in %s after %s; want attempt %d with a longer delay (reason %q)", i+1, n, delay, last, i+1, ev.GetReason())
						}
						last = delay
					}
					if hasA1() {
						t.Fatalf("a subflow over path 1 is established while the path is cut")
					}
					roundTrip(t, c, 200_000)
					nft(t, b.srv, "delete", "table", "inet", "cut")
				}
				b.waitSubflows(t, local, "after the path is back", both)
				roundTrip(t, c, 200_000)
			})
		}
	})
}

// serviceAddr gives srv a service address on its loopback interface, as a
// server's address that does not belong to any one link, and h a route to
// it over every path (path 0's preferred); it returns the address.
func (b *userspaceBed) serviceAddr(t *testing.T, family int) netip.Addr {
	t.Helper()
	addr := map[int]netip.Addr{4: netip.MustParseAddr("203.0.113.100"), 6: netip.MustParseAddr("2001:db8:5e::1")}[family]
	b.srv.MustIP("addr", "add", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", "lo")
	for i, p := range b.paths {
		b.h.MustIP("route", "add", netip.PrefixFrom(addr, addr.BitLen()).String(), "via", p.Addr(b.srv, family).String(), "dev", p.AIf, "metric", fmt.Sprint(100+i))
	}
	return addr
}

// exchange sends n random bytes over c and checks that the same come back,
// for use off the test's goroutine.
func exchange(c net.Conn, n int) error {
	out := make([]byte, n)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	if err := c.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		return err
	}
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		errc <- err
	}()
	in := make([]byte, n)
	if _, err := io.ReadFull(c, in); err != nil {
		return fmt.Errorf("reading %d echoed bytes: %w", n, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("writing %d bytes: %w", n, err)
	}
	if !bytes.Equal(in, out) {
		return fmt.Errorf("the %d bytes that came back differ from those sent", n)
	}
	return nil
}

// dataLoop exchanges data over c in the background, 32 kB at a time, until
// stop is called (or 5000 exchanges have been made); count returns the
// exchanges completed so far, stop their number and the first error.
func dataLoop(c net.Conn) (count func() int64, stop func() (int64, error)) {
	done := make(chan struct{})
	var n atomic.Int64
	res := make(chan error, 1)
	go func() {
		for range 5000 {
			select {
			case <-done:
				res <- nil
				return
			default:
			}
			if err := exchange(c, 32<<10); err != nil {
				res <- err
				return
			}
			n.Add(1)
		}
		res <- nil
	}()
	return n.Load, func() (int64, error) {
		close(done)
		err := <-res
		return n.Load(), err
	}
}

// TestUserspaceBackupPromotion: a backup-strategy connection to a
// server's service address, with its primary subflow over path 0 and a
// backup subflow over path 1, loses the primary path (the peer's end of
// path 0 goes down, so h's interface loses carrier) while data flow. The
// daemon closes the primary subflow and promotes the backup one (the
// kernel shows it no longer backup, the daemon's watch stream the
// decisions) without waiting for TCP to time the dead subflow out; every
// byte sent during and after the cut comes back intact; and when the path
// returns a primary subflow is opened again and the backup demoted.
func TestUserspaceBackupPromotion(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, upmWatchdog)()
	const rules = `
[[userspace.rule]]
name = "primary and reserve"
side = "client"
strategy = "backup"
`
	forEachFamily(t, func(t *testing.T, family int) {
		b, d := newUserspaceBed(t, 2, func(dir string) string { return userspaceConfig(dir, "p1srv", rules) })
		defer b.dumpOnFailure(t)
		// The server's address is not on the link that breaks (an IPv6
		// address on a link that is down is not local any more).
		svc := b.serviceAddr(t, family)
		if err := b.srv.WriteSysctl("net/ipv6/conf/"+b.paths[0].BIf+"/keep_addr_on_down", "1"); err != nil {
			t.Fatal(err)
		}
		decisions := watchDecisions(t, d)
		_, port := echoListener(t, b.srv, family)
		a0, a1 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family)
		remote := netip.AddrPortFrom(svc, port)
		c, err := b.h.Dial(ctxT(t), netip.AddrPortFrom(a0, 0), remote)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		local := unmapped(c.LocalAddr().(*net.TCPAddr).AddrPort())
		roundTrip(t, c, 1000)
		both := []string{pair(a0, remote), pair(a1, remote)}
		bk := b.waitSubflows(t, local, "primary and backup", both)
		if bk[pair(a0, remote)] || !bk[pair(a1, remote)] {
			t.Fatalf("backup flags %v; want the subflow over path 1 backup, the primary not", bk)
		}
		token := tokenOf(t, b.dc, local)
		roundTrip(t, c, 200_000)

		// The primary path dies under traffic.
		count, stop := dataLoop(c)
		if err := testbed.WaitFor(5*time.Second, func() (bool, error) { return count() >= 10, nil }); err != nil {
			t.Fatalf("data before the cut: %d exchanges", count())
		}
		b.srv.MustIP("link", "set", b.paths[0].BIf, "down")
		// h's path 0 lost carrier: the daemon closes the primary subflow
		// at once (TCP alone would take ~15 min of retransmissions to
		// give up on it), and promotes the backup.
		decisions.wait(t, "destroy-subflow of the primary", 1, 10*time.Second, func(ev *pb.WatchResponse) bool {
			return decisionIs("destroy-subflow", token)(ev) && ev.GetDecision().GetLocalAddress() == a0.String()
		})
		decisions.wait(t, "promote-backup", 1, 10*time.Second, func(ev *pb.WatchResponse) bool {
			return decisionIs("promote-backup", token)(ev) && ev.GetDecision().GetLocalAddress() == a1.String() && !ev.GetDecision().GetBackup()
		})
		bk = b.waitSubflows(t, local, "after the primary path died", []string{pair(a1, remote)})
		if err := testbed.WaitFor(5*time.Second, func() (bool, error) {
			_, bk = subflowSet(t, b.dc, local)
			return !bk[pair(a1, remote)], nil
		}); err != nil {
			t.Fatalf("the promoted subflow is still marked backup: %v", bk)
		}
		// Data go on over the promoted subflow.
		promoted := count()
		if err := testbed.WaitFor(10*time.Second, func() (bool, error) { return count() >= promoted+20, nil }); err != nil {
			t.Errorf("data after the promotion: %d exchanges of 32 kB in 10 s", count()-promoted)
		}
		n, err := stop()
		if err != nil {
			t.Fatalf("data through the cut, after %d exchanges of 32 kB: %v", n, err)
		}
		t.Logf("%d exchanges of 32 kB in all, %d after the promotion", n, n-promoted)
		roundTrip(t, c, 500_000)

		// The primary path returns: a primary subflow again, the backup
		// demoted.
		b.srv.MustIP("link", "set", b.paths[0].BIf, "up")
		decisions.wait(t, "demote-backup", 1, 10*time.Second, decisionIs("demote-backup", token))
		if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
			var got []string
			got, bk = subflowSet(t, b.dc, local)
			return slices.Equal(got, both) && bk[pair(a1, remote)] && !bk[pair(a0, remote)], nil
		}); err != nil {
			got, _ := subflowSet(t, b.dc, local)
			t.Fatalf("after the primary path returned: subflows %q backup %v; want %q with only path 1's backup", got, bk, both)
		}
		roundTrip(t, c, 200_000)
	})
}

// subflowsTo returns the connection's subflows in any state (a join still
// in SYN-SENT included) whose remote address is addr.
func subflowsTo(t *testing.T, dc *diag.Client, local netip.AddrPort, match func(netip.Addr) bool) []string {
	t.Helper()
	list, err := dc.Connections(context.Background(), diag.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range list {
		if unmapped(c.Local) != local {
			continue
		}
		for _, s := range c.Subflows {
			if match(s.Remote.Addr().Unmap()) {
				out = append(out, fmt.Sprintf("%s>%s %s", unmapped(s.Local), unmapped(s.Remote), s.State))
			}
		}
	}
	return out
}

// TestUserspacePeerAnnouncements: the server (in-kernel path manager)
// announces four addresses, all reachable from h, back to back: one in
// userspace.peer.deny_prefixes, one outside allow_prefixes, then two
// inside it. With max_accepted = 1 (and the default rate), h accepts the
// first allowed one and refuses the other three, each with its reason on
// the watch stream (denied prefix, outside the allowed ones,
// max_accepted), and opens its fullmesh subflows to the initial address
// and the accepted one only — none, in any state, to the others.
func TestUserspacePeerAnnouncements(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, upmWatchdog)()
	forEachFamily(t, func(t *testing.T, family int) {
		// The allowed prefix is path 1's network; the denied one another.
		type plan struct {
			allow, deny           netip.Prefix
			allowed2, denied, out netip.Addr
		}
		pl := map[int]plan{
			4: {netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
				netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("192.0.2.9")},
			6: {netip.MustParsePrefix("2001:db8:0:1::/64"), netip.MustParsePrefix("2001:db8:dead::/48"),
				netip.MustParseAddr("2001:db8:0:1::3"), netip.MustParseAddr("2001:db8:dead::10"), netip.MustParseAddr("2001:db8::9")},
		}[family]
		rules := fmt.Sprintf(`
[userspace.peer]
accept = true
allow_prefixes = [%q]
deny_prefixes = [%q]
max_accepted = 1

[[userspace.rule]]
name = "mesh"
side = "client"
strategy = "fullmesh"
`, pl.allow, pl.deny)
		b, d := newUserspaceBed(t, 2, func(dir string) string { return userspaceConfig(dir, "", rules) })
		defer b.dumpOnFailure(t)
		b.crossRoutes(t)
		b1 := b.paths[1].Addr(b.srv, family)
		// The server's extra addresses, each reachable from h.
		bits := map[int]int{4: 28, 6: 64}[family]
		b.srv.MustIP("addr", "add", netip.PrefixFrom(pl.allowed2, bits).String(), "dev", b.paths[1].BIf, "nodad")
		b.srv.MustIP("addr", "add", netip.PrefixFrom(pl.out, bits).String(), "dev", b.paths[0].BIf, "nodad")
		b.srv.MustIP("addr", "add", netip.PrefixFrom(pl.denied, pl.denied.BitLen()).String(), "dev", "lo")
		for i, p := range b.paths {
			b.h.MustIP("route", "add", pl.deny.String(), "via", p.Addr(b.srv, family).String(), "dev", p.AIf, "metric", fmt.Sprint(100+i))
		}
		// The in-kernel path manager announces its endpoints in order, each
		// as soon as the previous one is echoed: the refused ones first,
		// so they come in the same instant as the allowed ones (and, with
		// the default rate and a burst of max_accepted = 1, must not use
		// up the allowed ones' turn).
		sc := newClient(t, b.srv)
		announce := []netip.Addr{pl.denied, pl.out, b1, pl.allowed2}
		for _, a := range announce {
			if _, err := sc.AddEndpoint(genl.Endpoint{Addr: a, Flags: genl.FlagSignal}); err != nil {
				t.Fatalf("signal endpoint %s: %v", a, err)
			}
		}
		decisions := watchDecisions(t, d)
		_, port := echoListener(t, b.srv, family)
		c, local, remote := b.dialData(t, family, port)
		token := tokenOf(t, b.dc, local)

		accepted := decisions.wait(t, "accept-announcement", 1, 10*time.Second, decisionIs("accept-announcement", token))
		refused := decisions.wait(t, "refuse-announcement", 3, 10*time.Second, decisionIs("refuse-announcement", token))
		acc, other := b1, pl.allowed2 // the first allowed one, then the cap
		if got := accepted[0].GetDecision().GetRemoteAddress(); got != acc.String() {
			t.Errorf("accepted %s; want %s, the first allowed address announced", got, acc)
		}
		why := map[netip.Addr]string{}
		for _, ev := range refused {
			why[netip.MustParseAddr(ev.GetDecision().GetRemoteAddress())] = ev.GetReason()
		}
		for addr, want := range map[netip.Addr]string{
			pl.denied: "deny_prefixes " + pl.deny.String(),
			pl.out:    "outside userspace.peer.allow_prefixes",
			other:     "max_accepted",
		} {
			if !strings.Contains(why[addr], want) {
				t.Errorf("refusal of %s: reason %q; want one naming %q (refusals %v)", addr, why[addr], want, why)
			}
		}

		a0, a1 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family)
		second := netip.AddrPortFrom(acc, port)
		want := []string{pair(a0, remote), pair(a1, remote), pair(a0, second), pair(a1, second)}
		b.waitSubflows(t, local, "fullmesh to the initial and the accepted address", want)
		roundTrip(t, c, 200_000)
		stableSubflows(t, b.dc, local, "after the announcements", want, 300*time.Millisecond)
		if got := subflowsTo(t, b.dc, local, func(a netip.Addr) bool { return a == other || a == pl.denied || a == pl.out }); len(got) > 0 {
			t.Errorf("subflows to refused addresses: %q", got)
		}
		if n := len(decisions.matching(decisionIs("accept-announcement", token))); n != 1 {
			t.Errorf("%d announcements accepted, want 1 (max_accepted)", n)
		}
	})
}

// TestUserspaceAnnouncementFlood: a peer announces 200 addresses on one
// connection as fast as it can (the server runs the userspace path
// manager, and the test announces through it), none of them reachable
// (h routes them to the server, which has none of them). h accepts
// max_accepted of them and refuses the rest, reporting the first few
// refusals rather than each; it opens subflows to the accepted addresses
// only (at most max_accepted joins, in any state, to the flood's
// addresses), none gets established, the daemon answers its API
// throughout, and the connection carries data.
func TestUserspaceAnnouncementFlood(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, upmWatchdog)()
	const maxAccepted, flood = 4, 200
	rules := fmt.Sprintf(`
[userspace.peer]
accept = true
max_accepted = %d

[[userspace.rule]]
name = "mesh"
side = "client"
strategy = "fullmesh"
`, maxAccepted)
	forEachFamily(t, func(t *testing.T, family int) {
		b, d := newUserspaceBed(t, 1, func(dir string) string { return userspaceConfig(dir, "", rules) })
		defer b.dumpOnFailure(t)
		if err := genl.SetPathManager(genl.PathManagerUserspace, genl.WithNetNS(b.srv.FD())); err != nil {
			t.Fatal(err)
		}
		floodPrefix := map[int]netip.Prefix{4: netip.MustParsePrefix("203.0.113.0/24"), 6: netip.MustParsePrefix("2001:db8:ff::/64")}[family]
		floodAddr := func(i int) netip.Addr {
			a := floodPrefix.Addr().As16()
			a[15] = byte(i)
			if family == 4 {
				return netip.AddrFrom16(a).Unmap()
			}
			return netip.AddrFrom16(a)
		}
		b.h.MustIP("route", "add", floodPrefix.String(), "via", b.paths[0].Addr(b.srv, family).String(), "dev", b.paths[0].AIf)

		sc := newClient(t, b.srv)
		sev := collect(t, b.srv, sc) // also lets the server's kernel accept joins
		decisions := watchDecisions(t, d)
		_, port := echoListener(t, b.srv, family)
		c, local, _ := b.dialData(t, family, port)
		var si int
		stok := sev.wait(t, &si, "the server's established", func(ev genl.Event) bool { return ev.Type == genl.EventEstablished }).Token
		token := tokenOf(t, b.dc, local)
		before, err := b.h.Counter("MPTcpExtAddAddr")
		if err != nil {
			t.Fatal(err)
		}

		// The API answers all through the flood.
		stopPoll := make(chan struct{})
		polled := make(chan error, 1)
		go func() {
			var slowest time.Duration
			for i := 0; i < 1000; i++ {
				select {
				case <-stopPoll:
					if slowest > 2*time.Second {
						polled <- fmt.Errorf("GetStatus took %s", slowest)
						return
					}
					polled <- nil
					return
				case <-time.After(20 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				_, err := d.c.GetStatus(ctx, &pb.GetStatusRequest{})
				cancel()
				if err != nil {
					polled <- fmt.Errorf("GetStatus during the flood: %w", err)
					<-stopPoll
					return
				}
				slowest = max(slowest, time.Since(start))
			}
			<-stopPoll
			polled <- nil
		}()

		start := time.Now()
		for i := 1; i <= flood; i++ {
			if err := sc.Announce(stok, genl.Endpoint{ID: uint8(i), Addr: floodAddr(i), Flags: genl.FlagSignal}); err != nil {
				t.Fatalf("announcement %d of the flood: %v", i, err)
			}
		}
		t.Logf("%d announcements sent in %s", flood, time.Since(start))
		// Until h's kernel has seen the flood's announcements.
		var got uint64
		if err := testbed.WaitFor(5*time.Second, func() (bool, error) {
			n, err := b.h.Counter("MPTcpExtAddAddr")
			got = n - before
			return got >= flood/2, err
		}); err != nil {
			t.Fatalf("h's kernel received %d of the %d announcements: %v", got, flood, err)
		}
		decisions.wait(t, "accept-announcement", maxAccepted, 5*time.Second, decisionIs("accept-announcement", token))
		time.Sleep(300 * time.Millisecond) // the rest of the flood is handled
		close(stopPoll)
		if err := <-polled; err != nil {
			t.Fatal(err)
		}
		n, err := b.h.Counter("MPTcpExtAddAddr")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("h's kernel received %d announcements", n-before)

		isFlood := func(a netip.Addr) bool { return floodPrefix.Contains(a) }
		// The server's kernel repeats an announcement whose echo it missed
		// (h's kernel drops echoes it cannot send at once): an accepted
		// address announced again is accepted again, and counts once.
		accepted := map[string]bool{}
		for _, ev := range decisions.matching(decisionIs("accept-announcement", token)) {
			accepted[ev.GetDecision().GetRemoteAddress()] = true
		}
		if len(accepted) != maxAccepted {
			t.Errorf("addresses accepted %v, want max_accepted = %d of them", accepted, maxAccepted)
		}
		refusals := decisions.matching(func(ev *pb.WatchResponse) bool {
			return (decisionIs("refuse-announcement", token)(ev) || decisionIs("rate-limited", token)(ev)) && isFlood(netip.MustParseAddr(ev.GetDecision().GetRemoteAddress()))
		})
		if len(refusals) == 0 || len(refusals) > 8 {
			t.Errorf("%d refusals reported; want the first few (1..8) of the %d, the rest counted", len(refusals), n-before-maxAccepted)
		}
		if _, err := d.c.GetStatus(ctxT(t), &pb.GetStatusRequest{}); err != nil {
			t.Fatalf("GetStatus after the flood: %v", err)
		}
		// The rest are counted, and the API shows the count.
		gc, err := d.c.GetConnection(ctxT(t), &pb.GetConnectionRequest{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		if c := gc.GetConnection(); c.GetAnnouncementsRefused() < uint32(n-before-maxAccepted)/2 || c.GetAnnouncementsAccepted() < uint32(maxAccepted) {
			t.Errorf("the API counts %d announcements accepted and %d refused; want %d accepted and most of the other %d refused",
				c.GetAnnouncementsAccepted(), c.GetAnnouncementsRefused(), maxAccepted, n-before-maxAccepted)
		}
		joins := subflowsTo(t, b.dc, local, isFlood)
		t.Logf("subflows to the flood's addresses: %q", joins)
		if len(joins) > maxAccepted {
			t.Errorf("%d subflows to the flood's addresses, want at most max_accepted = %d: %q", len(joins), maxAccepted, joins)
		}
		for _, j := range joins {
			if strings.HasSuffix(j, " "+diag.StateEstablished.String()) {
				t.Errorf("a subflow to an unreachable address is established: %s", j)
			}
		}
		roundTrip(t, c, 200_000)
	})
}

// TestUserspaceRestart kills the daemon (SIGKILL: no clean-up) under live
// connections — an ndiffports one and two fullmesh ones — and starts it
// again with the same configuration in the same namespace, while new
// connections keep opening. While it was down one fullmesh connection lost
// a subflow. The new daemon rebuilds its state from the kernel: the
// connections that lost nothing keep the very same subflows (same
// four-tuples: nothing duplicated, nothing re-created), the one that lost
// a subflow gets it back, every connection opened around the start gets
// its subflows (whether the daemon saw it in its first listing or in the
// kernel's events), and the API shows every connection with its rule.
func TestUserspaceRestart(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, upmWatchdog)()
	const portNDiff, portMesh = 5002, 5005
	rules := fmt.Sprintf(`
[[userspace.rule]]
name = "ndiff"
side = "client"
remote_ports = [%d]
strategy = "ndiffports"
subflows = 3

[[userspace.rule]]
name = "mesh"
side = "client"
strategy = "fullmesh"
`, portNDiff)
	forEachFamily(t, func(t *testing.T, family int) {
		b, d := newUserspaceBed(t, 2, func(dir string) string { return userspaceConfig(dir, "", rules) })
		defer b.dumpOnFailure(t)
		b.crossRoutes(t)
		fixedEchoListener(t, b.srv, family, portNDiff)
		fixedEchoListener(t, b.srv, family, portMesh)
		a0, a1 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family)

		cN, lN, rN := b.dialData(t, family, portNDiff)
		cM, lM, rM := b.dialData(t, family, portMesh)
		cL, lL, rL := b.dialData(t, family, portMesh)
		b.waitSubflows(t, lN, "ndiffports", []string{pair(a0, rN), pair(a0, rN), pair(a0, rN)})
		b.waitSubflows(t, lM, "fullmesh", []string{pair(a0, rM), pair(a1, rM)})
		b.waitSubflows(t, lL, "fullmesh", []string{pair(a0, rL), pair(a1, rL)})
		tuplesN, tuplesM := subflowTuples(t, b.dc, lN), subflowTuples(t, b.dc, lM)

		conf, err := os.ReadFile(d.conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = d.wait() // killed: the error says so

		// While no daemon runs, one connection loses its subflow over
		// path 1 (as when an interface flaps): nothing brings it back.
		var lost diag.Subflow
		for _, s := range liveSubflows(t, b.dc, lL) {
			if s.Local.Addr().Unmap() == a1 {
				lost = s
			}
		}
		if err := newClient(t, b.h).DestroySubflow(tokenOf(t, b.dc, lL), lost.Local, lost.Remote); err != nil {
			t.Fatalf("destroying the subflow over path 1 while the daemon is down: %v", err)
		}
		b.waitSubflows(t, lL, "without the daemon", []string{pair(a0, rL)})
		roundTrip(t, cL, 100_000)

		// Connections keep coming while the daemon starts: each must be
		// managed, whether the daemon finds it in its first listing of
		// the connections or learns of it from the kernel's events.
		stopDialing := make(chan struct{})
		dialed := make(chan []net.Conn, 1)
		go func() {
			var conns []net.Conn
			defer func() { dialed <- conns }()
			for range 150 {
				select {
				case <-stopDialing:
					return
				case <-time.After(2 * time.Millisecond):
				}
				c, err := b.h.Dial(context.Background(), netip.AddrPortFrom(a0, 0), rM)
				if err != nil {
					continue // no connection to check
				}
				conns = append(conns, c)
				if exchange(c, 100) != nil {
					return
				}
			}
		}()

		// The same daemon, the same configuration, the same namespace.
		d2 := startAPIDaemon(t, d.cmd.Path, b.h, string(conf))
		time.Sleep(100 * time.Millisecond)
		close(stopDialing)
		during := <-dialed
		t.Cleanup(func() {
			for _, c := range during {
				_ = c.Close()
			}
		})
		if len(during) < 10 {
			t.Fatalf("only %d connections opened around the start", len(during))
		}
		for i, c := range during {
			l := unmapped(c.LocalAddr().(*net.TCPAddr).AddrPort())
			b.waitSubflows(t, l, fmt.Sprintf("connection %d of %d opened around the start (from %s)", i+1, len(during), l), []string{pair(a0, rM), pair(a1, rM)})
		}
		b.waitSubflows(t, lL, "after the restart, the lost subflow", []string{pair(a0, rL), pair(a1, rL)})
		for _, c := range []struct {
			what   string
			local  netip.AddrPort
			tuples []string
		}{{"ndiffports", lN, tuplesN}, {"fullmesh", lM, tuplesM}} {
			// Long enough for a duplicate asked for at the start to
			// establish (a join takes well under a millisecond here).
			for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if got := subflowTuples(t, b.dc, c.local); !slices.Equal(got, c.tuples) {
					t.Fatalf("%s after the restart: subflows %q, want the same %q as before", c.what, got, c.tuples)
				}
			}
		}
		wantPolicy(t, d2, lN, "ndiff", "ndiffports", 3)
		wantPolicy(t, d2, lM, "mesh", "fullmesh", 2)
		wantPolicy(t, d2, lL, "mesh", "fullmesh", 2)
		if n := strings.Count(d2.log.String(), "action=adopt-connection"); n < 3 {
			t.Errorf("the new daemon adopted %d connections, want at least the 3 that were there before it", n)
		}
		for _, c := range []net.Conn{cN, cM, cL} {
			roundTrip(t, c, 200_000)
		}
	})
}
