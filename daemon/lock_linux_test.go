package daemon

import "testing"

func TestIsCDaemon(t *testing.T) {
	for exe, want := range map[string]bool{
		"/usr/libexec/mptcpd":                   true,
		"/usr/local/libexec/mptcpd":             true,
		"/usr/libexec/mptcpd (deleted)":         true,
		"/tmp/ref/root/usr/libexec/mptcpd":      true,
		"/usr/sbin/mptcpd":                      false, // this daemon, installed
		"/usr/libexec/mptcpd/plugins/mptcpd.so": false,
		"/usr/libexec/mptcpd-helper":            false,
		"":                                      false,
		"/home/u/go/bin/mptcpd":                 false,
	} {
		if got := isCDaemon(exe); got != want {
			t.Errorf("isCDaemon(%q) = %v, want %v", exe, got, want)
		}
	}
}
