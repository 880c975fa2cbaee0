package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The expected expressions are written out byte by byte, as nft's
// `--debug=netlink` shows them for the same rule text: marks and address
// types in host byte order, ports and addresses in network byte order.

func TestBuildRedirect(t *testing.T) {
	rs := build(Config{RedirectPort: 7777}.withDefaults())
	if rs.table.Name != "mptcpd" || rs.table.Family != nftables.TableFamilyINet {
		t.Fatalf("table = %s family %d, want inet mptcpd", rs.table.Name, rs.table.Family)
	}
	if got := setNames(rs); got != "exclude4 exclude6" {
		t.Errorf("sets = %s, want exclude4 exclude6", got)
	}
	if len(rs.chains) != 1 {
		t.Fatalf("%d chains, want only output", len(rs.chains))
	}
	out := rs.chains[0]
	if c := out.chain; c.Name != "output" || c.Type != nftables.ChainTypeNAT || *c.Hooknum != unix.NF_INET_LOCAL_OUT || *c.Priority != -100 {
		t.Errorf("chain = %s type %s hook %d priority %d, want output nat hook output priority -100", c.Name, c.Type, *c.Hooknum, *c.Priority)
	}
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	want := []nftRule{
		{"meta mark 0x4d50 return", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0x4d50)},
			ret,
		}},
		{"meta l4proto != tcp return", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{6}},
			ret,
		}},
		{"fib daddr type local return", []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(2)},
			ret,
		}},
		{"ip daddr @exclude4 return", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{2}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: "exclude4", SetID: 1},
			ret,
		}},
		{"ip6 daddr @exclude6 return", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Lookup{SourceRegister: 1, SetName: "exclude6", SetID: 2},
			ret,
		}},
		{"meta l4proto tcp redirect to :7777", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
			&expr.Immediate{Register: 1, Data: []byte{0x1e, 0x61}},
			&expr.Redir{RegisterProtoMin: 1, Flags: 2}, // NF_NAT_RANGE_PROTO_SPECIFIED
		}},
	}
	if diff := cmp.Diff(want, out.rules, cmp.AllowUnexported(nftRule{})); diff != "" {
		t.Errorf("output chain rules (-want +got):\n%s", diff)
	}
}

func TestBuildTProxy(t *testing.T) {
	rs := build(Config{TProxyPort: 7778, TProxyInterfaces: []string{"wlan0", "eth0"}, Ports: []uint16{443, 80}, TProxyMark: 0x10}.withDefaults())
	if got := setNames(rs); got != "exclude4 exclude6 ports tproxy_ifaces" {
		t.Errorf("sets = %s", got)
	}
	if len(rs.chains) != 1 {
		t.Fatalf("%d chains, want only prerouting", len(rs.chains))
	}
	pre := rs.chains[0]
	if c := pre.chain; c.Name != "prerouting" || c.Type != nftables.ChainTypeFilter || *c.Hooknum != unix.NF_INET_PRE_ROUTING || *c.Priority != -150 {
		t.Errorf("chain = %s type %s hook %d priority %d, want prerouting filter hook prerouting priority -150", c.Name, c.Type, *c.Hooknum, *c.Priority)
	}
	var texts []string
	for _, r := range pre.rules {
		texts = append(texts, r.text)
	}
	wantTexts := []string{
		"meta l4proto != tcp return",
		"iifname != @tproxy_ifaces return",
		"fib daddr type local return",
		"ip daddr @exclude4 return",
		"ip6 daddr @exclude6 return",
		"tcp dport != @ports return",
		"socket transparent 1 meta mark set 0x10 accept",
		"meta l4proto tcp tproxy to :7778 meta mark set 0x10 accept",
	}
	if diff := cmp.Diff(wantTexts, texts); diff != "" {
		t.Fatalf("prerouting rules (-want +got):\n%s", diff)
	}
	markSet := []expr.Any{
		&expr.Immediate{Register: 1, Data: ne32(0x10)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	for _, tc := range []struct {
		i    int
		want []expr.Any
	}{
		{1, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: "tproxy_ifaces", SetID: 4, Invert: true},
			&expr.Verdict{Kind: expr.VerdictReturn},
		}},
		{5, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: "ports", SetID: 3, Invert: true},
			&expr.Verdict{Kind: expr.VerdictReturn},
		}},
		{6, append([]expr.Any{
			&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
		}, markSet...)},
		{7, append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
			&expr.Immediate{Register: 1, Data: []byte{0x1e, 0x62}},
			&expr.TProxy{Family: unix.NFPROTO_UNSPEC, RegPort: 1},
		}, markSet...)},
	} {
		if diff := cmp.Diff(tc.want, pre.rules[tc.i].exprs); diff != "" {
			t.Errorf("rule %q (-want +got):\n%s", pre.rules[tc.i].text, diff)
		}
	}

	ports, ifaces := rs.sets[2], rs.sets[3]
	if diff := cmp.Diff([]nftables.SetElement{{Key: []byte{0, 80}}, {Key: []byte{1, 187}}}, ports.elems); diff != "" {
		t.Errorf("ports elements, sorted (-want +got):\n%s", diff)
	}
	if ports.set.KeyType != nftables.TypeInetService || ports.set.Interval {
		t.Errorf("ports set type %s interval %v", ports.set.KeyType.Name, ports.set.Interval)
	}
	wantIf := []nftables.SetElement{
		{Key: []byte("eth0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		{Key: []byte("wlan0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
	}
	if diff := cmp.Diff(wantIf, ifaces.elems); diff != "" {
		t.Errorf("interface elements (-want +got):\n%s", diff)
	}
}

func TestBuildAllInterfaces(t *testing.T) {
	rs := build(Config{TProxyPort: 7778}.withDefaults())
	r := rs.chains[0].rules[1]
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("lo\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
	if diff := cmp.Diff(want, r.exprs); r.text != `iifname "lo" return` || diff != "" {
		t.Errorf("rule %q (-want +got):\n%s", r.text, diff)
	}
}

// TestBuildBoth checks that the two chains get their own copies of the
// shared rules' slices: appending the final rules must not overwrite them.
func TestBuildBoth(t *testing.T) {
	rs := build(Config{RedirectPort: 1, TProxyPort: 2}.withDefaults())
	if len(rs.chains) != 2 || rs.chains[0].chain.Name != "output" || rs.chains[1].chain.Name != "prerouting" {
		t.Fatalf("chains = %d, want output and prerouting", len(rs.chains))
	}
	for _, c := range rs.chains {
		for _, r := range c.rules {
			last := r.exprs[len(r.exprs)-1]
			switch {
			case strings.HasSuffix(r.text, " return"):
				if v, ok := last.(*expr.Verdict); !ok || v.Kind != expr.VerdictReturn {
					t.Errorf("%s: rule %q ends with %#v", c.chain.Name, r.text, last)
				}
			case strings.HasSuffix(r.text, " accept"):
				if v, ok := last.(*expr.Verdict); !ok || v.Kind != expr.VerdictAccept {
					t.Errorf("%s: rule %q ends with %#v", c.chain.Name, r.text, last)
				}
			}
		}
	}
}

func TestIntervalElements(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prefixes []string
		want     string // elements, "+" a start, "-" an end
		text     string
	}{
		{"defaults v4", []string{"127.0.0.0/8", "169.254.0.0/16"},
			"-0.0.0.0 +127.0.0.0 -128.0.0.0 +169.254.0.0 -169.255.0.0", "127.0.0.0/8, 169.254.0.0/16"},
		{"nested and unsorted", []string{"198.51.100.7/32", "198.51.100.0/24", "127.0.0.1/32", "127.0.0.0/8"},
			"-0.0.0.0 +127.0.0.0 -128.0.0.0 +198.51.100.0 -198.51.101.0", "127.0.0.0/8, 198.51.100.0/24"},
		{"adjacent halves merge", []string{"203.0.113.128/25", "203.0.113.0/25"},
			"-0.0.0.0 +203.0.113.0 -203.0.114.0", "203.0.113.0/24"},
		{"adjacent unequal", []string{"192.0.2.0/24", "192.0.3.0/25"},
			"-0.0.0.0 +192.0.2.0 -192.0.3.128", "192.0.2.0-192.0.3.127"},
		{"host bits ignored", []string{"192.0.2.77/24"},
			"-0.0.0.0 +192.0.2.0 -192.0.3.0", "192.0.2.0/24"},
		{"starts at zero", []string{"0.0.0.0/8"},
			"+0.0.0.0 -1.0.0.0", "0.0.0.0/8"},
		{"reaches the end", []string{"255.255.255.0/24", "10.0.0.0/8"},
			"-0.0.0.0 +10.0.0.0 -11.0.0.0 +255.255.255.0", "10.0.0.0/8, 255.255.255.0/24"},
		{"everything", []string{"0.0.0.0/0", "192.0.2.1/32"}, "+0.0.0.0", "0.0.0.0/0"},
		{"single addresses", []string{"192.0.2.1/32", "192.0.2.2/32"},
			"-0.0.0.0 +192.0.2.1 -192.0.2.3", "192.0.2.1-192.0.2.2"},
		{"defaults v6", []string{"::1/128", "fe80::/10", "2001:db8::/32"},
			"-:: +::1 -::2 +2001:db8:: -2001:db9:: +fe80:: -fec0::", "::1, 2001:db8::/32, fe80::/10"},
		{"v6 to the end", []string{"ff00::/8"}, "-:: +ff00::", "ff00::/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ps []netip.Prefix
			for _, s := range tc.prefixes {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			v4, v6 := splitFamilies(ps)
			rs := v4
			if len(v6) > 0 {
				rs = v6
			}
			if len(v4) > 0 && len(v6) > 0 {
				t.Fatal("test mixes families")
			}
			var got []string
			for _, e := range intervalElements(rs) {
				a, ok := netip.AddrFromSlice(e.Key)
				if !ok {
					t.Fatalf("element key %x is not an address", e.Key)
				}
				sign := "+"
				if e.IntervalEnd {
					sign = "-"
				}
				got = append(got, sign+a.String())
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("elements = %s, want %s", g, tc.want)
			}
			if g := rangesText(rs); g != tc.text {
				t.Errorf("text = %s, want %s", g, tc.text)
			}
		})
	}
}

func TestSplitFamilies(t *testing.T) {
	v4, v6 := splitFamilies([]netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.0/24")})
	if len(v4) != 1 || len(v6) != 1 || !v4[0].first.Is4() || !v6[0].first.Is6() {
		t.Errorf("splitFamilies = %v, %v", v4, v6)
	}
}

func TestScript(t *testing.T) {
	rs := build(Config{RedirectPort: 7777, Exclude: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Ports: []uint16{80}}.withDefaults())
	want := `table inet mptcpd
delete table inet mptcpd
table inet mptcpd {
	set exclude4 {
		type ipv4_addr
		flags interval
		elements = { 127.0.0.0/8, 169.254.0.0/16, 198.51.100.0/24 }
	}

	set exclude6 {
		type ipv6_addr
		flags interval
		elements = { ::1, fe80::/10 }
	}

	set ports {
		type inet_service
		elements = { 80 }
	}

	chain output {
		type nat hook output priority -100; policy accept;
		meta mark 0x4d50 return
		meta l4proto != tcp return
		fib daddr type local return
		ip daddr @exclude4 return
		ip6 daddr @exclude6 return
		tcp dport != @ports return
		meta l4proto tcp redirect to :7777
	}
}
`
	if diff := cmp.Diff(want, rs.script()); diff != "" {
		t.Errorf("script (-want +got):\n%s", diff)
	}
}

func setNames(rs ruleset) string {
	var names []string
	for i, s := range rs.sets {
		if s.set.ID != uint32(i+1) || s.set.Table != rs.table {
			names = append(names, fmt.Sprintf("%s(id %d)", s.set.Name, s.set.ID))
			continue
		}
		names = append(names, s.set.Name)
	}
	return strings.Join(names, " ")
}

// ne32 is v in host byte order, as nftables keeps marks and fib results.
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
