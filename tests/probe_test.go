package tests

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestProbeAndSysctls checks what Probe reports about a fresh namespace and
// that the sysctl helpers change that namespace only.
func TestProbeAndSysctls(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	path := bed.Connect(a, b)
	inA := genl.WithNetNS(a.FD())

	caps, err := genl.Probe(inA)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if !caps.Family || caps.FamilyVersion < genl.FamilyVersion || !caps.EventsGroup || !caps.Sysctls || !caps.Enabled {
		t.Errorf("Probe() = %+v; want the family (version >= %d), its events group, sysctls and MPTCP enabled", caps, genl.FamilyVersion)
	}
	if !caps.Supports(genl.PathManagerKernel) || !caps.Supports(genl.PathManagerUserspace) || caps.PathManager != genl.PathManagerKernel {
		t.Errorf("Probe() path managers = %v selected %q; want kernel and userspace, kernel selected", caps.PathManagers, caps.PathManager)
	}

	rootEnabled, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	if err != nil {
		t.Fatal(err)
	}
	rootPM, err := os.ReadFile("/proc/sys/net/mptcp/path_manager")
	if err != nil {
		t.Fatal(err)
	}

	// Path manager: set, read back through the client and the raw sysctl
	// and the legacy pm_type, and refuse a name the kernel does not have.
	if err := genl.SetPathManager(genl.PathManagerUserspace, inA); err != nil {
		t.Fatalf("SetPathManager(userspace): %v", err)
	}
	if v, err := genl.ReadSysctl("path_manager", inA); err != nil || v != "userspace" {
		t.Errorf("path_manager = %q, %v; want userspace", v, err)
	}
	if v, err := genl.ReadSysctl("pm_type", inA); err != nil || v != "1" {
		t.Errorf("pm_type = %q, %v; want 1 (kept in sync by the kernel)", v, err)
	}
	if err := genl.SetPathManager("bogus", inA); !errors.Is(err, genl.ErrInvalid) {
		t.Errorf("SetPathManager(bogus) = %v, want ErrInvalid", err)
	}
	if pm, _ := genl.PathManager(inA); pm != genl.PathManagerUserspace {
		t.Errorf("a refused SetPathManager changed the path manager to %q", pm)
	}
	for _, name := range []string{"", "../../../etc/passwd", "Enabled", "path manager"} {
		if _, err := genl.ReadSysctl(name, inA); !errors.Is(err, genl.ErrInvalid) {
			t.Errorf("ReadSysctl(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := genl.ReadSysctl("no_such_sysctl", inA); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadSysctl(no_such_sysctl) = %v, want os.ErrNotExist", err)
	}
	if err := genl.WriteSysctl("enabled", "1\n0", inA); !errors.Is(err, genl.ErrInvalid) {
		t.Errorf("WriteSysctl with a newline = %v, want ErrInvalid", err)
	}

	// Disabling MPTCP: Probe says so and new sockets fall back to TCP.
	if err := genl.SetEnabled(false, inA); err != nil {
		t.Fatalf("SetEnabled(false): %v", err)
	}
	if on, err := genl.Enabled(inA); err != nil || on {
		t.Errorf("Enabled() = %v, %v after SetEnabled(false)", on, err)
	}
	if caps, _ := genl.Probe(inA); caps.Enabled {
		t.Errorf("Probe().Enabled = true after SetEnabled(false)")
	}
	_, port := echoListener(t, b, 4)
	var d net.Dialer
	d.SetMultipathTCP(true)
	var conn net.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Do(func() error {
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(path.B4, port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if mp, _ := conn.(*net.TCPConn).MultipathTCP(); mp {
		t.Errorf("a connection from a host with MPTCP disabled is MPTCP")
	}
	_ = conn.Close()

	// The root namespace is untouched.
	if v, _ := os.ReadFile("/proc/sys/net/mptcp/enabled"); string(v) != string(rootEnabled) {
		t.Errorf("root namespace's net.mptcp.enabled changed from %q to %q", rootEnabled, v)
	}
	if v, _ := os.ReadFile("/proc/sys/net/mptcp/path_manager"); string(v) != string(rootPM) {
		t.Errorf("root namespace's net.mptcp.path_manager changed from %q to %q", rootPM, v)
	}
	// And so is the other host.
	if caps, _ := genl.Probe(genl.WithNetNS(b.FD())); !caps.Enabled || caps.PathManager != genl.PathManagerKernel {
		t.Errorf("host b's MPTCP settings changed with host a's: %+v", caps)
	}
}

// TestNamespacesAreSeparate drives two namespaces from one process.
func TestNamespacesAreSeparate(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	ca, cb := newClient(t, a), newClient(t, b)
	if _, err := ca.AddEndpoint(genl.Endpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.AddEndpoint(genl.Endpoint{ID: 1, Addr: netip.MustParseAddr("198.51.100.1")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    *genl.Client
		want netip.Addr
	}{{ca, netip.MustParseAddr("192.0.2.1")}, {cb, netip.MustParseAddr("198.51.100.1")}} {
		eps, err := tc.c.Endpoints()
		if err != nil || len(eps) != 1 || eps[0].Addr != tc.want {
			t.Errorf("Endpoints() = %v, %v; want only %s", eps, err, tc.want)
		}
	}
}

// TestEventsLost overflows a small event buffer with real connections and
// checks that the loss is reported as ErrEventsLost, and that the
// subscription goes on delivering events afterwards.
func TestEventsLost(t *testing.T) {
	t.Parallel()
	// Both ways of reading: through the runtime's poller, and directly on
	// the reader's thread, as the daemon reads.
	t.Run("poller", func(t *testing.T) { t.Parallel(); testEventsLost(t) })
	t.Run("direct", func(t *testing.T) { t.Parallel(); testEventsLost(t, genl.WithDirectEventReads()) })
}

func testEventsLost(t *testing.T, opts ...genl.Option) {
	bed := testbed.New(t)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	path := bed.Connect(cli, srv)
	c, err := genl.New(append([]genl.Option{genl.WithNetNS(cli.FD()), genl.WithEventBuffer(2048)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	_, port := echoListener(t, srv, 4)
	server := netip.AddrPortFrom(path.B4, port)
	dialClose := func(n int) {
		t.Helper()
		for range n {
			conn, err := cli.Dial(ctx, netip.AddrPort{}, server)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.Close()
		}
	}
	// 100 connections make 300+ events; nobody reads them.
	dialClose(100)

	lost := false
	for !lost {
		evs, err := sub.Receive()
		switch {
		case errors.Is(err, genl.ErrEventsLost):
			lost = true
		case err != nil:
			t.Fatalf("Receive: %v, want ErrEventsLost after the buffer overflowed", err)
		case len(evs) == 0:
			t.Fatalf("Receive returned no events and no error")
		}
	}

	// Still usable: drain, then a new connection's CREATED arrives.
	dialClose(1)
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("no event after the loss")
		}
		evs, err := sub.Receive()
		if err != nil && !errors.Is(err, genl.ErrEventsLost) {
			t.Fatalf("Receive after the loss: %v", err)
		}
		seen = slices.ContainsFunc(evs, func(ev genl.Event) bool { return ev.Type == genl.EventClosed })
	}

	// Ending the context ends a blocked Receive with the context's error.
	got := make(chan error, 1)
	go func() {
		for {
			if _, err := sub.Receive(); err != nil {
				got <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let it block
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("a blocked Receive ended with %v after cancel, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a blocked Receive did not end within 2s of its context")
	}
	if _, err := sub.Receive(); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive after cancel = %v, want context.Canceled", err)
	}
}
