package tests

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/nm/nmtest"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// fakeNM is tests/fakenm running in a test host as NetworkManager.
type fakeNM struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan string
	log   *syncBuffer
}

// startFakeNM builds tests/fakenm, and runs it in h through a link named
// NetworkManager (the name the daemon knows it by), on the bus at
// address, with the devices given (IFACE:STATE:FLAGS). It returns once
// the fake owns NetworkManager's name and has its devices; the fake is
// stopped when the test ends.
func startFakeNM(t *testing.T, h *testbed.Host, bus string, devices ...string) *fakeNM {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "fakenm")
	if out, err := exec.Command("go", "build", "-o", bin, "./fakenm").CombinedOutput(); err != nil {
		t.Fatalf("building fakenm: %v\n%s", err, out)
	}
	// A link, not a copy: the process is named after the path it is run
	// by, and a file written by this process could not be run at once
	// (ETXTBSY while a child forked meanwhile holds it open).
	link := filepath.Join(dir, "NetworkManager")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	f := &fakeNM{t: t, lines: make(chan string, 16), log: &syncBuffer{}}
	cmd := exec.Command(link, devices...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	cmd.Stderr = f.log
	var err error
	if f.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(cmd); err != nil {
		t.Fatalf("starting the fake NetworkManager: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = f.in.Close()
		_ = cmd.Process.Kill()
		// Drain what it printed, so that the reader ends.
		for drained := false; !drained; {
			select {
			case <-f.lines:
			case <-done:
				drained = true
			}
		}
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("fake NetworkManager's log:\n%s", f.log.String())
		}
	})
	f.expect("ready", 10*time.Second)
	return f
}

// expect waits for the fake to print want.
func (f *fakeNM) expect(want string, within time.Duration) {
	f.t.Helper()
	select {
	case got := <-f.lines:
		if got != want {
			f.t.Fatalf("the fake NetworkManager says %q, want %q; its log:\n%s", got, want, f.log.String())
		}
	case <-time.After(within):
		f.t.Fatalf("the fake NetworkManager did not say %q within %s; its log:\n%s", want, within, f.log.String())
	}
}

// do sends the fake a command and waits for its "ok".
func (f *fakeNM) do(command string) {
	f.t.Helper()
	if _, err := fmt.Fprintln(f.in, command); err != nil {
		f.t.Fatalf("telling the fake NetworkManager %q: %v", command, err)
	}
	f.expect("ok", 5*time.Second)
}

// TestDaemonNetworkManagerDBus: with NetworkManager in the namespace,
// the daemon asks it over D-Bus which interfaces it manages MPTCP on, and
// leaves those to it before NetworkManager has put any endpoint there.
// NetworkManager (a stand-in on a private bus) manages p1 (mptcp-flags
// subflow) and not p0 (disabled): the daemon makes endpoints of p0's
// addresses only and says p1 is left to NetworkManager. When
// NetworkManager takes p0 too, the daemon removes its endpoints from it;
// when it lets p1 go, the daemon makes its endpoints there. A foreign
// endpoint stays untouched throughout.
func TestDaemonNetworkManagerDBus(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h, peer := bed.Host("h"), bed.Host("peer")
	paths := bed.Paths(h, peer, 2)
	p0, p1 := paths[0], paths[1]
	bus := nmtest.StartBus(t)
	fake := startFakeNM(t, h, bus, p0.AIf+":100:0x1", p1.AIf+":100:0x20")

	h.MustIP("mptcp", "endpoint", "add", "203.0.113.200", "id", "50", "signal")
	foreign := "203.0.113.200 signal"
	dir := t.TempDir()
	conf := filepath.Join(dir, "mptcpd.toml")
	text := fmt.Sprintf("state_dir = %q\n[[rule]]\ninterfaces = [\"p*\"]\nflags = [\"subflow\"]\n", filepath.Join(dir, "state"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonEnv(t, bin, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus}, "--config", conf, "--netns", h.NS)
	d.waitState("READY=1")
	// Ready means reconciled with what NetworkManager said.
	want := []string{foreign, p0.A4.String() + " subflow", p0.A6.String() + " subflow"}
	slices.Sort(want)
	if got := endpointSet(t, h, false); !slices.Equal(got, want) {
		t.Fatalf("at READY=1 the endpoints are %q, want %q: none on %s, which NetworkManager manages", got, want, p1.AIf)
	}
	saysLeft := func(ifaces ...string) string {
		return `msg="interfaces left to NetworkManager" manager=NetworkManager interfaces=` + strings.Join(ifaces, ",") + "\n"
	}
	if !d.logged(saysLeft(p1.AIf)) {
		t.Errorf("the log does not say that %s (only) is left to NetworkManager; log:\n%s", p1.AIf, d.log.String())
	}

	// NetworkManager takes p0: the daemon's endpoints leave it.
	fake.do("set " + p0.AIf + ":100:0x20")
	waitEndpoints(t, h, "after NetworkManager took "+p0.AIf, []string{foreign})
	if !d.logged(saysLeft(p0.AIf, p1.AIf)) {
		t.Errorf("the log does not say that %s and %s are left to NetworkManager; log:\n%s", p0.AIf, p1.AIf, d.log.String())
	}
	if !d.logged("NetworkManager manages MPTCP endpoints on interface " + p0.AIf + " (mptcp-flags subflow") {
		t.Errorf("the removals from %s do not give NetworkManager as the reason; log:\n%s", p0.AIf, d.log.String())
	}

	// NetworkManager lets p1 go: the daemon's endpoints come there.
	fake.do("set " + p1.AIf + ":100:0x1")
	waitEndpoints(t, h, "after NetworkManager let "+p1.AIf+" go", []string{foreign, p1.A4.String() + " subflow", p1.A6.String() + " subflow"})

	// A clean stop removes what the daemon added, and only that.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.wait(); err != nil {
		t.Fatalf("mptcpd exited with %v after SIGTERM", err)
	}
	if got := endpointSet(t, h, false); !slices.Equal(got, []string{foreign}) {
		t.Errorf("after stop the endpoints are %q, want only the foreign %q", got, foreign)
	}
}
