package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// complete runs shell completion of args (the last one the word being
// typed) against the server at sock, and returns the candidates.
func complete(t *testing.T, sock string, args ...string) []string {
	t.Helper()
	line := append([]string{"__complete", "--server", sock}, args...)
	res := runCLI(t, "", "", line...)
	if res.code != 0 || strings.Contains(res.stderr, "mptcpctl:") {
		t.Fatalf("completion of %q: exit %d, stderr:\n%s", args, res.code, res.stderr)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n") {
		if !strings.HasPrefix(l, ":") { // the directive
			out = append(out, l)
		}
	}
	return out
}

func TestCompletion(t *testing.T) {
	sock := serveFake(t, &fakeServer{})
	ids := []string{
		"1\t192.0.2.10 signal,subflow eth0 (policy)",
		"2\t[2001:db8::10]:8443 signal (api)",
		"3\t198.51.100.4 subflow,backup wwan0 (foreign)",
	}
	tokens := []string{
		"0x1f2e3d4c\t192.0.2.10:40312 -> 203.0.113.5:443",
		"0x0000002a\t[2001:db8::10]:8443 -> [2001:db8:ff::1]:50022",
		"0xdeadbeef\t192.0.2.10:5201 -> 203.0.113.9:34000",
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"endpoint", "delete", ""}, ids},
		{[]string{"endpoint", "delete", "id", ""}, ids},
		{[]string{"endpoint", "show", ""}, ids},
		{[]string{"endpoint", "change", ""}, ids},
		{[]string{"endpoint", "change", "3", "backup", ""}, []string{"nobackup", "fullmesh", "nofullmesh"}},
		{[]string{"endpoint", "add", "192.0.2.1", "subflow", ""}, []string{"port", "dev", "id", "signal", "backup", "fullmesh", "laminar"}},
		{[]string{"connection", "show", ""}, tokens},
		{[]string{"withdraw", ""}, tokens},
		{[]string{"announce", ""}, tokens},
		{[]string{"subflow", "add", ""}, tokens},
		{[]string{"subflow", "delete", "0x1f2e3d4c", ""}, []string{"192.0.2.10:40312\tto 203.0.113.5:443", "198.51.100.4:51000\tto 203.0.113.5:443"}},
		{[]string{"subflow", "backup", "0x1f2e3d4c", "198.51.100.4:51000", ""}, []string{"203.0.113.5:443\tfrom 192.0.2.10:40312"}},
		{[]string{"subflow", "backup", "0x1f2e3d4c", "198.51.100.4:51000", "203.0.113.5:443", ""}, []string{"on", "off"}},
		{[]string{"monitor", "--token", ""}, tokens},
		{[]string{"limits", "set", "subflows", "2", ""}, []string{"add_addr_accepted"}},
	} {
		got := complete(t, sock, tc.args...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("completing %q:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
	if got := complete(t, sock, "monitor", "--kind", ""); !slices.Contains(got, "subflow-established") {
		t.Errorf("completing --kind: %q lacks subflow-established", got)
	}
}

// TestCompletionUnreachable checks that completion offers nothing, and
// says nothing, when mptcpd cannot be reached.
func TestCompletionUnreachable(t *testing.T) {
	missing := filepath.Join(shortTempDir(t), "mptcpd.sock")
	for _, args := range [][]string{
		{"endpoint", "delete", ""},
		{"connection", "show", ""},
		{"subflow", "delete", "0x1", ""},
	} {
		if got := complete(t, missing, args...); len(got) != 0 {
			t.Errorf("completing %q without mptcpd: %q", args, got)
		}
	}
}
