// Package testbed builds test hosts on one machine for integration tests:
// network namespaces joined by veth pairs, with IPv4 and IPv6 addresses
// from the documentation ranges, removed when the test ends, pass or fail.
//
// Each Host is a named network namespace (as `ip netns` names them), so a
// failing test can be inspected with `ip -n NAME ...` while it runs, and
// every MPTCP setting a test changes is confined to namespaces it made.
package testbed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

	"github.com/mptcpd/mptcpd/netns"
)

// prefix starts the name of every namespace a testbed creates; the process
// ID follows, so namespaces left by a killed test run can be recognised.
const prefix = "mptcpdt-"

// Require skips the test, with the reason, unless it can build hosts: root,
// iproute2 and MPTCP in the kernel. Under CI (CI set in the environment),
// where all of them are present, it fails instead of skipping, so an
// integration test can never silently not run there.
func Require(t testing.TB) {
	t.Helper()
	reason := missing()
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("integration test cannot run under CI: %s", reason)
	}
	t.Skipf("skipping integration test: %s", reason)
}

func missing() string {
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces (run the tests as root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs the ip command (apt-get install iproute2)"
	}
	if _, err := os.Stat("/proc/sys/net/mptcp/enabled"); err != nil {
		return "the kernel has no MPTCP (no /proc/sys/net/mptcp/enabled)"
	}
	return ""
}

// Bed is a set of hosts and the links between them, owned by one test.
type Bed struct {
	t  testing.TB
	id string

	mu    sync.Mutex
	hosts []*Host
	paths int
}

// New returns an empty Bed whose hosts are deleted when the test ends. It
// calls Require first.
func New(t testing.TB) *Bed {
	t.Helper()
	Require(t)
	sweep(t)
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatalf("random namespace suffix: %v", err)
	}
	b := &Bed{t: t, id: fmt.Sprintf("%s%d-%s", prefix, os.Getpid(), hex.EncodeToString(r[:]))}
	t.Cleanup(b.cleanup)
	return b
}

// sweep deletes namespaces left behind by test processes that no longer
// run (a test binary killed by a timeout cannot clean up after itself).
func sweep(t testing.TB) {
	entries, err := os.ReadDir(netns.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidText)); err == nil {
			continue // still running
		}
		out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput()
		if _, statErr := os.Stat(filepath.Join(netns.Dir, e.Name())); err != nil && statErr == nil {
			t.Logf("removing stale namespace %s: %v: %s", e.Name(), err, out)
		}
	}
}

func (b *Bed) cleanup() {
	b.mu.Lock()
	hosts := b.hosts
	b.hosts = nil
	b.mu.Unlock()
	for _, h := range hosts {
		_ = h.ns.Close()
		if out, err := exec.Command("ip", "netns", "del", h.NS).CombinedOutput(); err != nil {
			b.t.Errorf("deleting namespace %s: %v: %s", h.NS, err, out)
		}
	}
}

// Host is a test host: a network namespace with loopback up, IPv6
// duplicate-address detection off (addresses are usable at once) and
// reverse-path filtering off (subflows may leave by any path).
type Host struct {
	// Name is the name the test gave; NS the namespace's name for `ip -n`.
	Name, NS string

	bed *Bed
	ns  *netns.NS
}

// Host creates a host. Names must be unique within the Bed.
func (b *Bed) Host(name string) *Host {
	b.t.Helper()
	h := &Host{Name: name, NS: b.id + "-" + name, bed: b}
	if out, err := exec.Command("ip", "netns", "add", h.NS).CombinedOutput(); err != nil {
		b.t.Fatalf("creating namespace %s: %v: %s", h.NS, err, out)
	}
	ns, err := netns.Open(h.NS)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
		b.t.Fatalf("opening namespace %s: %v", h.NS, err)
	}
	h.ns = ns
	b.mu.Lock()
	b.hosts = append(b.hosts, h)
	b.mu.Unlock()

	h.MustIP("link", "set", "lo", "up")
	for key, value := range map[string]string{
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
		"net/ipv4/conf/all/rp_filter":      "0",
		"net/ipv4/conf/default/rp_filter":  "0",
	} {
		if err := h.WriteSysctl(key, value); err != nil {
			b.t.Fatalf("host %s: %v", name, err)
		}
	}
	return h
}

// FD returns the namespace's file descriptor, for genl.WithNetNS.
func (h *Host) FD() int { return h.ns.FD() }

// Do runs fn on a thread inside the host's namespace; sockets opened by fn
// belong to the host.
func (h *Host) Do(fn func() error) error { return h.ns.Do(fn) }

// IP runs `ip -n NS args...` and returns its standard output.
func (h *Host) IP(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"-n", h.NS}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ip -n %s %s: %w: %s", h.NS, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// MustIP is IP that fails the test on error.
func (h *Host) MustIP(args ...string) string {
	h.bed.t.Helper()
	out, err := h.IP(args...)
	if err != nil {
		h.bed.t.Fatal(err)
	}
	return out
}

// WriteSysctl writes a sysctl under /proc/sys (key like "net/mptcp/enabled")
// inside the host.
func (h *Host) WriteSysctl(key, value string) error {
	return h.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// Start starts cmd inside the host's namespace: the child is forked from a
// thread that is in the namespace and so is born there. Credentials in
// cmd.SysProcAttr apply as usual (a child may drop privileges).
func (h *Host) Start(cmd *exec.Cmd) error {
	return h.Do(cmd.Start)
}

// Listen opens an MPTCP listener on the host ("tcp", "tcp4" or "tcp6").
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	return ln, err
}

// Dial opens an MPTCP connection from the host to raddr, from laddr if it
// is valid. It fails if the connection fell back to plain TCP.
func (h *Host) Dial(ctx context.Context, laddr, raddr netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	d.SetMultipathTCP(true)
	if laddr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(laddr)
	}
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", raddr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dialing %s from host %s: %w", raddr, h.Name, err)
	}
	tc := c.(*net.TCPConn)
	if ok, err := tc.MultipathTCP(); err != nil || !ok {
		_ = tc.Close()
		return nil, fmt.Errorf("connection %s → %s is not MPTCP (fell back to TCP): %v", tc.LocalAddr(), raddr, err)
	}
	return tc, nil
}

// Counter returns one of the host's SNMP counters (e.g. "MPTcpExtMPPrioTx"),
// as nstat shows them, read from the namespace's /proc/net/netstat and snmp.
func (h *Host) Counter(name string) (uint64, error) {
	var v uint64
	err := h.Do(func() error {
		for _, file := range []string{"netstat", "snmp"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + file)
			if err != nil {
				return err
			}
			if n, ok := findCounter(b, name); ok {
				v = n
				return nil
			}
		}
		return fmt.Errorf("host %s has no counter %s", h.Name, name)
	})
	return v, err
}

// findCounter finds name in /proc/net/netstat's format: pairs of lines,
// "Prefix: Name1 Name2 ..." then "Prefix: value1 value2 ...".
func findCounter(b []byte, name string) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	var header []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if header == nil || header[0] != fields[0] {
			header = fields
			continue
		}
		for i := 1; i < len(fields) && i < len(header); i++ {
			if strings.TrimSuffix(header[0], ":")+header[i] == name {
				n, err := strconv.ParseUint(fields[i], 10, 64)
				return n, err == nil
			}
		}
		header = nil
	}
	return 0, false
}

// Path is one link between two hosts: a veth pair, with an IPv4 /24 and an
// IPv6 /64 from the documentation ranges, both ends up.
type Path struct {
	Index int
	// A and B are the hosts at the two ends; AIf and BIf their interface
	// names and AIndex and BIndex their interface indexes.
	A, B           *Host
	AIf, BIf       string
	AIndex, BIndex int
	// A4, B4, A6 and B6 are the ends' addresses.
	A4, B4, A6, B6 netip.Addr
}

// ipv4Nets are the three IPv4 documentation networks (RFC 5737).
var ipv4Nets = [...][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}}

// Connect links a and b with a new path. Paths are numbered in the Bed,
// each with its own networks (see plan); a gets the first host address of
// each, b the second.
func (b *Bed) Connect(a, c *Host) Path {
	b.t.Helper()
	p := b.link(a, c)
	b.waitRunning(p)
	return p
}

// Paths links a and b with n new paths.
func (b *Bed) Paths(a, c *Host, n int) []Path {
	b.t.Helper()
	ps := make([]Path, n)
	for i := range ps {
		ps[i] = b.link(a, c)
	}
	b.waitRunning(ps...)
	return ps
}

// plan returns the addresses of path i: the IPv4 network ipv4Nets[i%3],
// hosts .(1+16*(i/3)) and .(2+16*(i/3)) of a /28, and 2001:db8:0:i::1 and
// ::2 of a /64.
func plan(i int) Path {
	n := ipv4Nets[i%3]
	host := byte(16 * (i / 3))
	return Path{
		Index: i,
		A4:    netip.AddrFrom4([4]byte{n[0], n[1], n[2], host + 1}),
		B4:    netip.AddrFrom4([4]byte{n[0], n[1], n[2], host + 2}),
		A6:    netip.MustParseAddr(fmt.Sprintf("2001:db8:0:%x::1", i)),
		B6:    netip.MustParseAddr(fmt.Sprintf("2001:db8:0:%x::2", i)),
	}
}

// link creates path without waiting for it to be usable.
func (b *Bed) link(a, c *Host) Path {
	b.t.Helper()
	b.mu.Lock()
	i := b.paths
	b.paths++
	b.mu.Unlock()
	if i >= 3*16 {
		b.t.Fatalf("too many paths in one test bed (%d)", i+1)
	}
	p := plan(i)
	p.A, p.B = a, c
	p.AIf, p.BIf = ifName(fmt.Sprintf("p%d%s", i, c.Name)), ifName(fmt.Sprintf("p%d%s", i, a.Name))

	if out, err := exec.Command("ip", "link", "add", "name", p.AIf, "netns", a.NS, "type", "veth",
		"peer", "name", p.BIf, "netns", c.NS).CombinedOutput(); err != nil {
		b.t.Fatalf("creating veth pair %s/%s: %v: %s", p.AIf, p.BIf, err, out)
	}
	for _, end := range []struct {
		h      *Host
		ifName string
		v4, v6 netip.Addr
		index  *int
	}{{a, p.AIf, p.A4, p.A6, &p.AIndex}, {c, p.BIf, p.B4, p.B6, &p.BIndex}} {
		end.h.MustIP("addr", "add", end.v4.String()+"/28", "dev", end.ifName)
		end.h.MustIP("addr", "add", end.v6.String()+"/64", "dev", end.ifName, "nodad")
		end.h.MustIP("link", "set", end.ifName, "up")
		if err := end.h.Do(func() error {
			ifi, err := net.InterfaceByName(end.ifName)
			if err != nil {
				return err
			}
			*end.index = ifi.Index
			return nil
		}); err != nil {
			b.t.Fatalf("host %s: %v", end.h.Name, err)
		}
	}
	return p
}

// waitRunning waits for both ends of the paths to be running. The kernel
// reports carrier changes with a delay of up to a second (linkwatch), and
// until then IPv6 neighbour discovery on the link fails, so a test's first
// connection would lose its SYN.
func (b *Bed) waitRunning(paths ...Path) {
	b.t.Helper()
	for _, p := range paths {
		for _, end := range []struct {
			h      *Host
			ifName string
		}{{p.A, p.AIf}, {p.B, p.BIf}} {
			if err := WaitFor(5*time.Second, func() (bool, error) {
				var running bool
				err := end.h.Do(func() error {
					ifi, err := net.InterfaceByName(end.ifName)
					running = err == nil && ifi.Flags&net.FlagRunning != 0
					return err
				})
				return running, err
			}); err != nil {
				b.t.Fatalf("host %s: interface %s not running: %v", end.h.Name, end.ifName, err)
			}
		}
	}
}

// ifName shortens an interface name to the kernel's 15 bytes.
func ifName(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}

// Addr4 and Addr6 return the address of host h on the path.
func (p Path) Addr4(h *Host) netip.Addr { return p.pick(h, p.A4, p.B4) }
func (p Path) Addr6(h *Host) netip.Addr { return p.pick(h, p.A6, p.B6) }

// Addr returns the address of h on the path in the given family (4 or 6).
func (p Path) Addr(h *Host, family int) netip.Addr {
	if family == 6 {
		return p.Addr6(h)
	}
	return p.Addr4(h)
}

// IfIndex returns the index of h's interface on the path.
func (p Path) IfIndex(h *Host) int {
	if h == p.A {
		return p.AIndex
	}
	return p.BIndex
}

func (p Path) pick(h *Host, a, b netip.Addr) netip.Addr {
	if h == p.A {
		return a
	}
	if h == p.B {
		return b
	}
	panic(fmt.Sprintf("host %s is not on path %d", h.Name, p.Index))
}

// ErrTimeout is returned by WaitFor when the condition did not hold in time.
var ErrTimeout = errors.New("timed out")

// WaitFor polls cond every 10 ms until it returns true, an error, or the
// timeout passes.
func WaitFor(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met after %s: %w", timeout, ErrTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
