package socks5

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/relay"
)

// watchdog makes a hung test fail with every goroutine's stack instead of
// eating the suite's timeout; call the returned function when done.
func watchdog(tb testing.TB, d time.Duration) (stop func()) {
	timer := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s: watchdog: still running after %s\n%s\n", tb.Name(), d, buf)
		panic(fmt.Sprintf("%s: watchdog expired after %s", tb.Name(), d))
	})
	return func() { timer.Stop() }
}

// echoServer starts a loopback TCP server that sends back what it
// receives and half-closes at the end of the client's stream.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := io.Copy(c, c); err == nil {
					_ = c.CloseWrite()
				}
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// recorder is a Connect function that records the targets it is asked for
// and dials dial (or fails with err).
type recorder struct {
	dial    netip.AddrPort // where every target leads
	bound   netip.AddrPort // reported as bound, if valid; else the local address
	err     error
	targets chan Target
}

func newRecorder(dial netip.AddrPort) *recorder {
	return &recorder{dial: dial, targets: make(chan Target, 100)}
}

func (r *recorder) connect(ctx context.Context, t Target) (relay.HalfCloser, netip.AddrPort, error) {
	r.targets <- t
	if r.err != nil {
		return nil, netip.AddrPort{}, r.err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.dial.String())
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	tc := c.(*net.TCPConn)
	bound := r.bound
	if !bound.IsValid() {
		bound = tc.LocalAddr().(*net.TCPAddr).AddrPort()
	}
	return tc, bound, nil
}

// target returns the one target Connect was asked for.
func (r *recorder) target(t *testing.T) Target {
	t.Helper()
	select {
	case got := <-r.targets:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("Connect was not called")
		return Target{}
	}
}

// none checks that Connect was not called.
func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.targets:
		t.Errorf("Connect was called for %v", got)
	default:
	}
}

// serve runs s on a loopback listener until the test ends and returns its
// address. Serve must return nil within 5 s of the end.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v, want nil after the context ended", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return within 5s of its context's end")
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func write(t *testing.T, c net.Conn, b ...byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// expect reads len(want) bytes and compares them.
func expect(t *testing.T, c net.Conn, what string, want ...byte) {
	t.Helper()
	got := make([]byte, len(want))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("%s: read %x, then %v; want %x", what, got[:n], err, want)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s = %x, want %x", what, got, want)
	}
}

// expectEOF checks that the server closed the connection and sent
// nothing more.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the refusal: %v, want the connection closed", err)
	}
	if len(b) > 0 {
		t.Fatalf("after the refusal the server sent %x, want nothing", b)
	}
}

// request returns a CONNECT request for target.
func request(t *testing.T, target Target) []byte {
	t.Helper()
	b, err := target.AppendBinary([]byte{version, cmdConnect, 0})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readReply reads a reply and returns its code and bound address.
func readReply(t *testing.T, c net.Conn) (byte, netip.AddrPort) {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if hdr[0] != version || hdr[2] != 0 {
		t.Fatalf("reply header %x, want 05 xx 00", hdr)
	}
	var addr netip.Addr
	switch hdr[3] {
	case atypIPv4:
		var a [4]byte
		if _, err := io.ReadFull(c, a[:]); err != nil {
			t.Fatal(err)
		}
		addr = netip.AddrFrom4(a)
	case atypIPv6:
		var a [16]byte
		if _, err := io.ReadFull(c, a[:]); err != nil {
			t.Fatal(err)
		}
		addr = netip.AddrFrom16(a)
	default:
		t.Fatalf("reply address type %d, want 1 or 4", hdr[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		t.Fatal(err)
	}
	return hdr[1], netip.AddrPortFrom(addr, binary.BigEndian.Uint16(port[:]))
}

// echoCheck sends size random bytes, half-closes, and checks the echo.
func echoCheck(t *testing.T, c *net.TCPConn, size int) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo: got %d bytes with another SHA-256 than the %d sent", len(got), len(data))
	}
}

func TestMethodNegotiation(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	users := map[string]string{"alice": "secret"}
	for _, tc := range []struct {
		name     string
		users    map[string]string
		greeting []byte
		want     []byte // nil: closed without a word
		refused  bool
	}{
		{"no auth offered", nil, []byte{5, 1, 0}, []byte{5, 0}, false},
		{"no auth among others", nil, []byte{5, 3, 1, 2, 0}, []byte{5, 0}, false},
		{"only password offered", nil, []byte{5, 1, 2}, []byte{5, 0xff}, true},
		{"no method offered", nil, []byte{5, 0}, []byte{5, 0xff}, true},
		{"password required, not offered", users, []byte{5, 1, 0}, []byte{5, 0xff}, true},
		{"password required and offered", users, []byte{5, 2, 0, 2}, []byte{5, 2}, false},
		{"SOCKS4 client", nil, []byte{4, 1, 0, 80, 192, 0, 2, 1, 0}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(echoServer(t))
			addr := serve(t, &Server{Users: tc.users, Connect: rec.connect})
			c := dial(t, addr)
			write(t, c, tc.greeting...)
			if tc.want != nil {
				expect(t, c, "method selection", tc.want...)
			}
			if tc.refused {
				expectEOF(t, c)
			}
			rec.none(t)
		})
	}
}

func TestAuthentication(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	users := map[string]string{"alice": "secret", "bob": "hunter2"}
	auth := func(ver byte, user, pass string) []byte {
		b := append([]byte{ver, byte(len(user))}, user...)
		return append(append(b, byte(len(pass))), pass...)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		ok   bool
	}{
		{"good", auth(1, "alice", "secret"), true},
		{"other user", auth(1, "bob", "hunter2"), true},
		{"wrong password", auth(1, "alice", "hunter2"), false},
		{"password prefix", auth(1, "alice", "secre"), false},
		{"unknown user", auth(1, "carol", "secret"), false},
		{"empty username", auth(1, "", "secret"), false},
		{"version 5", auth(5, "alice", "secret"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(echoServer(t))
			addr := serve(t, &Server{Users: users, Connect: rec.connect})
			c := dial(t, addr)
			write(t, c, 5, 1, 2)
			expect(t, c, "method selection", 5, 2)
			write(t, c, tc.msg...)
			if !tc.ok {
				expect(t, c, "authentication status", 1, 1)
				expectEOF(t, c)
				rec.none(t)
				return
			}
			expect(t, c, "authentication status", 1, 0)
			want := Target{Host: "example.com", Port: 443}
			write(t, c, request(t, want)...)
			if code, _ := readReply(t, c); code != ReplySucceeded {
				t.Fatalf("reply %#x, want success", code)
			}
			if got := rec.target(t); got != want {
				t.Errorf("Connect got %+v, want %+v", got, want)
			}
			echoCheck(t, c, 64<<10)
		})
	}
}

// TestConnect: each address type reaches Connect as the Target it
// names, the reply carries the bound address, and bytes flow both ways
// (with the client's half-close passed on).
func TestConnect(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	raw := func(atyp byte, addr ...byte) []byte {
		return append(append([]byte{version, cmdConnect, 0, atyp}, addr...), 0x1f, 0x90) // port 8080
	}
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	for _, tc := range []struct {
		name string
		req  []byte
		want Target
	}{
		{"IPv4", raw(atypIPv4, 192, 0, 2, 1), Target{Addr: netip.MustParseAddr("192.0.2.1"), Port: 8080}},
		{"IPv6", raw(atypIPv6, netip.MustParseAddr("2001:db8::1").AsSlice()...), Target{Addr: netip.MustParseAddr("2001:db8::1"), Port: 8080}},
		{"IPv4-mapped IPv6", raw(atypIPv6, netip.MustParseAddr("::ffff:198.51.100.7").AsSlice()...), Target{Addr: netip.MustParseAddr("198.51.100.7"), Port: 8080}},
		{"domain", raw(atypDomain, name("example.com")...), Target{Host: "example.com", Port: 8080}},
		{"domain with final dot", raw(atypDomain, name("example.com.")...), Target{Host: "example.com.", Port: 8080}},
		{"domain with underscore", raw(atypDomain, name("_svc.Example-1.NET")...), Target{Host: "_svc.Example-1.NET", Port: 8080}},
		{"IPv4 literal as domain", raw(atypDomain, name("203.0.113.9")...), Target{Addr: netip.MustParseAddr("203.0.113.9"), Port: 8080}},
		{"IPv6 literal as domain", raw(atypDomain, name("2001:db8::9")...), Target{Addr: netip.MustParseAddr("2001:db8::9"), Port: 8080}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(echoServer(t))
			addr := serve(t, &Server{Connect: rec.connect})
			c := dial(t, addr)
			write(t, c, 5, 1, 0)
			expect(t, c, "method selection", 5, 0)
			write(t, c, tc.req...)
			code, bound := readReply(t, c)
			if code != ReplySucceeded {
				t.Fatalf("reply %#x, want success", code)
			}
			if got := rec.target(t); got != tc.want {
				t.Errorf("Connect got %+v, want %+v", got, tc.want)
			}
			if bound.Addr() != netip.MustParseAddr("127.0.0.1") || bound.Port() == 0 {
				t.Errorf("bound address %v, want the relay's local address 127.0.0.1:port", bound)
			}
			echoCheck(t, c, 1<<20)
		})
	}
}

// TestBoundAddress: the reply carries the bound address Connect returned,
// IPv4 or IPv6 as it is, and zeros when Connect does not know it.
func TestBoundAddress(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	for _, tc := range []struct {
		bound netip.AddrPort
		want  []byte // the reply after VER REP RSV
	}{
		{netip.MustParseAddrPort("203.0.113.5:4242"), []byte{1, 203, 0, 113, 5, 0x10, 0x92}},
		{netip.MustParseAddrPort("[2001:db8::5]:4242"), append(append([]byte{4}, netip.MustParseAddr("2001:db8::5").AsSlice()...), 0x10, 0x92)},
		{netip.MustParseAddrPort("[::ffff:203.0.113.5]:80"), []byte{1, 203, 0, 113, 5, 0, 80}},
		{netip.AddrPort{}, []byte{1, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.bound.String(), func(t *testing.T) {
			rec := newRecorder(echoServer(t))
			rec.bound = tc.bound
			conn := rec.connect
			if !tc.bound.IsValid() {
				conn = func(ctx context.Context, t Target) (relay.HalfCloser, netip.AddrPort, error) {
					c, _, err := rec.connect(ctx, t)
					return c, netip.AddrPort{}, err
				}
			}
			addr := serve(t, &Server{Connect: conn})
			c := dial(t, addr)
			write(t, c, 5, 1, 0)
			expect(t, c, "method selection", 5, 0)
			write(t, c, request(t, Target{Host: "example.net", Port: 80})...)
			expect(t, c, "reply", append([]byte{5, 0, 0}, tc.want...)...)
			echoCheck(t, c, 1000)
		})
	}
}

// TestRequestRefused: requests the server does not carry get the reply
// code that says why, and the connection ends; Connect is not called.
func TestRequestRefused(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	domain := func(name string) []byte {
		return append(append([]byte{5, 1, 0, 3, byte(len(name))}, name...), 0, 80)
	}
	for _, tc := range []struct {
		name string
		req  []byte
		code byte
	}{
		{"BIND", []byte{5, 2, 0, 1, 192, 0, 2, 1, 0, 80}, ReplyCommandNotSupported},
		{"UDP ASSOCIATE", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, ReplyCommandNotSupported},
		{"unknown command", []byte{5, 9, 0, 1, 192, 0, 2, 1, 0, 80}, ReplyCommandNotSupported},
		{"address type 2", []byte{5, 1, 0, 2, 192, 0, 2, 1, 0, 80}, ReplyAddressTypeNotSupported},
		{"address type 0", []byte{5, 1, 0, 0}, ReplyAddressTypeNotSupported},
		{"version 4 request", []byte{4, 1, 0, 1, 192, 0, 2, 1, 0, 80}, ReplyGeneralFailure},
		{"reserved byte set", []byte{5, 1, 1, 1, 192, 0, 2, 1, 0, 80}, ReplyGeneralFailure},
		{"empty domain", []byte{5, 1, 0, 3, 0, 0, 80}, ReplyGeneralFailure},
		{"space in domain", domain("exa mple.com"), ReplyGeneralFailure},
		{"NUL in domain", domain("example.com\x00.evil"), ReplyGeneralFailure},
		{"slash in domain", domain("example.com/x"), ReplyGeneralFailure},
		{"empty label", domain("example..com"), ReplyGeneralFailure},
		{"leading hyphen", domain("-example.com"), ReplyGeneralFailure},
		{"label of 64 bytes", domain(string(bytes.Repeat([]byte("a"), 64)) + ".com"), ReplyGeneralFailure},
		{"IPv6 literal with zone", domain("fe80::1%eth0"), ReplyGeneralFailure},
		{"port 0", []byte{5, 1, 0, 1, 192, 0, 2, 1, 0, 0}, ReplyGeneralFailure},
		{"unspecified address", []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 80}, ReplyGeneralFailure},
		{"multicast address", []byte{5, 1, 0, 1, 224, 0, 0, 1, 0, 80}, ReplyGeneralFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(echoServer(t))
			addr := serve(t, &Server{Connect: rec.connect})
			c := dial(t, addr)
			write(t, c, 5, 1, 0)
			expect(t, c, "method selection", 5, 0)
			write(t, c, tc.req...)
			expect(t, c, "reply", 5, tc.code, 0, 1, 0, 0, 0, 0, 0, 0)
			expectEOF(t, c)
			rec.none(t)
		})
	}
}

// coded is an error that names its own reply code, as an uplink reporting
// the far end's answer would.
type coded byte

func (c coded) Error() string    { return fmt.Sprintf("far end answered %d", byte(c)) }
func (c coded) SOCKSReply() byte { return byte(c) }

// TestConnectFailure: a failing Connect gives the client the reply code
// of its error.
func TestConnectFailure(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		code byte
	}{
		{"refused", opErr(syscall.ECONNREFUSED), ReplyConnectionRefused},
		{"network unreachable", opErr(syscall.ENETUNREACH), ReplyNetworkUnreachable},
		{"host unreachable", opErr(syscall.EHOSTUNREACH), ReplyHostUnreachable},
		{"not allowed", fmt.Errorf("policy: %w", ErrNotAllowed), ReplyNotAllowed},
		{"timeout", fmt.Errorf("dial: %w", context.DeadlineExceeded), ReplyTTLExpired},
		{"coded", fmt.Errorf("uplink: %w", coded(ReplyHostUnreachable)), ReplyHostUnreachable},
		{"other", errors.New("converter lost"), ReplyGeneralFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(netip.AddrPort{})
			rec.err = tc.err
			addr := serve(t, &Server{Connect: rec.connect})
			c := dial(t, addr)
			write(t, c, 5, 1, 0)
			expect(t, c, "method selection", 5, 0)
			write(t, c, request(t, Target{Host: "example.org", Port: 80})...)
			expect(t, c, "reply", 5, tc.code, 0, 1, 0, 0, 0, 0, 0, 0)
			expectEOF(t, c)
		})
	}
}

// TestConnectRefusedForReal: a Connect that dials a closed port makes the
// client hear "connection refused".
func TestConnectRefusedForReal(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(ln.Addr().String())
	_ = ln.Close()
	rec := newRecorder(closed)
	addr := serve(t, &Server{Connect: rec.connect})
	c := dial(t, addr)
	write(t, c, 5, 1, 0)
	expect(t, c, "method selection", 5, 0)
	write(t, c, request(t, Target{Addr: closed.Addr(), Port: closed.Port()})...)
	if code, _ := readReply(t, c); code != ReplyConnectionRefused {
		t.Errorf("reply %#x, want %#x (connection refused)", code, ReplyConnectionRefused)
	}
}

// TestTruncated: a client that stops at any point of the handshake (and
// half-closes) is closed without Connect being called.
func TestTruncated(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	users := map[string]string{"u": "p"}
	full := append([]byte{5, 1, 2, 1, 1, 'u', 1, 'p'}, request(t, Target{Host: "example.com", Port: 80})...)
	rec := newRecorder(echoServer(t))
	addr := serve(t, &Server{Users: users, Connect: rec.connect})
	for n := range len(full) {
		c := dial(t, addr)
		write(t, c, full[:n]...)
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("after %d bytes: %v, want the connection closed", n, err)
		}
		// Only the method selection and the authentication status may come.
		if want := []byte{5, 2, 1, 0}; !bytes.HasPrefix(want, got) {
			t.Errorf("after %d bytes the server sent %x, want a prefix of %x", n, got, want)
		}
		_ = c.Close()
	}
	rec.none(t)
}

// TestHandshakeTimeout: a client that stops in the middle of its request
// and waits is closed when the handshake time is up.
func TestHandshakeTimeout(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	const timeout = 300 * time.Millisecond
	rec := newRecorder(echoServer(t))
	addr := serve(t, &Server{Connect: rec.connect, HandshakeTimeout: timeout})
	for _, sent := range [][]byte{
		nil,
		{5, 1},
		{5, 1, 0, 5, 1, 0, 3, 20, 'e', 'x'},
	} {
		c := dial(t, addr)
		start := time.Now()
		write(t, c, sent...)
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("after sending %x: %v, want the connection closed", sent, err)
		}
		if elapsed := time.Since(start); elapsed < timeout-50*time.Millisecond || elapsed > 5*time.Second {
			t.Errorf("after sending %x: closed after %v, want about %v", sent, elapsed, timeout)
		}
	}
	rec.none(t)
}

// TestMaxConns: with one connection in use and MaxConns 1, the next
// client is refused with "general failure"; once the first ends, clients
// are served again.
func TestMaxConns(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	rec := newRecorder(echoServer(t))
	addr := serve(t, &Server{Connect: rec.connect, MaxConns: 1})
	// open runs a client up to the reply; code is -1 if it was closed
	// before (as clients beyond twice MaxConns are).
	open := func() (c *net.TCPConn, code int) {
		c = dial(t, addr)
		write(t, c, 5, 1, 0)
		write(t, c, request(t, Target{Host: "example.com", Port: 80})...)
		reply := make([]byte, 2+10)
		if _, err := io.ReadFull(c, reply); err != nil {
			return c, -1
		}
		if !bytes.Equal(reply[:2], []byte{5, 0}) {
			t.Fatalf("method selection %x, want 0500", reply[:2])
		}
		return c, int(reply[3])
	}
	first, code := open()
	if code != int(ReplySucceeded) {
		t.Fatalf("first client: reply %d, want success", code)
	}
	second, code := open()
	if code != int(ReplyGeneralFailure) {
		t.Fatalf("second client over MaxConns: reply %d, want general failure", code)
	}
	expectEOF(t, second)
	_ = second.Close()
	echoCheck(t, first, 1000) // ends the first connection
	_ = first.Close()

	for i := 0; ; i++ {
		c, code := open()
		_ = c.Close()
		if code == int(ReplySucceeded) {
			break
		}
		if i == 50 {
			t.Fatalf("after the first client left: reply %d, want success", code)
		}
		time.Sleep(20 * time.Millisecond) // the first client's slot is freed after its relay ends
	}
}

// TestServeStops: ending Serve's context disconnects its clients and
// Serve returns.
func TestServeStops(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	rec := newRecorder(echoServer(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- (&Server{Connect: rec.connect}).Serve(ctx, ln) }()

	relayed := dial(t, ln.Addr().String())
	write(t, relayed, 5, 1, 0)
	expect(t, relayed, "method selection", 5, 0)
	write(t, relayed, request(t, Target{Host: "example.com", Port: 80})...)
	if code, _ := readReply(t, relayed); code != ReplySucceeded {
		t.Fatalf("reply %#x, want success", code)
	}
	waiting := dial(t, ln.Addr().String()) // still in its handshake
	write(t, waiting, 5, 1)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of its context's end")
	}
	for name, c := range map[string]net.Conn{"relayed": relayed, "in handshake": waiting} {
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s client after Serve returned: %v, want the connection closed or reset", name, err)
		}
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Serve returned: %v, want the listener closed", err)
	}
}

// lockedBuffer is a log destination safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusalLogged: a refused client leaves a Debug record with the
// reason.
func TestRefusalLogged(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	var logs lockedBuffer
	rec := newRecorder(echoServer(t))
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	addr := serve(t, &Server{Connect: rec.connect, Logger: logger})
	c := dial(t, addr)
	write(t, c, 5, 1, 0, 5, 2, 0, 1, 192, 0, 2, 1, 0, 80)
	expect(t, c, "method selection and reply", 5, 0, 5, ReplyCommandNotSupported, 0, 1, 0, 0, 0, 0, 0, 0)
	expectEOF(t, c)
	if got := logs.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "client refused") || !strings.Contains(got, "BIND is not supported") {
		t.Errorf("log = %q, want a Debug record of the refusal and its reason", got)
	}
}

func TestServeNeedsConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := (&Server{}).Serve(t.Context(), ln); err == nil {
		t.Error("Serve without Connect = nil, want an error")
	}
}

func TestReplyCode(t *testing.T) {
	timeoutErr := &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want byte
	}{
		{nil, ReplySucceeded},
		{errors.New("x"), ReplyGeneralFailure},
		{ErrNotAllowed, ReplyNotAllowed},
		{fmt.Errorf("acl: %w", ErrNotAllowed), ReplyNotAllowed},
		{syscall.ECONNREFUSED, ReplyConnectionRefused},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, ReplyNetworkUnreachable},
		{fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), ReplyHostUnreachable},
		{&net.DNSError{Err: "no such host", Name: "nowhere.test", IsNotFound: true}, ReplyHostUnreachable},
		{&net.DNSError{Err: "server misbehaving", Name: "x.test"}, ReplyGeneralFailure},
		{timeoutErr, ReplyTTLExpired},
		{os.ErrDeadlineExceeded, ReplyTTLExpired},
		{fmt.Errorf("uplink: %w", context.DeadlineExceeded), ReplyTTLExpired},
		{coded(ReplyNetworkUnreachable), ReplyNetworkUnreachable},
		{fmt.Errorf("%w (%w)", coded(ReplyNotAllowed), syscall.ECONNREFUSED), ReplyNotAllowed},
		{context.Canceled, ReplyGeneralFailure},
	} {
		if got := ReplyCode(tc.err); got != tc.want {
			t.Errorf("ReplyCode(%v) = %#x, want %#x", tc.err, got, tc.want)
		}
	}
}
