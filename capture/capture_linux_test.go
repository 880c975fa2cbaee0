package capture_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mptcpd/mptcpd/capture"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// Ports the tests' servers listen on.
const (
	httpPort     = 8080
	echoPort     = 9000
	redirectPort = 7777
	tproxyPort   = 7778
)

// requireTool skips the test without the command (fails under CI, where
// scripts/install-deps.sh installs it).
func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing under CI; scripts/install-deps.sh should install %s", name, pkg)
		}
		t.Skipf("skipping: needs %s (apt-get install %s)", name, pkg)
	}
}

// testContext is the test's context with a deadline, so a hang fails the
// test with the test's own message instead of eating the go test timeout.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// run runs a command inside h and returns its standard output.
func run(ctx context.Context, h *testbed.Host, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := h.Start(cmd); err != nil {
		return "", fmt.Errorf("starting %s on %s: %w", name, h.Name, err)
	}
	if err := cmd.Wait(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s on %s: %w: %s", name, strings.Join(args, " "), h.Name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func mustRun(t *testing.T, ctx context.Context, h *testbed.Host, name string, args ...string) string {
	t.Helper()
	out, err := run(ctx, h, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func install(t *testing.T, h *testbed.Host, ctx context.Context, cfg capture.Config) *capture.Rules {
	t.Helper()
	var r *capture.Rules
	if err := h.Do(func() error {
		var err error
		r, err = capture.Install(ctx, cfg)
		return err
	}); err != nil {
		t.Fatalf("Install on %s: %v", h.Name, err)
	}
	t.Cleanup(func() {
		if err := r.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	t.Logf("installed on %s: %s", h.Name, r.Describe())
	return r
}

// startServers runs, on h, an HTTP server on httpPort that answers with the
// client's address as it sees it, and an echo server on echoPort that first
// writes the client's address on a line, then echoes every byte.
func startServers(t *testing.T, h *testbed.Host) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the listeners' Close below
	for _, port := range []int{httpPort, echoPort} {
		var ln net.Listener
		if err := h.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
			return err
		}); err != nil {
			t.Fatalf("listening on %s: %v", h.Name, err)
		}
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if port == httpPort {
						serveHTTP(c)
						return
					}
					fmt.Fprintf(c, "%s\n", c.RemoteAddr())
					_, _ = io.Copy(c, c)
				})
			}
		})
		t.Cleanup(func() { _ = ln.Close() })
	}
}

// serveHTTP answers one HTTP/1.x request with the peer's address.
func serveHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	for range 100 { // request line and headers, up to the empty line
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimSpace(line) == "" {
			break
		}
	}
	body := fmt.Sprintf("hello %s\n", c.RemoteAddr())
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// relay accepts captured connections on ln and joins each to its original
// destination, dialled from host h with the daemon's mark, as the datapath
// does.
type relay struct {
	mu       sync.Mutex
	accepted []capture.Accepted
}

func startRelay(t *testing.T, h *testbed.Host, mode capture.Mode, addr string, mark uint32) *relay {
	t.Helper()
	var ln *capture.Listener
	if err := h.Do(func() error {
		var err error
		ln, err = capture.Listen(context.Background(), mode, "tcp", addr, nil)
		return err
	}); err != nil {
		t.Fatalf("listening on %s: %v", h.Name, err)
	}
	r := &relay{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			r.mu.Lock()
			r.accepted = append(r.accepted, a)
			r.mu.Unlock()
			wg.Go(func() { r.join(t, h, a, mark) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return r
}

func (r *relay) join(t *testing.T, h *testbed.Host, a capture.Accepted, mark uint32) {
	defer a.Conn.Close()
	_ = a.Conn.SetDeadline(time.Now().Add(10 * time.Second))
	d := net.Dialer{Timeout: 5 * time.Second}
	capture.MarkDialer(&d, mark)
	var up net.Conn
	if err := h.Do(func() error {
		var err error
		up, err = d.Dial("tcp", a.Dst.String())
		return err
	}); err != nil {
		t.Errorf("relay dialling %s: %v", a.Dst, err)
		return
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, a.Conn)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(a.Conn, up)
	_ = a.Conn.CloseWrite()
	<-done
}

// destinations returns the original destinations accepted so far.
func (r *relay) destinations() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	var dsts []netip.AddrPort
	for _, a := range r.accepted {
		dsts = append(dsts, a.Dst)
	}
	return dsts
}

// echo connects from h to dst's echo server, sends size random bytes and
// checks they come back intact. It returns the client's local address and
// the client address the server saw: equal when the connection went
// straight to the server, different when something relayed it.
func echo(ctx context.Context, h *testbed.Host, dst netip.AddrPort, size int) (local, seen netip.AddrPort, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	if err := h.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	}); err != nil {
		return local, seen, fmt.Errorf("dialling %s from %s: %w", dst, h.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	local = c.LocalAddr().(*net.TCPAddr).AddrPort()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return local, seen, fmt.Errorf("reading the server's greeting through %s: %w", dst, err)
	}
	if seen, err = netip.ParseAddrPort(strings.TrimSpace(line)); err != nil {
		return local, seen, fmt.Errorf("greeting %q: %w", line, err)
	}
	seen = netip.AddrPortFrom(seen.Addr().Unmap(), seen.Port())
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(br)
	if err := errors.Join(err, <-werr); err != nil {
		return local, seen, fmt.Errorf("echo through %s: %w", dst, err)
	}
	if !bytes.Equal(got, payload) {
		return local, seen, fmt.Errorf("echo through %s: sent %d bytes, got %d different ones back", dst, len(payload), len(got))
	}
	return local, seen, nil
}

// curl fetches http://dst/ from h with curl, an unmodified program.
func curl(ctx context.Context, h *testbed.Host, dst netip.AddrPort) (string, error) {
	return run(ctx, h, "curl", "-sS", "-g", "--noproxy", "*", "--max-time", "5", fmt.Sprintf("http://%s/", dst))
}

// TestRedirect captures connections made on one host with REDIRECT: an
// unmodified client (curl) and Go clients over IPv4 and IPv6 reach the real
// server through the test's relay, which learns each original destination
// and dials it with the mark (were the mark not exempt, the relay's own
// connection would be captured again and the listener would see it).
func TestRedirect(t *testing.T) {
	bed := testbed.New(t)
	requireTool(t, "curl", "curl")
	requireTool(t, "nft", "nftables")
	ctx := testContext(t, 20*time.Second)
	app, srv := bed.Host("app"), bed.Host("srv")
	p := bed.Connect(app, srv)
	startServers(t, srv)
	rl := startRelay(t, app, capture.Redirect, fmt.Sprintf(":%d", redirectPort), capture.DefaultMark)

	srv4, srv6 := netip.AddrPortFrom(p.B4, echoPort), netip.AddrPortFrom(p.B6, echoPort)
	http4, http6 := netip.AddrPortFrom(p.B4, httpPort), netip.AddrPortFrom(p.B6, httpPort)
	rules := install(t, app, ctx, capture.Config{RedirectPort: redirectPort})
	if out := mustRun(t, ctx, app, "nft", "list", "tables"); !strings.Contains(out, "table inet mptcpd") {
		t.Fatalf("nft list tables after Install:\n%s", out)
	}

	var want []netip.AddrPort
	for _, dst := range []netip.AddrPort{http4, http6} {
		body, err := curl(ctx, app, dst)
		if err != nil {
			t.Fatalf("curl through the capture: %v", err)
		}
		if !strings.HasPrefix(body, "hello ") {
			t.Errorf("curl %s: body %q", dst, body)
		}
		want = append(want, dst)
	}
	for _, dst := range []netip.AddrPort{srv4, srv6} {
		local, seen, err := echo(ctx, app, dst, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if local == seen {
			t.Errorf("connection to %s was not captured: the server saw the client's own address %s", dst, seen)
		}
		want = append(want, dst)
	}
	if got := rl.destinations(); !slices.Equal(got, want) {
		t.Fatalf("original destinations the listener saw: %v, want %v", got, want)
	}

	// The host's own addresses are never captured.
	startServers(t, app)
	own := netip.AddrPortFrom(p.A4, echoPort)
	if local, seen, err := echo(ctx, app, own, 4096); err != nil || local != seen {
		t.Errorf("connection to the host's own address %s: client %s, server saw %s, %v; want a direct connection", own, local, seen, err)
	}

	// A client dialling the listener itself is refused, not relayed to
	// itself in a loop.
	if _, _, err := echo(ctx, app, netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", redirectPort)), 1); err == nil {
		t.Error("a direct connection to the redirect listener was relayed")
	}

	// Apply a new configuration, as on reload: the server's IPv6 address
	// is excluded and only the echo port is captured. The old Rules is
	// released, which leaves the new table in place.
	replaced := install(t, app, ctx, capture.Config{RedirectPort: redirectPort,
		Exclude: []netip.Prefix{netip.PrefixFrom(p.B6, 128)}, Ports: []uint16{echoPort}})
	rules.Release()
	if err := rules.Remove(); err != nil {
		t.Errorf("Remove after Release: %v", err)
	}
	if out := mustRun(t, ctx, app, "nft", "list", "tables"); !strings.Contains(out, "table inet mptcpd") {
		t.Fatalf("nft list tables after replacing, releasing and removing the old Rules:\n%s", out)
	}
	if local, seen, err := echo(ctx, app, srv6, 4096); err != nil || local != seen {
		t.Errorf("excluded destination %s: client %s, server saw %s, %v; want a direct connection", srv6, local, seen, err)
	}
	if local, seen, err := echo(ctx, app, srv4, 4096); err != nil || local == seen {
		t.Errorf("destination %s: client %s, server saw %s, %v; want it captured", srv4, local, seen, err)
	}
	if _, err := curl(ctx, app, http4); err != nil {
		t.Errorf("curl to a port not captured: %v", err)
	}
	if got, want := rl.destinations(), append(want, srv4); !slices.Equal(got, want) {
		t.Errorf("after replacing the rules, original destinations: %v, want %v", got, want)
	}

	if err := replaced.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if out := mustRun(t, ctx, app, "nft", "list", "tables"); strings.Contains(out, "mptcpd") {
		t.Errorf("nft list tables after Remove:\n%s", out)
	}
	if local, seen, err := echo(ctx, app, srv4, 4096); err != nil || local != seen {
		t.Errorf("after Remove, %s: client %s, server saw %s, %v; want a direct connection", srv4, local, seen, err)
	}
	if err := replaced.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestTProxy captures connections routed through a gateway: app's
// connections to srv cross gw, whose transparent listener accepts them with
// srv's address as local address; the test relays them to srv from gw.
func TestTProxy(t *testing.T) {
	bed := testbed.New(t)
	requireTool(t, "nft", "nftables")
	ctx := testContext(t, 20*time.Second)
	app, gw, srv := bed.Host("app"), bed.Host("gw"), bed.Host("srv")
	front, back := bed.Connect(app, gw), bed.Connect(gw, srv)
	app.MustIP("route", "add", netip.PrefixFrom(back.B4, 28).Masked().String(), "via", front.B4.String())
	app.MustIP("-6", "route", "add", netip.PrefixFrom(back.B6, 64).Masked().String(), "via", front.B6.String())
	srv.MustIP("route", "add", netip.PrefixFrom(front.A4, 28).Masked().String(), "via", back.A4.String())
	srv.MustIP("-6", "route", "add", netip.PrefixFrom(front.A6, 64).Masked().String(), "via", back.A6.String())
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := gw.WriteSysctl(key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	startServers(t, srv)
	srv4, srv6 := netip.AddrPortFrom(back.B4, echoPort), netip.AddrPortFrom(back.B6, echoPort)

	// Before any capture, gw forwards: srv sees app's own address.
	if local, seen, err := echo(ctx, app, srv4, 1024); err != nil || local != seen {
		t.Fatalf("routing through gw: client %s, server saw %s, %v", local, seen, err)
	}

	cfg := capture.Config{TProxyPort: tproxyPort, TProxyInterfaces: []string{front.BIf}}
	// A first Install whose Rules are lost, as when the daemon is killed:
	// the second Install takes its table, rules and routes over.
	var lost *capture.Rules
	if err := gw.Do(func() error {
		var err error
		lost, err = capture.Install(ctx, cfg)
		return err
	}); err != nil {
		t.Fatalf("first Install: %v", err)
	}
	t.Cleanup(lost.Release) // only to close its sockets
	rules := install(t, gw, ctx, cfg)
	for _, fam := range []string{"-4", "-6"} {
		out := mustRun(t, ctx, gw, "ip", fam, "rule", "show")
		if n := strings.Count(out, "fwmark 0x4d51 lookup 19793"); n != 1 {
			t.Errorf("ip %s rule show has %d fwmark rules, want 1:\n%s", fam, n, out)
		}
		out = mustRun(t, ctx, gw, "ip", fam, "route", "show", "table", "19793")
		if !strings.Contains(out, "local default dev lo") {
			t.Errorf("ip %s route show table 19793:\n%s", fam, out)
		}
	}
	rl := startRelay(t, gw, capture.TProxy, fmt.Sprintf(":%d", tproxyPort), capture.DefaultMark)

	for _, dst := range []netip.AddrPort{srv4, srv6} {
		_, seen, err := echo(ctx, app, dst, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if want := back.A4; dst.Addr().Is6() {
			want = back.A6
			if seen.Addr() != want {
				t.Errorf("srv saw %s, want gw's address %s (relayed)", seen, want)
			}
		} else if seen.Addr() != want {
			t.Errorf("srv saw %s, want gw's address %s (relayed)", seen, want)
		}
	}
	rl.mu.Lock()
	for i, a := range rl.accepted {
		if local := a.Conn.LocalAddr().(*net.TCPAddr).AddrPort(); netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) != a.Dst {
			t.Errorf("accepted connection %d: local address %s, destination %s", i, local, a.Dst)
		}
	}
	rl.mu.Unlock()
	if got, want := rl.destinations(), []netip.AddrPort{srv4, srv6}; !slices.Equal(got, want) {
		t.Fatalf("original destinations the transparent listener saw: %v, want %v", got, want)
	}

	if err := rules.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if out := mustRun(t, ctx, gw, "nft", "list", "tables"); strings.Contains(out, "mptcpd") {
		t.Errorf("nft list tables after Remove:\n%s", out)
	}
	for _, fam := range []string{"-4", "-6"} {
		if out := mustRun(t, ctx, gw, "ip", fam, "rule", "show"); strings.Contains(out, "fwmark") {
			t.Errorf("ip %s rule show after Remove:\n%s", fam, out)
		}
		// An empty table may be reported as missing.
		if out, err := run(ctx, gw, "ip", fam, "route", "show", "table", "19793"); strings.TrimSpace(out) != "" || err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("ip %s route show table 19793 after Remove: %q, %v", fam, out, err)
		}
	}
	for _, dst := range []netip.AddrPort{srv4, srv6} {
		if local, seen, err := echo(ctx, app, dst, 4096); err != nil || local != seen {
			t.Errorf("after Remove, %s: client %s, server saw %s, %v; want it forwarded, not captured", dst, local, seen, err)
		}
	}
	if n := len(rl.destinations()); n != 2 {
		t.Errorf("the listener accepted %d connections, want 2", n)
	}
	if err := rules.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestScriptReproduces checks Rules.Script against the kernel: running the
// script with nft and ip on a second host must create exactly what Install
// created (the same `nft list table` and policy routing). This pins the
// expressions Install writes to the ones nft compiles from the rule text.
func TestScriptReproduces(t *testing.T) {
	bed := testbed.New(t)
	requireTool(t, "nft", "nftables")
	ctx := testContext(t, 20*time.Second)
	a, b := bed.Host("a"), bed.Host("b")
	for _, cfg := range []capture.Config{
		{RedirectPort: redirectPort},
		{TProxyPort: tproxyPort},
		{Table: "mpx", RedirectPort: redirectPort, TProxyPort: tproxyPort, TProxyInterfaces: []string{"eth1", "veth0"},
			Mark: 0x100, TProxyMark: 0x200, RouteTable: 100, Ports: []uint16{443, 80, 22},
			Exclude: []netip.Prefix{
				netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.100.7/32"),
				netip.MustParsePrefix("203.0.113.0/25"), netip.MustParsePrefix("203.0.113.128/26"),
				netip.MustParsePrefix("2001:db8::/48"), netip.MustParsePrefix("2001:db8:0:1::/64"),
				netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8:ff::7/128"),
			}},
	} {
		r := install(t, a, ctx, cfg)
		script := r.Script()
		mustRun(t, ctx, b, "sh", "-ec", script)
		table := cfg.Table
		if table == "" {
			table = capture.DefaultTable
		}
		for _, cmd := range [][]string{
			{"nft", "list", "table", "inet", table},
			{"ip", "-4", "rule", "show"},
			{"ip", "-6", "rule", "show"},
			{"ip", "-4", "route", "show", "table", "all", "type", "local", "dev", "lo"},
			{"ip", "-6", "route", "show", "table", "all", "type", "local", "dev", "lo"},
		} {
			got, want := mustRun(t, ctx, a, cmd[0], cmd[1:]...), mustRun(t, ctx, b, cmd[0], cmd[1:]...)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s after Install (+) and after its script (-):\n%s\nscript:\n%s", strings.Join(cmd, " "), diff, script)
			}
		}
		// Leave b clean for the next configuration.
		if err := r.Remove(); err != nil {
			t.Fatal(err)
		}
		mustRun(t, ctx, b, "nft", "delete", "table", "inet", table)
		if cfg.TProxyPort != 0 {
			for _, fam := range []string{"-4", "-6"} {
				mark, rt := "0x4d51", "19793"
				if cfg.TProxyMark != 0 {
					mark, rt = fmt.Sprintf("%#x", cfg.TProxyMark), fmt.Sprint(cfg.RouteTable)
				}
				mustRun(t, ctx, b, "ip", fam, "rule", "del", "fwmark", mark, "lookup", rt)
				mustRun(t, ctx, b, "ip", fam, "route", "flush", "table", rt)
			}
		}
	}
}
