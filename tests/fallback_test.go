package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
	"github.com/mptcpd/mptcpd/tests/load"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// sink is a destination server on srv: for each connection it reads
// everything, then sends back size bytes of its own, then closes; what it
// read and sent is reported.
type sinkResult struct {
	got      [32]byte
	n        int64
	sent     [32]byte
	remote   netip.AddrPort
	duration time.Duration
}

func (n *fallbackBed) sink(t *testing.T, size int) (netip.AddrPort, <-chan sinkResult) {
	t.Helper()
	ln, err := n.srv.Listen("tcp4", net.JoinHostPort(n.srvPath.B4.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	res := make(chan sinkResult, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				start := time.Now()
				h := sha256.New()
				nread, _ := io.Copy(h, c)
				r := sinkResult{n: nread, remote: netip.MustParseAddrPort(c.RemoteAddr().String())}
				copy(r.got[:], h.Sum(nil))
				r.sent = sendPattern(c, size)
				r.duration = time.Since(start)
				res <- r
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), res
}

// sendPattern writes size deterministic pseudo-random bytes and returns
// their hash.
func sendPattern(w io.Writer, size int) [32]byte {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var ctr uint64
	for left := size; left > 0; {
		for i := 0; i+8 <= len(buf); i += 8 {
			ctr++
			binary.LittleEndian.PutUint64(buf[i:], ctr*0x9e3779b97f4a7c15)
		}
		k := min(left, len(buf))
		if _, err := w.Write(buf[:k]); err != nil {
			break
		}
		h.Write(buf[:k])
		left -= k
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	return out
}

// socksDial opens a SOCKS5 CONNECT from cli through the client's SOCKS5
// server and returns the connection, or the server's reply code.
func (n *fallbackBed) socksDial(t *testing.T, dst netip.AddrPort) (net.Conn, byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var c net.Conn
	err := n.cli.Do(func() error {
		var err error
		c, err = load.DialSOCKS5(ctx, &net.Dialer{}, "127.0.0.1:1080", dst.String(), nil)
		return err
	})
	var se *load.SOCKS5Error
	if errors.As(err, &se) {
		return nil, se.Code, nil
	}
	return c, 0, err
}

// ifBytes returns the bytes sent and received by an interface of h, from
// the namespace's /proc/net/dev.
func ifBytes(t *testing.T, h *testbed.Host, ifName string) (tx, rx uint64) {
	t.Helper()
	var b []byte
	if err := h.Do(func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != ifName {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			break
		}
		rx, _ = strconv.ParseUint(f[0], 10, 64)
		tx, _ = strconv.ParseUint(f[8], 10, 64)
		return tx, rx
	}
	t.Fatalf("host %s has no interface %s in /proc/net/dev", h.Name, ifName)
	return 0, 0
}

// transfer sends up bytes to the sink through c and reads what the sink
// sends back, checking both hashes, while during runs alongside.
func transfer(t *testing.T, c net.Conn, up int, res <-chan sinkResult, during func()) {
	t.Helper()
	sent := make(chan [32]byte, 1)
	go func() { sent <- sendPattern(c, up) }()
	done := make(chan struct{})
	if during != nil {
		go func() {
			defer close(done)
			during()
		}()
	} else {
		close(done)
	}
	h := sha256.New()
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("reading the download after %d bytes: %v", got, err)
	}
	<-done
	upHash := <-sent
	var r sinkResult
	select {
	case r = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("the destination reported nothing")
	}
	if r.n != int64(up) || r.got != upHash {
		t.Errorf("upload: the destination got %d bytes (hash match %v), want %d", r.n, r.got == upHash, up)
	}
	if !bytes.Equal(h.Sum(nil), r.sent[:]) {
		t.Errorf("download: %d bytes arrived with another hash than the destination sent", got)
	}
}

func TestFallbackSOCKSTwoPaths(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 2)
	n.startConverter("", "")
	// Two paths at 20 Mbit/s each: one alone could not carry it all.
	for _, p := range n.paths {
		if err := p.Shape("20mbit"); err != nil {
			t.Fatal(err)
		}
	}
	n.startClient("fallback", "", `scheduler = "minrtt"`)
	dst, res := n.sink(t, 6<<20)

	tx0, _ := ifBytes(t, n.cli, n.paths[0].AIf)
	tx1, _ := ifBytes(t, n.cli, n.paths[1].AIf)
	c, code, err := n.socksDial(t, dst)
	if err != nil || code != 0 {
		t.Fatalf("SOCKS5 CONNECT to %v: reply %d, %v", dst, code, err)
	}
	defer c.Close()
	transfer(t, c, 6<<20, res, nil)
	d0, _ := ifBytes(t, n.cli, n.paths[0].AIf)
	d1, _ := ifBytes(t, n.cli, n.paths[1].AIf)
	t.Logf("upload bytes on path 0: %d, path 1: %d", d0-tx0, d1-tx1)
	for i, d := range []uint64{d0 - tx0, d1 - tx1} {
		if d < 1<<20 {
			t.Errorf("path %d carried %d bytes of a 6 MiB upload: the session did not use both paths", i, d)
		}
	}
}

func TestFallbackRefusals(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 1)
	n.startConverter("", "")
	n.startClient("fallback", "", "")
	dst, _ := n.sink(t, 1)

	// The converter's own address, and one outside allow_prefixes.
	for _, forbidden := range []netip.AddrPort{
		netip.AddrPortFrom(n.paths[0].B4, 22),
		netip.AddrPortFrom(netip.MustParseAddr("198.51.100.77"), 80),
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), fbConvPort),
	} {
		if _, code, err := n.socksDial(t, forbidden); err != nil || code != 2 {
			t.Errorf("CONNECT %v: reply %d, %v; want 2 (not allowed by ruleset)", forbidden, code, err)
		}
	}
	// A port nobody listens on: refused, as the converter found it.
	closed := netip.AddrPortFrom(dst.Addr(), dst.Port()+1)
	if _, code, err := n.socksDial(t, closed); err != nil || code != 5 {
		t.Errorf("CONNECT %v: reply %d, %v; want 5 (connection refused)", closed, code, err)
	}
}

func TestFallbackWrongKeyRefused(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 1)
	n.startConverter("", "")
	good := n.key
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	n.key = hex.EncodeToString(k)
	n.startClient("fallback", "", "")
	n.key = good
	dst, res := n.sink(t, 1)
	if _, code, err := n.socksDial(t, dst); err != nil || code != 2 {
		t.Errorf("CONNECT with a key the converter does not hold: reply %d, %v; want 2", code, err)
	}
	select {
	case r := <-res:
		t.Errorf("the destination saw a connection from %v", r.remote)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestFallbackAutoWhenMPTCPDisabled(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 1)
	n.startConverter("", "")
	d := n.startClient("auto", "", "")
	if !d.logged("mode auto picked fallback") {
		t.Errorf("mptcpd in mode auto with net.mptcp.enabled=0 did not say it picked fallback; log:\n%s", d.log.String())
	}
	dst, res := n.sink(t, 256<<10)
	c, code, err := n.socksDial(t, dst)
	if err != nil || code != 0 {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	defer c.Close()
	transfer(t, c, 512<<10, res, nil)
}

// TestFallbackPathCut cuts the first path in the middle of a transfer,
// by link down and by a silent drop, and checks that nothing is lost and
// that the path is used again once back.
func TestFallbackPathCut(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"link down", "silent drop", "backup"} {
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) {
			t.Parallel()
			n := newFallbackDaemonsBed(t, 2)
			n.startConverter("", "")
			for _, p := range n.paths {
				if err := p.Shape("40mbit"); err != nil {
					t.Fatal(err)
				}
			}
			rules := ""
			if how == "backup" {
				rules = fmt.Sprintf("[[rule]]\nname = \"primary\"\ninterfaces = [%q]\nflags = [\"subflow\"]\n[[rule]]\nname = \"backup\"\ninterfaces = [%q]\nflags = [\"subflow\", \"backup\"]\n",
					n.paths[0].AIf, n.paths[1].AIf)
			}
			n.startClient("fallback", rules, "")
			const size = 12 << 20
			dst, res := n.sink(t, size)
			c, code, err := n.socksDial(t, dst)
			if err != nil || code != 0 {
				t.Fatalf("CONNECT: reply %d, %v", code, err)
			}
			defer c.Close()
			_, backupBefore := ifBytes(t, n.cli, n.paths[1].AIf)
			cut := n.paths[0]
			start := time.Now()
			transfer(t, c, size, res, func() {
				time.Sleep(700 * time.Millisecond)
				if how == "backup" {
					_, rx := ifBytes(t, n.cli, n.paths[1].AIf)
					if rx-backupBefore > 512<<10 {
						t.Errorf("the backup path carried %d bytes while the primary worked", rx-backupBefore)
					}
				}
				var err error
				if how == "silent drop" {
					err = cut.Blackhole()
				} else {
					err = cut.Cut()
				}
				if err != nil {
					t.Error(err)
				}
			})
			t.Logf("%d MiB each way with the cut: %v", size>>20, time.Since(start).Round(time.Millisecond))
			// The path comes back and carries data again.
			if how == "silent drop" {
				if err := cut.Unblackhole(); err != nil {
					t.Fatal(err)
				}
			} else if err := cut.Restore(); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			dst2, res2 := n.sink(t, 4<<20)
			_, rx0 := ifBytes(t, n.cli, cut.AIf)
			deadline := time.Now().Add(20 * time.Second)
			for {
				c2, code, err := n.socksDial(t, dst2)
				if err != nil || code != 0 {
					t.Fatalf("CONNECT after the path came back: reply %d, %v", code, err)
				}
				transfer(t, c2, 1<<20, res2, nil)
				c2.Close()
				_, rx := ifBytes(t, n.cli, cut.AIf)
				if rx-rx0 > 1<<20 {
					t.Logf("path used again %v after it came back", time.Since(back).Round(time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("path %s carried only %d bytes after it came back", cut.AIf, rx-rx0)
				}
				time.Sleep(500 * time.Millisecond)
			}
		})
	}
}

// TestFallbackTransparentCapture sends an unmodified curl to the
// destination's address: on cli itself (REDIRECT), and from a host behind
// cli that routes through it (TPROXY). The daemon's nftables rules bring
// the connection to the converter, which the destination sees as its
// client; and the rules are gone once the daemon stops.
func TestFallbackTransparentCapture(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (scripts/install-deps.sh installs it)")
	}
	n := newFallbackDaemonsBed(t, 2)
	app := n.bed.Host("app")
	lan := n.bed.Connect(app, n.cli)
	n.startConverter("", "")
	// cli has no route of its own to the destination: only the converter
	// does; capture must take the connections before routing would fail.
	n.cli.MustIP("route", "add", netip.PrefixFrom(n.srvPath.B4, 28).Masked().String(), "via", n.paths[0].B4.String())
	app.MustIP("route", "add", netip.PrefixFrom(n.srvPath.B4, 28).Masked().String(), "via", lan.B4.String())
	d := n.startClient("fallback", "", fmt.Sprintf("[fallback.capture]\nredirect_port = 7777\ntproxy_port = 7778\ntproxy_interfaces = [%q]\n", lan.BIf))
	for _, from := range []*testbed.Host{n.cli, app} {
		t.Run(from.Name, func(t *testing.T) {
			curlThrough(t, n, from)
		})
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.wait(); err != nil {
		t.Fatalf("mptcpd stopped with %v", err)
	}
	if out, err := exec.Command("ip", "netns", "exec", n.cli.NS, "nft", "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), "mptcpd") {
		t.Errorf("after mptcpd stopped, nft list tables: %s %v", out, err)
	}
}

// curlThrough runs curl on host from against an HTTP server on srv and
// checks the body and that the server's client was the converter.
func curlThrough(t *testing.T, n *fallbackBed, from *testbed.Host) {
	t.Helper()
	body := make([]byte, 3<<20)
	_, _ = rand.Read(body)
	sum := sha256.Sum256(body)
	ln, err := n.srv.Listen("tcp4", net.JoinHostPort(n.srvPath.B4.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().String()
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
		_, _ = c.Write(body)
	}()
	cmd := exec.Command("curl", "-sS", "--max-time", "20", "-o", "-", "http://"+ln.Addr().String()+"/")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := from.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl on %s: %v: %s", from.Name, err, stderr.String())
	}
	if got := sha256.Sum256(out.Bytes()); got != sum {
		t.Errorf("curl got %d bytes with another hash than the %d sent", out.Len(), len(body))
	}
	if peer := <-seen; !strings.HasPrefix(peer, n.srvPath.A4.String()+":") {
		t.Errorf("the destination's client was %s, want the converter (%s)", peer, n.srvPath.A4)
	}
}

// TestFallbackInAPI checks that fallback sessions appear where kernel
// connections do: in the client's and the converter's connection lists
// (with their datapath, destination and subflows), in mptcpctl's
// listing, and in the client's event stream; and that kernel-only calls
// are refused in fallback mode with FAILED_PRECONDITION.
func TestFallbackInAPI(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 2)
	n.startConverter("", "")
	n.startClient("fallback", "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cliConn, cli, err := api.Dial("unix:"+filepath.Join(n.dir, "cli.sock"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cliConn.Close()
	convConn, conv, err := api.Dial("unix:"+filepath.Join(n.dir, "conv.sock"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer convConn.Close()

	watch, err := cli.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
			break
		}
	}

	dst, res := n.sink(t, 1<<20)
	c, code, err := n.socksDial(t, dst)
	if err != nil || code != 0 {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// The session, with both subflows, on both sides.
	var token uint32
	for _, side := range []struct {
		name      string
		client    pb.MptcpdServiceClient
		converter bool
	}{{"client", cli, false}, {"converter", conv, true}} {
		var got *pb.Connection
		err := testbed.WaitFor(10*time.Second, func() (bool, error) {
			resp, err := side.client.ListConnections(ctx, &pb.ListConnectionsRequest{})
			if err != nil {
				return false, err
			}
			for _, pc := range resp.Connections {
				if pc.Datapath == pb.Datapath_DATAPATH_MPX && pc.Destination == dst.String() && len(pc.Subflows) == 2 {
					got = pc
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("%s: no MPX session to %v with two subflows in ListConnections: %v", side.name, dst, err)
		}
		if got.ConverterSide != side.converter || got.MpxToken == 0 || got.Token != uint32(got.MpxToken) {
			t.Errorf("%s: session %+v", side.name, got)
		}
		token = got.Token
	}
	// The events of the session's start came on the stream.
	seen := map[pb.EventKind]bool{}
	for !seen[pb.EventKind_EVENT_KIND_CONNECTION_CREATED] || !seen[pb.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED] {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v (seen %v)", err, seen)
		}
		if ev.Token == token {
			seen[ev.Kind] = true
		}
	}
	// mptcpctl shows it.
	ctl := buildCLI(t, t.TempDir())
	r := runCLI(t, ctl, 0, "--server", "unix:"+filepath.Join(n.dir, "cli.sock"), "-o", "json", "connection", "list")
	if r.code != 0 || !strings.Contains(r.stdout, `DATAPATH_MPX`) || !strings.Contains(r.stdout, dst.String()) {
		t.Errorf("mptcpctl connection list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, ctl, 0, "--server", "unix:"+filepath.Join(n.dir, "cli.sock"), "connection", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "(mpx to "+dst.String()+")") {
		t.Errorf("mptcpctl connection list (table) does not show the MPX session: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Kernel-only calls are refused.
	_, err = cli.SetLimits(ctx, &pb.SetLimitsRequest{Limits: &pb.Limits{Subflows: 2}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("SetLimits in fallback mode: %v, want FAILED_PRECONDITION", err)
	}
	st, err := cli.GetStatus(ctx, &pb.GetStatusRequest{})
	if err != nil || st.GetStatus().GetMode() != pb.Mode_MODE_FALLBACK {
		t.Errorf("GetStatus: %v, %v", st, err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	<-res
}

// TestFallbackOverKernelMPTCP runs the client in kernel mode: with a
// converter configured, its SOCKS5 server carries each application
// connection over one kernel MPTCP connection to the converter, and the
// kernel's path manager adds the second path's subflow.
func TestFallbackOverKernelMPTCP(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 2)
	if err := n.cli.WriteSysctl("net/mptcp/enabled", "1"); err != nil {
		t.Fatal(err)
	}
	n.startConverter("", "")
	n.startClient("kernel", "", "")
	joins, err := n.conv.Counter("MPTcpExtMPJoinAckRx")
	if err != nil {
		t.Fatal(err)
	}
	dst, res := n.sink(t, 2<<20)
	c, code, err := n.socksDial(t, dst)
	if err != nil || code != 0 {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	defer c.Close()
	transfer(t, c, 2<<20, res, nil)
	if after, err := n.conv.Counter("MPTcpExtMPJoinAckRx"); err != nil || after <= joins {
		t.Errorf("the converter saw no MPTCP join (MPTcpExtMPJoinAckRx %d → %d, %v): the session did not run over kernel MPTCP with two subflows", joins, after, err)
	}
}

// TestFallbackConverterLoss kills the converter in the middle of a
// download: the application's connection is reset within seconds (the
// client finds nothing listening where the converter was) instead of
// hanging, or of ending as if the transfer were complete.
func TestFallbackConverterLoss(t *testing.T) {
	t.Parallel()
	n := newFallbackDaemonsBed(t, 2)
	conv := n.startConverter("", "")
	n.startClient("fallback", "", "")
	const size = 64 << 20
	dst, _ := n.sink(t, size)
	for _, p := range n.paths {
		if err := p.Shape("20mbit"); err != nil {
			t.Fatal(err)
		}
	}
	c, code, err := n.socksDial(t, dst)
	if err != nil || code != 0 {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).CloseWrite() // the sink answers once it read everything
	buf := make([]byte, 64<<10)
	got := 0
	for got < 1<<20 {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("before the converter was killed, after %d bytes: %v", got, err)
		}
		got += k
	}
	if err := conv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(45 * time.Second))
	var rerr error
	for rerr == nil {
		var k int
		k, rerr = c.Read(buf)
		got += k
	}
	if errors.Is(rerr, os.ErrDeadlineExceeded) || time.Since(killed) > 15*time.Second {
		t.Fatalf("the application's connection ended only %v after the converter died (%v)", time.Since(killed).Round(time.Second), rerr)
	}
	if rerr == io.EOF || got >= size {
		t.Fatalf("the stream ended cleanly (%v, %d of %d bytes) although the converter died: the application cannot tell it from a complete transfer", rerr, got, size)
	}
	t.Logf("connection ended %v after the converter died (%v) with %d of %d bytes", time.Since(killed).Round(time.Millisecond), rerr, got, size)
}
