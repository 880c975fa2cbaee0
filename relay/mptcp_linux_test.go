package relay

import (
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestPipeMPTCP relays between an application's loopback connection and an
// MPTCP connection to a target on another host, as the converter and the
// client daemon in kernel mode do, and checks the bytes both ways.
func TestPipeMPTCP(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	bed := testbed.New(t)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	path := bed.Connect(cli, srv)

	targetLn, err := srv.Listen("tcp", netip.AddrPortFrom(path.B4, 0).String())
	if err != nil {
		t.Fatalf("listening on host srv: %v", err)
	}
	t.Cleanup(func() { _ = targetLn.Close() })

	// The application's connection to the relay, on the client host's
	// loopback.
	var app, a *net.TCPConn
	if err := cli.Do(func() error {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		defer ln.Close()
		if app, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr)); err != nil {
			return err
		}
		a, err = ln.AcceptTCP()
		return err
	}); err != nil {
		t.Fatalf("loopback connection on host cli: %v", err)
	}
	t.Cleanup(func() { _ = app.Close(); _ = a.Close() })

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b, err := cli.Dial(ctx, netip.AddrPort{}, netip.MustParseAddrPort(targetLn.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	tc, err := targetLn.Accept()
	if err != nil {
		t.Fatalf("accepting on host srv: %v", err)
	}
	target := tc.(*net.TCPConn)
	t.Cleanup(func() { _ = target.Close() })

	var r Relay
	res := startPipe(ctx, &r, a, b)
	const size = 4 << 20
	up, down := randomBytes(t, size), randomBytes(t, size)
	var wg sync.WaitGroup
	var upGot, downGot []byte
	errs := make([]error, 4)
	wg.Go(func() { errs[0] = sendAndClose(app, up) })
	wg.Go(func() { errs[1] = sendAndClose(target, down) })
	wg.Go(func() { upGot, errs[2] = io.ReadAll(target) })
	wg.Go(func() { downGot, errs[3] = io.ReadAll(app) })
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if sha256.Sum256(upGot) != sha256.Sum256(up) || sha256.Sum256(downGot) != sha256.Sum256(down) {
		t.Errorf("bytes changed on the way: got %d up and %d down (SHA-256 mismatch), sent %d each", len(upGot), len(downGot), size)
	}
	if got := wait(t, res); got.err != nil || got.aToB != size || got.bToA != size {
		t.Errorf("Pipe = %d, %d, %v; want %d, %d, nil", got.aToB, got.bToA, got.err, size, size)
	}
}
