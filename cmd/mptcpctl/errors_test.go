package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
)

// checkOneError checks that stderr holds one error, and that it says want.
func checkOneError(t *testing.T, res result, wantCode int, want string) {
	t.Helper()
	if res.code != wantCode {
		t.Errorf("exit %d, want %d; stderr:\n%s", res.code, wantCode, res.stderr)
	}
	if n := strings.Count(res.stderr, "mptcpctl: "); n != 1 {
		t.Errorf("stderr holds %d errors, want 1:\n%s", n, res.stderr)
	}
	if !strings.Contains(res.stderr, want) {
		t.Errorf("stderr does not say %q:\n%s", want, res.stderr)
	}
}

// TestBadArguments checks that bad arguments are refused before anything
// is sent, with an error that names them.
func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, exitUsage, `unknown command "bogus"`},
		{[]string{"status", "now"}, exitUsage, "takes no arguments"},
		{[]string{"status", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"-o", "yaml", "status"}, exitUsage, `unknown output format "yaml": want table or json`},
		{[]string{"endpoint", "frob"}, exitUsage, `unknown command "frob" for "mptcpctl endpoint"`},

		{[]string{"endpoint", "add"}, exitUsage, "takes ADDRESS"},
		{[]string{"endpoint", "add", "192.0.2.300", "signal"}, exitInvalid, `bad ADDRESS "192.0.2.300": want an IPv4 or IPv6 address`},
		{[]string{"endpoint", "add", "224.0.0.1", "signal"}, exitInvalid, "want a unicast address"},
		{[]string{"endpoint", "add", "fe80::1%eth0", "subflow"}, exitInvalid, "name the interface with dev"},
		{[]string{"endpoint", "add", "192.0.2.1", "port", "0", "signal"}, exitInvalid, `bad port "0": want a number from 1 to 65535`},
		{[]string{"endpoint", "add", "192.0.2.1", "port", "65536", "signal"}, exitInvalid, `bad port "65536"`},
		{[]string{"endpoint", "add", "192.0.2.1", "id", "0", "signal"}, exitInvalid, `bad id "0": want a number from 1 to 255`},
		{[]string{"endpoint", "add", "192.0.2.1", "id", "256", "signal"}, exitInvalid, `bad id "256"`},
		{[]string{"endpoint", "add", "192.0.2.1", "dev", "eth/0", "signal"}, exitInvalid, `bad interface name "eth/0"`},
		{[]string{"endpoint", "add", "192.0.2.1", "frobnicate"}, exitUsage, `unknown word "frobnicate": want port PORT, dev IFNAME, id ID, or a flag: signal, subflow, backup, fullmesh, laminar`},
		{[]string{"endpoint", "add", "192.0.2.1", "implicit"}, exitInvalid, "implicit is set by the kernel"},
		{[]string{"endpoint", "add", "192.0.2.1", "backup"}, exitInvalid, "give signal, subflow or both"},
		{[]string{"endpoint", "add", "192.0.2.1", "signal", "fullmesh"}, exitInvalid, "signal and fullmesh cannot be combined"},
		{[]string{"endpoint", "add", "192.0.2.1", "signal", "port"}, exitUsage, "port needs a value: port PORT"},
		{[]string{"endpoint", "add", "192.0.2.1", "port", "1", "port", "2", "signal"}, exitUsage, "port given twice"},

		{[]string{"endpoint", "delete"}, exitUsage, "takes the endpoint's ID"},
		{[]string{"endpoint", "delete", "id"}, exitUsage, "give the endpoint ID"},
		{[]string{"endpoint", "delete", "one"}, exitInvalid, `bad endpoint ID "one"`},
		{[]string{"endpoint", "delete", "1", "2"}, exitUsage, "takes one ID"},
		{[]string{"endpoint", "change", "3"}, exitUsage, "takes the endpoint's ID and backup"},
		{[]string{"endpoint", "change", "3", "backup", "nobackup"}, exitUsage, "backup given twice"},
		{[]string{"endpoint", "change", "3", "wobble"}, exitUsage, `unknown word "wobble": want backup, nobackup, fullmesh or nofullmesh`},
		{[]string{"endpoint", "show", "300"}, exitInvalid, `bad endpoint ID "300"`},

		{[]string{"limits", "set"}, exitUsage, "takes subflows N"},
		{[]string{"limits", "set", "subflows", "9"}, exitInvalid, `bad subflows "9": want a number from 0 to 8`},
		{[]string{"limits", "set", "subflows", "-1"}, exitUsage, "unknown shorthand flag"},
		{[]string{"limits", "set", "add_addr_accepted", "x"}, exitInvalid, `bad add_addr_accepted "x"`},
		{[]string{"limits", "set", "foo", "1"}, exitUsage, `unknown word "foo"`},

		{[]string{"connection", "show"}, exitUsage, "takes one TOKEN"},
		{[]string{"connection", "show", "zz"}, exitInvalid, `bad token "zz": want a decimal number or 0x and hex digits`},
		{[]string{"connection", "show", "0"}, exitInvalid, "no connection has token 0"},
		{[]string{"connection", "show", "0x1ffffffff"}, exitInvalid, `bad token "0x1ffffffff"`},

		{[]string{"subflow", "add", "0x1", "192.0.2.1", "203.0.113.5"}, exitInvalid, `bad REMOTE "203.0.113.5": want ADDRESS:PORT`},
		{[]string{"subflow", "add", "0x1", "192.0.2.1", "[2001:db8::1]:443"}, exitInvalid, "different families"},
		{[]string{"subflow", "add", "0x1", "192.0.2.1", "203.0.113.5:0"}, exitInvalid, `bad REMOTE port "0"`},
		{[]string{"subflow", "add", "0x1", "192.0.2.1", "203.0.113.5:443", "id", "256"}, exitInvalid, `bad id "256": want a number from 0 to 255`},
		{[]string{"subflow", "add", "0x1", "192.0.2.1", "203.0.113.5:443", "fast"}, exitUsage, `unknown word "fast"`},
		{[]string{"subflow", "add", "nope", "192.0.2.1", "203.0.113.5:443"}, exitInvalid, `bad token "nope"`},
		{[]string{"subflow", "delete", "0x1", "192.0.2.1", "203.0.113.5:443"}, exitInvalid, `bad LOCAL "192.0.2.1": want ADDRESS:PORT`},
		{[]string{"subflow", "backup", "0x1", "192.0.2.1:5", "203.0.113.5:443", "maybe"}, exitUsage, `bad backup "maybe": want on or off`},
		{[]string{"announce", "0x1", "192.0.2.1"}, exitUsage, "takes TOKEN ADDRESS id ID"},
		{[]string{"announce", "0x1", "192.0.2.1", "port", "80"}, exitUsage, "give the address ID"},
		{[]string{"announce", "0x1", "192.0.2.1", "id", "0"}, exitInvalid, `bad id "0"`},
		{[]string{"withdraw", "0x1"}, exitUsage, "takes TOKEN and the announced address ID"},
		{[]string{"withdraw", "0x1", "256"}, exitInvalid, `bad address ID "256"`},

		{[]string{"monitor", "--kind", "bogus"}, exitInvalid, `unknown event kind "bogus": want one of`},
		{[]string{"monitor", "--token", "x"}, exitInvalid, `--token: bad token "x"`},
		{[]string{"policy", "apply"}, exitUsage, "takes one FILE"},
		{[]string{"policy", "check", "/nonexistent/policy.toml"}, exitInvalid, "reading the policy"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{}
			res := runCLI(t, serveFake(t, f), "", tc.args...)
			checkOneError(t, res, tc.code, tc.want)
			if reqs := f.requests(); len(reqs) > 0 {
				t.Errorf("sent %d requests, want none: %v", len(reqs), reqs)
			}
			if res.code == exitUsage && !strings.Contains(res.stderr, "--help' for usage") {
				t.Errorf("a usage error does not point to --help:\n%s", res.stderr)
			}
		})
	}
}

// TestBadGlobalFlags checks the flags that say where mptcpd is.
func TestBadGlobalFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--netns", "a/b", "status"}, exitInvalid, `invalid network namespace name "a/b"`},
		{[]string{"--netns", "blue", "--server", "/run/x.sock", "status"}, exitUsage, "give --server or --netns, not both"},
		{[]string{"--server", "mptcpd.example.net:7300", "status"}, exitUsage, "needs a client certificate: give --tls-cert and --tls-key"},
		{[]string{"--server", "mptcpd.example.net:7300", "--plaintext", "status"}, exitInvalid, "--plaintext is only for a server on a loopback address"},
		{[]string{"--server", "127.0.0.1:7300", "--plaintext", "--tls-ca", "ca.pem", "status"}, exitUsage, "exclude each other"},
		{[]string{"--server", "/run/x.sock", "--plaintext", "status"}, exitUsage, "are for a TCP server"},
		{[]string{"--server", "127.0.0.1:99999", "status"}, exitInvalid, `bad port "99999"`},
		{[]string{"--server", "nowhere", "status"}, exitInvalid, "neither a socket path"},
		{[]string{"--server", "127.0.0.1:7300", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem", "status"}, exitInvalid, "--tls-cert /nonexistent/c.pem"},
		{[]string{"--timeout", "soon", "status"}, exitUsage, `invalid argument "soon"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			checkOneError(t, runCLI(t, "", "", tc.args...), tc.code, tc.want)
		})
	}
}

// TestServerErrors checks that each error of mptcpd gets its message and
// exit status.
func TestServerErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		err    error
		args   []string
		code   int
		want   string
	}{
		{"read permission", "ListEndpoints", genl.ErrPermission, []string{"endpoint", "show"},
			exitPermission, "permission denied: reading mptcpd's state needs root or the group of its socket"},
		{"write permission", "CreateEndpoint", fmt.Errorf("uid 1000 is not in group mptcpd-admin: %w", genl.ErrPermission), []string{"endpoint", "add", "192.0.2.1", "signal"},
			exitPermission, "permission denied: changing endpoints needs root or the admin group"},
		{"unauthenticated", "SetLimits", status.Error(codes.Unauthenticated, "who are you"), []string{"limits", "set", "subflows", "1", "add_addr_accepted", "1"},
			exitPermission, "permission denied: changing limits needs root or the admin group"},
		{"endpoint not found", "", nil, []string{"endpoint", "show", "9"},
			exitNotFound, "not found: endpoint 9: not found; `mptcpctl endpoint show` lists the endpoints"},
		{"unknown token", "", nil, []string{"connection", "show", "0x12345678"},
			exitNotFound, "connection 0x12345678: unknown connection token; `mptcpctl connection list` lists the connections"},
		{"subflow not found", "DestroySubflow", fmt.Errorf("no such subflow: %w", genl.ErrNotFound), []string{"subflow", "delete", "0x1", "192.0.2.1:5", "203.0.113.5:443"},
			exitNotFound, "not found: no such subflow: not found; `mptcpctl connection show TOKEN` shows a connection's subflows"},
		{"exists", "CreateEndpoint", fmt.Errorf("address 192.0.2.1: %w", genl.ErrExists), []string{"endpoint", "add", "192.0.2.1", "signal"},
			exitExists, "already exists: address 192.0.2.1: already exists"},
		{"id in use", "CreateEndpoint", fmt.Errorf("id 5: %w", genl.ErrIDInUse), []string{"endpoint", "add", "192.0.2.1", "id", "5", "signal"},
			exitExists, "pick another id, or leave it out and mptcpd picks one"},
		{"invalid field", "CreateEndpoint", &api.FieldError{Field: "interface_name", Message: "no interface eth9"}, []string{"endpoint", "add", "192.0.2.1", "dev", "eth9", "signal"},
			exitInvalid, "invalid argument: interface_name: no interface eth9"},
		{"invalid policy", "ValidatePolicy", &api.FieldError{Field: "document", Message: "line 3: unknown key \"modes\""}, []string{"policy", "check", "-"},
			exitInvalid, "invalid argument: document: line 3: unknown key \"modes\""},
		{"owned by policy", "DeleteEndpoint", fmt.Errorf("endpoint 1 (rule wired): %w", pm.ErrOwnedByPolicy), []string{"endpoint", "delete", "1"},
			exitPrecondition, "change the policy instead"},
		{"wrong mode", "CreateSubflow", fmt.Errorf("subflows: %w", pm.ErrWrongMode), []string{"subflow", "add", "0x1", "192.0.2.1", "203.0.113.5:443"},
			exitPrecondition, "wrong mode: subflows: not available in this mode; per-connection commands need mptcpd in userspace mode"},
		{"wrong mode for endpoints", "CreateEndpoint", fmt.Errorf("endpoints: %w", pm.ErrWrongMode), []string{"endpoint", "add", "192.0.2.1", "signal"},
			exitPrecondition, "endpoints belong to the kernel mode"},
		{"wrong path manager", "Announce", genl.ErrWrongPathManager, []string{"announce", "0x1", "192.0.2.1", "id", "2"},
			exitPrecondition, "wrong path manager: connection is not managed by the userspace path manager"},
		{"limit", "CreateEndpoint", genl.ErrLimit, []string{"endpoint", "add", "192.0.2.1", "signal"},
			exitLimit, "kernel limit reached"},
		{"unavailable", "GetStatus", genl.ErrUnavailable, []string{"status"},
			exitUnreachable, "unavailable: MPTCP path manager unavailable in this kernel"},
		{"internal", "GetStatus", errors.New("boom"), []string{"status"},
			exitFailure, "mptcpd failed: boom"},
		{"unimplemented", "GetStatus", status.Error(codes.Unimplemented, "unknown method GetStatus"), []string{"status"},
			exitFailure, "does not know this call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{}
			if tc.method != "" {
				f.failWith(tc.method, api.ToStatus(tc.err))
			}
			checkOneError(t, runCLI(t, serveFake(t, f), "mode = 1\n", tc.args...), tc.code, tc.want)
		})
	}
}

func TestTimeout(t *testing.T) {
	f := &fakeServer{}
	f.blockIn("GetStatus")
	res := runCLI(t, serveFake(t, f), "", "status", "--timeout", "200ms")
	checkOneError(t, res, exitUnreachable, "did not answer within 200ms")
}

func TestNotRunning(t *testing.T) {
	dir := shortTempDir(t)

	missing := filepath.Join(dir, "mptcpd.sock")
	checkOneError(t, runCLI(t, missing, "", "status"), exitUnreachable,
		"mptcpctl: mptcpd is not running: no socket at "+missing+"; start it with `systemctl start mptcpd` (or `sudo scripts/run.sh`)\n")

	// A socket left behind by a daemon that died.
	stale := filepath.Join(dir, "stale.sock")
	lis, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	checkOneError(t, runCLI(t, stale, "", "endpoint", "show"), exitUnreachable, "mptcpd is not running: nothing listens on "+stale+" (the socket is stale)")

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	checkOneError(t, runCLI(t, file, "", "status"), exitUnreachable, file+" is not a socket")

	// Nothing listens on a TCP port just closed.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := tl.Addr().String()
	tl.Close()
	checkOneError(t, runCLI(t, "", "", "--server", addr, "--plaintext", "status"), exitUnreachable, "cannot reach mptcpd at "+addr+": nothing listens there")
}

// TestPermissionDeniedAtConnect checks the message for a socket the user
// may not connect to: one its group may use, and one only its owner may.
// Root may connect to any socket, so as root the refusal is simulated at
// the dialer.
func TestPermissionDeniedAtConnect(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "mptcpd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	private := "permission denied: you may not connect to " + sock + " — only root may; use sudo, or give a group the API (the group drop-in in mptcpd.service's comments)"

	if os.Geteuid() != 0 {
		if err := os.Chmod(sock, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sock, os.Geteuid(), os.Getegid()); err == nil {
			// Our own socket: take away our own write permission.
			if err := os.Chmod(sock, 0o000); err != nil {
				t.Fatal(err)
			}
		}
		checkOneError(t, runCLI(t, sock, "", "status"), exitPermission, private)
		return
	}

	for _, c := range []struct {
		mode os.FileMode
		want string
	}{
		{0o660, "permission denied: you may not connect to " + sock + " — you are not in its group (" + fileGroup(sock) + "); ask for it, or use sudo"},
		{0o600, private},
	} {
		if err := os.Chmod(sock, c.mode); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		a := newApp(strings.NewReader(""), &bytes.Buffer{}, &stderr)
		a.server = sock
		if _, err := a.resolve(); err != nil {
			t.Fatal(err)
		}
		a.target.dialer.err = &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
		code, msg := a.explain(&api.Error{Code: codes.Unavailable, Message: "connection error"})
		if code != exitPermission || msg != c.want {
			t.Errorf("mode %o: explain = %d, %q; want %d, %q", c.mode, code, msg, exitPermission, c.want)
		}
	}
}
