package netns

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "blue-1", "ns.with.dots", strings.Repeat("x", 255)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "a/b", "../etc", "a\x00b", strings.Repeat("x", 256)} {
		if err := ValidName(name); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", name)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open("mptcpd-no-such-namespace")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(missing) = %v, want os.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "ip netns add mptcpd-no-such-namespace") {
		t.Errorf("Open(missing) error %q does not say how to create the namespace", err)
	}
	if _, err := Open("../etc/passwd"); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(../etc/passwd) = %v, want a name error before any file is opened", err)
	}
}

func TestDoCurrent(t *testing.T) {
	ran := false
	want := errors.New("from fn")
	if err := Do(0, func() error { ran = true; return want }); err != want || !ran {
		t.Errorf("Do(0, fn) = %v (ran %v), want fn's error after running it", err, ran)
	}
}
