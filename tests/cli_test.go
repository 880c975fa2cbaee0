package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// buildCLI builds cmd/mptcpctl into dir.
func buildCLI(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "mptcpctl")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/mptcpctl").CombinedOutput()
	if err != nil {
		t.Fatalf("building mptcpctl: %v\n%s", err, out)
	}
	return bin
}

// cliResult is one run of mptcpctl.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs mptcpctl with args, as uid/gid if uid is not 0.
func runCLI(t *testing.T, bin string, uid uint32, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running mptcpctl %v: %v", args, err)
	}
	return cliResult{stdout.String(), stderr.String(), code}
}

// TestCLI drives the real daemon with mptcpctl: endpoints and a live
// connection with its subflows listed as the kernel has them (table and
// JSON), an endpoint added and removed, and an unprivileged user who may
// read but not write (exit code 4, nothing changed).
func TestCLI(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	// A directory nobody can reach, for the CLI and the socket.
	dir, err := os.MkdirTemp("", "mptcpd-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl := buildCLI(t, dir)

	bed := testbed.New(t)
	h, srv := bed.Host("h"), bed.Host("srv")
	paths := bed.Paths(h, srv, 2)
	if err := newClient(t, srv).SetLimits(genl.Limits{Subflows: 4, AddAddrAccepted: 4}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	conf := strings.Replace(apiConfig(dir, ""), filepath.Join(dir, "api.sock"), sock, 1)
	conf = strings.Replace(conf, "[api]\n", "[api]\ngroup = \"nogroup\"\n", 1)
	startAPIDaemon(t, bin, h, conf)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Fatalf("socket %s: %v, %v; want mode 0660, group nogroup", sock, fi.Mode(), err)
	}

	// Endpoints, as JSON.
	r := runCLI(t, ctl, 0, "--server", sock, "-o", "json", "endpoint", "show")
	if r.code != 0 {
		t.Fatalf("endpoint show: exit %d: %s", r.code, r.stderr)
	}
	var eps struct {
		Endpoints []struct {
			ID      uint32 `json:"id"`
			Address string `json:"address"`
			Owner   string `json:"owner"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &eps); err != nil {
		t.Fatalf("endpoint show -o json: %v\n%s", err, r.stdout)
	}
	var addrs []string
	for _, ep := range eps.Endpoints {
		if ep.Owner != "OWNER_POLICY" {
			t.Errorf("endpoint %+v: want owner OWNER_POLICY", ep)
		}
		addrs = append(addrs, ep.Address)
	}
	var want []string
	for _, p := range paths {
		want = append(want, p.A4.String(), p.A6.String())
	}
	slices.Sort(addrs)
	slices.Sort(want)
	if !slices.Equal(addrs, want) {
		t.Fatalf("mptcpctl lists endpoints %q, want %q", addrs, want)
	}

	// A live connection and its subflows, in the table.
	_, port := echoListener(t, srv, 4)
	conn, err := h.Dial(ctxT(t), netip.AddrPortFrom(paths[0].A4, 0), netip.AddrPortFrom(paths[0].B4, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn, 50_000)
	var list string
	if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		r := runCLI(t, ctl, 0, "--server", sock, "connection", "list")
		list = r.stdout
		// The initial subflow and the one from path 1's endpoint.
		return r.code == 0 && strings.Contains(r.stdout, fmt.Sprintf("%s:%d", paths[0].B4, port)) &&
			strings.Contains(r.stdout, "established") && strings.Fields(lineWith(r.stdout, paths[0].B4.String()))[4] == "2", nil
	}); err != nil {
		t.Fatalf("connection list never showed the connection with 2 subflows:\n%s", list)
	}
	tok := strings.Fields(lineWith(list, paths[0].B4.String()))[0]
	r = runCLI(t, ctl, 0, "--server", sock, "connection", "show", tok)
	if r.code != 0 || !strings.Contains(r.stdout, paths[1].A4.String()) || !strings.Contains(r.stdout, paths[0].A4.String()) {
		t.Fatalf("connection show %s: exit %d\n%s%s", tok, r.code, r.stdout, r.stderr)
	}

	// An endpoint added and deleted by root.
	r = runCLI(t, ctl, 0, "--server", sock, "endpoint", "add", "198.51.100.77", "signal")
	if r.code != 0 || !slices.Contains(endpointSet(t, h, false), "198.51.100.77 signal") {
		t.Fatalf("endpoint add: exit %d %s; kernel has %q", r.code, r.stderr, endpointSet(t, h, false))
	}
	before := endpointSet(t, h, true)

	// nobody, in the socket's group: reads work, writes are refused.
	r = runCLI(t, ctl, nobody, "--server", sock, "endpoint", "show")
	if r.code != 0 || !strings.Contains(r.stdout, "198.51.100.77") {
		t.Fatalf("endpoint show as nobody: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"endpoint", "add", "198.51.100.78", "signal"},
		{"endpoint", "flush"},
		{"limits", "set", "subflows", "1", "add_addr_accepted", "1"},
	} {
		r = runCLI(t, ctl, nobody, append([]string{"--server", sock}, args...)...)
		if r.code != 4 || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("%v as nobody: exit %d, stderr %q; want 4 and permission denied", args, r.code, r.stderr)
		}
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Fatalf("refused writes changed the endpoints from %q to %q", before, got)
	}

	// Errors a person can act on.
	r = runCLI(t, ctl, 0, "--server", sock, "endpoint", "delete", "250")
	if r.code != 5 {
		t.Errorf("deleting a missing endpoint: exit %d %q, want 5", r.code, r.stderr)
	}
	r = runCLI(t, ctl, 0, "--server", filepath.Join(dir, "no.sock"), "status")
	if r.code != 3 || !strings.Contains(r.stderr, "mptcpd is not running") {
		t.Errorf("status without a daemon: exit %d %q, want 3 and \"mptcpd is not running\"", r.code, r.stderr)
	}
}

// lineWith returns the first line of text that contains s.
func lineWith(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
