package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCases run every command against the fake server; their output is
// kept in testdata/NAME.table and testdata/NAME.json.
func goldenCases() []struct {
	name  string
	args  []string
	stdin string
	// lines, for monitor: stop once this many lines are out.
	lines int
} {
	policy := "mode = \"kernel\"\n[limits]\nsubflows = 4\n"
	return []struct {
		name  string
		args  []string
		stdin string
		lines int
	}{
		{name: "status", args: []string{"status"}},
		{name: "endpoint-show", args: []string{"endpoint", "show"}},
		{name: "endpoint-show-id", args: []string{"endpoint", "show", "id", "2"}},
		{name: "endpoint-add", args: []string{"endpoint", "add", "2001:db8::20", "port", "8080", "dev", "eth1", "signal", "backup"}},
		{name: "endpoint-change", args: []string{"endpoint", "change", "3", "fullmesh", "nobackup"}},
		{name: "endpoint-delete", args: []string{"endpoint", "delete", "2"}},
		{name: "endpoint-flush", args: []string{"endpoint", "flush"}},
		{name: "limits-show", args: []string{"limits", "show"}},
		{name: "limits-set", args: []string{"limits", "set", "subflows", "4"}},
		{name: "connection-list", args: []string{"connection", "list"}},
		{name: "connection-list-listeners", args: []string{"connection", "list", "--listeners"}},
		{name: "connection-show", args: []string{"connection", "show", "0x1f2e3d4c"}},
		{name: "subflow-add", args: []string{"subflow", "add", "0x1f2e3d4c", "198.51.100.7", "203.0.113.5:443", "id", "2", "backup", "dev", "wlan0"}},
		{name: "subflow-delete", args: []string{"subflow", "delete", "0x1f2e3d4c", "198.51.100.4:51000", "203.0.113.5:443"}},
		{name: "subflow-backup", args: []string{"subflow", "backup", "523124044", "198.51.100.4:51000", "203.0.113.5:443", "off"}},
		{name: "announce", args: []string{"announce", "0x1f2e3d4c", "198.51.100.7", "id", "2", "port", "443"}},
		{name: "withdraw", args: []string{"withdraw", "0x1f2e3d4c", "2"}},
		{name: "monitor", args: []string{"monitor"}, lines: len(fakeEvents())},
		{name: "policy-show", args: []string{"policy", "show"}},
		{name: "policy-check", args: []string{"policy", "check", "-"}, stdin: policy},
		{name: "policy-apply", args: []string{"policy", "apply", "-"}, stdin: policy},
		{name: "policy-apply-dry-run", args: []string{"policy", "apply", "--dry-run", "-"}, stdin: policy},
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		for _, format := range []string{"table", "json"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				t.Parallel()
				sock := serveFake(t, &fakeServer{})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out := &lineWriter{n: tc.lines, done: cancel}
				if tc.lines == 0 {
					out.done = nil
				}
				res := runCLIContext(ctx, t, sock, tc.stdin, out, append(tc.args, "-o", format)...)
				if res.code != 0 || res.stderr != "" {
					t.Fatalf("mptcpctl %s: exit %d, stderr:\n%s", strings.Join(tc.args, " "), res.code, res.stderr)
				}
				checkGolden(t, filepath.Join("testdata", tc.name+"."+format), res.stdout)
			})
		}
	}
}

// checkGolden compares got with the golden file, or rewrites it with
// -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("output differs from %s (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

// TestGoldenFilesUsed keeps testdata/ free of files no case writes.
func TestGoldenFilesUsed(t *testing.T) {
	used := map[string]bool{}
	for _, tc := range goldenCases() {
		used[tc.name+".table"], used[tc.name+".json"] = true, true
	}
	files, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !used[f.Name()] {
			t.Errorf("testdata/%s belongs to no golden case", f.Name())
		}
	}
}
