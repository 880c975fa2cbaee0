package tests

import (
	"context"
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

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// benchConns is how many live connections BenchmarkAPIListConnections
// lists; MPTCPD_BENCH_CONNS overrides it.
const benchConns = 10000

// BenchmarkAPIListConnections lists 10,000 live MPTCP connections, each
// with two subflows, through the daemon's API, a page of 1,000 at a time as
// mptcpctl does. The baseline, in the same run, is the same listing read
// straight from the kernel with package diag in the benchmark's process:
// the ratio is what the daemon, gRPC and protobuf add.
//
// Metrics: ms/list and diag-ms/list (the baseline), ratio, conns (as
// listed), and the daemon's resident memory before the first listing
// (daemon-idle-rss-MB), after the listings (daemon-rss-MB) and at its peak
// (daemon-hwm-MB).
func BenchmarkAPIListConnections(b *testing.B) {
	testbed.Require(b)
	n := benchConns
	if v, err := strconv.Atoi(os.Getenv("MPTCPD_BENCH_CONNS")); err == nil && v > 0 {
		n = v
	}
	raiseNoFile(b, uint64(n+1024))
	bin := buildDaemon(b)
	bed := testbed.New(b)
	h, srv := bed.Host("h"), bed.Host("srv")
	paths := bed.Paths(h, srv, 2)
	sc, err := genl.New(genl.WithNetNS(srv.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SetLimits(genl.Limits{Subflows: 2, AddAddrAccepted: 2}); err != nil {
		b.Fatal(err)
	}
	for _, sysctl := range [][2]string{{"net/core/somaxconn", "4096"}, {"net/ipv4/tcp_max_syn_backlog", "4096"}} {
		if err := srv.WriteSysctl(sysctl[0], sysctl[1]); err != nil {
			b.Fatal(err)
		}
	}

	// The daemon on h; its policy makes a subflow endpoint of path 1's
	// addresses, so each connection gets a second subflow over path 1.
	dir := b.TempDir()
	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "mptcpd.toml")
	text := fmt.Sprintf("state_dir = %q\n[api]\nsocket = %q\n[limits]\nsubflows = 2\nadd_addr_accepted = 2\n[[rule]]\ninterfaces = [%q]\nkinds = [\"veth\"]\nflags = [\"subflow\"]\n",
		filepath.Join(dir, "state"), sock, paths[1].AIf)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	notify, states := notifySocket(b)
	cmd := exec.Command(bin, "--config", conf, "--netns", h.NS)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if b.Failed() {
			b.Logf("mptcpd log:\n%s", log.String())
		}
	})
	for ready := false; !ready; {
		select {
		case s := <-states:
			ready = s == "READY=1"
		case <-time.After(15 * time.Second):
			b.Fatalf("mptcpd sent no READY=1; log:\n%s", log.String())
		}
	}

	// n connections from h to srv, each with a second subflow over path
	// 1. The server's ends are held by a child process: one process may
	// not have both ends of 10,000 connections open (the machine's hard
	// limit on open files is 20,000).
	remote := holdConnections(b, srv, netip.AddrPortFrom(paths[0].B4, 0))
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	setup := time.Now()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := h.Dial(ctx, netip.AddrPort{}, remote)
		cancel()
		if err != nil {
			b.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		// A byte makes the server's side fully established, which is
		// when it announces its second address.
		if _, err := c.Write([]byte{0}); err != nil {
			b.Fatalf("connection %d: %v", i, err)
		}
	}
	dc, err := diag.New(diag.WithNetNS(h.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	b.Logf("%d connections dialled in %s", n, time.Since(setup).Round(time.Millisecond))
	// Wait (bounded) for the second subflows.
	two := 0
	_ = testbed.WaitFor(60*time.Second, func() (bool, error) {
		list, err := dc.Connections(context.Background(), diag.Filter{})
		if err != nil {
			return false, err
		}
		two = 0
		for _, c := range list {
			if len(c.Subflows) >= 2 {
				two++
			}
		}
		return two >= n*99/100, nil
	})
	b.Logf("%d connections set up in %s, %d with two subflows", n, time.Since(setup).Round(time.Millisecond), two)

	conn, client, err := api.Dial(sock, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	listAPI := func() int {
		total, page := 0, ""
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			resp, err := client.ListConnections(ctx, &pb.ListConnectionsRequest{PageToken: page})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			total += len(resp.GetConnections())
			if page = resp.GetNextPageToken(); page == "" {
				return total
			}
		}
	}
	listDiag := func() int {
		list, err := dc.Connections(context.Background(), diag.Filter{})
		if err != nil {
			b.Fatal(err)
		}
		return len(list)
	}
	idleRSS, err := vmRSS(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	// The setup above runs once; the listing is measured in a
	// sub-benchmark, which the framework may run several times.
	b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
		var apiTime, diagTime time.Duration
		listed := 0
		for range b.N {
			start := time.Now()
			listed = listAPI()
			apiTime += time.Since(start)
			start = time.Now()
			listDiag()
			diagTime += time.Since(start)
		}
		if listed < n {
			b.Fatalf("the API listed %d connections, want %d", listed, n)
		}
		rss, err := vmRSS(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		hwm, err := procStatus(cmd.Process.Pid, "VmHWM:")
		if err != nil {
			b.Fatal(err)
		}
		perAPI := float64(apiTime.Microseconds()) / 1000 / float64(b.N)
		perDiag := float64(diagTime.Microseconds()) / 1000 / float64(b.N)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(perAPI, "ms/list")
		b.ReportMetric(perDiag, "diag-ms/list")
		b.ReportMetric(perAPI/perDiag, "ratio")
		b.ReportMetric(float64(listed), "conns")
		b.ReportMetric(float64(idleRSS)/(1<<20), "daemon-idle-rss-MB")
		b.ReportMetric(float64(rss)/(1<<20), "daemon-rss-MB")
		b.ReportMetric(float64(hwm)/(1<<20), "daemon-hwm-MB")
	})
}

// procStatus returns a "kB" field of /proc/PID/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("pid %d: no %s in /proc/%d/status", pid, field, pid)
}

// holdEnv carries the listening address to the child process that
// TestHoldConnections runs in.
const holdEnv = "MPTCPD_TEST_HOLD_LISTEN"

// holdConnections starts a child process in h that listens for MPTCP
// connections on addr and holds every connection it accepts until the
// benchmark ends; it returns the address listened on.
func holdConnections(b *testing.B, h *testbed.Host, addr netip.AddrPort) netip.AddrPort {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldConnections$")
	cmd.Env = append(os.Environ(), holdEnv+"="+addr.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := h.Start(cmd); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close() // the child's cue to close everything and exit
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line := make([]byte, 64)
	n, err := stdout.Read(line)
	if err != nil {
		b.Fatalf("the connection holder said nothing: %v", err)
	}
	got, err := netip.ParseAddrPort(strings.TrimSpace(strings.TrimPrefix(string(line[:n]), "listening ")))
	if err != nil {
		b.Fatalf("the connection holder said %q: %v", line[:n], err)
	}
	return got
}

// TestHoldConnections is the child process of holdConnections; it runs
// only when the benchmark starts it.
func TestHoldConnections(t *testing.T) {
	addr := os.Getenv(holdEnv)
	if addr == "" {
		t.Skip("the connection holder of BenchmarkAPIListConnections; runs only as its child process")
	}
	raiseNoFile(t, 19000)
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = ln.Close()
	}()
	var held []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		held = append(held, c)
	}
	for _, c := range held {
		_ = c.Close()
	}
}
