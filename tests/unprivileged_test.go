package tests

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// childEnv marks the unprivileged child process of TestUnprivileged.
const childEnv = "MPTCPD_TEST_UNPRIVILEGED_CHILD"

// nobody is the unprivileged user the child runs as.
const nobody = 65534

// TestUnprivileged runs the client as an unprivileged user (nobody, no
// capabilities) inside a test host: reads work, every write and joining
// the events group fail with the permission sentinel, and nothing changes.
func TestUnprivileged(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		unprivilegedChild(t)
		return
	}
	t.Parallel()
	bed := testbed.New(t)
	h := bed.Host("h")
	c := newClient(t, h)
	ep, err := c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.1"), Flags: genl.FlagSignal})
	if err != nil {
		t.Fatal(err)
	}
	limits := genl.Limits{AddAddrAccepted: 3, Subflows: 4}
	if err := c.SetLimits(limits); err != nil {
		t.Fatal(err)
	}

	// The child is this test binary, copied where nobody can run it.
	dir, err := os.MkdirTemp("", "mptcpd-unpriv-")
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

	cmd := exec.Command(bin, "-test.run=^TestUnprivileged$", "-test.v")
	cmd.Env = []string{childEnv + "=1", "PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := h.Start(cmd); err != nil {
		t.Fatalf("starting the unprivileged child: %v", err)
	}
	err = cmd.Wait()
	t.Logf("unprivileged child:\n%s", out.String())
	if err != nil {
		t.Fatalf("unprivileged child failed: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: TestUnprivileged") {
		t.Fatalf("the unprivileged child did not run its checks")
	}

	// Nothing changed.
	if eps, err := c.Endpoints(); err != nil || len(eps) != 1 || eps[0] != ep {
		t.Errorf("after the unprivileged child, endpoints = %v, %v; want only %v", eps, err, ep)
	}
	if got, err := c.Limits(); err != nil || got != limits {
		t.Errorf("after the unprivileged child, limits = %v, %v; want %v", got, err, limits)
	}
}

// unprivilegedChild runs as nobody inside the parent's test host.
func unprivilegedChild(t *testing.T) {
	if os.Geteuid() != nobody {
		t.Fatalf("child runs as uid %d, want %d", os.Geteuid(), nobody)
	}
	c, err := genl.New()
	if err != nil {
		t.Fatalf("genl.New as nobody: %v", err)
	}
	defer c.Close()

	// Reads work.
	eps, err := c.Endpoints()
	if err != nil || len(eps) != 1 || eps[0].Addr != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("Endpoints() as nobody = %v, %v; want the parent's endpoint 192.0.2.1", eps, err)
	}
	if l, err := c.Limits(); err != nil || l != (genl.Limits{AddAddrAccepted: 3, Subflows: 4}) {
		t.Errorf("Limits() as nobody = %v, %v; want the parent's 3/4", l, err)
	}
	if caps, err := genl.Probe(); err != nil || !caps.Family || !caps.Enabled {
		t.Errorf("Probe() as nobody = %+v, %v; want the family found and MPTCP enabled", caps, err)
	}

	// Writes fail with the permission sentinel and os.ErrPermission.
	perm := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, genl.ErrPermission) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("%s as nobody: error %v, want ErrPermission and os.ErrPermission", what, err)
		}
	}
	_, err = c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.2")})
	perm("AddEndpoint", err)
	perm("CreateEndpoint", c.CreateEndpoint(genl.Endpoint{ID: 9, Addr: netip.MustParseAddr("192.0.2.2")}))
	perm("DeleteEndpoint", c.DeleteEndpoint(eps[0].ID))
	perm("SetEndpointFlags", c.SetEndpointFlags(eps[0].ID, genl.FlagBackup))
	perm("FlushEndpoints", c.FlushEndpoints())
	perm("SetLimits", c.SetLimits(genl.Limits{}))
	perm("Announce", c.Announce(1, genl.Endpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.2")}))
	_, err = c.Subscribe(t.Context())
	perm("Subscribe", err)
	if err := genl.SetPathManager(genl.PathManagerUserspace); !errors.Is(err, os.ErrPermission) {
		t.Errorf("SetPathManager as nobody: error %v, want os.ErrPermission", err)
	}
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
