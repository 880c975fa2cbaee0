package tests

// Benchmarks of the userspace fallback datapath (MPX) against its two
// baselines, plain TCP on one path and kernel MPTCP on all paths, on the
// topology of fallbackBed (tests/fallback_bed_test.go), with the load tool
// of tests/load. They follow the benchmark table of the design sketch
// (B1 aggregation, B2 single-path overhead, B3 failover, B4 CPU).
//
// Each sub-benchmark measures once, whatever b.N, and reports its figures
// with b.ReportMetric (ns/op is reported as 0). By default the transfers
// are small, so that `go test -bench . -benchtime 20x` (the CI smoke run)
// stays quick; for the real measurement, as root:
//
//	MPTCPD_BENCH_FB_SECONDS=10 go test -run '^$' -bench Fallback -benchtime 1x -timeout 30m ./tests/
//
// MPTCPD_BENCH_FB_SECONDS is the length of a transfer at the paths'
// summed rate (failover: 40 % before the cut, 60 % after, at least 3 s);
// MPTCPD_BENCH_FB_HIGH=1 adds the 200+100 Mbit/s pair and the 10 Mbit/s,
// 1 Gbit/s and unshaped single paths.
//
// The MPX rows are skipped until fallbackBed.startMPX returns the
// datapath (see the MPX HOOK comment there).

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/tests/load"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// fbConfig sizes the fallback benchmarks' transfers.
type fbConfig struct {
	// full is set by MPTCPD_BENCH_FB_SECONDS: a real measurement.
	full bool
	// seconds is how long a transfer lasts at the summed rate.
	seconds float64
	// high adds the faster scenarios.
	high bool
}

func fallbackConfig(b *testing.B) fbConfig {
	b.Helper()
	c := fbConfig{seconds: 0.5}
	if v := os.Getenv("MPTCPD_BENCH_FB_SECONDS"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 || s > 600 {
			b.Fatalf("MPTCPD_BENCH_FB_SECONDS=%q: want a number of seconds from 0 to 600", v)
		}
		c.full, c.seconds = true, s
	}
	c.high = os.Getenv("MPTCPD_BENCH_FB_HIGH") != ""
	return c
}

// fbRecords is how many records take the given time at rate bits/s.
func fbRecords(rate, seconds float64) int64 {
	return max(int64(rate*seconds/8/load.DefaultSize), 1)
}

// watchdog is the time after which a fallback benchmark fails with the
// stacks of all goroutines.
func (c fbConfig) watchdog() time.Duration {
	return 5*time.Minute + time.Duration(40*c.seconds)*time.Second
}

// fbOnce runs fn in a sub-benchmark once, whatever b.N: a transfer is the
// measurement, and its figures are metrics.
func fbOnce(b *testing.B, fn func()) {
	b.Helper()
	ran := false
	for b.Loop() {
		if !ran {
			fn()
			ran = true
		}
	}
	b.ReportMetric(0, "ns/op")
}

// fbSkipWithoutMPX skips an MPX row while there is no MPX datapath.
func fbSkipWithoutMPX(b *testing.B, bed *fallbackBed) {
	b.Helper()
	if bed.mpx == nil {
		b.Skipf("MPX row skipped: %v", errFBNoMPX)
	}
}

func fbMbit(bps float64) float64 { return bps / 1e6 }

// BenchmarkFallbackAggregation (B1): goodput of one upload over two
// shaped paths, for each pair of rates: plain TCP on path 0, kernel MPTCP
// over both, MPX over both.
//
// Metrics: Mbit/s (receiver goodput); plain: of-rate (of path 0's rate);
// kernel: of-sum (of the summed rates, a sanity figure); mpx: of-sum and
// of-kernel (targets ≥ 0.85 balanced, ≥ 0.9 of kernel); lat-p50-ms and
// lat-p99-ms (record send to arrival, including socket buffers).
func BenchmarkFallbackAggregation(b *testing.B) {
	cfg := fallbackConfig(b)
	defer diagWatchdog(b, cfg.watchdog())()
	pairs := [][2]int{{10, 10}, {50, 30}, {100, 50}}
	if cfg.high {
		pairs = append(pairs, [2]int{200, 100})
	}
	bed := newFallbackBed(b, 2, []string{"", ""})
	for _, pr := range pairs {
		b.Run(fmt.Sprintf("%d+%d", pr[0], pr[1]), func(b *testing.B) {
			bed.shape(fmt.Sprintf("%dmbit", pr[0]), fmt.Sprintf("%dmbit", pr[1]))
			sum := bed.sumRate()
			n := fbRecords(sum, cfg.seconds)
			report := func(b *testing.B, r fbResult) {
				b.ReportMetric(fbMbit(r.recv.Goodput), "Mbit/s")
				b.ReportMetric(float64(r.recv.LatencyP50)/1e6, "lat-p50-ms")
				b.ReportMetric(float64(r.recv.LatencyP99)/1e6, "lat-p99-ms")
			}
			var kernel float64
			kernelGoodput := func(b *testing.B) float64 {
				if kernel == 0 {
					kernel = fbMeasure(b, bed, fbKernelMPTCP(), fbFlow{dir: fbUpload, records: n}).recv.Goodput
				}
				return kernel
			}
			b.Run("plain", func(b *testing.B) {
				fbOnce(b, func() {
					r := fbMeasure(b, bed, fbPlainTCP(), fbFlow{dir: fbUpload, records: fbRecords(bed.rate(0), cfg.seconds)})
					report(b, r)
					b.ReportMetric(r.recv.Goodput/bed.rate(0), "of-rate")
				})
			})
			b.Run("kernel", func(b *testing.B) {
				fbOnce(b, func() {
					r := fbMeasure(b, bed, fbKernelMPTCP(), fbFlow{dir: fbUpload, records: n})
					kernel = r.recv.Goodput
					report(b, r)
					b.ReportMetric(r.recv.Goodput/sum, "of-sum")
				})
			})
			b.Run("mpx", func(b *testing.B) {
				fbSkipWithoutMPX(b, bed)
				fbOnce(b, func() {
					r := fbMeasure(b, bed, fbMPX(), fbFlow{dir: fbUpload, records: n})
					report(b, r)
					b.ReportMetric(r.recv.Goodput/sum, "of-sum")
					b.ReportMetric(r.recv.Goodput/kernelGoodput(b), "of-kernel")
				})
			})
		})
	}
}

// BenchmarkFallbackSinglePath (B2): one shaped path; the overhead of MPX
// over plain TCP on the same path.
//
// Metrics: Mbit/s; plain: of-rate; mpx: of-rate and of-plain (target
// ≥ 0.97).
func BenchmarkFallbackSinglePath(b *testing.B) {
	cfg := fallbackConfig(b)
	defer diagWatchdog(b, cfg.watchdog())()
	rates := []string{"100mbit"}
	if cfg.high {
		rates = append(rates, "10mbit", "1000mbit", "")
	}
	bed := newFallbackBed(b, 1, []string{""})
	for _, rate := range rates {
		name := rate
		if rate == "" {
			name = "unshaped"
		}
		b.Run(name, func(b *testing.B) {
			bed.shape(rate)
			r0 := bed.rate(0)
			n := fbRecords(r0, cfg.seconds)
			if rate == "" {
				n = fbRecords(1e9, cfg.seconds) // about as much as a second at 1 Gbit/s
			}
			var plain float64
			plainGoodput := func(b *testing.B) float64 {
				if plain == 0 {
					plain = fbMeasure(b, bed, fbPlainTCP(), fbFlow{dir: fbUpload, records: n}).recv.Goodput
				}
				return plain
			}
			ofRate := func(b *testing.B, g float64) {
				if r0 > 0 {
					b.ReportMetric(g/r0, "of-rate")
				}
			}
			b.Run("plain", func(b *testing.B) {
				fbOnce(b, func() {
					g := plainGoodput(b)
					b.ReportMetric(fbMbit(g), "Mbit/s")
					ofRate(b, g)
				})
			})
			b.Run("mpx", func(b *testing.B) {
				fbSkipWithoutMPX(b, bed)
				fbOnce(b, func() {
					g := fbMeasure(b, bed, fbMPX(), fbFlow{dir: fbUpload, records: n}).recv.Goodput
					b.ReportMetric(fbMbit(g), "Mbit/s")
					ofRate(b, g)
					b.ReportMetric(g/plainGoodput(b), "of-plain")
				})
			})
		})
	}
}

// BenchmarkFallbackFailover (B3): paths of 50 and 30 Mbit/s; path 0 fails
// during a transfer, by its link going down at the client's end
// (linkdown) or by silently dropping everything (blackhole), with the
// client sending (up) or receiving (down).
//
// Metrics: stall-ms (the longest gap between two records' arrivals at the
// receiver; targets for MPX: linkdown < 300, blackhole < 1500),
// stall-from-cut-ms (when that gap began, counted from the start of the
// failure: negative when the last record before it arrived earlier),
// recover-ms (from the failure to 80 % of the later rate;
// omitted, and logged, when it cannot be told), after-Mbit/s (that later
// rate), lost-B (bytes sent and not received; anything but 0 fails).
func BenchmarkFallbackFailover(b *testing.B) {
	cfg := fallbackConfig(b)
	defer diagWatchdog(b, cfg.watchdog())()
	before, after := 0.3, 1.2
	if cfg.full {
		before, after = 0.4*cfg.seconds, max(0.6*cfg.seconds, 3)
	}
	bed := newFallbackBed(b, 2, []string{"50mbit", "30mbit"})
	n := fbRecords(bed.sumRate(), before) + fbRecords(bed.rate(1), after)
	for _, how := range []fbFailure{fbLinkDown, fbBlackhole} {
		for _, dir := range []fbDirection{fbUpload, fbDownload} {
			for _, tr := range []fbTransport{fbKernelMPTCP(), fbMPX()} {
				b.Run(fmt.Sprintf("%s/%s/%s", how, dir, tr.name), func(b *testing.B) {
					if tr.name == "mpx" {
						fbSkipWithoutMPX(b, bed)
					}
					fbOnce(b, func() {
						r := fbMeasure(b, bed, tr, fbFlow{dir: dir, records: n,
							failAfter: time.Duration(before * float64(time.Second)), failPath: 0, failHow: how})
						cut := r.failedAt.Sub(r.recv.Start)
						b.ReportMetric(float64(r.recv.Stall)/1e6, "stall-ms")
						b.ReportMetric(float64(r.recv.StallAt-cut)/1e6, "stall-from-cut-ms")
						b.ReportMetric(float64(r.lost()), "lost-B")
						b.ReportMetric(fbMbit(r.recv.Rate(r.failedAt.Add(r.recv.End.Sub(r.failedAt)/2), r.recv.End)), "after-Mbit/s")
						if rec, err := r.recv.Recovery(r.failedAt); err == nil {
							b.ReportMetric(float64(rec)/1e6, "recover-ms")
						} else {
							b.Logf("recovery not measured: %v", err)
						}
					})
				})
			}
		}
	}
}

// BenchmarkFallbackCPU (B4): CPU time per GB (10⁹ bytes) delivered over
// two unshaped paths, by process: the load tool's sender (in cli) and
// receiver (in conv for kernel MPTCP, in srv for MPX) run as processes of
// their own (tests/load/cmd/mptcpd-load), and for MPX the client and the
// converter are the processes of mpxHook.procs, reached through the
// client's SOCKS5 ingress. For kernel MPTCP the load tool's CPU time
// includes the kernel's work for the connection in its system calls.
//
// Metrics: Mbit/s; send-cpu-s/GB, recv-cpu-s/GB; mpx: client-cpu-s/GB and
// converter-cpu-s/GB (target ≤ 2 each without TLS).
func BenchmarkFallbackCPU(b *testing.B) {
	cfg := fallbackConfig(b)
	defer diagWatchdog(b, cfg.watchdog())()
	total := int64(64 << 20)
	if cfg.full {
		total = 2 << 30
	}
	bin := fbBuildLoadTool(b)
	bed := newFallbackBed(b, 2, []string{"", ""})
	perGB := func(d time.Duration, bytes int64) float64 { return d.Seconds() / (float64(bytes) / 1e9) }

	b.Run("kernel", func(b *testing.B) {
		fbOnce(b, func() {
			joins, err := bed.conv.Counter("MPTcpExtMPJoinAckRx")
			if err != nil {
				b.Fatal(err)
			}
			recv := fbStartLoadProc(b, bed.conv, bin, "recv", "--listen", netip.AddrPortFrom(bed.paths[0].B4, 0).String(),
				"--mptcp", "--bytes", strconv.FormatInt(total, 10), "--json")
			addr := recv.listening(b)
			send := fbStartLoadProc(b, bed.cli, bin, "send", "--connect", addr.String(), "--local", bed.paths[0].A4.String(),
				"--mptcp", "--bytes", strconv.FormatInt(total, 10), "--json")
			rep, sendCPU := send.wait(b)
			_, recvCPU := recv.wait(b)
			if rep.MPTCP == nil || !*rep.MPTCP || rep.Peer == nil || rep.Peer.Bytes != total {
				b.Fatalf("kernel MPTCP transfer: %+v", rep)
			}
			if after, err := bed.conv.Counter("MPTcpExtMPJoinAckRx"); err != nil || after == joins {
				b.Fatalf("no subflow joined over path 1 (%v); %s", err, bed.joinDiag())
			}
			b.ReportMetric(fbMbit(rep.Peer.GoodputBps), "Mbit/s")
			b.ReportMetric(perGB(sendCPU, total), "send-cpu-s/GB")
			b.ReportMetric(perGB(recvCPU, total), "recv-cpu-s/GB")
		})
	})
	b.Run("mpx", func(b *testing.B) {
		fbSkipWithoutMPX(b, bed)
		if !bed.mpx.socks5.IsValid() {
			b.Skip("MPX row skipped: mpxHook.socks5 is not set (the MPX client does not run as a process yet)")
		}
		fbOnce(b, func() {
			recv := fbStartLoadProc(b, bed.srv, bin, "recv", "--listen", netip.AddrPortFrom(bed.srvPath.B4, 0).String(),
				"--bytes", strconv.FormatInt(total, 10), "--json")
			addr := recv.listening(b)
			before := make([]time.Duration, len(bed.mpx.procs))
			for i, p := range bed.mpx.procs {
				before[i] = fbProcCPU(b, p.pid)
			}
			send := fbStartLoadProc(b, bed.cli, bin, "send", "--socks5", bed.mpx.socks5.String(), "--connect", addr.String(),
				"--bytes", strconv.FormatInt(total, 10), "--json")
			rep, sendCPU := send.wait(b)
			_, recvCPU := recv.wait(b)
			if rep.Peer == nil || rep.Peer.Bytes != total {
				b.Fatalf("MPX transfer: %+v", rep)
			}
			b.ReportMetric(fbMbit(rep.Peer.GoodputBps), "Mbit/s")
			b.ReportMetric(perGB(sendCPU, total), "send-cpu-s/GB")
			b.ReportMetric(perGB(recvCPU, total), "recv-cpu-s/GB")
			for i, p := range bed.mpx.procs {
				b.ReportMetric(perGB(fbProcCPU(b, p.pid)-before[i], total), p.role+"-cpu-s/GB")
			}
		})
	})
}

// fbBuildLoadTool builds tests/load/cmd/mptcpd-load into a temporary
// directory.
func fbBuildLoadTool(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "mptcpd-load")
	out, err := exec.Command("go", "build", "-o", bin, "./load/cmd/mptcpd-load").CombinedOutput()
	if err != nil {
		tb.Fatalf("building mptcpd-load: %v\n%s", err, out)
	}
	return bin
}

// fbLoadProc is a running mptcpd-load.
type fbLoadProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

// fbStartLoadProc runs mptcpd-load with args in host h; it is killed at the
// end of the benchmark if still running.
func fbStartLoadProc(b *testing.B, h *testbed.Host, bin string, args ...string) *fbLoadProc {
	b.Helper()
	p := &fbLoadProc{cmd: exec.Command(bin, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := h.Start(p.cmd); err != nil {
		b.Fatalf("starting mptcpd-load in %s: %v", h.Name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	b.Cleanup(func() {
		// Kill fails harmlessly on a process that has already exited.
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
	})
	return p
}

// listening waits for the process to say where it listens.
func (p *fbLoadProc) listening(b *testing.B) netip.AddrPort {
	b.Helper()
	var addr netip.AddrPort
	err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, "listening on "); ok {
				var err error
				addr, err = netip.ParseAddrPort(strings.TrimSpace(rest))
				return true, err
			}
		}
		return false, nil
	})
	if err != nil {
		b.Fatalf("mptcpd-load %q did not listen: %v; stderr: %s", p.cmd.Args[1:], err, p.stderr.String())
	}
	return addr
}

// wait waits for the process to exit successfully and returns its report
// and its CPU time (user and system).
func (p *fbLoadProc) wait(b *testing.B) (load.Report, time.Duration) {
	b.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			b.Fatalf("mptcpd-load %q: %v; stdout: %s; stderr: %s", p.cmd.Args[1:], err, p.stdout.String(), p.stderr.String())
		}
	case <-time.After(5 * time.Minute):
		b.Fatalf("mptcpd-load %q did not exit; stderr: %s", p.cmd.Args[1:], p.stderr.String())
	}
	var r load.Report
	if err := json.Unmarshal([]byte(p.stdout.String()), &r); err != nil {
		b.Fatalf("mptcpd-load %q printed %q: %v", p.cmd.Args[1:], p.stdout.String(), err)
	}
	return r, p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// fbProcCPU returns a running process's CPU time so far (utime + stime of
// /proc/PID/stat).
func fbProcCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields 14 and 15 of the file; f starts at field 3.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	const userHZ = 100 // clock ticks per second (USER_HZ)
	return time.Duration(ut+st) * time.Second / userHZ
}

// BenchmarkFallbackIdleMemory (B5): the memory an idle MPX connection
// costs each mptcpd: MPTCPD_BENCH_FB_IDLE connections (default 200) are
// opened through the client's SOCKS5 server to a destination that holds
// them, each with its two subflows, and left idle; the growth of each
// process's resident memory (VmRSS) is divided by their number.
//
// Metrics: client-rss-B/conn and converter-rss-B/conn (target ≤ 65536),
// conns.
func BenchmarkFallbackIdleMemory(b *testing.B) {
	n := 200
	if v := os.Getenv("MPTCPD_BENCH_FB_IDLE"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > 4000 {
			b.Fatalf("MPTCPD_BENCH_FB_IDLE=%q: want 1 to 4000 connections", v)
		}
		n = k
	}
	defer diagWatchdog(b, 5*time.Minute)()
	bed := newFallbackBed(b, 2, []string{"", ""})
	fbSkipWithoutMPX(b, bed)
	fbOnce(b, func() {
		ln, err := bed.srv.Listen("tcp4", netip.AddrPortFrom(bed.srvPath.B4, 0).String())
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var held []net.Conn
		accepted := make(chan struct{})
		go func() {
			defer close(accepted)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		defer func() {
			ln.Close()
			<-accepted
			for _, c := range held {
				c.Close()
			}
		}()
		target := netip.MustParseAddrPort(ln.Addr().String())
		open := func(k int) []fbConn {
			conns := make([]fbConn, 0, k)
			for range k {
				c, err := bed.mpx.dial(b.Context(), target)
				if err != nil {
					b.Fatalf("connection %d of %d: %v", len(conns)+1, k, err)
				}
				// One byte each way's worth of use, then idle.
				if _, err := c.Write([]byte{1}); err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
			}
			return conns
		}
		// Warm up: buffers and pools the first connections bring.
		for _, c := range open(20) {
			c.Close()
		}
		time.Sleep(time.Second)
		before := make([]int64, len(bed.mpx.procs))
		for i, p := range bed.mpx.procs {
			before[i] = fbProcRSS(b, p.pid)
		}
		conns := open(n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// Let the joins and the first acknowledgements settle, and the
		// writers of idle subflows end.
		time.Sleep(4 * time.Second)
		for i, p := range bed.mpx.procs {
			b.ReportMetric(float64(fbProcRSS(b, p.pid)-before[i])/float64(n), p.role+"-rss-B/conn")
		}
		b.ReportMetric(float64(n), "conns")
	})
}

// fbProcRSS returns a process's resident memory in bytes (VmRSS).
func fbProcRSS(b *testing.B, pid int) int64 {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("/proc/%d/status: %q", pid, line)
			}
			return kb << 10
		}
	}
	b.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}
