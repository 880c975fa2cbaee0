package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/tests/load"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// fallbackBed is the topology of the fallback-datapath benchmarks and
// integration tests:
//
//	cli ══ paths[0..n-1] (shaped veth pairs) ══ conv ── srvPath (unshaped) ── srv
//
// cli is the client, conv the converter's host, srv the destination. cli
// has no route to srv: traffic for srv goes through a converter on conv or
// not at all. The baselines run cli → conv directly over the shaped paths
// with the receiver on conv; MPX runs cli → converter on conv → receiver
// on srv. The shaped paths are the bottleneck either way (srvPath is an
// unshaped veth, far faster).
//
// For kernel MPTCP the bed sets `ip mptcp limits` on cli and conv, and on
// cli one subflow endpoint per extra path, bound to that path's interface,
// with routes over every path to conv's address on every other path
// (metric 1000+i), so that a subflow bound to path i reaches the address
// the connection was opened to. Plain TCP ignores all of it.
type fallbackBed struct {
	tb             testing.TB
	cli, conv, srv *testbed.Host
	// paths join cli (the A end) and conv (the B end); srvPath joins
	// conv (A) and srv (B).
	paths   []testbed.Path
	srvPath testbed.Path
	// rates are the current shaping of paths (tc syntax, "" unshaped).
	rates []string

	// mpx is the fallback datapath, nil until it exists: see startMPX.
	mpx *mpxHook

	// bin, dir and key are what the mptcpd processes of the bed use: the
	// binary, a directory for their files and the client's pre-shared
	// key (hex).
	bin, dir, key string
	// bed is the test bed the hosts belong to, for more hosts and paths.
	bed *testbed.Bed
}

// fbConvPort is the converter's port in the beds.
const fbConvPort = 7445

// fbConn is a stream whose write side closes alone, as the transports
// return it: the method set of relay.HalfCloser, so that any such stream
// plugs in. When it also has SetReadDeadline and SetWriteDeadline, as a
// net.Conn does, a transfer stuck in it ends with the benchmark's
// context; otherwise only the watchdog ends it.
type fbConn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// mpxHook is where the fallback datapath (MPX) plugs into the benchmarks.
// startMPX returns it; while that returns nil, every MPX row is skipped.
type mpxHook struct {
	// dial opens one stream from inside cli's namespace (bed.cli.Do),
	// through the converter on conv, to target, an address on srv, and
	// returns it once it is ready for data. Required.
	dial func(ctx context.Context, target netip.AddrPort) (fbConn, error)
	// socks5 is the SOCKS5 ingress (an address in cli) of an MPX client
	// that runs as its own process in cli — the mptcpd binary the test
	// builds (buildDaemon) — and procs are the processes whose CPU time
	// BenchmarkFallbackCPU charges to MPX: that client and the converter
	// (in conv), each run with Host.Start. BenchmarkFallbackCPU skips its
	// MPX row while socks5 is not valid.
	socks5 netip.AddrPort
	procs  []mpxProc
}

// mpxProc is a process of the MPX datapath, by role ("client",
// "converter").
type mpxProc struct {
	role string
	pid  int
}

// startMPX starts the fallback datapath on the bed and returns how to use
// it, or nil while there is none.
//
// MPX HOOK: this is the one place to plug MPX in. Start the converter on
// bed.conv (listening on its addresses of bed.paths, B ends) and, for
// BenchmarkFallbackCPU, the client as a process in bed.cli with a SOCKS5
// ingress; give the client one subflow per path, bound to bed.paths[i].AIf
// / A4; stop everything with bed.tb.Cleanup. Then return an mpxHook whose
// dial opens a stream to a target on bed.srv.
func (bed *fallbackBed) startMPX() *mpxHook {
	bed.tb.Helper()
	// The converter's mptcpd must leave conv's kernel endpoints and
	// limits as the kernel baseline has them.
	n := max(len(bed.paths), 2)
	conv := bed.startConverter(fmt.Sprintf("[limits]\nsubflows = %d\nadd_addr_accepted = %d\n[[rule]]\nname = \"none\"\ninterfaces = [\"none\"]\nflags = [\"subflow\"]\n", n, n), "")
	client := bed.startClient("fallback", "", "")
	socks := netip.MustParseAddrPort("127.0.0.1:1080")
	return &mpxHook{
		dial: func(ctx context.Context, target netip.AddrPort) (fbConn, error) {
			var c net.Conn
			err := bed.cli.Do(func() error {
				var err error
				c, err = load.DialSOCKS5(ctx, &net.Dialer{}, socks.String(), target.String(), nil)
				return err
			})
			if err != nil {
				return nil, err
			}
			return c.(*net.TCPConn), nil
		},
		socks5: socks,
		procs:  []mpxProc{{"client", client.cmd.Process.Pid}, {"converter", conv.cmd.Process.Pid}},
	}
}

// startConverter runs mptcpd on conv in kernel mode with the converter
// role, listening on every address, allowing only srv's network as
// destination; policy replaces its [[rule]] tables ("": every path a
// signal endpoint) and extra is appended to its [converter] table.
func (bed *fallbackBed) startConverter(policy, extra string) *daemonProc {
	bed.tb.Helper()
	if policy == "" {
		policy = "[[rule]]\nname = \"paths\"\ninterfaces = [\"p*\"]\nflags = [\"signal\"]\n"
	}
	keys := bed.write("converter.keys", "# test clients\ncli "+bed.key+"\n")
	conf := bed.write("conv.toml", fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
[api]
socket = %q
%s
[converter]
enabled = true
listen = ["0.0.0.0:%d"]
keys_file = %q
allow_prefixes = ["%s"]
%s
`, filepath.Join(bed.dir, "conv-state"), filepath.Join(bed.dir, "conv.sock"), policy, fbConvPort, keys,
		netip.PrefixFrom(bed.srvPath.B4, 28).Masked(), extra))
	d := startDaemon(bed.tb, bed.bin, "--config", conf, "--netns", bed.conv.NS)
	d.waitState("READY=1")
	return d
}

// startClient runs mptcpd on cli in mode, with the converter at path 0's
// address and a SOCKS5 server on 127.0.0.1:1080; rules are its [[rule]]
// tables ("": every path a subflow endpoint), extra goes into [fallback].
func (bed *fallbackBed) startClient(mode, rules, extra string) *daemonProc {
	bed.tb.Helper()
	key := bed.write("cli.key", bed.key+"\n")
	if rules == "" {
		rules = "[[rule]]\nname = \"paths\"\ninterfaces = [\"p*\"]\nflags = [\"subflow\"]\n"
	}
	conf := bed.write("cli.toml", fmt.Sprintf(`mode = %q
state_dir = %q
[log]
level = "debug"
[api]
socket = %q
[addresses]
ipv6 = false
%s
[fallback]
converter = "%s:%d"
key_id = "cli"
key_file = %q
socks_listen = "127.0.0.1:1080"
%s
`, mode, filepath.Join(bed.dir, "cli-state"), filepath.Join(bed.dir, "cli.sock"), rules, bed.paths[0].B4, fbConvPort, key, extra))
	d := startDaemon(bed.tb, bed.bin, "--config", conf, "--netns", bed.cli.NS)
	d.waitState("READY=1")
	return d
}

func (bed *fallbackBed) write(name, text string) string {
	bed.tb.Helper()
	p := filepath.Join(bed.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		bed.tb.Fatal(err)
	}
	return p
}

// newFallbackDaemonsBed is a bed without MPX started, whose cli has kernel
// MPTCP disabled (net.mptcp.enabled = 0), for tests that start mptcpd
// themselves with startConverter and startClient.
func newFallbackDaemonsBed(tb testing.TB, paths int) *fallbackBed {
	tb.Helper()
	bed := buildFallbackBed(tb, paths, make([]string, paths))
	if err := bed.cli.WriteSysctl("net/mptcp/enabled", "0"); err != nil {
		tb.Fatal(err)
	}
	return bed
}

// newFallbackBed builds the bed with paths shaped to rates (one per path,
// "" for unshaped).
func newFallbackBed(tb testing.TB, paths int, rates []string) *fallbackBed {
	tb.Helper()
	bed := buildFallbackBed(tb, paths, rates)
	bed.mpx = bed.startMPX()
	return bed
}

// buildFallbackBed is newFallbackBed without MPX.
func buildFallbackBed(tb testing.TB, paths int, rates []string) *fallbackBed {
	tb.Helper()
	if paths < 1 || len(rates) != paths {
		tb.Fatalf("newFallbackBed: %d paths with %d rates", paths, len(rates))
	}
	tbed := testbed.New(tb)
	bed := &fallbackBed{tb: tb, cli: tbed.Host("cli"), conv: tbed.Host("conv"), srv: tbed.Host("srv"), bed: tbed}
	bed.paths = tbed.Paths(bed.cli, bed.conv, paths)
	bed.srvPath = tbed.Connect(bed.conv, bed.srv)
	bed.rates = make([]string, paths)
	bed.shape(rates...)

	limits := strconv.Itoa(max(paths, 2))
	for _, h := range []*testbed.Host{bed.cli, bed.conv} {
		h.MustIP("mptcp", "limits", "set", "subflows", limits, "add_addr_accepted", limits)
	}
	for _, p := range bed.paths[1:] {
		bed.cli.MustIP("mptcp", "endpoint", "add", p.A4.String(), "dev", p.AIf, "subflow")
	}
	bed.crossRoutes()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	bed.bin, bed.dir, bed.key = buildDaemon(tb), tb.TempDir(), hex.EncodeToString(k)
	return bed
}

// shape shapes path i to rates[i] ("" for unshaped).
func (bed *fallbackBed) shape(rates ...string) {
	bed.tb.Helper()
	for i, r := range rates {
		var err error
		if r == "" {
			err = bed.paths[i].Unshape()
		} else {
			err = bed.paths[i].Shape(r)
		}
		if err != nil {
			bed.tb.Fatal(err)
		}
		bed.rates[i] = r
	}
}

// rate returns path i's rate in bits per second (0 when unshaped).
func (bed *fallbackBed) rate(i int) float64 {
	if bed.rates[i] == "" {
		return 0
	}
	r, err := load.ParseRate(bed.rates[i])
	if err != nil {
		bed.tb.Fatal(err)
	}
	return r
}

// sumRate is the paths' summed rate in bits per second.
func (bed *fallbackBed) sumRate() float64 {
	var s float64
	for i := range bed.paths {
		s += bed.rate(i)
	}
	return s
}

// crossRoutes gives cli a route over each path to conv's address on
// every other path (again after a cut, which deletes them).
func (bed *fallbackBed) crossRoutes() {
	bed.tb.Helper()
	for i, pi := range bed.paths {
		for j, pj := range bed.paths {
			if i != j {
				bed.cli.MustIP("route", "replace", netip.PrefixFrom(pj.B4, 28).Masked().String(),
					"via", pi.B4.String(), "dev", pi.AIf, "metric", strconv.Itoa(1000+i))
			}
		}
	}
}

// fbFailure is a way a path fails.
type fbFailure string

const (
	fbLinkDown  fbFailure = "linkdown"  // the link goes down at cli's end
	fbBlackhole fbFailure = "blackhole" // the path silently drops everything
)

// fail makes path i fail.
func (bed *fallbackBed) fail(i int, how fbFailure) error {
	if how == fbLinkDown {
		return bed.paths[i].Cut()
	}
	return bed.paths[i].Blackhole()
}

// repair undoes fail and puts back the routes a cut deleted.
func (bed *fallbackBed) repair(i int, how fbFailure) {
	bed.tb.Helper()
	var err error
	if how == fbLinkDown {
		err = bed.paths[i].Restore()
	} else {
		err = bed.paths[i].Unblackhole()
	}
	if err != nil {
		bed.tb.Fatal(err)
	}
	bed.crossRoutes()
}

// fbTransport is one way of carrying a stream from cli to a receiver.
type fbTransport struct {
	name string
	// dial opens a stream from cli to target.
	dial func(ctx context.Context, bed *fallbackBed, target netip.AddrPort) (fbConn, error)
	// far returns the host and address of the far end.
	far func(bed *fallbackBed) (*testbed.Host, netip.Addr)
	// joins says that every stream must have had a subflow joined over
	// every extra path (kernel MPTCP).
	joins bool
}

// fbToConv is the far end of the baselines: conv, on path 0.
func fbToConv(bed *fallbackBed) (*testbed.Host, netip.Addr) { return bed.conv, bed.paths[0].B4 }

// fbPlainTCP is one TCP connection over path 0.
func fbPlainTCP() fbTransport {
	return fbTransport{name: "plain", far: fbToConv,
		dial: func(ctx context.Context, bed *fallbackBed, target netip.AddrPort) (fbConn, error) {
			return fbDialPath0(ctx, bed, target, false)
		}}
}

// fbKernelMPTCP is one MPTCP connection opened over path 0, with a subflow
// joined over each other path by cli's in-kernel path manager.
func fbKernelMPTCP() fbTransport {
	return fbTransport{name: "kernel", far: fbToConv, joins: true,
		dial: func(ctx context.Context, bed *fallbackBed, target netip.AddrPort) (fbConn, error) {
			return fbDialPath0(ctx, bed, target, true)
		}}
}

// fbMPX is the fallback datapath, through the converter on conv
// to a receiver on srv.
func fbMPX() fbTransport {
	return fbTransport{name: "mpx",
		far: func(bed *fallbackBed) (*testbed.Host, netip.Addr) { return bed.srv, bed.srvPath.B4 },
		dial: func(ctx context.Context, bed *fallbackBed, target netip.AddrPort) (fbConn, error) {
			if bed.mpx == nil {
				return nil, errFBNoMPX
			}
			return bed.mpx.dial(ctx, target)
		}}
}

var errFBNoMPX = errors.New("no MPX datapath yet (fallbackBed.startMPX returns nil)")

// fbDialPath0 connects from cli's path-0 address to target, bound to path
// 0's interface so that the connection (for MPTCP, its first subflow)
// stays on path 0 even when another route would do.
func fbDialPath0(ctx context.Context, bed *fallbackBed, target netip.AddrPort, mptcp bool) (fbConn, error) {
	p := bed.paths[0]
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.A4, 0)),
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, p.AIf)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("binding to %s: %w", p.AIf, serr)
			}
			return nil
		}}
	d.SetMultipathTCP(mptcp)
	var c net.Conn
	err := bed.cli.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", target.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connecting from cli to %s: %w", target, err)
	}
	tc := c.(*net.TCPConn)
	if ok, err := tc.MultipathTCP(); err != nil || ok != mptcp {
		_ = tc.Close()
		return nil, fmt.Errorf("connection to %s: MPTCP is %v (%v), want %v", target, ok, err, mptcp)
	}
	return tc, nil
}

// fbDirection is which way the records flow.
type fbDirection string

const (
	fbUpload   fbDirection = "up"   // cli sends
	fbDownload fbDirection = "down" // the far end sends
)

// fbFlow is one measured transfer.
type fbFlow struct {
	dir     fbDirection
	records int64
	// failAfter, when positive, makes path failPath fail that long after
	// the connection is opened, by failHow.
	failAfter time.Duration
	failPath  int
	failHow   fbFailure
}

// fbResult is what an fbFlow measured.
type fbResult struct {
	sent load.SendStats
	recv load.RecvStats
	// failedAt is when the failure began.
	failedAt time.Time
}

// lost is how many bytes were sent and not received.
func (r fbResult) lost() int64 { return r.sent.Bytes - r.recv.Bytes }

// fbMeasure runs f over tr: it opens a receiver (or, for a download, a
// sender) on the far end, connects from cli, transfers, and checks that
// every byte arrived intact and, for kernel MPTCP, that the subflows
// joined. It fails the test or benchmark on any error.
func fbMeasure(b testing.TB, bed *fallbackBed, tr fbTransport, f fbFlow) fbResult {
	b.Helper()
	size := int64(load.DefaultSize)
	expected := time.Duration(float64(f.records*size*8) / max(bed.sumRate(), 1e8) * float64(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 3*expected+f.failAfter+30*time.Second)
	defer cancel()

	farHost, farAddr := tr.far(bed)
	ln, err := farHost.Listen("tcp4", netip.AddrPortFrom(farAddr, 0).String())
	if err != nil {
		b.Fatalf("listening on %s: %v", farHost.Name, err)
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	type farEnd struct {
		sent load.SendStats
		recv load.RecvStats
		err  error
	}
	farc := make(chan farEnd, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			farc <- farEnd{err: fmt.Errorf("accepting on %s: %w", farHost.Name, err)}
			return
		}
		defer c.Close()
		var r farEnd
		if f.dir == fbUpload {
			r.recv, r.err = load.Receive(ctx, c, load.RecvConfig{Records: f.records})
		} else {
			r.sent, r.err = load.Send(ctx, c, load.SendConfig{Records: f.records})
			if r.err == nil {
				// Close only once the client has read everything.
				_, _ = io.Copy(io.Discard, c)
			}
		}
		farc <- r
	}()

	var joinsBefore uint64
	if tr.joins {
		if joinsBefore, err = bed.conv.Counter("MPTcpExtMPJoinAckRx"); err != nil {
			b.Fatal(err)
		}
	}
	c, err := tr.dial(ctx, bed, ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		b.Fatalf("%s: %v", tr.name, err)
	}
	defer c.Close()

	var res fbResult
	failed := make(chan error, 1)
	if f.failAfter > 0 {
		go func() {
			select {
			case <-time.After(f.failAfter):
			case <-ctx.Done():
				failed <- ctx.Err()
				return
			}
			// The failure begins with the command that causes it;
			// fail returns later, once it has been seen to take
			// effect (for a link, up to a second later).
			res.failedAt = time.Now()
			failed <- bed.fail(f.failPath, f.failHow)
		}()
	} else {
		failed <- nil
	}

	var nearErr error
	if f.dir == fbUpload {
		res.sent, nearErr = load.Send(ctx, c, load.SendConfig{Records: f.records})
	} else {
		res.recv, nearErr = load.Receive(ctx, c, load.RecvConfig{Records: f.records})
		_ = c.CloseWrite()
	}
	var far farEnd
	select {
	case far = <-farc:
	case <-ctx.Done():
		b.Fatalf("%s %s: the far end did not finish: %v", tr.name, f.dir, context.Cause(ctx))
	}
	if f.dir == fbUpload {
		res.recv = far.recv
	} else {
		res.sent = far.sent
	}
	if err := <-failed; err != nil {
		b.Fatalf("failing path %d: %v", f.failPath, err)
	}
	if f.failAfter > 0 {
		defer bed.repair(f.failPath, f.failHow)
	}
	if nearErr != nil || far.err != nil {
		b.Fatalf("%s %s: near end: %v; far end: %v", tr.name, f.dir, nearErr, far.err)
	}
	if res.sent.SHA256 != res.recv.SHA256 || res.lost() != 0 {
		b.Errorf("%s %s: %d bytes sent, %d received; SHA-256 equal: %v", tr.name, f.dir, res.sent.Bytes, res.recv.Bytes, res.sent.SHA256 == res.recv.SHA256)
	}
	if f.failAfter > 0 && (res.failedAt.IsZero() || !res.failedAt.Before(res.recv.End)) {
		b.Fatalf("%s %s: the transfer ended before path %d failed; send more", tr.name, f.dir, f.failPath)
	}
	if tr.joins {
		after, err := bed.conv.Counter("MPTcpExtMPJoinAckRx")
		if err != nil {
			b.Fatal(err)
		}
		if want := uint64(len(bed.paths) - 1); after-joinsBefore < want {
			b.Fatalf("%s: %d subflows joined, want %d: the connection did not use every path; %s", tr.name, after-joinsBefore, want, bed.joinDiag())
		}
	}
	return res
}

// joinDiag describes the MP_JOIN counters of cli and conv and cli's
// endpoints, for a failure message.
func (bed *fallbackBed) joinDiag() string {
	var b strings.Builder
	for _, c := range []struct {
		h    *testbed.Host
		name string
	}{{bed.cli, "MPTcpExtMPJoinSynTx"}, {bed.cli, "MPTcpExtMPJoinSynAckRx"}, {bed.cli, "MPTcpExtMPJoinSynTxCreatSkErr"},
		{bed.cli, "MPTcpExtMPJoinSynTxBindErr"}, {bed.cli, "MPTcpExtMPJoinSynTxConnectErr"},
		{bed.conv, "MPTcpExtMPJoinSynRx"}, {bed.conv, "MPTcpExtMPJoinAckRx"}, {bed.conv, "MPTcpExtMPJoinAckHMacFailure"}} {
		v, err := c.h.Counter(c.name)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s %s=%d; ", c.h.Name, c.name, v)
	}
	eps, err := bed.cli.IP("mptcp", "endpoint", "show")
	fmt.Fprintf(&b, "cli endpoints: %q %v", eps, err)
	return b.String()
}

// TestFallbackBed checks the bed the fallback benchmarks and tests stand
// on: cli reaches conv over every path and srv not at all (only through a
// converter), plain TCP carries intact data both ways over path 0, and
// kernel MPTCP really joins a subflow over path 1, both ways.
func TestFallbackBed(t *testing.T) {
	t.Parallel()
	defer diagWatchdog(t, 60*time.Second)()
	bed := newFallbackBed(t, 2, []string{"50mbit", ""})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dial := func(to netip.Addr) error {
		return bed.cli.Do(func() error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(to, 9).String())
			if err == nil {
				_ = c.Close()
			}
			return err
		})
	}
	for _, p := range bed.paths {
		if err := dial(p.B4); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connecting to conv's %s (path %d): %v, want a refusal (conv reached, nothing listening)", p.B4, p.Index, err)
		}
	}
	if err := dial(bed.srvPath.B4); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("connecting from cli straight to srv: %v, want network unreachable", err)
	}
	for _, tr := range []fbTransport{fbPlainTCP(), fbKernelMPTCP()} {
		for _, dir := range []fbDirection{fbUpload, fbDownload} {
			r := fbMeasure(t, bed, tr, fbFlow{dir: dir, records: 2000})
			if r.recv.Records != 2000 {
				t.Errorf("%s %s: %d records arrived, want 2000", tr.name, dir, r.recv.Records)
			}
		}
	}
}
