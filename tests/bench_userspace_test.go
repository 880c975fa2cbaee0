package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

const (
	// usConns is how many connections each path manager opens at each
	// rate (the decision and churn parts); MPTCPD_BENCH_US_CONNS
	// overrides it.
	usConns = 300
	// usHold is how many connections the memory part holds open;
	// MPTCPD_BENCH_US_HOLD overrides it (at most 9,000: the test process
	// holds the client ends, and may have 20,000 files open).
	usHold = 5000
	// usRoundTime is about how long a round of one path manager lasts
	// (at least usMinRound connections, and at least two rounds each):
	// the path managers' rounds alternate, so short rounds spread the
	// machine's noise evenly over both.
	usRoundTime = 250 * time.Millisecond
	usMinRound  = 20
	// usWithin is the deadline that makes a connection's second subflow a
	// success.
	usWithin = time.Second
	// usWait is how long a round waits, after its last connection was
	// made, for the second subflows; a connection still without one then
	// counts with this latency (a lower bound) in the percentiles.
	usWait = 1500 * time.Millisecond
	// usDialers is how many dialling goroutines (each on a thread of its
	// own in the client's namespace) a client host has.
	usDialers = 8
)

// usDecisionRates are the paced rates, connections per second, of the
// decision-speed part; usChurnRates those the churn part steps through.
var (
	usDecisionRates = []int{100, 500}
	usChurnRates    = []int{250, 500, 1000, 1500, 2500, 4000}
)

// BenchmarkUserspaceDecision measures mptcpd's userspace path manager
// against the kernel's in-kernel path manager doing the same job: giving
// each new connection one more subflow, over a second path.
//
// Topology: two client hosts, hk and hu, each joined to one server, srv,
// by two paths; each client has a route to the server's other subnet over
// each path, as a multi-homed host does. srv runs the in-kernel path
// manager with limits that allow joins, and announces nothing. hk is the
// reference: the in-kernel path manager with a subflow endpoint on its end
// of path 1 (bound to path 1's interface), limits subflows 2. hu runs
// mptcpd in userspace mode with one rule, strategy per-interface,
// max_subflows 2. Both clients dial the server's end of their path 0; the
// server holds the connections until the client closes them.
//
// Decision speed is the time from a connection's ESTABLISHED event to its
// second subflow's SUB_ESTABLISHED event, both read from the kernel's
// event stream by the benchmark (one subscription per client namespace,
// with a 32 MiB receive buffer, stamped as read). Connections are opened
// at a paced rate, each writes one byte so it becomes fully established;
// at every rate the two clients take turns in rounds of about 250 ms, the
// first of each pair of rounds the other's each time, so that the
// machine's noise falls on both alike; each round's connections are
// closed before the next round. A connection's subflow counts as a
// success when it came within 1 s; one that never came counts in the
// percentiles as usWait, a lower bound.
//
// On veth the MP_JOIN handshake takes some tens of microseconds, all of it
// in the kernel, so the in-kernel path manager's figure is little more
// than the cost of that handshake, and the ratios measure what a trip
// through userspace (waking the daemon, its decision, one netlink request)
// costs against nearly nothing; added-p50-us and added-p99-us give that
// cost in absolute terms, to set against a real path's round-trip time.
//
// A third client host, hb, runs the least a userspace path manager can
// do (tests/barepm -raw: events read as mptcpd reads them, one raw
// write(2) of SUBFLOW_CREATE per ESTABLISHED, nothing else),
// in the same rounds: the floor of any userspace path manager on this
// machine, against which mptcpd's own cost can be told apart from the
// cost of crossing to userspace at all.
//
// Sub-benchmarks (each measures once, whatever b.N; a second call, as
// -benchtime Nx makes, reports the same figures again):
//
//   - decision/rate=R, R = 100 and 500 connections/s: p50-us and p99-us
//     (ours), ref-p50-us and ref-p99-us (the in-kernel path manager),
//     p50-ratio and p99-ratio (ours/reference; the targets are ≤ 1.10 and
//     ≤ 1.5), added-p50-us and added-p99-us (ours − reference),
//     bare-p50-us, bare-p99-us, bare-p50-ratio and bare-p99-ratio (the
//     bare userspace path manager's, and its ratios to the reference),
//     within1s-frac and ref-within1s-frac, and mptcpd's CPU time per 1,000
//     connections, opened and closed (cpu-ms/kconn, utime+stime of
//     /proc/PID/stat), and how long its threads waited, runnable, for a
//     CPU over the same time (runq-wait-ms/kconn, from
//     /proc/PID/task/*/schedstat): on a shared machine that wait is what
//     other processes cost it.
//   - churn: every rate of usChurnRates in turn; at the highest rate where
//     the in-kernel path manager gave every connection its subflow within
//     1 s, and the benchmark could open connections at 90 % of the rate
//     or more for both (rate-conn/s; 0 if none): within1s-frac,
//     ref-within1s-frac and
//     cpu-ms/kconn; and events-lost, the daemon's
//     mptcpd_netlink_errors_total{op="events_lost"} over the whole churn
//     part.
//   - memory: mptcpd's memory per tracked connection, with usHold
//     connections open (each with its two subflows; the server's ends held
//     by a child process), each figure the difference after and before
//     divided by the connections, read just after garbage collections the
//     benchmark brings about: heap-B/conn is the live heap, derived to the
//     byte from the heap goal the collection set (go_memstats_next_gc_bytes
//     = marked + (marked + stacks + globals) × GOGC/100), and checked
//     against the live heap GODEBUG=gctrace=1 reports in whole MB;
//     heap-inuse-B/conn uses go_memstats_heap_inuse_bytes, rss-B/conn
//     VmRSS. The target for heap-B/conn is ≤ 2048.
//
// MPTCPD_BENCH_US_CONNS sets the connections per rate per path manager
// (default 300), MPTCPD_BENCH_US_HOLD those held for the memory part
// (default 5,000). With the defaults a run takes about 30 s.
// MPTCPD_BENCH_US_GENL_NOISE=dump (or =endpoints) adds another
// namespace's endpoint dumps (or endpoint additions and deletions), back
// to back, while it measures (see usGenlNoise). MPTCPD_BENCH_US_BARE=c
// runs the floor as the same loop written in C (tests/barepm/c; needs cc),
// to tell the cost of the language from that of crossing to userspace;
// =poller runs barepm through mptcpd's kernel client instead.
func BenchmarkUserspaceDecision(b *testing.B) {
	testbed.Require(b)
	n := usConns
	if v, err := strconv.Atoi(os.Getenv("MPTCPD_BENCH_US_CONNS")); err == nil && v > 0 {
		n = min(v, 5000)
	}
	hold := usHold
	if v, err := strconv.Atoi(os.Getenv("MPTCPD_BENCH_US_HOLD")); err == nil && v > 0 {
		hold = min(v, 9000)
	}
	// Open at once: a round's client and server ends (at most n), or the
	// client ends of the held connections.
	raiseNoFile(b, uint64(max(hold, n)+1024))
	bin := buildDaemon(b)
	bed := testbed.New(b)
	hk, hu, hb, srv := bed.Host("hk"), bed.Host("hu"), bed.Host("hb"), bed.Host("srv")
	kp := bed.Paths(hk, srv, 2)
	up := bed.Paths(hu, srv, 2)
	bp := bed.Paths(hb, srv, 2)
	for _, ps := range [][]testbed.Path{kp, up, bp} {
		usCrossRoutes(ps)
	}

	// The server: in-kernel path manager accepting joins, a deep backlog,
	// a listener on every address that reads until the client closes.
	sc, err := genl.New(genl.WithNetNS(srv.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SetLimits(genl.Limits{Subflows: 8, AddAddrAccepted: 8}); err != nil {
		b.Fatal(err)
	}
	for _, h := range []*testbed.Host{hk, hu, hb, srv} {
		for _, s := range [][2]string{
			{"net/core/somaxconn", "8192"},
			{"net/ipv4/tcp_max_syn_backlog", "8192"},
			{"net/ipv4/ip_local_port_range", "10000 65000"},
		} {
			if err := h.WriteSysctl(s[0], s[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
	port := usServe(b, srv)

	// The reference: the in-kernel path manager on hk, with a subflow
	// endpoint on its end of path 1.
	kc, err := genl.New(genl.WithNetNS(hk.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	if err := kc.SetLimits(genl.Limits{Subflows: 2}); err != nil {
		b.Fatal(err)
	}
	if _, err := kc.AddEndpoint(genl.Endpoint{Addr: kp[1].A4, Flags: genl.FlagSubflow, IfIndex: int32(kp[1].AIndex)}); err != nil {
		b.Fatal(err)
	}

	// Ours: mptcpd in userspace mode on hu.
	d := usStartDaemon(b, bin, hu)

	// The floor: the least a userspace path manager can do, on hb.
	usStartBare(b, hb, bp[1])

	kern := &usSide{name: "in-kernel PM", h: hk, remote: netip.AddrPortFrom(kp[0].B4, port)}
	ours := &usSide{name: "mptcpd", h: hu, remote: netip.AddrPortFrom(up[0].B4, port), d: d}
	bare := &usSide{name: "bare userspace PM", h: hb, remote: netip.AddrPortFrom(bp[0].B4, port)}
	for _, s := range []*usSide{kern, ours, bare} {
		s.ev = usCollect(b, s.h)
		s.dialer = usDialer(b, s.h)
	}
	// A few connections each, unmeasured: first-use costs out of the way,
	// and a check that the set-up works.
	for _, s := range []*usSide{kern, ours, bare} {
		r := s.round(b, 100, 20)
		if r.within == 0 {
			b.Fatalf("%s: warm-up: none of %d connections got a second subflow within %s", s.name, r.conns, usWithin)
		}
		if r.within < r.conns {
			b.Logf("%s: warm-up: only %d of %d connections got their second subflow within %s", s.name, r.within, r.conns, usWithin)
		}
	}

	if mode := os.Getenv("MPTCPD_BENCH_US_GENL_NOISE"); mode != "" {
		usGenlNoise(b, srv, mode)
	}

	b.Run("decision", func(b *testing.B) {
		for _, rate := range usDecisionRates {
			var res *usCompare
			b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
				if res == nil {
					r := usInterleave(b, kern, ours, rate, n, bare)
					res = &r
				}
				res.report(b)
			})
		}
	})

	var churn *usChurn
	b.Run("churn", func(b *testing.B) {
		if churn == nil {
			c := usMeasureChurn(b, kern, ours, n)
			churn = &c
		}
		churn.report(b)
	})

	var mem *usMemory
	b.Run("memory", func(b *testing.B) {
		if mem == nil {
			m := usMeasureMemory(b, ours, srv, netip.AddrPortFrom(up[0].B4, 0), hold)
			mem = &m
		}
		mem.report(b)
	})

	if lost := d.eventsLostLines(); lost > 0 {
		b.Logf("mptcpd logged %d times that kernel events were lost", lost)
	}
	for _, s := range []*usSide{kern, ours, bare} {
		if lost := s.ev.lostCount(); lost > 0 {
			b.Logf("the benchmark's own event subscription in %s's namespace lost events %d times: figures are suspect", s.name, lost)
		}
	}
}

// usGenlNoise makes mptcp_pm requests in srv's namespace back to back,
// from the start of the measurements to their end (at most 10 minutes), as
// another program (or another test) on the host would: "endpoints" adds
// an endpoint and deletes it, anything else dumps the endpoints. Every
// mptcp_pm request of every namespace runs under the kernel's one
// generic-netlink mutex (the family does not set parallel_ops), mptcpd's
// SUBFLOW_CREATE included, and deleting an endpoint waits for an RCU grace
// period while it holds it; the in-kernel path manager takes no such
// mutex.
func usGenlNoise(b *testing.B, srv *testbed.Host, mode string) {
	c, err := genl.New(genl.WithNetNS(srv.FD()))
	if err != nil {
		b.Fatal(err)
	}
	// "endpoints": add an endpoint and delete it, back to back; otherwise
	// dump the endpoints.
	op := func() error { _, err := c.Endpoints(); return err }
	if mode == "endpoints" {
		addr := netip.MustParseAddr("203.0.113.200")
		op = func() error {
			ep, err := c.AddEndpoint(genl.Endpoint{Addr: addr, Flags: genl.FlagSignal})
			if err != nil {
				return err
			}
			return c.DeleteEndpoint(ep.ID)
		}
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		deadline := time.Now().Add(10 * time.Minute)
		n := 0
		for ; time.Now().Before(deadline); n++ {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if err := op(); err != nil {
				b.Logf("generic-netlink noise: %v", err)
				break
			}
		}
		<-stop
		done <- n
	}()
	start := time.Now()
	b.Cleanup(func() {
		close(stop)
		n := <-done
		_ = c.Close()
		b.Logf("generic-netlink noise (%s): %d requests in another namespace in %s", mode, n, time.Since(start).Round(time.Millisecond))
	})
	b.Logf("generic-netlink noise (%s): another namespace's path manager is sent requests back to back while the benchmark measures", mode)
}

// usCrossRoutes gives each client path a route to the server's subnet of
// every other path (as crossRoutes does), so that a subflow bound to path
// 1's interface can reach the server's address on path 0.
func usCrossRoutes(paths []testbed.Path) {
	for i, pi := range paths {
		for j, pj := range paths {
			if i == j {
				continue
			}
			pi.A.MustIP("route", "add", netip.PrefixFrom(pj.B4, 28).Masked().String(), "via", pi.B4.String(), "dev", pi.AIf, "metric", "1000")
			pi.A.MustIP("-6", "route", "add", netip.PrefixFrom(pj.B6, 64).Masked().String(), "via", pi.B6.String(), "dev", pi.AIf, "metric", "1000")
		}
	}
}

// usServe listens for MPTCP connections on every IPv4 address of srv and
// reads each until its client closes it; it returns the port.
func usServe(b *testing.B, srv *testbed.Host) uint16 {
	b.Helper()
	ln, err := srv.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
			})
		}
	})
	b.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// usStartBare builds tests/barepm and runs it on h, with h's path manager
// set to userspace, asking each new connection for a subflow from h's end
// of path, bound to its interface: in -raw mode (raw system calls, see
// barepm), or, with MPTCPD_BENCH_US_BARE=poller, through the genl client's
// defaults, or, with MPTCPD_BENCH_US_BARE=c, as a blocking recv/send loop
// written in C (tests/barepm/c, built with cc).
func usStartBare(b *testing.B, h *testbed.Host, path testbed.Path) {
	b.Helper()
	if err := h.WriteSysctl("net/mptcp/path_manager", "userspace"); err != nil {
		b.Fatal(err)
	}
	args := []string{"-local", path.A4.String(), "-ifindex", strconv.Itoa(path.AIndex)}
	bin := filepath.Join(b.TempDir(), "barepm")
	switch mode := os.Getenv("MPTCPD_BENCH_US_BARE"); mode {
	case "", "poller":
		if out, err := exec.Command("go", "build", "-o", bin, "./barepm").CombinedOutput(); err != nil {
			b.Fatalf("building barepm: %v\n%s", err, out)
		}
		if mode == "" {
			args = append(args, "-raw")
		}
	case "c":
		if out, err := exec.Command("cc", "-O2", "-Wall", "-o", bin, "barepm/c/barepm.c").CombinedOutput(); err != nil {
			b.Fatalf("building barepm/c/barepm.c (MPTCPD_BENCH_US_BARE=c needs a C compiler: apt-get install gcc): %v\n%s", err, out)
		}
		family, group, err := usEventsFamily()
		if err != nil {
			b.Fatal(err)
		}
		args = append(args, "-family", strconv.Itoa(int(family)), "-group", strconv.Itoa(int(group)))
	default:
		b.Fatalf("MPTCPD_BENCH_US_BARE=%q: want poller or c, or nothing for barepm -raw", mode)
	}
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	log := &syncBuffer{}
	cmd.Stderr = log
	if err := h.Start(cmd); err != nil {
		b.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	exited := make(chan error, 1)
	ready := make(chan bool, 1)
	go func() {
		first := true
		for lines.Scan() {
			if first {
				ready <- lines.Text() == "ready"
				first = false
				continue
			}
			_, _ = log.Write(append(lines.Bytes(), '\n'))
		}
		if first {
			ready <- false
		}
		exited <- cmd.Wait()
	}()
	b.Cleanup(func() {
		terminate(cmd.Process, exited, 5*time.Second)
		b.Logf("bare userspace PM: %s", strings.TrimSpace(log.String()))
	})
	select {
	case ok := <-ready:
		if !ok {
			b.Fatalf("barepm did not start: %s", log.String())
		}
	case <-time.After(10 * time.Second):
		b.Fatalf("barepm did not start within 10s: %s", log.String())
	}
}

// usEventsFamily returns the numbers of the mptcp_pm family and of its
// events group, which are the same in every network namespace.
func usEventsFamily() (family uint16, group uint32, err error) {
	c, err := genl.New()
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if c.EventsGroup() == 0 {
		return 0, 0, fmt.Errorf("family %s has no group %s", genl.FamilyName, genl.EventsGroupName)
	}
	return c.Family().ID, c.EventsGroup(), nil
}

// usDaemon is mptcpd running in userspace mode on a test host.
type usDaemon struct {
	cmd     *exec.Cmd
	log     *syncBuffer
	metrics string // URL of the metrics endpoint
	api     pb.MptcpdServiceClient
}

// usStartDaemon starts mptcpd in userspace mode on h, with its metrics
// endpoint on a free loopback port and GODEBUG=gctrace=1 (a line per
// garbage collection, with the live heap it marked).
func usStartDaemon(b *testing.B, bin string, h *testbed.Host) *usDaemon {
	b.Helper()
	dir := b.TempDir()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	metricsAddr := free.Addr().String()
	_ = free.Close()
	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "mptcpd.toml")
	text := fmt.Sprintf(`mode = "userspace"
state_dir = %q
[api]
socket = %q
[metrics]
listen = %q
[[rule]]
name = "test paths"
interfaces = ["p*"]
kinds = ["veth"]
flags = ["subflow"]
[[userspace.rule]]
name = "bench"
side = "client"
strategy = "per-interface"
max_subflows = 2
`, filepath.Join(dir, "state"), sock, metricsAddr)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	notify, states := notifySocket(b)
	d := &usDaemon{log: &syncBuffer{}, metrics: "http://" + metricsAddr + "/metrics"}
	d.cmd = exec.Command(bin, "--config", conf, "--netns", h.NS)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify, "GODEBUG=gctrace=1")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	b.Cleanup(func() {
		terminate(d.cmd.Process, exited, 10*time.Second)
		if b.Failed() {
			b.Logf("mptcpd log (gc lines left out):\n%s", d.logWithoutGC())
		}
	})
	timeout := time.After(15 * time.Second)
	for ready := false; !ready; {
		select {
		case s := <-states:
			ready = s == "READY=1"
		case err := <-exited:
			b.Fatalf("mptcpd exited (%v) before READY=1; log:\n%s", err, d.log.String())
		case <-timeout:
			b.Fatalf("mptcpd sent no READY=1 within 15 s; log:\n%s", d.log.String())
		}
	}
	conn, c, err := api.Dial(sock, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	d.api = c
	return d
}

var usGCLine = regexp.MustCompile(`(?m)^gc (\d+) @[^ ]+ [^ ]+: .* (\d+)->(\d+)->(\d+) MB`)

// gcs returns the garbage collections gctrace has reported so far: their
// number, and the live heap the last one marked, in MB.
func (d *usDaemon) gcs() (count int, liveMB int64) {
	m := usGCLine.FindAllStringSubmatch(d.log.String(), -1)
	if len(m) == 0 {
		return 0, 0
	}
	last := m[len(m)-1]
	live, _ := strconv.ParseInt(last[4], 10, 64)
	return len(m), live
}

func (d *usDaemon) logWithoutGC() string {
	var out []string
	for _, line := range strings.Split(d.log.String(), "\n") {
		if !usGCLine.MatchString(line) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// eventsLostLines counts the daemon's log lines that say kernel events
// were lost.
func (d *usDaemon) eventsLostLines() int {
	return strings.Count(d.log.String(), "events were lost")
}

// usHeap is the daemon's heap just after a garbage collection.
type usHeap struct {
	// liveMB is the live heap the collection marked, as gctrace reports
	// it (whole MB).
	liveMB int64
	// goal is the heap goal the collection set (go_memstats_next_gc_bytes):
	// marked + (marked + stacks + globals) × GOGC/100, to the byte.
	goal, stack, inuse, gogc float64
}

// heapAfterGC makes the daemon collect garbage twice, with nothing of its
// own going on, and reads its heap after the second collection. A
// collection comes when the heap has grown to its goal; the benchmark
// makes it grow with cheap API calls that keep nothing (ListEndpoints),
// which leave no more than one call's worth of live data behind.
func (d *usDaemon) heapAfterGC(b *testing.B) usHeap {
	b.Helper()
	start, _ := d.gcs()
	deadline := time.Now().Add(30 * time.Second)
	for calls := 0; ; calls++ {
		if n, _ := d.gcs(); n >= start+2 {
			break
		}
		if time.Now().After(deadline) || calls > 200_000 {
			b.Fatalf("mptcpd collected no garbage twice in 30 s (%d API calls)", calls)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.api.ListEndpoints(ctx, &pb.ListEndpointsRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			b.Fatalf("ListEndpoints: %v", err)
		}
	}
	n, mb := d.gcs()
	m := d.scrape(b)
	if after, _ := d.gcs(); after != n {
		b.Logf("mptcpd collected garbage while its metrics were read")
	}
	h := usHeap{liveMB: mb, goal: m["go_memstats_next_gc_bytes"], stack: m["go_memstats_stack_inuse_bytes"],
		inuse: m["go_memstats_heap_inuse_bytes"], gogc: m["go_gc_gogc_percent"]}
	if h.goal == 0 || h.gogc <= 0 {
		b.Fatalf("mptcpd's metrics lack go_memstats_next_gc_bytes or go_gc_gogc_percent")
	}
	return h
}

// scrape reads the daemon's metrics endpoint into a map by series (name
// with its labels, as written).
func (d *usDaemon) scrape(b *testing.B) map[string]float64 {
	b.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(d.metrics)
	if err != nil {
		b.Fatalf("reading mptcpd's metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("reading mptcpd's metrics: %v", err)
	}
	return out
}

func (d *usDaemon) eventsLost(b *testing.B) float64 {
	return d.scrape(b)[`mptcpd_netlink_errors_total{op="events_lost"}`]
}

// cpu returns the daemon's CPU time so far (utime+stime).
func (d *usDaemon) cpu(b *testing.B) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields 14 and 15 of the file; f starts at field 3.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", d.cmd.Process.Pid, s)
	}
	const userHZ = 100 // clock ticks per second (USER_HZ)
	return time.Duration(ut+st) * time.Second / userHZ
}

// runqWait returns how long the daemon's threads have waited, runnable,
// for a CPU (the second field of /proc/PID/task/TID/schedstat, summed; a
// thread that has ended no longer counts).
func (d *usDaemon) runqWait() time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", d.cmd.Process.Pid)
	tasks, _ := os.ReadDir(dir)
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// usEvents records, per token, when the benchmark read a connection's
// ESTABLISHED event and its first SUB_ESTABLISHED event, from a
// subscription in a client's namespace, and when the application's
// connect returned (by local port), which is where a connection's latency
// is measured from: both path managers' events reach a reader through the
// same socket wake-up, so reading both ESTABLISHED and SUB_ESTABLISHED
// would credit the in-kernel path manager with the time the events waited
// together.
type usEvents struct {
	mu     sync.Mutex
	est    map[uint32]time.Time
	sub    map[uint32]time.Time
	port   map[uint32]uint16    // token → local port
	dialed map[uint16]time.Time // local port → connect returned
	closed int
	lost   int
}

// dialedAt records when the connection from local port p was established
// for the application.
func (e *usEvents) dialedAt(p uint16, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dialed[p] = t
}

// usCollect subscribes to h's MPTCP events and records them until the
// benchmark ends.
func usCollect(b *testing.B, h *testbed.Host) *usEvents {
	b.Helper()
	c, err := genl.New(genl.WithNetNS(h.FD()), genl.WithEventBuffer(32<<20))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := c.Subscribe(ctx)
	if err != nil {
		cancel()
		_ = c.Close()
		b.Fatal(err)
	}
	e := &usEvents{est: map[uint32]time.Time{}, sub: map[uint32]time.Time{}, port: map[uint32]uint16{}, dialed: map[uint16]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The benchmark is the instrument, and must not take a CPU from
		// the path manager it measures: its reader, which wakes on the
		// same events as the path manager, runs on a thread of its own
		// at the lowest priority (nice 19). Its delays fall alike on the
		// two events it stamps. The thread ends with the goroutine.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		for {
			evs, err := sub.Receive()
			now := time.Now()
			if errors.Is(err, genl.ErrEventsLost) {
				e.mu.Lock()
				e.lost++
				e.mu.Unlock()
				continue
			}
			if err != nil {
				return
			}
			e.mu.Lock()
			for i := range evs {
				ev := &evs[i]
				switch ev.Type {
				case genl.EventEstablished:
					if _, ok := e.est[ev.Token]; !ok {
						e.est[ev.Token] = now
						e.port[ev.Token] = ev.Local.Port()
					}
				case genl.EventSubEstablished:
					if _, ok := e.sub[ev.Token]; !ok {
						e.sub[ev.Token] = now
					}
				case genl.EventClosed:
					e.closed++
				}
			}
			e.mu.Unlock()
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = sub.Close()
		_ = c.Close()
	})
	return e
}

// reset forgets the connections recorded so far.
func (e *usEvents) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.est, e.sub, e.closed = map[uint32]time.Time{}, map[uint32]time.Time{}, 0
	e.port, e.dialed = map[uint32]uint16{}, map[uint16]time.Time{}
}

func (e *usEvents) lostCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lost
}

// counts returns the connections established, those of them with a
// second subflow, and the CLOSED events, since the last reset.
func (e *usEvents) counts() (est, withSub, closed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for t := range e.est {
		if _, ok := e.sub[t]; ok {
			withSub++
		}
	}
	return len(e.est), withSub, e.closed
}

// latencies returns, for every connection established since the last
// reset, the time from its establishment for the application (connect
// returned; the ESTABLISHED event when unknown) to its second subflow's
// SUB_ESTABLISHED, or missing for one without.
func (e *usEvents) latencies(missing time.Duration) []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]time.Duration, 0, len(e.est))
	for t, at := range e.est {
		if d, ok := e.dialed[e.port[t]]; ok {
			at = d
		}
		if s, ok := e.sub[t]; ok {
			out = append(out, max(s.Sub(at), 0))
		} else {
			out = append(out, missing)
		}
	}
	return out
}

// usJob asks a dialler for one connection.
type usJob struct {
	remote netip.AddrPort
	ev     *usEvents
	done   chan<- usDialed
}

type usDialed struct {
	c   net.Conn
	err error
}

// usDialer starts usDialers goroutines, each locked to a thread of its own
// that has entered h's namespace for good, that open MPTCP connections and
// write one byte on each; it returns their queue, closed when the
// benchmark ends. (testbed's Host.Dial starts a thread per connection,
// which at 1,500 connections a second costs the machine more than the
// path managers do.)
func usDialer(b *testing.B, h *testbed.Host) chan<- usJob {
	b.Helper()
	jobs := make(chan usJob, 16384)
	var wg sync.WaitGroup
	for range usDialers {
		wg.Go(func() {
			// No UnlockOSThread: the thread, in h's namespace, ends with
			// the goroutine.
			runtime.LockOSThread()
			nsErr := unix.Setns(h.FD(), unix.CLONE_NEWNET)
			if nsErr != nil {
				nsErr = fmt.Errorf("entering the namespace of %s: %w", h.Name, nsErr)
			}
			d := net.Dialer{Timeout: 5 * time.Second}
			d.SetMultipathTCP(true)
			for j := range jobs {
				if nsErr != nil {
					j.done <- usDialed{err: nsErr}
					continue
				}
				c, err := d.Dial("tcp", j.remote.String())
				if err == nil {
					j.ev.dialedAt(uint16(c.LocalAddr().(*net.TCPAddr).Port), time.Now())
					if ok, merr := c.(*net.TCPConn).MultipathTCP(); !ok || merr != nil {
						_ = c.Close()
						c, err = nil, fmt.Errorf("%s → %s fell back to TCP (%v)", h.Name, j.remote, merr)
					} else if _, err = c.Write([]byte{0}); err != nil {
						_ = c.Close()
						c = nil
					}
				}
				j.done <- usDialed{c: c, err: err}
			}
		})
	}
	b.Cleanup(func() {
		close(jobs)
		wg.Wait()
	})
	return jobs
}

// usSide is one client host and its path manager.
type usSide struct {
	name   string
	h      *testbed.Host
	remote netip.AddrPort
	d      *usDaemon // nil for the in-kernel path manager
	ev     *usEvents
	dialer chan<- usJob
}

// dial opens n connections at rate a second (paced from the start, so a
// late one is followed by the next at once) and returns them, with the
// number that failed and the first failure.
func (s *usSide) dial(b *testing.B, rate, n int) (conns []net.Conn, took time.Duration, failed int, first error) {
	b.Helper()
	done := make(chan usDialed, n)
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		s.dialer <- usJob{remote: s.remote, ev: s.ev, done: done}
	}
	for range n {
		r := <-done
		if r.err != nil {
			failed++
			if first == nil {
				first = r.err
			}
			continue
		}
		conns = append(conns, r.c)
	}
	return conns, time.Since(start), failed, first
}

// usRound is what one round measured.
type usRound struct {
	conns, failed, within int
	lat                   []time.Duration
	cpu                   time.Duration // the daemon's, from the first connection until all were closed
	wait                  time.Duration // the daemon's threads' waits for a CPU, over the same time
	took                  time.Duration // dialling
}

// round opens n connections at rate, waits (bounded) for their second
// subflows, measures, then closes them and waits (bounded) for the kernel
// to report them closed.
func (s *usSide) round(b *testing.B, rate, n int) usRound {
	b.Helper()
	s.ev.reset()
	var cpu0, wait0 time.Duration
	if s.d != nil {
		cpu0, wait0 = s.d.cpu(b), s.d.runqWait()
	}
	conns, took, failed, first := s.dial(b, rate, n)
	if failed > 0 {
		b.Logf("%s: %d of %d connections failed at %d/s, the first: %v", s.name, failed, n, rate, first)
	}
	if failed*100 > n {
		b.Fatalf("%s: %d of %d connections failed", s.name, failed, n)
	}
	deadline := time.Now().Add(usWait)
	for time.Now().Before(deadline) {
		est, sub, _ := s.ev.counts()
		if est >= len(conns) && sub >= est {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	r := usRound{conns: len(conns), failed: failed, took: took, lat: s.ev.latencies(usWait)}
	for _, l := range r.lat {
		if l <= usWithin {
			r.within++
		}
	}
	// Connections whose ESTABLISHED the benchmark did not see count as
	// failures.
	r.within = min(r.within, r.conns)
	for _, c := range conns {
		_ = c.Close()
	}
	_ = testbed.WaitFor(10*time.Second, func() (bool, error) {
		_, _, closed := s.ev.counts()
		return closed >= len(conns), nil
	})
	if s.d != nil {
		r.cpu, r.wait = s.d.cpu(b)-cpu0, s.d.runqWait()-wait0
	}
	return r
}

// usStats are one path manager's figures at one rate.
type usStats struct {
	conns, within int
	p50, p99, max time.Duration
	cpu, wait     time.Duration
	rate          float64 // connections completed per second of dialling
}

func (s usStats) frac() float64 {
	if s.conns == 0 {
		return 0
	}
	return float64(s.within) / float64(s.conns)
}

func (s usStats) cpuPerK() float64 { return s.perK(s.cpu) }

// perK returns d in milliseconds per 1,000 connections.
func (s usStats) perK(d time.Duration) float64 {
	if s.conns == 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond) / float64(s.conns) * 1000
}

func usSummarise(rounds []usRound) usStats {
	var st usStats
	var lat []time.Duration
	var took time.Duration
	for _, r := range rounds {
		st.conns += r.conns
		st.within += r.within
		st.cpu += r.cpu
		st.wait += r.wait
		took += r.took
		lat = append(lat, r.lat...)
	}
	if took > 0 {
		st.rate = float64(st.conns) / took.Seconds()
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		st.p50, st.p99, st.max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	}
	return st
}

// usCompare is both path managers' figures at one rate.
type usCompare struct {
	rate       int
	ours, kern usStats
	// bare is the bare userspace path manager's, when it took part.
	bare *usStats
}

// usInterleave runs rounds of each path manager at rate, n connections
// each in all, in turns: the in-kernel one, ours, and the others given,
// the order of each turn rotated by one from the turn before, so that
// each goes first as often as the others.
func usInterleave(b *testing.B, kern, ours *usSide, rate, n int, others ...*usSide) usCompare {
	b.Helper()
	sides := append([]*usSide{kern, ours}, others...)
	rounds := make([][]usRound, len(sides))
	per := min(max(int(float64(rate)*usRoundTime.Seconds()), usMinRound), (n+1)/2)
	for i := 0; i*per < n; i++ {
		k := min(per, n-i*per)
		for j := range sides {
			x := (i + j) % len(sides)
			rounds[x] = append(rounds[x], sides[x].round(b, rate, k))
		}
	}
	c := usCompare{rate: rate, kern: usSummarise(rounds[0]), ours: usSummarise(rounds[1])}
	if len(others) > 0 {
		bs := usSummarise(rounds[2])
		c.bare = &bs
	}
	// The machine is shared: its load says how noisy the figures are.
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("%d/s: load average %s", rate, strings.Join(strings.Fields(string(load))[:3], " "))
	}
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	for i, s := range sides {
		x := struct {
			name string
			s    usStats
		}{s.name, usSummarise(rounds[i])}
		b.Logf("%d/s (%.0f/s completed) in %d rounds: %s: %d connections, %d (%.2f%%) with their second subflow within %s; p50 %s, p99 %s, max %s",
			rate, x.s.rate, len(rounds[i]), x.name, x.s.conns, x.s.within, 100*x.s.frac(), usWithin, us(x.s.p50), us(x.s.p99), us(x.s.max))
	}
	b.Logf("%d/s: mptcpd used %.1f ms of CPU per 1,000 connections, and its threads waited %.1f ms for a CPU while runnable",
		rate, c.ours.cpuPerK(), c.ours.perK(c.ours.wait))
	return c
}

func (c *usCompare) report(b *testing.B) {
	usf := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(usf(c.ours.p50), "p50-us")
	b.ReportMetric(usf(c.ours.p99), "p99-us")
	b.ReportMetric(usf(c.kern.p50), "ref-p50-us")
	b.ReportMetric(usf(c.kern.p99), "ref-p99-us")
	b.ReportMetric(float64(c.ours.p50)/float64(c.kern.p50), "p50-ratio")
	b.ReportMetric(float64(c.ours.p99)/float64(c.kern.p99), "p99-ratio")
	b.ReportMetric(usf(c.ours.p50-c.kern.p50), "added-p50-us")
	b.ReportMetric(usf(c.ours.p99-c.kern.p99), "added-p99-us")
	b.ReportMetric(c.ours.frac(), "within1s-frac")
	b.ReportMetric(c.kern.frac(), "ref-within1s-frac")
	b.ReportMetric(c.ours.cpuPerK(), "cpu-ms/kconn")
	b.ReportMetric(c.ours.perK(c.ours.wait), "runq-wait-ms/kconn")
	if c.bare != nil {
		b.ReportMetric(usf(c.bare.p50), "bare-p50-us")
		b.ReportMetric(usf(c.bare.p99), "bare-p99-us")
		b.ReportMetric(float64(c.bare.p50)/float64(c.kern.p50), "bare-p50-ratio")
		b.ReportMetric(float64(c.bare.p99)/float64(c.kern.p99), "bare-p99-ratio")
	}
}

// usChurn is the churn part's result.
type usChurn struct {
	at         *usCompare // the highest rate where the reference had 100 %
	eventsLost float64
	lostLines  int
}

// usMeasureChurn steps through usChurnRates, both path managers
// interleaved at each, and keeps the highest rate at which the in-kernel
// path manager gave every connection its second subflow within 1 s. (It
// does not stop at the first rate where the reference missed: on a noisy
// machine one stall can do that at any rate.)
func usMeasureChurn(b *testing.B, kern, ours *usSide, n int) usChurn {
	b.Helper()
	lost0, lines0 := ours.d.eventsLost(b), ours.d.eventsLostLines()
	var res usChurn
	for _, rate := range usChurnRates {
		c := usInterleave(b, kern, ours, rate, n)
		if slow := min(c.kern.rate, c.ours.rate); slow < 0.9*float64(rate) {
			b.Logf("%d/s: connections were completed at only %.0f/s: the machine cannot open them at this rate, and it does not count", rate, slow)
			continue
		}
		if c.kern.within < c.kern.conns {
			b.Logf("%d/s: the in-kernel path manager gave %d of %d connections their subflow within %s",
				rate, c.kern.within, c.kern.conns, usWithin)
			continue
		}
		res.at = &c
	}
	res.eventsLost = ours.d.eventsLost(b) - lost0
	res.lostLines = ours.d.eventsLostLines() - lines0
	if res.at == nil {
		b.Logf("the in-kernel path manager missed subflows at every rate tried (%v)", usChurnRates)
	}
	return res
}

func (c *usChurn) report(b *testing.B) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(c.eventsLost, "events-lost")
	if c.at == nil {
		b.ReportMetric(0, "rate-conn/s")
		return
	}
	b.ReportMetric(float64(c.at.rate), "rate-conn/s")
	b.ReportMetric(c.at.ours.frac(), "within1s-frac")
	b.ReportMetric(c.at.kern.frac(), "ref-within1s-frac")
	b.ReportMetric(c.at.ours.cpuPerK(), "cpu-ms/kconn")
	if c.at.ours.within < c.at.ours.conns {
		b.Logf("%d/s: mptcpd gave only %d of %d connections their second subflow within %s", c.at.rate, c.at.ours.within, c.at.ours.conns, usWithin)
	}
	if c.lostLines > 0 {
		b.Logf("mptcpd logged %d times that kernel events were lost during the churn part", c.lostLines)
	}
}

// usMemory is the memory part's result.
type usMemory struct {
	conns               int
	heap, inuse, rss    float64 // bytes per connection
	before, after       usHeap
	rssBefore, rssAfter int64
}

// usMeasureMemory holds n connections from ours's host to a connection
// holder on srv at addr's address and measures the daemon's memory per
// connection.
func usMeasureMemory(b *testing.B, ours *usSide, srv *testbed.Host, addr netip.AddrPort, n int) usMemory {
	b.Helper()
	d := ours.d
	remote := holdConnections(b, srv, addr)
	time.Sleep(500 * time.Millisecond)
	m := usMemory{conns: n, before: d.heapAfterGC(b)}
	var err error
	if m.rssBefore, err = vmRSS(d.cmd.Process.Pid); err != nil {
		b.Fatal(err)
	}

	side := *ours
	side.remote = remote
	ours.ev.reset()
	start := time.Now()
	conns, _, failed, first := side.dial(b, 1000, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if failed > 0 {
		b.Fatalf("%d of %d connections failed, the first: %v", failed, n, first)
	}
	var est, sub int
	_ = testbed.WaitFor(30*time.Second, func() (bool, error) {
		est, sub, _ = ours.ev.counts()
		return est >= n && sub >= n, nil
	})
	b.Logf("%d connections held, %d seen established, %d with their second subflow, in %s",
		len(conns), est, sub, time.Since(start).Round(time.Millisecond))
	if sub < n*99/100 {
		b.Fatalf("only %d of %d held connections got their second subflow", sub, n)
	}
	time.Sleep(time.Second)
	m.after = d.heapAfterGC(b)
	if m.rssAfter, err = vmRSS(d.cmd.Process.Pid); err != nil {
		b.Fatal(err)
	}
	// goal = marked + (marked + stacks + globals)·g, g = GOGC/100, so
	// Δmarked = (Δgoal − g·Δstacks) / (1 + g); the globals cancel out.
	g := m.after.gogc / 100
	marked := (m.after.goal - m.before.goal - g*(m.after.stack-m.before.stack)) / (1 + g)
	m.heap = marked / float64(n)
	m.inuse = (m.after.inuse - m.before.inuse) / float64(n)
	m.rss = float64(m.rssAfter-m.rssBefore) / float64(n)
	mb := func(v float64) string { return fmt.Sprintf("%.1f MB", v/(1<<20)) }
	b.Logf("mptcpd with %d connections: live heap %s more (gctrace: %d → %d MB), heap goal %s → %s, heap in use %s → %s, RSS %s → %s",
		n, mb(marked), m.before.liveMB, m.after.liveMB, mb(m.before.goal), mb(m.after.goal),
		mb(m.before.inuse), mb(m.after.inuse), mb(float64(m.rssBefore)), mb(float64(m.rssAfter)))
	if gc := float64(m.after.liveMB-m.before.liveMB) * (1 << 20); math.Abs(gc-marked) > 2<<20 {
		b.Logf("the live heap from the heap goal (%s) and gctrace's (%s) disagree by more than 2 MB", mb(marked), mb(gc))
	}
	return m
}

func (m *usMemory) report(b *testing.B) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(m.heap, "heap-B/conn")
	b.ReportMetric(m.inuse, "heap-inuse-B/conn")
	b.ReportMetric(m.rss, "rss-B/conn")
	b.ReportMetric(float64(m.conns), "conns")
}
