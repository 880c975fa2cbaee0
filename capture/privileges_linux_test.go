package capture_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/capture"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// childEnv selects the checks a child process of TestPrivileges runs:
// "none" (nobody, no capabilities) or "netadmin" (nobody with only
// CAP_NET_ADMIN, as systemd/mptcpd.service runs the daemon).
const childEnv = "MPTCPD_CAPTURE_TEST_CHILD"

const (
	nobody      = 65534
	capNetAdmin = 12 // CAP_NET_ADMIN
)

// TestPrivileges runs Install, Remove, ListenTransparent and MarkDialer in
// child processes inside a test host: without privileges each fails with a
// permission error that names the capability, and with CAP_NET_ADMIN alone
// (no CAP_SYS_ADMIN, so no entering other namespaces) everything works.
func TestPrivileges(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "none":
		unprivilegedChild(t)
		return
	case "netadmin":
		netAdminChild(t)
		return
	}
	bed := testbed.New(t)
	requireTool(t, "nft", "nftables")
	ctx := testContext(t, 20*time.Second)
	h := bed.Host("h")

	// The child is this test binary, copied where nobody can run it.
	dir, err := os.MkdirTemp("", "mptcpd-capture-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "child.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, child := range []string{"none", "netadmin"} {
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestPrivileges$", "-test.v")
		cmd.Env = []string{childEnv + "=" + child, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if child == "netadmin" {
			cmd.SysProcAttr.AmbientCaps = []uintptr{capNetAdmin}
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := h.Start(cmd); err != nil {
			t.Fatalf("starting the %s child: %v", child, err)
		}
		err := cmd.Wait()
		t.Logf("%s child:\n%s", child, out.String())
		if err != nil {
			t.Fatalf("%s child failed: %v", child, err)
		}
		if !strings.Contains(out.String(), "--- PASS: TestPrivileges") {
			t.Fatalf("the %s child did not run its checks", child)
		}
		// Nothing is left behind, whether it failed or removed its rules.
		if out := mustRun(t, ctx, h, "nft", "list", "tables"); strings.TrimSpace(out) != "" {
			t.Errorf("after the %s child, nft list tables:\n%s", child, out)
		}
		for _, fam := range []string{"-4", "-6"} {
			if out := mustRun(t, ctx, h, "ip", fam, "rule", "show"); strings.Contains(out, "fwmark") {
				t.Errorf("after the %s child, ip %s rule show:\n%s", child, fam, out)
			}
		}
	}
}

// childConfig asks for both REDIRECT and TPROXY.
func childConfig() capture.Config {
	return capture.Config{RedirectPort: redirectPort, TProxyPort: tproxyPort}
}

// unprivilegedChild runs as nobody without capabilities.
func unprivilegedChild(t *testing.T) {
	if os.Geteuid() != nobody {
		t.Fatalf("child runs as uid %d, want %d", os.Geteuid(), nobody)
	}
	perm := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Errorf("%s without privileges: error %v, want a permission error naming CAP_NET_ADMIN", what, err)
		}
	}
	for _, cfg := range []capture.Config{{RedirectPort: redirectPort}, childConfig()} {
		r, err := capture.Install(t.Context(), cfg)
		perm("Install", err)
		if r != nil {
			_ = r.Remove()
		}
	}
	ln, err := capture.ListenTransparent(t.Context(), "tcp", "127.0.0.1:0")
	perm("ListenTransparent", err)
	if ln != nil {
		_ = ln.Close()
	}
	_, err = markedDial(t)
	perm("a dial with MarkDialer", err)
}

// netAdminChild runs as nobody with CAP_NET_ADMIN only.
func netAdminChild(t *testing.T) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if want := "CapEff:\t0000000000001000\n"; os.Geteuid() != nobody || !strings.Contains(string(status), want) {
		t.Fatalf("child runs as uid %d with\n%s\nwant uid %d and %q", os.Geteuid(), status, nobody, want)
	}
	r, err := capture.Install(t.Context(), childConfig())
	if err != nil {
		t.Fatalf("Install with CAP_NET_ADMIN: %v", err)
	}
	if err := r.Remove(); err != nil {
		t.Errorf("Remove with CAP_NET_ADMIN: %v", err)
	}
	ln, err := capture.ListenTransparent(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Errorf("ListenTransparent with CAP_NET_ADMIN: %v", err)
	} else {
		_ = ln.Close()
	}
	if n, err := markedDial(t); err != nil || n != 5 {
		t.Errorf("a dial with MarkDialer and CAP_NET_ADMIN: %d bytes, %v", n, err)
	}
}

// markedDial dials a local listener with a marked dialer and reads what it
// sends.
func markedDial(t *testing.T) (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello"))
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	capture.MarkDialer(&d, capture.DefaultMark)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return len(b), err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
