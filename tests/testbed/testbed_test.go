package testbed

import (
	"net/netip"
	"testing"
)

func TestFindCounter(t *testing.T) {
	netstat := []byte(`TcpExt: SyncookiesSent SyncookiesRecv
TcpExt: 0 7
MPTcpExt: MPCapableSYNRX MPPrioTx MPPrioRx
MPTcpExt: 3 12 4
`)
	for _, tc := range []struct {
		name string
		want uint64
		ok   bool
	}{
		{"MPTcpExtMPPrioTx", 12, true},
		{"MPTcpExtMPPrioRx", 4, true},
		{"MPTcpExtMPCapableSYNRX", 3, true},
		{"TcpExtSyncookiesRecv", 7, true},
		{"MPTcpExtNoSuchCounter", 0, false},
		{"MPPrioTx", 0, false}, // the prefix is part of the name
	} {
		got, ok := findCounter(netstat, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("findCounter(%q) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestPathAddresses checks the addressing plan: every path gets its own
// documentation-range networks, so hosts never share a subnet by accident.
func TestPathAddresses(t *testing.T) {
	seen := map[netip.Prefix]int{}
	for i := range 3 * 16 {
		p := plan(i)
		for _, a := range []netip.Addr{p.A4, p.B4} {
			if !doc4(a) {
				t.Errorf("path %d address %s is not in an IPv4 documentation range", i, a)
			}
		}
		for _, a := range []netip.Addr{p.A6, p.B6} {
			if !netip.MustParsePrefix("2001:db8::/32").Contains(a) {
				t.Errorf("path %d address %s is not in 2001:db8::/32", i, a)
			}
		}
		for _, pfx := range []netip.Prefix{netip.PrefixFrom(p.A4, 28).Masked(), netip.PrefixFrom(p.A6, 64).Masked()} {
			if j, dup := seen[pfx]; dup {
				t.Errorf("paths %d and %d share %s", j, i, pfx)
			}
			seen[pfx] = i
		}
		if netip.PrefixFrom(p.A4, 28).Masked() != netip.PrefixFrom(p.B4, 28).Masked() || p.A4 == p.B4 {
			t.Errorf("path %d ends %s and %s are not two hosts of one /28", i, p.A4, p.B4)
		}
	}
}

func doc4(a netip.Addr) bool {
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"} {
		if netip.MustParsePrefix(p).Contains(a) {
			return true
		}
	}
	return false
}
