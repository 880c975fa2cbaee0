package tests

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

const (
	// a2eMaxRun bounds the measuring loop of one daemon, whatever b.N is.
	a2eMaxRun = 60 * time.Second
	// a2eTimeout bounds every single wait: for a daemon to be up, for an
	// address to become an endpoint, for an endpoint to go.
	a2eTimeout = 15 * time.Second
	// a2eIdle is how long a daemon sits idle before its RSS is read.
	a2eIdle = 2 * time.Second
	// a2eRotation is how many distinct addresses the loop cycles through
	// (203.0.113.100 and up); each is deleted before the next is added, so
	// the namespace never holds more than three endpoints (the path's IPv4
	// and IPv6 addresses and the measured one) of the kernel's eight.
	a2eRotation = 100
)

// BenchmarkAddressToEndpoint measures how fast a daemon turns a new
// interface address into an endpoint of the kernel's path manager: from the
// moment the kernel acknowledges an RTM_NEWADDR until a dump of the
// endpoints, polled back to back, shows the address. Our mptcpd is measured
// against Debian's C mptcpd 0.12 with its addr_adv plugin, the reference, in
// the same run and interleaved: both daemons run at once, each on its own
// test host, and every iteration measures one address on each, in
// alternating order, so that the machine's noise (this kind of VM stalls
// for tens of milliseconds at times) falls on both alike. The address is
// deleted (and its endpoint awaited gone) after each measurement, outside
// the timer.
//
// Metrics: p50-ms, p99-ms and max-ms of mptcpd's latency, the same with
// ref- for the reference, the ratios p50/reference-p50 and
// p99/reference-p99, and idle-rss-MB and ref-idle-rss-MB, each daemon's
// resident memory after 2 s idle with its endpoints in place.
//
// The reference is unpacked, not installed, by
// scripts/fetch-reference-mptcpd.sh; when it cannot be had, mptcpd is
// measured alone and the reason is logged.
//
// MPTCPD_BENCH_A2E_OTHER=PATH measures another mptcpd binary (a previous
// version, say) in the same run, interleaved with the others on a test
// host of its own: other-p50-ms and the rest, and p50/other-p50 and
// p99/other-p99. Between runs this machine varies more than a change to
// the fast path does; within a run both builds see the same noise.
func BenchmarkAddressToEndpoint(b *testing.B) {
	testbed.Require(b)
	bin := buildDaemon(b)
	bed := testbed.New(b)

	h, peer := bed.Host("h"), bed.Host("peer")
	path := bed.Connect(h, peer)
	ours := newProber(b, h, path, startOurs(b, h, bin, path))

	var ref *prober
	func() {
		refTree, err := findReference(b)
		if err != nil {
			b.Logf("reference C mptcpd not measured: %v", err)
			return
		}
		rh, rpeer := bed.Host("rh"), bed.Host("rpeer")
		rpath := bed.Connect(rh, rpeer)
		// A reference that does not work here is not our failure: it is
		// left out, with the reason.
		type unavailable struct{ why string }
		defer func() {
			if r := recover(); r != nil {
				u, ok := r.(unavailable)
				if !ok {
					panic(r)
				}
				ref = nil
				b.Logf("reference C mptcpd not measured: %s", u.why)
			}
		}()
		d := startReference(b, rh, refTree, rpath, func(format string, args ...any) {
			panic(unavailable{fmt.Sprintf(format, args...)})
		})
		ref = newProber(b, rh, rpath, d)
		d.fail = b.Fatalf // it worked here: from now on a failure is real
	}()
	if ref == nil {
		b.Log("measuring mptcpd alone, without ratios to the reference")
	}

	// Another build of mptcpd (a previous version, a change being weighed),
	// measured beside this one.
	var other *prober
	if bin := os.Getenv("MPTCPD_BENCH_A2E_OTHER"); bin != "" {
		oh, opeer := bed.Host("oh"), bed.Host("opeer")
		opath := bed.Connect(oh, opeer)
		d := startOurs(b, oh, bin, opath)
		d.name = "other mptcpd (" + bin + ")"
		other = newProber(b, oh, opath, d)
	}
	probers := []*prober{ours}
	for _, p := range []*prober{ref, other} {
		if p != nil {
			probers = append(probers, p)
		}
	}

	start := time.Now()
	truncated := false
	for i := 0; b.Loop(); i++ {
		if time.Since(start) > a2eMaxRun {
			truncated = true
			continue // b.Loop must run to its end; the rest are no-ops
		}
		addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i%a2eRotation)})
		// Each daemon goes first in turn.
		for k := range probers {
			probers[(i+k)%len(probers)].once(addr)
		}
	}
	if truncated {
		b.Logf("stopped after %s with %d measurements", a2eMaxRun, len(ours.samples))
	}
	time.Sleep(a2eIdle)
	s := ours.report("")
	if ref != nil {
		r := ref.report("ref-")
		b.ReportMetric(float64(s.p99)/float64(r.p99), "p99/reference-p99")
		b.ReportMetric(float64(s.p50)/float64(r.p50), "p50/reference-p50")
	}
	if other != nil {
		o := other.report("other-")
		b.ReportMetric(float64(s.p99)/float64(o.p99), "p99/other-p99")
		b.ReportMetric(float64(s.p50)/float64(o.p50), "p50/other-p50")
	}
}

// a2eDaemon is a daemon under measurement, running on a test host.
type a2eDaemon struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	// exit is closed when the daemon has exited, with exitErr set.
	exit    chan struct{}
	exitErr error
	// fail reports a failure of the daemon: fatal for ours, a skip for the
	// reference (a baseline that misbehaves here is not our failure).
	fail func(format string, args ...any)
}

// exited reports whether the daemon has exited, and how.
func (d *a2eDaemon) exited() (bool, error) {
	select {
	case <-d.exit:
		if d.exitErr == nil {
			return true, errors.New("exit status 0")
		}
		return true, d.exitErr
	default:
		return false, nil
	}
}

// start starts d.cmd (with start, e.g. in a namespace), collects its exit,
// and stops it when the benchmark ends, pass or fail: SIGTERM, then SIGKILL
// after 5 s.
func (d *a2eDaemon) start(b *testing.B, start func(*exec.Cmd) error) {
	b.Helper()
	d.log = &syncBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.exit = make(chan struct{})
	if err := start(d.cmd); err != nil {
		d.fail("starting %s: %v", d.name, err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exit)
	}()
	b.Cleanup(func() {
		if gone, _ := d.exited(); !gone {
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exit:
			case <-time.After(5 * time.Second):
				_ = d.cmd.Process.Kill()
				<-d.exit
			}
		}
		if b.Failed() || b.Skipped() {
			b.Logf("%s log:\n%s", d.name, d.log.String())
		}
	})
}

// startOurs starts the built mptcpd on h with a rule for the test paths and
// waits for READY=1 on a notify socket standing in for systemd.
func startOurs(b *testing.B, h *testbed.Host, bin string, path testbed.Path) *a2eDaemon {
	b.Helper()
	dir := b.TempDir()
	conf := filepath.Join(dir, "mptcpd.toml")
	// The records go to tmpfs, as under /run on a systemd host: on ext4 a
	// rename over the old records flushes their data, which no production
	// setup pays.
	stateDir := filepath.Join(dir, "state")
	if shm, err := os.MkdirTemp("/dev/shm", "mptcpd-bench-"); err == nil {
		stateDir = shm
		b.Cleanup(func() { _ = os.RemoveAll(shm) })
	}
	text := fmt.Sprintf(`state_dir = %q
[[rule]]
name = "test paths"
interfaces = ["p*"]
kinds = ["veth"]
flags = ["subflow"]
`, stateDir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	sock, states := notifySocket(b)
	d := &a2eDaemon{name: "mptcpd", fail: b.Fatalf}
	d.cmd = exec.Command(bin, "--config", conf, "--netns", h.NS)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	d.start(b, (*exec.Cmd).Start)
	timeout := time.After(a2eTimeout)
	for ready := false; !ready; {
		select {
		case state := <-states:
			ready = state == "READY=1"
		case <-d.exit:
			_, err := d.exited()
			b.Fatalf("mptcpd exited (%v) before READY=1", err)
		case <-timeout:
			b.Fatalf("mptcpd sent no READY=1 within %s", a2eTimeout)
		}
	}
	return d
}

// reference is an unpacked tree of Debian's C mptcpd.
type reference struct {
	bin, pluginDir, version string
}

// findReference locates the reference daemon, fetching and unpacking it
// (without installing the package) on first use.
func findReference(b testing.TB) (reference, error) {
	b.Helper()
	script, err := filepath.Abs("../scripts/fetch-reference-mptcpd.sh")
	if err != nil {
		return reference{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return reference{}, fmt.Errorf("%s: %v: %s", script, err, strings.TrimSpace(stderr.String()))
	}
	if took := time.Since(start); took > time.Second {
		b.Logf("fetched the reference in %s", took.Round(time.Millisecond))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	tree := lines[len(lines)-1]
	ref := reference{bin: filepath.Join(tree, "usr/libexec/mptcpd")}
	plugins, _ := filepath.Glob(filepath.Join(tree, "usr/lib/*/mptcpd/addr_adv.so"))
	if len(plugins) == 0 {
		return reference{}, fmt.Errorf("no addr_adv plugin under %s", tree)
	}
	ref.pluginDir = filepath.Dir(plugins[0])
	out, err := exec.Command(ref.bin, "--version").CombinedOutput()
	if err != nil {
		return reference{}, fmt.Errorf("%s --version: %v: %s", ref.bin, err, strings.TrimSpace(string(out)))
	}
	ref.version = strings.TrimSpace(string(out))
	return ref, nil
}

// startReference starts the reference daemon inside h, forked from a
// thread in the namespace, and waits until it has made endpoints of the
// path's existing addresses.
func startReference(b *testing.B, h *testbed.Host, ref reference, path testbed.Path, skip func(string, ...any)) *a2eDaemon {
	b.Helper()
	d := &a2eDaemon{name: ref.version}
	// A reference that does not work here is not our failure: skip, with
	// the end of its log.
	d.fail = func(format string, args ...any) {
		why := fmt.Sprintf(format, args...)
		if log := strings.TrimSpace(d.log.String()); log != "" {
			lines := strings.Split(log, "\n")
			why += "; its log ends:\n" + strings.Join(lines[max(0, len(lines)-5):], "\n")
		}
		skip("%s", why)
	}
	d.cmd = exec.Command(ref.bin,
		"--log=stderr",
		"--plugin-dir="+ref.pluginDir,
		// Only the plugin in use, not sspi as well: the RSS is compared.
		"--load-plugins=addr_adv",
		"--path-manager=addr_adv",
		"--addr-flags=subflow",
		"--notify-flags=existing,skip_link_local,skip_loopback")
	d.start(b, h.Start)
	c := a2eClient(b, h)
	for _, addr := range []netip.Addr{path.Addr4(h), path.Addr6(h)} {
		waitEndpoint(b, d, c, addr, true, a2eTimeout)
	}
	return d
}

func a2eClient(b *testing.B, h *testbed.Host) *genl.Client {
	b.Helper()
	c, err := genl.New(genl.WithNetNS(h.FD()))
	if err != nil {
		b.Fatalf("genl.New in host %s: %v", h.Name, err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// a2eStats are the latencies of one daemon.
type a2eStats struct{ p50, p99, max time.Duration }

// prober measures one daemon on its host.
type prober struct {
	b       *testing.B
	h       *testbed.Host
	d       *a2eDaemon
	c       *genl.Client
	rt      *rtnetlink.Conn
	ifIndex uint32
	samples []time.Duration
	blurred int           // measurements less precise than 100 µs
	worst   time.Duration // the largest uncertainty
}

func newProber(b *testing.B, h *testbed.Host, path testbed.Path, d *a2eDaemon) *prober {
	b.Helper()
	p := &prober{b: b, h: h, d: d, c: a2eClient(b, h), ifIndex: uint32(path.IfIndex(h))}
	if err := h.Do(func() error {
		var err error
		p.rt, err = rtnetlink.Dial(nil)
		return err
	}); err != nil {
		b.Fatalf("rtnetlink in host %s: %v", h.Name, err)
	}
	b.Cleanup(func() { _ = p.rt.Close() })
	// A probe, unmeasured: the daemon follows addresses as they come.
	p.once(netip.AddrFrom4([4]byte{203, 0, 113, 99}))
	p.samples, p.blurred, p.worst = nil, 0, 0
	return p
}

func (p *prober) msg(addr netip.Addr) *rtnetlink.AddressMessage {
	ip := net.IP(addr.AsSlice())
	return &rtnetlink.AddressMessage{
		Family:       unix.AF_INET,
		PrefixLength: 32,
		Scope:        unix.RT_SCOPE_UNIVERSE,
		Index:        p.ifIndex,
		Attributes:   &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	}
}

// once adds addr, measures until it is an endpoint, then deletes it and
// waits, untimed, for its endpoint to go.
func (p *prober) once(addr netip.Addr) {
	b := p.b
	if err := p.rt.Address.New(p.msg(addr)); err != nil {
		b.Fatalf("adding %s: %v", addr, err)
	}
	acked := time.Now()
	lat, uncertainty := pollEndpoint(b, p.d, p.c, addr, acked)
	if uncertainty > 100*time.Microsecond {
		p.blurred++
	}
	p.worst = max(p.worst, uncertainty)
	p.samples = append(p.samples, lat)
	b.StopTimer()
	if err := p.rt.Address.Delete(p.msg(addr)); err != nil {
		b.Fatalf("deleting %s: %v", addr, err)
	}
	waitEndpoint(b, p.d, p.c, addr, false, a2eTimeout)
	b.StartTimer()
}

// report reports the latencies and the idle RSS, with the metric names
// prefixed.
func (p *prober) report(prefix string) a2eStats {
	b, d := p.b, p.d
	if len(p.samples) == 0 {
		b.Fatal("no measurements")
	}
	samples := slices.Sorted(slices.Values(p.samples))
	s := a2eStats{p50: percentile(samples, 0.50), p99: percentile(samples, 0.99), max: samples[len(samples)-1]}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(s.p50), prefix+"p50-ms")
	b.ReportMetric(ms(s.p99), prefix+"p99-ms")
	b.ReportMetric(ms(s.max), prefix+"max-ms")
	if gone, err := d.exited(); gone {
		d.fail("%s exited while idle: %v", d.name, err)
	}
	rss, err := vmRSS(d.cmd.Process.Pid)
	if err != nil {
		b.Fatalf("%s: %v", d.name, err)
	}
	b.ReportMetric(float64(rss)/1e6, prefix+"idle-rss-MB")
	b.Logf("%s: %d measurements: p50 %s, p99 %s, max %s; idle RSS %.1f MB", d.name, len(samples),
		s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.max.Round(time.Microsecond), float64(rss)/1e6)
	// Errors the daemon logged while measured (a failed reconcile is retried
	// a second later and shows as an outlier).
	var errs []string
	for _, line := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errs = append(errs, line)
		}
	}
	if len(errs) > 0 {
		b.Logf("%s logged %d errors, the first: %s", d.name, len(errs), errs[0])
	}
	if p.blurred > 0 {
		b.Logf("%s: %d of %d measurements are uncertain by more than 100 µs (at most %s): "+
			"the dump that showed the endpoint, or the one before it, took that long",
			d.name, p.blurred, len(samples), p.worst.Round(time.Microsecond))
	}
	return s
}

// pollEndpoint dumps the endpoints back to back until addr is one. It
// returns the latency, from acked to the end of the dump that showed the
// address (an upper bound), and the uncertainty of that figure: the time
// since the start of the previous dump, which did not show it yet. Polled
// back to back, dumps take some 10-50 µs; one takes longer when it waits
// for a daemon's command to the same netlink family, or when a busy or
// virtual machine holds the poller up.
func pollEndpoint(b *testing.B, d *a2eDaemon, c *genl.Client, addr netip.Addr, acked time.Time) (latency, uncertainty time.Duration) {
	b.Helper()
	deadline := acked.Add(a2eTimeout)
	prev := acked // start of the last dump that did not show addr
	for {
		start := time.Now()
		eps, err := c.Endpoints()
		now := time.Now()
		if err != nil {
			b.Fatalf("listing endpoints: %v", err)
		}
		if i := slices.IndexFunc(eps, func(ep genl.Endpoint) bool { return ep.Addr == addr }); i >= 0 {
			if eps[i].Flags&genl.FlagSubflow == 0 {
				d.fail("%s made %s an endpoint with flags %s, want subflow", d.name, addr, eps[i].Flags)
			}
			return now.Sub(acked), now.Sub(prev)
		}
		if now.After(deadline) {
			if gone, err := d.exited(); gone {
				d.fail("%s exited (%v); %s never became an endpoint", d.name, err, addr)
			}
			d.fail("%s: %s not an endpoint %s after it was added; endpoints %v", d.name, addr, a2eTimeout, eps)
		}
		prev = start
	}
}

// waitEndpoint waits until addr is an endpoint (want) or is not.
func waitEndpoint(b *testing.B, d *a2eDaemon, c *genl.Client, addr netip.Addr, want bool, timeout time.Duration) {
	b.Helper()
	what := fmt.Sprintf("%s to become an endpoint", addr)
	if !want {
		what = fmt.Sprintf("the endpoint of %s to go", addr)
	}
	deadline := time.Now().Add(timeout)
	for {
		eps, err := c.Endpoints()
		if err != nil {
			b.Fatalf("listing endpoints: %v", err)
		}
		if slices.ContainsFunc(eps, func(ep genl.Endpoint) bool { return ep.Addr == addr }) == want {
			return
		}
		if gone, err := d.exited(); gone {
			d.fail("%s exited (%v) while the benchmark waited for %s", d.name, err, what)
		}
		if time.Now().After(deadline) {
			d.fail("%s: waited %s for %s; endpoints %v", d.name, timeout, what, eps)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// percentile returns the nearest-rank percentile p (0..1] of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// vmRSS returns the resident set size of process pid in bytes.
func vmRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("pid %d: unexpected VmRSS line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pid %d: VmRSS %q: %v", pid, line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}
