package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// manDir holds the committed man pages.
const manDir = "../../docs/man"

// TestManPagesCurrent fails when the committed man pages are not what the
// command tree gives; `go generate ./cmd/mptcpctl` rewrites them.
func TestManPagesCurrent(t *testing.T) {
	dir := t.TempDir()
	if res := runCLI(t, "", "", "gen-man", dir); res.code != 0 {
		t.Fatalf("gen-man: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	fresh, _ := filepath.Glob(filepath.Join(dir, manGlob))
	committed, _ := filepath.Glob(filepath.Join(manDir, manGlob))
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if len(fresh) == 0 {
		t.Fatal("gen-man wrote no pages")
	}
	if !slices.Equal(names(fresh), names(committed)) {
		t.Fatalf("man pages in %s are stale (run go generate ./cmd/mptcpctl):\n have %q\n want %q", manDir, names(committed), names(fresh))
	}
	for _, p := range fresh {
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(manDir, filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale (run go generate ./cmd/mptcpctl)", filepath.Join(manDir, filepath.Base(p)))
		}
	}
}

// TestManPagesReproducible checks that two runs give the same pages.
func TestManPagesReproducible(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if res := runCLI(t, "", "", "gen-man", dir); res.code != 0 {
			t.Fatalf("gen-man: exit %d, stderr:\n%s", res.code, res.stderr)
		}
	}
	pages, _ := filepath.Glob(filepath.Join(a, manGlob))
	for _, p := range pages {
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(b, filepath.Base(p)))
		if err != nil || string(x) != string(y) {
			t.Errorf("%s differs between runs", filepath.Base(p))
		}
	}
}
