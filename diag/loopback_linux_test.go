package diag

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestLoopback lists a real MPTCP connection over loopback in the test's
// own network namespace: no privileges needed. It skips when the kernel
// has no MPTCP (or MPTCP is disabled in the namespace).
func TestLoopback(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Connections(ctx, Filter{NoSubflows: true}); errors.Is(err, ErrUnavailable) {
		t.Skipf("no MPTCP socket diagnostics: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}

	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- s
		_, _ = io.Copy(s, s)
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	d.SetMultipathTCP(true)
	conn, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ok, _ := conn.(*net.TCPConn).MultipathTCP(); !ok {
		t.Skip("MPTCP is not available in this namespace (net.mptcp.enabled=0?)")
	}
	if s := <-accepted; s != nil {
		defer s.Close()
	}
	const n = 32 << 10
	if err := echoRoundTrip(conn, n); err != nil {
		t.Fatal(err)
	}

	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	server := ln.Addr().(*net.TCPAddr).AddrPort()
	conns, err := c.Connections(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var cli, srv *Connection
	for i := range conns {
		switch {
		case conns[i].Local == local && conns[i].Remote == server:
			cli = &conns[i]
		case conns[i].Local == server && conns[i].Remote == local:
			srv = &conns[i]
		}
	}
	if cli == nil || srv == nil {
		t.Fatalf("the connection %s → %s is not listed on both ends: %+v", local, server, conns)
	}
	for _, end := range []*Connection{cli, srv} {
		if end.Token == 0 || end.Fallback || end.State != StateEstablished || len(end.Subflows) != 1 {
			t.Fatalf("end %s → %s: token %08x, fallback %t, state %s, %d subflows", end.Local, end.Remote,
				end.Token, end.Fallback, end.State, len(end.Subflows))
		}
		s := end.Subflows[0]
		if s.Local != end.Local || s.Remote != end.Remote || s.LocalToken != end.Token || s.RTT <= 0 ||
			s.BytesAcked < n || s.BytesReceived < n || !s.FullyEstablished {
			t.Errorf("end %s → %s: subflow %+v", end.Local, end.Remote, s)
		}
		if end.Info.Len >= 80 && (end.Info.BytesSent < n || end.Info.BytesReceived < n) {
			t.Errorf("end %s → %s: %d bytes sent, %d received at the MPTCP level, want ≥ %d",
				end.Local, end.Remote, end.Info.BytesSent, end.Info.BytesReceived, n)
		}
	}
	if cli.Token == srv.Token {
		t.Errorf("both ends have token %08x", cli.Token)
	}

	got, err := c.Connection(ctx, srv.Token)
	if err != nil || got.Local != server || len(got.Subflows) != 1 {
		t.Errorf("Connection(%08x) = %+v, %v", srv.Token, got, err)
	}
	if _, err := c.Connection(ctx, cli.Token^srv.Token^0x5a5a5a5a); !errors.Is(err, ErrNotFound) {
		t.Errorf("Connection(unknown token) = %v, want ErrNotFound", err)
	}

	// A dump stopped midway, by the caller's callback or by its context,
	// leaves the client usable: the next request gets a fresh socket.
	nt := c.t.(*netlinkTransport)
	stop := errors.New("stop")
	req := request{family: IPv4, protocol: protoTCP, states: AllStates, ext: extInfo}
	if err := nt.dump(ctx, req, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("dump with a failing callback = %v, want its error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	err = nt.dump(cctx, req, func([]byte) error { cancel(); return nil })
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("dump cancelled midway = %v, want nil or context.Canceled", err)
	}
	if _, err := c.Connections(cctx, Filter{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Connections with a cancelled context = %v, want context.Canceled", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, time.Nanosecond)
	defer tcancel()
	<-tctx.Done()
	if _, err := c.Connections(tctx, Filter{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connections after the deadline = %v, want context.DeadlineExceeded", err)
	}
	again, err := c.Connection(ctx, cli.Token)
	if err != nil || again.Local != local {
		t.Errorf("Connection after interrupted dumps = %+v, %v", again, err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connections(ctx, Filter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Connections after Close = %v, want ErrClosed", err)
	}
}
