package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, pointed
// at a freshly built binary, and checks the settings the service relies on.
func TestSystemdUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing (apt-get install systemd)")
		}
		t.Skip("skipping: systemd-analyze is missing (apt-get install systemd)")
	}
	bin := buildDaemon(t)
	unit, err := os.ReadFile("../systemd/mptcpd.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, want := range []string{
		"Type=notify", "ExecReload=", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "RuntimeDirectory=mptcpd", "WatchdogSec=", "Conflicts=mptcp.service",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("mptcpd.service lacks %q", want)
		}
	}
	path := filepath.Join(t.TempDir(), "mptcpd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/mptcpd", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
