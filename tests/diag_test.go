package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestDiagConnections lists real MPTCP connections between two hosts
// joined by two paths: the in-kernel path manager joins a backup subflow
// from the client's second path. Both hosts must list the connection, with
// both subflows, their addresses, ports and IDs, byte counters covering
// what was sent, and the tokens related as the kernel shows them; plain TCP
// must not be listed, a connection that fell back must show it, and the
// listing must agree with ss(8).
func TestDiagConnections(t *testing.T) {
	t.Parallel()
	forEachFamily(t, testDiagConnections)
}

func testDiagConnections(t *testing.T, family int) {
	defer diagWatchdog(t, 2*time.Minute)()
	ctx := context.Background()
	bed := testbed.New(t)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	paths := bed.Paths(cli, srv, 2)
	gc, gs := newClient(t, cli), newClient(t, srv)
	for _, c := range []*genl.Client{gc, gs} {
		if err := c.SetLimits(genl.Limits{AddAddrAccepted: 2, Subflows: 2}); err != nil {
			t.Fatal(err)
		}
	}
	ep, err := gc.AddEndpoint(genl.Endpoint{Addr: paths[1].Addr(cli, family), Flags: genl.FlagSubflow | genl.FlagBackup})
	if err != nil {
		t.Fatalf("adding the client's subflow endpoint: %v", err)
	}
	dc, ds := newDiagClient(t, cli), newDiagClient(t, srv)

	// The MPTCP connection, 256 KiB echoed.
	const sent = 256 << 10
	_, port := echoListener(t, srv, family)
	server := netip.AddrPortFrom(paths[0].Addr(srv, family), port)
	conn, err := cli.Dial(ctx, netip.AddrPortFrom(paths[0].Addr(cli, family), 0), server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn, sent)
	local := diagUnmapped(conn.LocalAddr())

	// A plain TCP connection, and an MPTCP one to a plain TCP server (it
	// falls back), both to a plain listener.
	plainLn := diagListenPlain(t, srv, family)
	plainServer := netip.AddrPortFrom(paths[0].Addr(srv, family), uint16(plainLn.Addr().(*net.TCPAddr).Port))
	plain := diagDialFrom(t, cli, paths[0].Addr(cli, family), plainServer, false)
	fellBack := diagDialFrom(t, cli, paths[0].Addr(cli, family), plainServer, true)
	roundTrip(t, plain, 4<<10)
	roundTrip(t, fellBack, 4<<10)

	// Wait for the join to be fully established on both ends.
	var c, s diag.Connection
	if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		var ok1, ok2 bool
		c, ok1 = diagFindConn(t, dc, func(c diag.Connection) bool { return c.Local == local && c.Remote == server })
		s, ok2 = diagFindConn(t, ds, func(c diag.Connection) bool { return c.Remote == local })
		return ok1 && ok2 && len(c.Subflows) == 2 && c.Subflows[1].FullyEstablished &&
			len(s.Subflows) == 2 && s.Subflows[1].FullyEstablished, nil
	}); err != nil {
		t.Fatalf("waiting for the connection %s → %s with 2 subflows on both hosts: %v\nclient: %+v\nserver: %+v", local, server, err, c, s)
	}

	// The client's end.
	if c.Token == 0 || c.Fallback || c.State != diag.StateEstablished || c.Family != diag.Family(map[int]int{4: 2, 6: 10}[family]) {
		t.Errorf("client connection: token %08x, fallback %t, state %s, family %s", c.Token, c.Fallback, c.State, c.Family)
	}
	first, join := c.Subflows[0], c.Subflows[1]
	if first.Local != local || first.Remote != server || first.LocalID != 0 || first.RemoteID != 0 ||
		first.LocalToken != c.Token || first.BackupLocal || first.Flags&diag.SubflowMPCapableRemote == 0 {
		t.Errorf("client's initial subflow %+v, want %s → %s with IDs 0/0", first, local, server)
	}
	if join.Local.Addr() != ep.Addr || join.Local.Port() == 0 || join.Remote != server || join.LocalID != ep.ID ||
		join.RemoteID != 0 || !join.BackupLocal || join.Flags&diag.SubflowJoinLocal == 0 || join.LocalToken != c.Token {
		t.Errorf("client's join subflow %+v, want from endpoint %v to %s, backup", join, ep, server)
	}
	if c.Info.BytesSent < sent || c.Info.BytesAcked < sent || c.Info.BytesReceived < sent ||
		first.BytesSent+join.BytesSent < sent || first.BytesReceived+join.BytesReceived < sent {
		t.Errorf("client counters: MPTCP sent %d acked %d received %d, subflows sent %d+%d received %d+%d; want ≥ %d",
			c.Info.BytesSent, c.Info.BytesAcked, c.Info.BytesReceived, first.BytesSent, join.BytesSent,
			first.BytesReceived, join.BytesReceived, sent)
	}
	if c.Info.ExtraSubflows != 1 || c.Info.LimitExtraSubflows != 2 || c.Info.EndpSubflowMax != 1 {
		t.Errorf("client info: %d extra subflows (limit %d), %d subflow endpoints; want 1 (2), 1",
			c.Info.ExtraSubflows, c.Info.LimitExtraSubflows, c.Info.EndpSubflowMax)
	}

	// The server's end: the mirror image.
	if s.Local != server || s.Token == 0 || s.Token == c.Token || s.Info.BytesReceived < sent || s.Info.BytesSent < sent {
		t.Errorf("server connection %s → %s token %08x: received %d sent %d", s.Local, s.Remote, s.Token,
			s.Info.BytesReceived, s.Info.BytesSent)
	}
	sfirst, sjoin := s.Subflows[0], s.Subflows[1]
	if sfirst.Local != server || sfirst.Remote != local || sjoin.Local != server || sjoin.Remote != join.Local ||
		sjoin.LocalID != 0 || sjoin.RemoteID != ep.ID || !sjoin.BackupRemote || sjoin.BackupLocal ||
		sjoin.Flags&diag.SubflowJoinRemote == 0 || sjoin.LocalToken != s.Token {
		t.Errorf("server subflows %+v, %+v; want the mirror of the client's", sfirst, sjoin)
	}
	for _, sf := range slices.Concat(c.Subflows, s.Subflows) {
		if sf.RTT <= 0 || sf.State != diag.StateEstablished {
			t.Errorf("subflow %s → %s: RTT %v, state %s", sf.Local, sf.Remote, sf.RTT, sf.State)
		}
	}

	// Tokens: each end's listing gives its own token. The peer's token
	// shows only on a subflow this end opened with MP_JOIN (it sent it in
	// the SYN): the client's join carries the server's token, the server
	// shows no client token anywhere.
	if c.RemoteToken != s.Token || join.RemoteToken != s.Token || first.RemoteToken != 0 {
		t.Errorf("client's view of the server's token: connection %08x, join %08x, initial %08x; the server's token is %08x",
			c.RemoteToken, join.RemoteToken, first.RemoteToken, s.Token)
	}
	if s.RemoteToken != 0 || sfirst.RemoteToken != 0 || sjoin.RemoteToken != 0 {
		t.Errorf("the server shows a remote token: %08x %08x %08x", s.RemoteToken, sfirst.RemoteToken, sjoin.RemoteToken)
	}

	// Connection by token, and an unknown token.
	got, err := dc.Connection(ctx, c.Token)
	if err != nil || got.Local != local || got.Token != c.Token || len(got.Subflows) != 2 {
		t.Errorf("Connection(%08x) = %+v, %v", c.Token, got, err)
	}
	unknown := c.Token ^ s.Token ^ 0x00c0ffee
	if _, err := dc.Connection(ctx, unknown); !errors.Is(err, diag.ErrNotFound) {
		t.Errorf("Connection(%08x) = %v, want ErrNotFound", unknown, err)
	}

	// The fallback and the plain TCP connection.
	all, err := dc.Connections(ctx, diag.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	fbLocal, plainLocal := diagUnmapped(fellBack.LocalAddr()), diagUnmapped(plain.LocalAddr())
	fb, ok := diagFindIn(all, func(c diag.Connection) bool { return c.Local == fbLocal })
	if !ok || !fb.Fallback || len(fb.Subflows) != 1 || fb.Remote != plainServer ||
		fb.Subflows[0].Flags&diag.SubflowMPCapableRemote != 0 || fb.Subflows[0].BytesAcked < 4<<10 {
		t.Errorf("connection that fell back: found %t, %+v", ok, fb)
	}
	if len(all) != 2 {
		t.Errorf("the client lists %d connections, want 2 (MPTCP and fallback): %+v", len(all), all)
	}
	for _, cn := range all {
		for _, sf := range cn.Subflows {
			if cn.Local == plainLocal || sf.Local == plainLocal {
				t.Errorf("the plain TCP connection from %s is listed: %+v", plainLocal, cn)
			}
		}
	}
	if srvAll, err := ds.Connections(ctx, diag.Filter{}); err != nil || len(srvAll) != 1 {
		t.Errorf("the server lists %d connections (%v), want only the MPTCP one", len(srvAll), err)
	}

	// Cross-check with ss: the same connections and tokens.
	for _, h := range []struct {
		host *testbed.Host
		c    *diag.Client
	}{{cli, dc}, {srv, ds}} {
		conns, err := h.c.Connections(ctx, diag.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, cn := range conns {
			ours = append(ours, fmt.Sprintf("%s %s %x", cn.Local, cn.Remote, cn.Token))
		}
		theirs := diagSSMPTCP(t, h.host)
		slices.Sort(ours)
		slices.Sort(theirs)
		if !slices.Equal(ours, theirs) {
			t.Errorf("host %s: we list\n%s\nss -Mni lists\n%s", h.host.Name, strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
		}
	}
}

// newDiagClient opens a diag client in the host's namespace, closed at the
// end of the test.
func newDiagClient(tb testing.TB, h *testbed.Host) *diag.Client {
	tb.Helper()
	c, err := diag.New(diag.WithNetNS(h.FD()))
	if err != nil {
		tb.Fatalf("diag.New in host %s: %v", h.Name, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func diagFindConn(t *testing.T, c *diag.Client, match func(diag.Connection) bool) (diag.Connection, bool) {
	t.Helper()
	conns, err := c.Connections(context.Background(), diag.Filter{})
	if err != nil {
		t.Fatalf("listing connections: %v", err)
	}
	return diagFindIn(conns, match)
}

func diagFindIn(conns []diag.Connection, match func(diag.Connection) bool) (diag.Connection, bool) {
	if i := slices.IndexFunc(conns, match); i >= 0 {
		return conns[i], true
	}
	return diag.Connection{}, false
}

func diagUnmapped(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// diagListenPlain opens a plain TCP echo server on the host's wildcard address.
// MPTCP is turned off explicitly: since Go 1.24, listeners use MPTCP by
// default (GODEBUG multipathtcp).
func diagListenPlain(t *testing.T, h *testbed.Host, family int) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), map[int]string{4: "tcp4", 6: "tcp6"}[family],
			map[int]string{4: "0.0.0.0:0", 6: "[::]:0"}[family])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	echoServer(t, ln)
	return ln
}

// diagDialFrom connects from the host's laddr to raddr, with MPTCP if asked
// (falling back silently if the server does not speak it).
func diagDialFrom(t *testing.T, h *testbed.Host, laddr netip.Addr, raddr netip.AddrPort, mptcp bool) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(laddr, 0))}
	d.SetMultipathTCP(mptcp)
	var c net.Conn
	if err := h.Do(func() (err error) {
		c, err = d.Dial("tcp", raddr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// diagSSMPTCP runs `ss -Mni` in the host and returns "local remote token" of
// each MPTCP socket.
func diagSSMPTCP(t *testing.T, h *testbed.Host) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "ss", "-Mni").Output()
	if err != nil {
		t.Fatalf("ss -Mni in host %s: %v", h.Name, err)
	}
	var socks []string
	var head string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || f[0] == "State":
		case line[0] != ' ' && line[0] != '\t':
			if len(f) < 5 {
				t.Fatalf("ss: %q", line)
			}
			head = diagSSAddr(t, f[3]).String() + " " + diagSSAddr(t, f[4]).String()
		default:
			for _, w := range f {
				if tok, ok := strings.CutPrefix(w, "token:"); ok {
					socks = append(socks, head+" "+tok)
				}
			}
		}
	}
	return socks
}

// diagSSAddr parses an address as ss prints it ("[::ffff:192.0.2.1]:5201",
// "198.51.100.1%eth1:40000").
func diagSSAddr(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	i := strings.LastIndexByte(s, ':')
	host, portText := s[:max(i, 0)], s[i+1:]
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	port, perr := strconv.ParseUint(portText, 10, 16)
	if err != nil || perr != nil {
		t.Fatalf("ss address %q: %v %v", s, err, perr)
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
}

// diagWatchdog makes a hung test fail with the stacks of all goroutines
// instead of eating CI's timeout; call the returned function when done.
func diagWatchdog(tb testing.TB, d time.Duration) (stop func()) {
	timer := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s: watchdog: still running after %s\n%s\n", tb.Name(), d, buf)
		panic(fmt.Sprintf("%s: watchdog expired after %s", tb.Name(), d))
	})
	return func() { timer.Stop() }
}

// BenchmarkDiagConnections lists 1,000 live MPTCP connections of two
// subflows each, among 1,000 plain TCP connections, in the client's
// namespace. Each iteration also times, in the same run, a bare dump of the
// same sockets: the same requests on a raw NETLINK_SOCK_DIAG socket,
// received into one buffer and not decoded. The "ss" sub-benchmark runs
// `ss -Mti` in the namespace for comparison.
//
// DIAG_BENCH_CONNS sets another number of connections (e.g. 10000; the
// benchmark raises RLIMIT_NOFILE as needed).
func BenchmarkDiagConnections(b *testing.B) {
	n := 1000
	if v := os.Getenv("DIAG_BENCH_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 30000 {
			b.Fatalf("DIAG_BENCH_CONNS=%q: want 1..30000", v)
		}
	}
	defer diagWatchdog(b, 10*time.Minute)()
	raiseNoFile(b, uint64(4*n+256))
	bed := testbed.New(b)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	paths := bed.Paths(cli, srv, 2)
	for _, h := range []*testbed.Host{cli, srv} {
		g, err := genl.New(genl.WithNetNS(h.FD()))
		if err != nil {
			b.Fatal(err)
		}
		if err := g.SetLimits(genl.Limits{AddAddrAccepted: 2, Subflows: 2}); err != nil {
			b.Fatal(err)
		}
		if h == cli {
			if _, err := g.AddEndpoint(genl.Endpoint{Addr: paths[1].Addr4(cli), Flags: genl.FlagSubflow}); err != nil {
				b.Fatal(err)
			}
		}
		_ = g.Close()
	}

	// The servers keep every accepted connection open.
	var (
		mu       sync.Mutex
		accepted []net.Conn
	)
	serve := func(mptcp bool) netip.AddrPort {
		var lc net.ListenConfig
		lc.SetMultipathTCP(mptcp)
		var ln net.Listener
		if err := srv.Do(func() (err error) {
			ln, err = lc.Listen(context.Background(), "tcp4", "0.0.0.0:0")
			return err
		}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				accepted = append(accepted, c)
				mu.Unlock()
			}
		}()
		return netip.AddrPortFrom(paths[0].Addr4(srv), uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	mptcpServer, plainServer := serve(true), serve(false)
	b.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			_ = c.Close()
		}
	})

	var conns []net.Conn
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	if err := cli.Do(func() error {
		for i := range 2 * n {
			d := net.Dialer{Timeout: 5 * time.Second}
			to := plainServer
			if i%2 == 0 {
				d.SetMultipathTCP(true)
				to = mptcpServer
			}
			c, err := d.Dial("tcp4", to.String())
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}

	dc := newDiagClient(b, cli)
	ctx := context.Background()
	var listing []diag.Connection
	if err := testbed.WaitFor(60*time.Second, func() (bool, error) {
		var err error
		listing, err = dc.Connections(ctx, diag.Filter{})
		joined := 0
		for _, c := range listing {
			if len(c.Subflows) == 2 {
				joined++
			}
		}
		return joined == n, err
	}); err != nil {
		b.Fatalf("waiting for %d connections with 2 subflows: %v (%d listed)", n, err, len(listing))
	}

	bare := newDiagBareDump(b, cli)
	b.Run("diag", func(b *testing.B) {
		var diagTime, bareTime time.Duration
		var bytes int
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			conns, err := dc.Connections(ctx, diag.Filter{})
			t1 := time.Now()
			if err != nil || len(conns) != n {
				b.Fatalf("%d connections, %v", len(conns), err)
			}
			bytes = bare.run(b)
			bareTime += time.Since(t1)
			diagTime += t1.Sub(t0)
		}
		b.ReportMetric(float64(diagTime.Nanoseconds())/float64(b.N), "diag-ns/op")
		b.ReportMetric(float64(diagTime.Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
		b.ReportMetric(float64(bareTime.Nanoseconds())/float64(b.N), "bare-ns/op")
		b.ReportMetric(float64(diagTime)/float64(bareTime), "diag/bare")
		b.ReportMetric(float64(bytes), "dump-bytes")
	})
	b.Run("ss", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command("ip", "netns", "exec", cli.NS, "ss", "-Mti").Output()
			if err != nil || strings.Count(string(out), "tcp-ulp-mptcp") < 2*n {
				b.Fatalf("ss -Mti: %v, %d subflows shown", err, strings.Count(string(out), "tcp-ulp-mptcp"))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
	})
}

// raiseNoFile raises the soft limit of open files to at least n (Go
// already raises it to the hard limit at start; root may raise both).
func raiseNoFile(tb testing.TB, n uint64) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatalf("raising RLIMIT_NOFILE to %d: %v", n, err)
	}
}

// diagBareDump sends the requests a listing of IPv4 connections sends (MPTCP
// sockets of both families, IPv4 TCP sockets), on a raw NETLINK_SOCK_DIAG
// socket in the host's namespace, and reads the replies into one buffer
// without decoding them: the kernel's and the syscalls' share of a listing.
type diagBareDump struct {
	fd   int
	buf  []byte
	reqs [][]byte
}

func newDiagBareDump(b *testing.B, h *testbed.Host) *diagBareDump {
	d := &diagBareDump{buf: make([]byte, 64<<10)}
	if err := h.Do(func() (err error) {
		d.fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = unix.Close(d.fd) })
	if err := unix.Bind(d.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		b.Fatal(err)
	}
	// The states diag asks for: all but LISTEN for MPTCP; for TCP, the
	// states of full sockets with MPTCP subflow details. x/sys/unix has
	// no INET_DIAG_* values: INET_DIAG_INFO is 2, INET_DIAG_REQ_PROTOCOL 3.
	const (
		mptcpStates    = (1<<14 - 2) &^ (1 << 10)
		tcpStates      = 1<<1 | 1<<2 | 1<<4 | 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<11
		inetDiagInfo   = 2
		inetDiagReqPro = 3
	)
	for _, r := range []struct {
		family uint8
		proto  uint32
		states uint32
	}{{unix.AF_INET, unix.IPPROTO_MPTCP, mptcpStates}, {unix.AF_INET6, unix.IPPROTO_MPTCP, mptcpStates},
		{unix.AF_INET, unix.IPPROTO_TCP, tcpStates}} {
		msg := make([]byte, 16+56)
		msg[16], msg[17], msg[18] = r.family, unix.IPPROTO_TCP, 1<<(inetDiagInfo-1)
		binary.NativeEndian.PutUint32(msg[20:], r.states)
		if r.proto != unix.IPPROTO_TCP {
			msg = binary.NativeEndian.AppendUint16(msg, 8)
			msg = binary.NativeEndian.AppendUint16(msg, inetDiagReqPro)
			msg = binary.NativeEndian.AppendUint32(msg, r.proto)
		}
		binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
		binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
		binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		d.reqs = append(d.reqs, msg)
	}
	return d
}

// run does the dumps and returns the bytes received.
func (d *diagBareDump) run(b *testing.B) int {
	total := 0
	for _, req := range d.reqs {
		if _, err := unix.Write(d.fd, req); err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			n, err := unix.Read(d.fd, d.buf)
			if err != nil {
				b.Fatal(err)
			}
			total += n
			for m := d.buf[:n]; len(m) >= 16; {
				l := int(binary.NativeEndian.Uint32(m))
				if typ := binary.NativeEndian.Uint16(m[4:]); typ == unix.NLMSG_DONE || typ == unix.NLMSG_ERROR {
					done = true
				}
				if l < 16 || (l+3)&^3 > len(m) {
					break
				}
				m = m[(l+3)&^3:]
			}
		}
	}
	return total
}
