package diag

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

var captureFlag = flag.Bool("diag.capture", false,
	"rebuild testdata/capture from real MPTCP connections between network namespaces (needs root)")

// TestCapture rebuilds testdata/capture: it sets up two hosts joined by two
// paths, opens connections of every kind this package must tell apart, and
// records each host's raw inet_diag replies (cli.txt, srv.txt) and what
// ss(8) shows of the same sockets (cli.ss, srv.ss). Run it as root with
//
//	go test -run TestCapture -diag.capture ./diag/
//
// The scenario, which capture_test.go relies on:
//   - path 0 (192.0.2.0/28, 2001:db8::/64) and path 1 (198.51.100.0/28,
//     2001:db8:0:1::/64); limits 2/2 on both hosts; the client has subflow
//     endpoints on path 1: the IPv4 one "backup" and bound to its device;
//   - from the client's path-0 addresses, 64 KiB echoed on each of:
//     MPTCP to an IPv4 listener, MPTCP over IPv6, MPTCP over IPv4 to a
//     dual-stack listener (each joined by a second subflow from path 1),
//     MPTCP to a plain TCP listener (falls back on the client), plain TCP
//     to the plain listener, and plain TCP to the IPv4 MPTCP listener
//     (falls back on the server, where MPTCP diag cannot see it).
func TestCapture(t *testing.T) {
	if !*captureFlag {
		t.Skip("run with -diag.capture, as root, to rebuild testdata/capture")
	}
	bed := testbed.New(t)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	paths := bed.Paths(cli, srv, 2)
	for _, h := range []*testbed.Host{cli, srv} {
		c, err := genl.New(genl.WithNetNS(h.FD()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetLimits(genl.Limits{AddAddrAccepted: 2, Subflows: 2}); err != nil {
			t.Fatal(err)
		}
		if h != cli {
			continue
		}
		for _, ep := range []genl.Endpoint{
			{Addr: paths[1].Addr4(cli), Flags: genl.FlagSubflow | genl.FlagBackup, IfIndex: int32(paths[1].IfIndex(cli))},
			{Addr: paths[1].Addr6(cli), Flags: genl.FlagSubflow},
		} {
			if _, err := c.AddEndpoint(ep); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, l := range []struct {
		network string
		port    int
		mptcp   bool
	}{
		{"tcp4", captureMPTCP4, true}, {"tcp6", captureMPTCP6, true},
		{"tcp", captureMPTCPDual, true}, {"tcp4", capturePlain4, false},
	} {
		var lc net.ListenConfig
		lc.SetMultipathTCP(l.mptcp)
		var ln net.Listener
		if err := srv.Do(func() (err error) {
			ln, err = lc.Listen(context.Background(), l.network, fmt.Sprintf(":%d", l.port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go echo(ln)
	}

	srv4, srv6 := paths[0].Addr4(srv), paths[0].Addr6(srv)
	for _, c := range []struct {
		laddr netip.Addr
		raddr netip.AddrPort
		mptcp bool
	}{
		{paths[0].Addr4(cli), netip.AddrPortFrom(srv4, captureMPTCP4), true},
		{paths[0].Addr6(cli), netip.AddrPortFrom(srv6, captureMPTCP6), true},
		{paths[0].Addr4(cli), netip.AddrPortFrom(srv4, captureMPTCPDual), true},
		{paths[0].Addr4(cli), netip.AddrPortFrom(srv4, capturePlain4), true},
		{paths[0].Addr4(cli), netip.AddrPortFrom(srv4, capturePlain4), false},
		{paths[0].Addr4(cli), netip.AddrPortFrom(srv4, captureMPTCP4), false},
	} {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.laddr, 0))}
		d.SetMultipathTCP(c.mptcp)
		var conn net.Conn
		if err := cli.Do(func() (err error) {
			conn, err = d.Dial("tcp", c.raddr.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := echoRoundTrip(conn, captureBytes); err != nil {
			t.Fatal(err)
		}
	}

	// Wait for the three joins, fully established on both ends, then for
	// the last acks to settle.
	for _, h := range []*testbed.Host{cli, srv} {
		c, err := New(WithNetNS(h.FD()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
			conns, err := c.Connections(context.Background(), Filter{})
			joined := 0
			for _, conn := range conns {
				if len(conn.Subflows) == 2 && conn.Subflows[1].FullyEstablished {
					joined++
				}
			}
			return joined == 3, err
		}); err != nil {
			t.Fatalf("host %s: waiting for 3 connections with 2 subflows: %v", h.Name, err)
		}
	}
	time.Sleep(500 * time.Millisecond)

	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := string(bytes.TrimRight(uts.Release[:], "\x00"))
	for _, h := range []*testbed.Host{cli, srv} {
		var out bytes.Buffer
		fmt.Fprintf(&out, "# Raw inet_diag replies of host %q of the TestCapture scenario, captured on Linux %s\n", h.Name, release)
		fmt.Fprintf(&out, "# by: go test -run TestCapture -diag.capture ./diag/\n")
		fmt.Fprintf(&out, "# Each line: the protocol dumped (mptcp or tcp, every state) and one reply in hex.\n")
		c, err := New(WithNetNS(h.FD()))
		if err != nil {
			t.Fatal(err)
		}
		t0 := c.t.(*netlinkTransport)
		for _, proto := range []uint16{protoMPTCP, protoTCP} {
			kind := map[uint16]string{protoMPTCP: "mptcp", protoTCP: "tcp"}[proto]
			for _, fam := range []Family{IPv4, IPv6} {
				req := request{family: fam, protocol: proto, states: AllStates, ext: extInfo}
				if err := t0.dump(context.Background(), req, func(msg []byte) error {
					fmt.Fprintf(&out, "%s %s\n", kind, hex.EncodeToString(msg))
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		_ = c.Close()
		var ss bytes.Buffer
		for _, args := range [][]string{{"-Mnai"}, {"-tnai"}} {
			cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, "ss"}, args...)...)
			cmd.Stdout, cmd.Stderr = &ss, os.Stderr
			fmt.Fprintf(&ss, "$ ss %s\n", args[0])
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
		}
		dir := filepath.Join("testdata", "capture")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, h.Name+".txt"), out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, h.Name+".ss"), ss.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("testdata/capture rebuilt; now regenerate the fuzz seeds: DIAG_UPDATE_FUZZ_SEEDS=1 go test -run TestFuzzSeedCorpus ./diag/")
}

// echo echoes what each accepted connection sends until ln is closed.
func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			_, _ = io.Copy(c, c)
			_ = c.Close()
		}()
	}
}

// echoRoundTrip sends n bytes over c and reads them back.
func echoRoundTrip(c net.Conn, n int) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	out := bytes.Repeat([]byte("mptcp"), n/5+1)[:n]
	go func() {
		_, err := c.Write(out)
		errc <- err
	}()
	in := make([]byte, n)
	if _, err := io.ReadFull(c, in); err != nil {
		return fmt.Errorf("reading the echo from %s: %w", c.RemoteAddr(), err)
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return errors.New("the echo differs from what was sent")
	}
	return nil
}
