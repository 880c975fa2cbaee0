package tests

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// buildDaemon builds cmd/mptcpd into a temporary directory.
func buildDaemon(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mptcpd")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/mptcpd").CombinedOutput()
	if err != nil {
		t.Fatalf("building mptcpd: %v\n%s", err, out)
	}
	return bin
}

// daemonProc is a running mptcpd with a notify socket standing in for
// systemd.
type daemonProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	log    *syncBuffer
	states <-chan string
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// notifySocket opens a datagram socket standing in for systemd's
// NOTIFY_SOCKET and returns its path and the states sent to it, one per
// line, in order. It is closed at the end of the test.
func notifySocket(t testing.TB) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	states, stop := make(chan string, 64), make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				select {
				case states <- line:
				case <-stop:
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		_ = conn.Close()
	})
	return sock, states
}

func startDaemon(t testing.TB, bin string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonEnv(t, bin, nil, args...)
}

// startDaemonEnv is startDaemon with extra environment variables.
func startDaemonEnv(t testing.TB, bin string, env []string, args ...string) *daemonProc {
	t.Helper()
	sock, states := notifySocket(t)
	d := &daemonProc{t: t, log: &syncBuffer{}, states: states, done: make(chan error, 1)}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+sock), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		// Kill fails harmlessly on a daemon that has already exited; done
		// then holds its end.
		_ = d.cmd.Process.Kill()
		err := <-d.done
		d.done <- err
		if t.Failed() {
			t.Logf("mptcpd log:\n%s", d.log.String())
		}
	})
	return d
}

// waitState waits for the daemon to send a notify state.
func (d *daemonProc) waitState(state string) {
	d.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case s := <-d.states:
			if s == state {
				return
			}
		case err := <-d.done:
			d.done <- err
			d.t.Fatalf("mptcpd exited (%v) before sending %s; log:\n%s", err, state, d.log.String())
		case <-timeout:
			d.t.Fatalf("mptcpd sent no %s within 15s; log:\n%s", state, d.log.String())
		}
	}
}

// logged reports whether the daemon's log has every one of want, waiting
// up to 5 s for it: the log comes through a pipe, the notify states
// through a socket, and a line written before READY=1 may be read after.
func (d *daemonProc) logged(want ...string) bool {
	has := func() bool {
		log := d.log.String()
		for _, w := range want {
			if !strings.Contains(log, w) {
				return false
			}
		}
		return true
	}
	return testbed.WaitFor(5*time.Second, func() (bool, error) { return has(), nil }) == nil
}

// wait waits for the daemon to exit and returns its error.
func (d *daemonProc) wait() error {
	d.t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(20 * time.Second):
		d.t.Fatalf("mptcpd did not exit within 20s; log:\n%s", d.log.String())
		return nil
	}
}

// endpointSet lists a host's endpoints as "addr flags" strings (with the ID
// when withID), sorted, as `ip mptcp endpoint show` reports them.
func endpointSet(t *testing.T, h *testbed.Host, withID bool) []string {
	t.Helper()
	var out []string
	for _, ep := range ipEndpoints(t, h) {
		s := fmt.Sprintf("%s %s", ep.Addr, ep.Flags)
		if withID {
			s = fmt.Sprintf("%d %s", ep.ID, s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func waitEndpoints(t *testing.T, h *testbed.Host, what string, want []string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		got = endpointSet(t, h, false)
		return slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("%s: endpoints %q, want %q", what, got, want)
	}
}

// TestDaemonKernelMode runs the mptcpd binary on a test host and checks,
// through `ip mptcp`, that the kernel's endpoints follow the host's
// addresses and links, that foreign endpoints are left alone, that a kill
// -9 and restart leaves no duplicates or orphans, that a reload applies a
// changed rule in place, and that a clean stop removes exactly what the
// daemon added.
func TestDaemonKernelMode(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h, peer := bed.Host("h"), bed.Host("peer")
	paths := bed.Paths(h, peer, 2)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mptcpd.toml")
	writeConf := func(flags string) {
		t.Helper()
		text := fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
[[rule]]
name = "test paths"
interfaces = ["p*"]
kinds = ["veth"]
flags = [%s]
`, filepath.Join(dir, "state"), flags)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConf(`"subflow"`)

	// A foreign endpoint, added before the daemon starts.
	h.MustIP("mptcp", "endpoint", "add", "192.0.2.200", "id", "50", "signal")
	foreign := "192.0.2.200 signal"
	limitsBefore := ipLimits(t, h)
	// The daemon selects the in-kernel path manager and puts back the one
	// it found when it stops.
	inH := genl.WithNetNS(h.FD())
	if err := genl.SetPathManager(genl.PathManagerUserspace, inH); err != nil {
		t.Fatal(err)
	}

	d := startDaemon(t, bin, "--config", conf, "--netns", h.NS)
	d.waitState("READY=1")
	// Ready means reconciled: the endpoints are there already.
	want := []string{foreign}
	for _, p := range paths {
		want = append(want, p.A4.String()+" subflow", p.A6.String()+" subflow")
	}
	slices.Sort(want)
	if got := endpointSet(t, h, false); !slices.Equal(got, want) {
		t.Fatalf("at READY=1 the endpoints are %q, want %q", got, want)
	}
	if pm, err := genl.PathManager(inH); err != nil || pm != genl.PathManagerKernel {
		t.Errorf("path manager while the daemon runs = %q, %v; want kernel", pm, err)
	}
	if l := ipLimits(t, h); l != (genl.Limits{Subflows: 4, AddAddrAccepted: 4}) {
		t.Errorf("limits = %+v, want the auto limits subflows 4 add_addr_accepted 4", l)
	}

	// An address appears and goes.
	h.MustIP("addr", "add", "203.0.113.50/24", "dev", paths[0].AIf)
	waitEndpoints(t, h, "after adding 203.0.113.50", append(slices.Clone(want), "203.0.113.50 subflow"))
	h.MustIP("addr", "del", "203.0.113.50/24", "dev", paths[0].AIf)
	waitEndpoints(t, h, "after removing 203.0.113.50", want)

	// Carrier lost on path 1 (the peer's end goes down): its endpoints go,
	// and come back with the carrier.
	peer.MustIP("link", "set", paths[1].BIf, "down")
	without := slices.DeleteFunc(slices.Clone(want), func(s string) bool {
		return strings.HasPrefix(s, paths[1].A4.String()+" ") || strings.HasPrefix(s, paths[1].A6.String()+" ")
	})
	waitEndpoints(t, h, "after carrier loss on path 1", without)
	peer.MustIP("link", "set", paths[1].BIf, "up")
	waitEndpoints(t, h, "after carrier back on path 1", want)

	// kill -9 and restart: the same endpoints with the same IDs, no
	// duplicates, the foreign one untouched; among them one the daemon
	// added from a new address at once, the moment before it was killed.
	h.MustIP("addr", "add", "203.0.113.51/24", "dev", paths[0].AIf)
	want = append(want, "203.0.113.51 subflow")
	slices.Sort(want)
	waitEndpoints(t, h, "after adding 203.0.113.51", want)
	withIDs := endpointSet(t, h, true)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.wait()
	d = startDaemon(t, bin, "--config", conf, "--netns", h.NS)
	d.waitState("READY=1")
	if got := endpointSet(t, h, true); !slices.Equal(got, withIDs) {
		t.Fatalf("after kill -9 and restart endpoints are %q, want %q unchanged", got, withIDs)
	}
	if !d.logged("foreign=1") {
		t.Errorf("the restarted daemon does not report one foreign endpoint; log:\n%s", d.log.String())
	}

	// A second daemon on the same namespace is refused.
	second := startDaemon(t, bin, "--config", conf, "--netns", h.NS)
	if err := second.wait(); err == nil || !strings.Contains(second.log.String(), "already manages") {
		t.Errorf("a second mptcpd on the same namespace: %v, log %q; want a refusal", err, second.log.String())
	}

	// Reload with backup added: the endpoints change in place (same IDs).
	writeConf(`"subflow", "backup"`)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitState("RELOADING=1")
	d.waitState("READY=1")
	var backup []string
	for _, s := range withIDs {
		if !strings.Contains(s, foreign) {
			s += ",backup"
		}
		backup = append(backup, s)
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, backup) {
		t.Errorf("after reload with backup, endpoints are %q, want %q", got, backup)
	}

	// A reload with a broken file is refused and changes nothing.
	if err := os.WriteFile(conf, []byte("mode = \"kernel\"\n[[rule]]\nflags = [\"sigal\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitState("READY=1")
	if got := endpointSet(t, h, true); !slices.Equal(got, backup) {
		t.Errorf("a refused reload changed the endpoints to %q", got)
	}
	if !d.logged("rule[1].flags") {
		t.Errorf("the refused reload's log does not name the bad key; log:\n%s", d.log.String())
	}

	// Clean stop: ours removed, the foreign one kept, the limits restored.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitState("STOPPING=1")
	if err := d.wait(); err != nil {
		t.Fatalf("mptcpd exited with %v after SIGTERM", err)
	}
	if got := endpointSet(t, h, false); !slices.Equal(got, []string{foreign}) {
		t.Errorf("after stop the endpoints are %q, want only the foreign %q", got, foreign)
	}
	if l := ipLimits(t, h); l != limitsBefore {
		t.Errorf("after stop the limits are %+v, want %+v restored", l, limitsBefore)
	}
	if pm, err := genl.PathManager(inH); err != nil || pm != genl.PathManagerUserspace {
		t.Errorf("path manager after stop = %q, %v; want userspace restored", pm, err)
	}
}

// TestDaemonConfigErrors checks that configuration errors stop the daemon
// at once with a message naming the key and line.
func TestDaemonConfigErrors(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		text, want string
	}{
		{"mode = \"kernel\"\nbogus = 1\n", ":2: bogus: unknown key"},
		{"[limits]\nsubflows = 9\n", ":2: limits.subflows"},
		{"mode = \"fallback\"\n", ":1: fallback.converter: empty, but mode \"fallback\" needs a converter"},
	} {
		conf := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(conf, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--check", "--config", conf).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), tc.want) {
			t.Errorf("mptcpd --check on %q: %v, %q; want a failure saying %q", tc.text, err, out, tc.want)
		}
	}
	if out, err := exec.Command(bin, "--check", "--config", "../systemd/mptcpd.toml").CombinedOutput(); err != nil {
		t.Errorf("mptcpd --check on the default configuration: %v, %s", err, out)
	}
}

// TestDaemonDefersToNetworkManager: with NetworkManager running in the
// namespace, an interface on which it has put an MPTCP endpoint is left to
// it. (A copy of sleep named NetworkManager stands in for it: the daemon
// knows it by its process name and namespace.) Also checks that the
// daemon feeds the systemd watchdog when asked to.
func TestDaemonDefersToNetworkManager(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h, peer := bed.Host("h"), bed.Host("peer")
	paths := bed.Paths(h, peer, 2)
	dir := t.TempDir()

	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	// A link, not a copy: the process is named after the path it is run
	// by, and exec'ing a file just written races with other tests' forks
	// (ETXTBSY while a forked child still holds it open for writing).
	nm := filepath.Join(dir, "NetworkManager")
	if err := os.Symlink(sleep, nm); err != nil {
		t.Fatal(err)
	}
	nmCmd := exec.Command(nm, "120")
	if err := h.Start(nmCmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = nmCmd.Process.Kill()
		_ = nmCmd.Wait()
	})
	h.MustIP("mptcp", "endpoint", "add", "192.0.2.222", "dev", paths[1].AIf, "subflow")

	conf := filepath.Join(dir, "mptcpd.toml")
	text := fmt.Sprintf("state_dir = %q\n[[rule]]\ninterfaces = [\"p*\"]\nflags = [\"subflow\"]\n", filepath.Join(dir, "state"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// No system bus to ask NetworkManager on: the daemon starts all the
	// same, and the foreign-endpoint rule applies alone.
	noBus := "unix:path=" + filepath.Join(dir, "no-bus")
	d := startDaemonEnv(t, bin, []string{"WATCHDOG_USEC=300000", "DBUS_SYSTEM_BUS_ADDRESS=" + noBus}, "--config", conf, "--netns", h.NS)
	d.waitState("READY=1")
	if !d.logged("cannot ask NetworkManager over D-Bus", "only the foreign-endpoint rule applies") {
		t.Errorf("the daemon does not say that only the foreign-endpoint rule applies without a bus; log:\n%s", d.log.String())
	}
	want := []string{"192.0.2.222 subflow", paths[0].A4.String() + " subflow", paths[0].A6.String() + " subflow"}
	slices.Sort(want)
	if got := endpointSet(t, h, false); !slices.Equal(got, want) {
		t.Errorf("endpoints %q, want %q: none of ours on %s, which NetworkManager manages", got, want, paths[1].AIf)
	}
	if !d.logged("NetworkManager runs in this namespace") {
		t.Errorf("the daemon does not say it saw NetworkManager; log:\n%s", d.log.String())
	}
	d.waitState("WATCHDOG=1")
}

// TestDaemonRefusesBesideCDaemon starts the mptcpd C daemon (the Debian
// package's /usr/libexec/mptcpd, with its addr_adv plugin) in a test host,
// then ours on the same namespace: ours must refuse to start, say why and
// what to do, and leave the C daemon's endpoints as they are. Once the C
// daemon has stopped, ours starts.
func TestDaemonRefusesBesideCDaemon(t *testing.T) {
	t.Parallel()
	testbed.Require(t)
	ref, err := findReference(t)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the mptcpd C daemon is needed: %v", err)
		}
		t.Skipf("skipping: the mptcpd C daemon is not at hand: %v", err)
	}
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h, peer := bed.Host("h"), bed.Host("peer")
	path := bed.Connect(h, peer)
	dir := t.TempDir()

	c := exec.Command(ref.bin, "--log=stderr", "--plugin-dir="+ref.pluginDir, "--load-plugins=addr_adv",
		"--path-manager=addr_adv", "--addr-flags=subflow", "--notify-flags=existing,skip_link_local,skip_loopback")
	clog := &syncBuffer{}
	c.Stdout, c.Stderr = clog, clog
	if err := h.Start(c); err != nil {
		t.Fatal(err)
	}
	cdone := make(chan error, 1)
	go func() { cdone <- c.Wait() }()
	stopC := func() { terminate(c.Process, cdone, 5*time.Second) }
	t.Cleanup(func() {
		if c.ProcessState == nil {
			stopC()
		}
		if t.Failed() {
			t.Logf("C daemon log:\n%s", clog.String())
		}
	})
	// The C daemon has made endpoints of the path's addresses: it is
	// managing the namespace.
	cWants := []string{path.A4.String() + " subflow", path.A6.String() + " subflow"}
	waitEndpoints(t, h, "the C daemon's endpoints", cWants)
	before := endpointSet(t, h, true)

	conf := filepath.Join(dir, "mptcpd.toml")
	text := fmt.Sprintf("state_dir = %q\n[[rule]]\ninterfaces = [\"p*\"]\nflags = [\"subflow\", \"backup\"]\n", filepath.Join(dir, "state"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, "--config", conf, "--netns", h.NS)
	err = d.wait()
	log := d.log.String()
	if err == nil {
		t.Fatalf("mptcpd started beside the C daemon; want a refusal; log:\n%s", log)
	}
	for _, want := range []string{"another MPTCP path-manager daemon", "libexec/mptcpd (pid ", "stop it first"} {
		if !strings.Contains(log, want) {
			t.Errorf("the refusal does not say %q; log:\n%s", want, log)
		}
	}
	if strings.Contains(log, "READY=1") || len(d.states) > 0 {
		t.Errorf("mptcpd told systemd something before refusing: %d states", len(d.states))
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Errorf("endpoints after the refusal %q, want the C daemon's %q untouched", got, before)
	}

	// The same, run as systemd runs it: an unprivileged user with only
	// CAP_NET_ADMIN, started inside the namespace, which may read neither
	// the C daemon's namespace link nor its executable's path.
	u, ulog := unprivilegedDaemon(t, bin)

	u.Stdout, u.Stderr = ulog, ulog
	if err := h.Start(u); err != nil {
		t.Fatal(err)
	}
	udone := make(chan error, 1)
	go func() { udone <- u.Wait() }()
	select {
	case err := <-udone:
		if err == nil || !strings.Contains(ulog.String(), "another MPTCP path-manager daemon") || !strings.Contains(ulog.String(), "run by another user") {
			t.Errorf("mptcpd as an unprivileged user beside the C daemon: %v; want a refusal naming it; log:\n%s", err, ulog.String())
		}
	case <-time.After(10 * time.Second):
		terminate(u.Process, udone, time.Second)
		t.Errorf("mptcpd as an unprivileged user started beside the C daemon; want a refusal; log:\n%s", ulog.String())
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Errorf("endpoints after the unprivileged refusal %q, want the C daemon's %q untouched", got, before)
	}

	// With the C daemon gone, ours starts. The C daemon leaves its
	// endpoints behind; they are foreign to ours, which leaves them as
	// they are and adds none for the same addresses.
	stopC()
	d = startDaemon(t, bin, "--config", conf, "--netns", h.NS)
	d.waitState("READY=1")
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Errorf("endpoints once mptcpd runs %q, want the C daemon's %q as they were", got, before)
	}
}

// unprivilegedDaemon returns a command that runs mptcpd as systemd's unit
// runs it: as an unprivileged user (nobody) with only CAP_NET_ADMIN, with a
// configuration for the test paths whose state directory that user may
// write; extra arguments follow --config. Its output goes to the returned
// buffer. The test's own directories are root's alone, so the binary, the
// configuration and the state go to a directory of their own.
func unprivilegedDaemon(t *testing.T, bin string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mptcpd-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	ubin := filepath.Join(dir, "mptcpd")
	if err := os.Mkdir(state, 0o777); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "mptcpd.toml")
	text := fmt.Sprintf("state_dir = %q\n[api]\nsocket = %q\n[[rule]]\ninterfaces = [\"p*\"]\nflags = [\"subflow\"]\n",
		state, filepath.Join(state, "api.sock"))
	for _, err := range []error{os.WriteFile(ubin, b, 0o755), os.WriteFile(conf, []byte(text), 0o644), os.Chmod(dir, 0o755), os.Chmod(state, 0o777)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(ubin, append([]string{"--config", conf}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN},
	}
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	return cmd, log
}

// TestDaemonNetNSNeedsSysAdmin runs mptcpd as its unit does, unprivileged
// with only CAP_NET_ADMIN, and asks it to manage a named namespace: it
// cannot enter one, and must say so, and how to do it instead.
func TestDaemonNetNSNeedsSysAdmin(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h := bed.Host("h")
	cmd, log := unprivilegedDaemon(t, bin, "--netns", h.NS)
	err := cmd.Run()
	if err == nil {
		t.Fatalf("mptcpd without CAP_SYS_ADMIN managed namespace %s; want a refusal; log:\n%s", h.NS, log.String())
	}
	for _, want := range []string{"needs CAP_SYS_ADMIN", "NetworkNamespacePath=/run/netns/" + h.NS} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the refusal does not say %q; log:\n%s", want, log.String())
		}
	}
}
