package nmtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// busConfig is a dbus-daemon configuration for a private bus on a socket
// at %s: anyone who can reach the socket (its directory is the test's, so
// its owner only) may connect, own any name and send to anyone.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// StartBus starts a private dbus-daemon for the test and returns its
// address, for DBUS_SYSTEM_BUS_ADDRESS; the daemon is stopped when the
// test ends. Its socket is a file, not an abstract socket, so processes
// in other network namespaces reach it too. The test is skipped when
// dbus-daemon is not installed, and fails under CI (CI set), where
// scripts/install-deps.sh installs it.
func StartBus(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dbus-daemon is needed (scripts/install-deps.sh installs it): %v", err)
		}
		t.Skipf("skipping: no dbus-daemon (apt-get install dbus-daemon): %v", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, sock), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+conf, "--print-address", "--nofork")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dbus-daemon: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	lines := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		for sc.Scan() {
		}
		_ = cmd.Wait()
	}()
	select {
	case addr := <-lines:
		if !strings.HasPrefix(addr, "unix:path="+sock) {
			t.Fatalf("dbus-daemon says its address is %q, want one on %s", addr, sock)
		}
		return addr
	case <-done:
		t.Fatalf("dbus-daemon exited without an address: %s", stderr.String())
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("dbus-daemon gave no address within 10s: %s", stderr.String())
	}
	return ""
}
