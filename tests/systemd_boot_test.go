package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netns"
	"github.com/mptcpd/mptcpd/tests/load"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestUnitUnderSystemd boots systemd in a container (systemd-nspawn, a
// volatile root over the host's /usr, a network namespace of its own) with
// systemd/mptcpd.service installed as it ships, and checks what an
// operator sees: start waits for the daemon's READY=1, by when the
// endpoints the configuration asks for are in the kernel; the daemon runs
// as a dynamic user with only CAP_NET_ADMIN; mptcpctl reaches it as root;
// reload applies a changed rule in place; after kill -9 systemd restarts
// it and it knows its endpoints again; stop removes them and restores the
// path manager and limits it found, leaving the unit inactive, not failed;
// the drop-ins its comments give work (a group's members read through the
// API; the daemon manages another network namespace); and nothing in the
// journal complains about the unit.
func TestUnitUnderSystemd(t *testing.T) {
	t.Parallel()
	requireSystemdBoot(t)
	bin := buildDaemon(t)
	binDir := filepath.Dir(bin)
	if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "mptcpctl"), "../cmd/mptcpctl").CombinedOutput(); err != nil {
		t.Fatalf("building mptcpctl: %v\n%s", err, out)
	}
	unit, err := os.ReadFile("../systemd/mptcpd.service")
	if err != nil {
		t.Fatal(err)
	}
	groupDropIn := documentedDropIn(t, string(unit), "User=")
	netnsDropIn := documentedDropIn(t, string(unit), "NetworkNamespacePath=")
	bed := testbed.New(t)
	peer := bed.Host("peer")

	// What the container sees: the binaries at /usr/local/bin, the unit
	// and a test target in /etc/systemd/system, and the configuration
	// directory, which the test rewrites from outside. Bind-mounted
	// directories keep their modes, and the daemon's user must get in.
	dir := t.TempDir()
	confDir := filepath.Join(dir, "etc-mptcpd")
	if err := os.Mkdir(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, binDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unitCopy := filepath.Join(dir, "mptcpd.service")
	target := filepath.Join(dir, "mptcpd-test.target")
	for path, text := range map[string]string{
		unitCopy: string(unit),
		// Only what every service needs, so that the boot is short and
		// starting mptcpd.service starts nothing else.
		target: "[Unit]\nDescription=mptcpd test: sysinit and nothing else\nRequires=sysinit.target\nAfter=sysinit.target\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(confDir, "mptcpd.toml")
	writeConf := func(flags, extra string) {
		t.Helper()
		text := fmt.Sprintf("[[rule]]\nname = \"test link\"\ninterfaces = [\"mpt*\"]\nkinds = [\"veth\"]\nflags = [%s]\n%s", flags, extra)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConf(`"subflow"`, "")

	c := bootContainer(t, map[string]string{
		binDir:   "/usr/local/bin",
		unitCopy: "/etc/systemd/system/mptcpd.service",
		target:   "/etc/systemd/system/mptcpd-test.target",
		confDir:  "/etc/mptcpd",
	}, "mptcpd-test.target")
	t.Cleanup(func() {
		if t.Failed() {
			status, _ := c.run("", "systemctl", "status", "--no-pager", "--full", "--lines=0", "mptcpd")
			journal, _ := c.run("", "journalctl", "--boot", "--no-pager", "--unit=mptcpd", "--priority=info")
			t.Logf("systemctl status mptcpd:\n%s\njournal of mptcpd.service:\n%s", status, journal)
		}
	})

	// One link to the peer, its near end in the container's namespace.
	const link, peerLink = "mpt0", "mpt0peer"
	a4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if out, err := exec.Command("ip", "link", "add", "name", link, "netns", strconv.Itoa(c.pid), "type", "veth",
		"peer", "name", peerLink, "netns", peer.NS).CombinedOutput(); err != nil {
		t.Fatalf("creating veth pair %s/%s: %v: %s", link, peerLink, err, out)
	}
	c.must("ip", "addr", "add", a4.String()+"/24", "dev", link)
	c.must("ip", "addr", "add", a6.String()+"/64", "dev", link, "nodad")
	c.must("ip", "link", "set", link, "up")
	peer.MustIP("addr", "add", "192.0.2.2/24", "dev", peerLink)
	peer.MustIP("addr", "add", "2001:db8::2/64", "dev", peerLink, "nodad")
	peer.MustIP("link", "set", peerLink, "up")
	c.waitUp("", link)

	// The state the daemon must put back: another path manager, the
	// namespace's own limits.
	pmBefore := genl.PathManagerUserspace
	c.setPathManager(pmBefore)
	limitsBefore := c.must("ip", "mptcp", "limits", "show")
	// systemd's debug messages say when READY=1 came.
	c.must("systemctl", "log-level", "debug")

	// Start: systemctl returns once the daemon is ready, and ready means
	// reconciled.
	c.must("systemctl", "start", "mptcpd")
	want := []string{a4.String() + " subflow", a6.String() + " subflow"}
	slices.Sort(want)
	eps := c.endpoints("")
	if got := epStrings(eps, false); !slices.Equal(got, want) {
		t.Fatalf("when systemctl start returned the endpoints were %q, want %q", got, want)
	}
	withIDs := epStrings(eps, true)
	if got := c.prop("ActiveState", "SubState", "Type", "Result"); got != "active running notify success" {
		t.Errorf("after start the unit is %q, want active running notify success", got)
	}
	mainPID := c.mainPID()
	c.waitJournal("start", func(lines []string) error {
		readyMsg := fmt.Sprintf("mptcpd.service: Got notification message from PID %d (READY=1", mainPID)
		ready := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, readyMsg) })
		running := slices.Index(lines, "mptcpd.service: Changed start -> running")
		switch {
		case ready < 0 || running < 0:
			return fmt.Errorf("no READY=1 from PID %d (%d) or no change to running (%d)", mainPID, ready, running)
		case running < ready:
			return fmt.Errorf("the unit was running (line %d) before the daemon sent READY=1 (line %d)", running, ready)
		}
		return nil
	})
	c.must("systemctl", "log-level", "info")
	if pm := c.pathManager(); pm != genl.PathManagerKernel {
		t.Errorf("path manager while the daemon runs = %q, want kernel (set through ReadWritePaths=/proc/sys/net/mptcp)", pm)
	}

	// The daemon's credentials: a dynamic user, only CAP_NET_ADMIN.
	st := c.procStatus(mainPID)
	for _, key := range []string{"Uid", "Gid"} {
		ids := strings.Fields(st[key])
		for _, id := range ids {
			// systemd allocates dynamic users from 61184..65519.
			if n, err := strconv.Atoi(id); err != nil || n < 61184 || n > 65519 {
				t.Errorf("main process %s: %q, want a dynamic user's (61184..65519) throughout", key, st[key])
				break
			}
		}
	}
	const netAdmin = "0000000000001000" // 1 << CAP_NET_ADMIN (12)
	for _, key := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if st[key] != netAdmin {
			t.Errorf("main process %s = %s, want %s (CAP_NET_ADMIN alone)", key, st[key], netAdmin)
		}
	}
	if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("main process NoNewPrivs %q Seccomp %q, want 1 and 2 (filtering)", st["NoNewPrivs"], st["Seccomp"])
	}

	// Root reaches the API at its default socket.
	if out := c.must("/usr/local/bin/mptcpctl", "endpoint", "show"); !strings.Contains(out, a4.String()) || !strings.Contains(out, "policy") {
		t.Errorf("mptcpctl endpoint show as root:\n%s\nwant %s owned by the policy", out, a4)
	}

	// Reload with backup added: the same endpoints change in place, the
	// same process goes on.
	writeConf(`"subflow", "backup"`, "")
	c.must("systemctl", "reload", "mptcpd")
	// systemd 252 may finish the reload job when kill(1) exits, before the
	// daemon has applied the file, so the change is waited for.
	backup := slices.Clone(withIDs)
	for i := range backup {
		backup[i] += ",backup"
	}
	c.waitEndpoints("after reload", true, backup)
	if got := c.prop("ActiveState", "SubState", "MainPID", "NRestarts"); got != fmt.Sprintf("active running %d 0", mainPID) {
		t.Errorf("after reload the unit is %q, want active running %d 0 (the same process)", got, mainPID)
	}

	// kill -9: Restart=on-failure brings it back (after RestartSec), and
	// from the records kept in its RuntimeDirectory it knows the endpoints
	// as its own: the same ones, no duplicates.
	c.must("systemctl", "kill", "--signal=SIGKILL", "mptcpd")
	if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		return c.prop("ActiveState", "NRestarts") == "active 1", nil
	}); err != nil {
		t.Fatalf("after kill -9 the unit is %q, want active after one restart", c.prop("ActiveState", "SubState", "NRestarts", "Result"))
	}
	if pid := c.mainPID(); pid == mainPID {
		t.Errorf("after kill -9 the main PID is still %d", pid)
	}
	if got := epStrings(c.endpoints(""), true); !slices.Equal(got, backup) {
		t.Errorf("after kill -9 and restart the endpoints are %q, want %q unchanged", got, backup)
	}

	// Stop: the endpoints go (which they would not if the restarted daemon
	// had taken them for somebody else's), the path manager and limits
	// come back, the unit is inactive, not failed.
	c.must("systemctl", "stop", "mptcpd")
	if got := c.prop("ActiveState", "Result"); got != "inactive success" {
		t.Errorf("after stop the unit is %q, want inactive success", got)
	}
	if out, code := c.run("", "systemctl", "is-failed", "mptcpd"); code == 0 {
		t.Errorf("systemctl is-failed mptcpd after stop: %q", out)
	}
	if got := c.endpoints(""); len(got) != 0 {
		t.Errorf("after stop the endpoints are %q, want none", epStrings(got, true))
	}
	if pm := c.pathManager(); pm != pmBefore {
		t.Errorf("path manager after stop = %q, want %q restored", pm, pmBefore)
	}
	if l := c.must("ip", "mptcp", "limits", "show"); l != limitsBefore {
		t.Errorf("limits after stop %q, want %q restored", l, limitsBefore)
	}

	// Userspace mode under the same hardening: the daemon makes the
	// namespace's path manager userspace and opens a live connection's
	// second subflow itself (ndiffports), and stop puts the in-kernel path
	// manager back.
	userspaceLeg(t, c, peer, conf, a4)

	// Fallback mode, its pre-shared key handed over as the unit's comments
	// say: the dynamic user cannot read root's key file.
	credDropIn := documentedDropIn(t, string(unit), "LoadCredential=")
	refused := fallbackLeg(t, c, peer, bin, confDir, credDropIn, a4)

	// The unit's recipe for letting a group use the API.
	c.must("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "mptcpd")
	c.must("useradd", "--user-group", "--no-create-home", "--groups", "mptcpd", "reader")
	c.must("useradd", "--user-group", "--no-create-home", "outsider")
	c.mustInput(groupDropIn, "sh", "-c", "mkdir -p /etc/systemd/system/mptcpd.service.d && cat > /etc/systemd/system/mptcpd.service.d/api-group.conf")
	c.must("systemctl", "daemon-reload")
	writeConf(`"subflow"`, "[api]\ngroup = \"mptcpd\"\n")
	c.must("systemctl", "start", "mptcpd")
	if got := epStrings(c.endpoints(""), false); !slices.Equal(got, want) {
		t.Errorf("with the group drop-in the endpoints are %q, want %q", got, want)
	}
	st = c.procStatus(c.mainPID())
	if uid := strings.Fields(st["Uid"]); len(uid) == 0 || uid[0] != strings.TrimSpace(c.must("id", "-u", "mptcpd")) {
		t.Errorf("with the group drop-in the main process's Uid is %q, want mptcpd's", st["Uid"])
	}
	if st["CapEff"] != netAdmin {
		t.Errorf("with the group drop-in CapEff = %s, want %s", st["CapEff"], netAdmin)
	}
	asUser := func(user string, args ...string) (string, int) {
		return c.run("", append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "/usr/local/bin/mptcpctl"}, args...)...)
	}
	if out, code := asUser("reader", "endpoint", "show"); code != 0 || !strings.Contains(out, a4.String()) {
		t.Errorf("mptcpctl endpoint show as a member of group mptcpd: exit %d:\n%s\nwant the endpoints", code, out)
	}
	if out, code := asUser("reader", "endpoint", "change", "1", "backup"); code != 4 {
		t.Errorf("mptcpctl endpoint change as a reader: exit %d:\n%s\nwant 4 (permission denied)", code, out)
	}
	if out, code := asUser("outsider", "endpoint", "show"); code != 4 {
		t.Errorf("mptcpctl endpoint show as a non-member: exit %d:\n%s\nwant 4 (permission denied)", code, out)
	}
	c.must("systemctl", "stop", "mptcpd")
	if got := c.prop("ActiveState", "Result"); got != "inactive success" {
		t.Errorf("after the second stop the unit is %q, want inactive success", got)
	}
	if got := c.endpoints(""); len(got) != 0 {
		t.Errorf("after the second stop the endpoints are %q, want none", epStrings(got, true))
	}

	// The unit's recipe for managing another network namespace: systemd
	// starts the daemon in it.
	const blue, blueLink = "blue", "mpt1"
	if !strings.Contains(netnsDropIn, "NetworkNamespacePath=/run/netns/NAME\n") {
		t.Fatalf("the netns drop-in in mptcpd.service's comments is not for /run/netns/NAME:\n%s", netnsDropIn)
	}
	c.must("rm", "/etc/systemd/system/mptcpd.service.d/api-group.conf")
	c.mustInput(strings.ReplaceAll(netnsDropIn, "/run/netns/NAME", "/run/netns/"+blue), "sh", "-c", "cat > /etc/systemd/system/mptcpd.service.d/netns.conf")
	c.must("systemctl", "daemon-reload")
	c.must("ip", "netns", "add", blue)
	c.must("ip", "-n", blue, "link", "add", blueLink, "type", "veth", "peer", "name", "x1")
	c.must("ip", "-n", blue, "addr", "add", "198.51.100.1/24", "dev", blueLink)
	c.must("ip", "-n", blue, "link", "set", "x1", "up")
	c.must("ip", "-n", blue, "link", "set", blueLink, "up")
	c.waitUp(blue, blueLink)
	writeConf(`"signal"`, "")
	c.must("systemctl", "start", "mptcpd")
	if got := epStrings(c.endpoints(blue), false); !slices.Equal(got, []string{"198.51.100.1 signal"}) {
		t.Errorf("with the netns drop-in the endpoints in namespace %s are %q, want 198.51.100.1 signal", blue, got)
	}
	if got := c.endpoints(""); len(got) != 0 {
		t.Errorf("with the netns drop-in the container's own namespace has endpoints %q, want none", epStrings(got, false))
	}
	c.must("systemctl", "stop", "mptcpd")
	if got := c.endpoints(blue); len(got) != 0 {
		t.Errorf("after the third stop the endpoints in namespace %s are %q, want none", blue, epStrings(got, true))
	}
	if got := c.prop("ActiveState", "Result"); got != "inactive success" {
		t.Errorf("after the third stop the unit is %q, want inactive success", got)
	}

	// Nothing in the journal about the unit at warning or worse, but the
	// failures kill -9 and the unreadable key caused; nothing from the
	// daemon at WARN or ERROR but the unreadable key's.
	fromKill := append([]string{
		"mptcpd.service: Main process exited, code=killed, status=9/KILL",
		"mptcpd.service: Failed with result 'signal'.",
	}, refused...)
	c.waitJournal("the end", func(lines []string) error {
		if n := countContaining(lines, `msg="mptcpd stopped"`); n != 5 {
			return fmt.Errorf("%d lines say the daemon stopped, want 5", n)
		}
		return nil
	})
	for _, e := range c.journal("-p", "warning") {
		// The machine's name starts with "mptcpd" too.
		about := e.unit == "mptcpd.service" || strings.Contains(strings.ReplaceAll(e.message, c.name, ""), "mptcpd")
		if about && !slices.Contains(fromKill, e.message) {
			t.Errorf("journal, priority %d: %s", e.priority, e.message)
		}
	}
	for _, e := range c.journal("-u", "mptcpd") {
		if slices.Contains(refused, e.message) {
			continue
		}
		if strings.Contains(e.message, "level=WARN") || strings.Contains(e.message, "level=ERROR") {
			t.Errorf("journal: %s", e.message)
		}
	}
}

// userspaceLeg runs the unit in userspace mode in container c, whose link
// to peer holds local: the daemon, with the unit's capabilities and
// system-call filter, sets the path manager, adopts a connection and opens
// its second subflow; bytes cross it intact; stop restores the in-kernel
// path manager.
func userspaceLeg(t *testing.T, c *container, peer *testbed.Host, conf string, local netip.Addr) {
	t.Helper()
	const port = 8080
	remote := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), port)
	if err := newClient(t, peer).SetLimits(genl.Limits{Subflows: 8, AddAddrAccepted: 8}); err != nil {
		t.Fatal(err)
	}
	fixedEchoListener(t, peer, 4, port)
	c.setPathManager(genl.PathManagerKernel)
	text := `mode = "userspace"

[log]
level = "debug"

[[rule]]
name = "test link"
interfaces = ["mpt*"]
kinds = ["veth"]
flags = ["subflow"]

[[userspace.rule]]
name = "two ports"
side = "client"
strategy = "ndiffports"
subflows = 2
`
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("systemctl", "start", "mptcpd")
	if pm := c.pathManager(); pm != genl.PathManagerUserspace {
		t.Errorf("path manager with mode userspace under the unit = %q, want userspace", pm)
	}

	nsf, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", c.pid))
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	var conn net.Conn
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
	d.SetMultipathTCP(true)
	if err := netns.Do(int(nsf.Fd()), func() error {
		var err error
		conn, err = d.DialContext(ctxT(t), "tcp", remote.String())
		return err
	}); err != nil {
		t.Fatalf("dialing %s from the container: %v", remote, err)
	}
	defer conn.Close()
	if ok, err := conn.(*net.TCPConn).MultipathTCP(); !ok || err != nil {
		t.Fatalf("the container's connection to %s is not MPTCP (%v)", remote, err)
	}
	dc, err := diag.New(diag.WithNetNS(int(nsf.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	// Data first: the connection is fully established, and the kernel
	// says so to the path manager, once the peer has acknowledged some.
	if err := exchange(conn, 1<<10); err != nil {
		t.Fatalf("over the container's connection: %v", err)
	}
	l := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	p := pair(local, remote)
	waitSubflows(t, dc, netip.AddrPortFrom(l.Addr().Unmap(), l.Port()), "userspace mode under the unit, ndiffports 2", []string{p, p})
	if err := exchange(conn, 1<<20); err != nil {
		t.Errorf("over the connection with the daemon's subflow: %v", err)
	}

	c.must("systemctl", "stop", "mptcpd")
	if got := c.prop("ActiveState", "Result"); got != "inactive success" {
		t.Errorf("after stopping userspace mode the unit is %q, want inactive success", got)
	}
	if pm := c.pathManager(); pm != genl.PathManagerKernel {
		t.Errorf("path manager after stopping userspace mode = %q, want kernel restored", pm)
	}
}

// fallbackLeg runs the unit in fallback mode in container c, whose link to
// peer holds local, with its key given as a credential by credDropIn (the
// drop-in the unit's comments give, for /etc/mptcpd/fallback.key); a
// converter, mptcpd outside the container, runs on peer. An application in
// the container reaches a server in the container through the daemon's
// SOCKS5 server, the converter and back, bytes intact; the daemon keeps
// only CAP_NET_ADMIN; the drop-in is removed afterwards. Before the
// drop-in, a configuration naming root's key file makes the start fail
// with a message that says what to do; refused is what that failure put in
// the journal at warning or worse.
func fallbackLeg(t *testing.T, c *container, peer *testbed.Host, bin, confDir, credDropIn string, local netip.Addr) (refused []string) {
	t.Helper()
	const convPort = 7445
	if !strings.Contains(credDropIn, "LoadCredential=fallback.key:/etc/mptcpd/fallback.key\n") {
		t.Fatalf("the credential drop-in in mptcpd.service's comments is not for /etc/mptcpd/fallback.key:\n%s", credDropIn)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString(raw[:])

	// The converter, on peer.
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	convConf := filepath.Join(dir, "conv.toml")
	for path, text := range map[string]string{
		keys: "container " + key + "\n",
		convConf: fmt.Sprintf(`state_dir = %q
[api]
socket = %q
[[rule]]
name = "peer link"
interfaces = ["mpt*"]
kinds = ["veth"]
flags = ["signal"]
[converter]
enabled = true
listen = ["0.0.0.0:%d"]
keys_file = %q
allow_prefixes = ["%s/32"]
`, filepath.Join(dir, "state"), filepath.Join(dir, "conv.sock"), convPort, keys, local),
	} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conv := startDaemon(t, bin, "--config", convConf, "--netns", peer.NS)
	conv.waitState("READY=1")

	// The key stays root's.
	if err := os.WriteFile(filepath.Join(confDir, "fallback.key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeConf := func(keyFile string) {
		t.Helper()
		text := fmt.Sprintf(`mode = "fallback"

[addresses]
ipv6 = false

[[rule]]
name = "test link"
interfaces = ["mpt*"]
kinds = ["veth"]
flags = ["subflow"]

[fallback]
converter = "192.0.2.2:%d"
key_id = "container"
key_file = %q
socks_listen = "127.0.0.1:1080"
`, convPort, keyFile)
		if err := os.WriteFile(filepath.Join(confDir, "mptcpd.toml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Named as it is, root's key cannot be read by the dynamic user: the
	// unit does not start, and the journal says what to do.
	warnedBefore := len(c.journal("-p", "warning"))
	writeConf("/etc/mptcpd/fallback.key")
	if out, code := c.run("", "systemctl", "start", "mptcpd"); code == 0 {
		t.Errorf("systemctl start with key_file naming root's file succeeded:\n%s\nwant a failure", out)
	}
	c.waitJournal("refused start", func(lines []string) error {
		if countContaining(lines, "/etc/mptcpd/fallback.key") == 0 || countContaining(lines, "LoadCredential=") == 0 {
			return errors.New("no line names the unreadable key file and LoadCredential=")
		}
		return nil
	})
	for _, e := range c.journal("-p", "warning")[warnedBefore:] {
		refused = append(refused, e.message)
	}
	c.must("systemctl", "reset-failed", "mptcpd")

	// Handed over as a credential, it is read.
	c.mustInput(credDropIn, "sh", "-c", "mkdir -p /etc/systemd/system/mptcpd.service.d && cat > /etc/systemd/system/mptcpd.service.d/credentials.conf")
	c.must("systemctl", "daemon-reload")
	writeConf("/run/credentials/mptcpd.service/fallback.key")
	c.must("systemctl", "start", "mptcpd")
	st := c.procStatus(c.mainPID())
	if st["CapEff"] != "0000000000001000" {
		t.Errorf("in fallback mode CapEff = %s, want CAP_NET_ADMIN alone", st["CapEff"])
	}

	// A server in the container, reached through the daemon's SOCKS5
	// server and the converter.
	nsf, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", c.pid))
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	var ln net.Listener
	if err := netns.Do(int(nsf.Fd()), func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(local.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	echoServer(t, ln)
	target := ln.Addr().String()
	var conn net.Conn
	if err := netns.Do(int(nsf.Fd()), func() error {
		var err error
		var d net.Dialer
		conn, err = load.DialSOCKS5(ctxT(t), &d, "127.0.0.1:1080", target, nil)
		return err
	}); err != nil {
		status, _ := c.run("", "journalctl", "--no-pager", "-u", "mptcpd", "-n", "30")
		t.Fatalf("through the daemon's SOCKS5 server to %s: %v\nconverter log:\n%s\njournal:\n%s", target, err, conv.log.String(), status)
	}
	defer conn.Close()
	if err := exchange(conn, 1<<20); err != nil {
		t.Errorf("through the fallback datapath: %v", err)
	}
	_ = conn.Close()

	c.must("systemctl", "stop", "mptcpd")
	if got := c.prop("ActiveState", "Result"); got != "inactive success" {
		t.Errorf("after stopping fallback mode the unit is %q, want inactive success", got)
	}
	c.must("rm", "/etc/systemd/system/mptcpd.service.d/credentials.conf")
	c.must("systemctl", "daemon-reload")
	return refused
}

// requireSystemdBoot skips the test, with the reason, unless a container
// with systemd can be booted; under CI it fails instead.
func requireSystemdBoot(t *testing.T) {
	t.Helper()
	reason := ""
	switch {
	case os.Geteuid() != 0:
		reason = "needs root to boot a container"
	case !commandExists("systemd-nspawn"):
		reason = "needs systemd-nspawn (apt-get install systemd-container)"
	case !commandExists("nsenter") || !commandExists("setpriv"):
		reason = "needs nsenter and setpriv (apt-get install util-linux)"
	case !commandExists("useradd"):
		reason = "needs useradd (apt-get install passwd)"
	case !fileExists("/usr/lib/systemd/systemd") && !fileExists("/lib/systemd/systemd"):
		reason = "needs systemd to boot in the container (apt-get install systemd)"
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("the unit cannot be run under systemd in CI: %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

// commandExists reports whether a command is in $PATH or in /usr/sbin,
// which the commands run in the container have in theirs.
func commandExists(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil || fileExists(filepath.Join("/usr/sbin", name))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// documentedDropIn returns the first drop-in given in the unit's comments
// (an indented "#   [Service]" and the settings after it) that sets key.
func documentedDropIn(t *testing.T, unit, key string) string {
	t.Helper()
	var b strings.Builder
	for line := range strings.Lines(unit + "\n") {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "#   [Service]":
			b.Reset()
			b.WriteString("[Service]\n")
		case b.Len() > 0 && strings.HasPrefix(line, "#   ") && strings.Contains(line, "="):
			b.WriteString(strings.TrimPrefix(line, "#   ") + "\n")
		case b.Len() > 0:
			if strings.Contains(b.String(), "\n"+key) {
				return b.String()
			}
			b.Reset()
		}
	}
	t.Fatalf("mptcpd.service's comments give no drop-in (\"#   [Service]\") that sets %s", key)
	return ""
}

// container is a systemd-nspawn container booting systemd, stopped and
// removed at the end of the test.
type container struct {
	t    *testing.T
	name string
	// pid is the container's PID 1 as the host sees it; set once, before
	// any command runs in the container.
	pid int

	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan struct{} // closed when nspawn has exited
	cgroups  []string
	sources  []string // host paths bound into the container
	watchdog *time.Timer

	// mu guards init and initNS, the container's PID 1 and its PID
	// namespace, which the watchdog reads to kill it.
	mu       sync.Mutex
	init     int
	initNS   string
	killOnce sync.Once
}

// watchdogLimit is how long the test may run once the container is
// booting; then the container is killed and the test fails with the stack
// of every goroutine.
const watchdogLimit = 45 * time.Second

// bootContainer boots the host's systemd in a container: a tmpfs root with
// the host's /usr read-only, a network namespace of its own, the host
// paths of binds mounted read-only at their container paths, into target.
func bootContainer(t *testing.T, binds map[string]string, target string) *container {
	t.Helper()
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	c := &container{
		t:    t,
		name: fmt.Sprintf("mptcpdt-%d-%s", os.Getpid(), hex.EncodeToString(r[:])),
		out:  &syncBuffer{},
		done: make(chan struct{}),
	}
	var err error
	c.cgroups, err = makeCgroups(c.name)
	if err != nil {
		_ = removeCgroups(c.cgroups)
		t.Fatal(err)
	}
	t.Cleanup(c.stop)

	nspawn := []string{"systemd-nspawn",
		"--directory=/", "--volatile=yes", "--private-network", "--register=no", "--keep-unit",
		"--link-journal=no", "--console=read-only", "--quiet", "--machine=" + c.name}
	for host, inside := range binds {
		nspawn = append(nspawn, "--bind-ro="+host+":"+inside)
		c.sources = append(c.sources, host)
	}
	// The container's own arguments: its target, and no first-boot setup
	// (an empty /etc looks like one, and presets would enable every unit).
	nspawn = append(nspawn, "--boot", "systemd.unit="+target, "systemd.condition-first-boot=false")
	// A shell puts itself into the container's cgroups, then becomes
	// nspawn, which makes its own below them.
	script := `pid=$$; while [ "$1" != -- ]; do echo "$pid" > "$1" || exit 1; shift; done; shift; exec "$@"`
	shArgs := []string{"-c", script, "sh"}
	for _, cg := range c.cgroups {
		shArgs = append(shArgs, filepath.Join(cg, "cgroup.procs"))
	}
	shArgs = append(append(shArgs, "--"), nspawn...)
	c.cmd = exec.Command("/bin/sh", shArgs...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	// If the test process dies, nspawn is told to shut the container down.
	// The signal comes when the thread that started nspawn ends, so that
	// thread stays locked to a goroutine that waits for nspawn.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	begin := time.Now()
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			close(c.done)
			return
		}
		started <- nil
		_ = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("starting systemd-nspawn: %v", err)
	}
	c.watchdog = time.AfterFunc(watchdogLimit, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s: watchdog: still running after %s\n%s\n", t.Name(), watchdogLimit, buf)
		c.kill()
		// The panic ends the process before any cleanup: what nspawn
		// leaves when killed goes now if it can, else at the next run.
		select {
		case <-c.done:
			_ = os.Remove(filepath.Join(nspawnPropagate, c.name))
			_ = removeCgroups(c.cgroups)
		case <-time.After(3 * time.Second):
		}
		panic(fmt.Sprintf("%s: watchdog expired after %s; container %s killed", t.Name(), watchdogLimit, c.name))
	})

	// Its PID 1: nspawn's child in another PID namespace, once it is
	// systemd.
	ownNS, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.pid == 0 {
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited (%v) before booting:\n%s", c.cmd.ProcessState, c.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no systemd under systemd-nspawn (pid %d) after 10s:\n%s", c.cmd.Process.Pid, c.out.String())
		}
		for _, pid := range childrenOf(c.cmd.Process.Pid) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
			if err == nil && ns != ownNS && strings.TrimSpace(string(comm)) == "systemd" {
				c.mu.Lock()
				c.init, c.initNS = pid, ns
				c.mu.Unlock()
				c.pid = pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Booted: the manager answers and its jobs are done.
	var state string
	if err := testbed.WaitFor(15*time.Second, func() (bool, error) {
		state, _ = c.run("", "systemctl", "is-system-running")
		state = strings.TrimSpace(state)
		return state == "running" || state == "degraded", nil
	}); err != nil {
		t.Fatalf("the container's systemd is %q after 15s:\n%s", state, c.out.String())
	}
	if state == "degraded" {
		failed, _ := c.run("", "systemctl", "--failed", "--no-pager")
		t.Fatalf("the container booted degraded:\n%s", failed)
	}
	t.Logf("container %s (PID 1 is %d) booted in %s", c.name, c.pid, time.Since(begin).Round(time.Millisecond))
	return c
}

// childrenOf returns the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(st)) {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				if p, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && p == pid {
					kids = append(kids, n)
				}
				break
			}
		}
	}
	return kids
}

// kill ends the container at once: SIGKILL to its PID 1 ends every process
// in its PID namespace, and to nspawn. Safe from any goroutine.
func (c *container) kill() {
	c.killOnce.Do(func() {
		c.mu.Lock()
		pid, pidNS := c.init, c.initNS
		c.mu.Unlock()
		// The PID namespace is checked so that a reused PID is not hit.
		if pid != 0 {
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && ns == pidNS {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = c.cmd.Process.Kill()
	})
}

// stop shuts the container down (nspawn turns SIGTERM into a halt), kills
// it if that takes too long, and removes what nspawn leaves on the host
// when killed: its cgroups and its directory under
// /run/systemd/nspawn/propagate. It then checks that no mount refers to
// the container.
func (c *container) stop() {
	t := c.t
	if c.watchdog != nil {
		defer c.watchdog.Stop()
	}
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.done:
		default:
			start := time.Now()
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
				t.Logf("container halted in %s", time.Since(start).Round(time.Millisecond))
			case <-time.After(10 * time.Second):
				t.Errorf("the container did not halt within 10s of SIGTERM; killing it")
				c.kill()
				select {
				case <-c.done:
				case <-time.After(5 * time.Second):
					t.Errorf("systemd-nspawn (pid %d) still runs 5s after SIGKILL", c.cmd.Process.Pid)
				}
			}
		}
		if t.Failed() {
			t.Logf("systemd-nspawn output:\n%s", c.out.String())
		}
	}
	if err := os.Remove(filepath.Join(nspawnPropagate, c.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing nspawn's propagation directory: %v", err)
	}
	if err := removeCgroups(c.cgroups); err != nil {
		t.Error(err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	for line := range strings.Lines(string(mounts)) {
		if strings.Contains(line, c.name) || slices.ContainsFunc(c.sources, func(s string) bool { return strings.Contains(line, s) }) {
			t.Errorf("a mount of the container outlived it: %s", line)
		}
	}
}

// makeCgroups creates a cgroup named name below the test's own in the
// hierarchies nspawn uses (the unified one, and the named systemd one of
// a hybrid or legacy host), so that nspawn's "payload" and "supervisor"
// cgroups land there, apart from any other container's, and can be
// removed. It returns the directories made. First it removes those left
// by test processes that no longer run (killed by their watchdog or a
// timeout).
func makeCgroups(name string) ([]string, error) {
	parents, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, parent := range parents {
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.IsDir() && leftByDeadTest(e.Name()) {
				stale = append(stale, filepath.Join(parent, e.Name()))
			}
		}
	}
	if err := removeCgroups(stale); err != nil {
		return nil, fmt.Errorf("removing cgroups of earlier test runs: %w", err)
	}
	entries, _ := os.ReadDir(nspawnPropagate)
	for _, e := range entries {
		if leftByDeadTest(e.Name()) {
			_ = os.Remove(filepath.Join(nspawnPropagate, e.Name()))
		}
	}
	var dirs []string
	for _, parent := range parents {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return dirs, fmt.Errorf("creating the container's cgroup: %w", err)
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// nspawnPropagate holds a directory per running container, which nspawn
// removes when it exits, unless it is killed.
const nspawnPropagate = "/run/systemd/nspawn/propagate"

// leftByDeadTest reports whether name is one of this test's container
// names ("mptcpdt-PID-RANDOM") of a process that no longer runs.
func leftByDeadTest(name string) bool {
	rest, ok := strings.CutPrefix(name, "mptcpdt-")
	if !ok {
		return false
	}
	pidText, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid == os.Getpid() {
		return false
	}
	_, err = os.Stat(filepath.Join("/proc", pidText))
	return errors.Is(err, fs.ErrNotExist)
}

// ownCgroups returns the directories of this process's cgroups in the
// unified hierarchy and, if mounted, the named systemd one.
func ownCgroups() ([]string, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]string{} // "" for the unified hierarchy, else "name=systemd"
	for line := range strings.Lines(string(own)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			paths[""] = f[2]
		case f[1] == "name=systemd":
			paths["name=systemd"] = f[2]
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var dirs []string
	seen := map[string]bool{}
	for line := range strings.Lines(string(mounts)) {
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		mf, pf := strings.Fields(pre), strings.Fields(post)
		if len(mf) < 5 || len(pf) < 3 {
			continue
		}
		root, point := mf[3], mf[4]
		var key string
		switch {
		case pf[0] == "cgroup2":
			key = ""
		case pf[0] == "cgroup" && slices.Contains(strings.Split(pf[2], ","), "name=systemd"):
			key = "name=systemd"
		default:
			continue
		}
		path, ok := paths[key]
		if !ok || seen[key] {
			continue
		}
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(root, "/"))
		if !ok {
			return nil, fmt.Errorf("cgroup %s of this process is not below the root %s of its mount on %s", path, root, point)
		}
		seen[key] = true
		dirs = append(dirs, filepath.Join(point, rel))
	}
	if !seen[""] {
		return nil, errors.New("no unified cgroup hierarchy (cgroup2) is mounted for this process")
	}
	return dirs, nil
}

// removeCgroups removes the cgroups and everything below them, deepest
// first, waiting a little for the container's processes to be gone.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, top := range dirs {
		var all []string
		_ = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, path)
			}
			return nil
		})
		slices.SortFunc(all, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		for _, d := range all {
			err := testbed.WaitFor(3*time.Second, func() (bool, error) {
				err := os.Remove(d)
				if err == nil || errors.Is(err, fs.ErrNotExist) {
					return true, nil
				}
				if errors.Is(err, syscall.EBUSY) {
					return false, nil
				}
				return false, err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// run runs a command inside the container (in all its namespaces) and
// returns its standard output, or its standard error too if it fails, and
// its exit status. It fails the test if the command cannot be run or
// takes more than 15 s.
func (c *container) run(stdin string, args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(c.pid), "--all", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "SYSTEMD_LESS="}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		c.t.Fatalf("in the container: %s: no end after 15s", strings.Join(args, " "))
	case errors.As(err, &exit):
		return stdout.String() + stderr.String(), exit.ExitCode()
	case err != nil:
		c.t.Fatalf("in the container: %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), 0
}

// must is run that fails the test unless the command succeeds.
func (c *container) must(args ...string) string {
	c.t.Helper()
	return c.mustInput("", args...)
}

func (c *container) mustInput(stdin string, args ...string) string {
	c.t.Helper()
	out, code := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("in the container: %s: exit status %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// prop returns properties of mptcpd.service, space-separated, in the order
// asked for.
func (c *container) prop(names ...string) string {
	c.t.Helper()
	vals := make([]string, len(names))
	for i, name := range names {
		vals[i] = strings.TrimSpace(c.must("systemctl", "show", "--value", "--property="+name, "mptcpd"))
	}
	return strings.Join(vals, " ")
}

func (c *container) mainPID() int {
	c.t.Helper()
	pid, err := strconv.Atoi(c.prop("MainPID"))
	if err != nil || pid <= 0 {
		c.t.Fatalf("mptcpd.service has no main process (MainPID %q)", c.prop("MainPID"))
	}
	return pid
}

// procStatus returns the fields of /proc/PID/status of a process of the
// container.
func (c *container) procStatus(pid int) map[string]string {
	c.t.Helper()
	st := map[string]string{}
	for line := range strings.Lines(c.must("cat", fmt.Sprintf("/proc/%d/status", pid))) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			st[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return st
}

// pathManager reads net.mptcp.path_manager, or pm_type where the kernel
// has only that.
func (c *container) pathManager() string {
	c.t.Helper()
	if out, code := c.run("", "cat", "/proc/sys/net/mptcp/path_manager"); code == 0 {
		return strings.TrimSpace(out)
	}
	if strings.TrimSpace(c.must("cat", "/proc/sys/net/mptcp/pm_type")) == "1" {
		return genl.PathManagerUserspace
	}
	return genl.PathManagerKernel
}

func (c *container) setPathManager(pm string) {
	c.t.Helper()
	if _, code := c.run("", "test", "-e", "/proc/sys/net/mptcp/path_manager"); code == 0 {
		c.must("sh", "-c", "echo "+pm+" > /proc/sys/net/mptcp/path_manager")
		return
	}
	v := "0"
	if pm == genl.PathManagerUserspace {
		v = "1"
	}
	c.must("sh", "-c", "echo "+v+" > /proc/sys/net/mptcp/pm_type")
}

// ip runs ip(8) in the container, in its named network namespace ns, or
// in its own for "".
func (c *container) ip(ns string, args ...string) string {
	c.t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return c.must(append([]string{"ip"}, args...)...)
}

// waitUp waits for a link of the container to be up (carrier and all).
func (c *container) waitUp(ns, link string) {
	c.t.Helper()
	if err := testbed.WaitFor(5*time.Second, func() (bool, error) {
		return strings.Contains(c.ip(ns, "-o", "link", "show", "dev", link), "state UP"), nil
	}); err != nil {
		c.t.Fatalf("%s in the container's namespace %q is not up: %v", link, ns, err)
	}
}

// endpoints runs `ip mptcp endpoint show` in the container, in its named
// network namespace ns or in its own for "", and parses it.
func (c *container) endpoints(ns string) []ipEndpoint {
	c.t.Helper()
	var eps []ipEndpoint
	for line := range strings.Lines(c.ip(ns, "mptcp", "endpoint", "show")) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		addr, err := netip.ParseAddr(f[0])
		if err != nil {
			c.t.Fatalf("ip mptcp endpoint show: %q: %v", line, err)
		}
		ep := ipEndpoint{Addr: addr}
		for i := 1; i < len(f); i++ {
			switch f[i] {
			case "id", "port", "dev":
				if i+1 == len(f) {
					c.t.Fatalf("ip mptcp endpoint show: %q: %s without value", line, f[i])
				}
				if f[i] == "id" {
					n, err := strconv.ParseUint(f[i+1], 10, 8)
					if err != nil {
						c.t.Fatalf("ip mptcp endpoint show: %q: %v", line, err)
					}
					ep.ID = uint8(n)
				}
				i++
			default:
				fl, err := genl.ParseEndpointFlags(f[i])
				if err != nil {
					c.t.Fatalf("ip mptcp endpoint show: %q: %v", line, err)
				}
				ep.Flags |= fl
			}
		}
		eps = append(eps, ep)
	}
	return eps
}

// epStrings formats endpoints as endpointSet does: "addr flags", with the
// ID first when withID, sorted.
func epStrings(eps []ipEndpoint, withID bool) []string {
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		s := fmt.Sprintf("%s %s", ep.Addr, ep.Flags)
		if withID {
			s = fmt.Sprintf("%d %s", ep.ID, s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (c *container) waitEndpoints(what string, withID bool, want []string) {
	c.t.Helper()
	var got []string
	if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		got = epStrings(c.endpoints(""), withID)
		return slices.Equal(got, want), nil
	}); err != nil {
		c.t.Fatalf("%s: endpoints %q, want %q", what, got, want)
	}
}

// journalEntry is one entry of the container's journal.
type journalEntry struct {
	priority int
	unit     string
	message  string
}

// journal returns the entries of the container's journal for this boot
// that journalctl's extra arguments select.
func (c *container) journal(args ...string) []journalEntry {
	c.t.Helper()
	out := c.must(append([]string{"journalctl", "--boot", "--no-pager", "--output=json"}, args...)...)
	var entries []journalEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			c.t.Fatalf("journalctl -o json: %v: %s", err, sc.Text())
		}
		field := func(name string) string {
			var s string
			if json.Unmarshal(raw[name], &s) == nil {
				return s
			}
			var b []byte // journalctl writes non-UTF-8 values as byte arrays
			var nums []int
			if json.Unmarshal(raw[name], &nums) == nil {
				for _, n := range nums {
					b = append(b, byte(n))
				}
			}
			return string(b)
		}
		p, _ := strconv.Atoi(field("PRIORITY"))
		unit := field("_SYSTEMD_UNIT")
		if u := field("UNIT"); u != "" {
			unit = u
		}
		entries = append(entries, journalEntry{priority: p, unit: unit, message: field("MESSAGE")})
	}
	if err := sc.Err(); err != nil {
		c.t.Fatal(err)
	}
	return entries
}

// waitJournal waits, for up to 5 s (the journal takes messages in
// asynchronously), until check accepts the messages of mptcpd.service.
func (c *container) waitJournal(what string, check func(lines []string) error) {
	c.t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		var lines []string
		for _, e := range c.journal("--unit=mptcpd") {
			lines = append(lines, e.message)
		}
		if err = check(lines); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("journal at %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countContaining(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
