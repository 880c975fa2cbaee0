package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// everyUserspaceKey returns a valid [userspace] table with every key set to
// something other than its default.
func everyUserspaceKey() Userspace {
	return Userspace{
		Peer: UserspacePeer{
			AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
			DenyPrefixes:  []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")},
			MaxAccepted:   0,
			Rate:          1,
		},
		Retry: UserspaceRetry{Initial: Duration{1500 * time.Millisecond}, Max: Duration{90 * time.Minute}, Attempts: 1000},
		Rules: []UserspaceRule{
			{
				Name: "storage", Side: SideClient,
				RemotePrefixes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")},
				RemotePorts:    []uint16{873, 22},
				LocalPorts:     []uint16{65535},
				Strategy:       StrategyNDiffPorts, MaxSubflows: 64, Subflows: 64,
			},
			{Name: "web", Side: SideServer, Strategy: StrategyPerInterface, MaxSubflows: 1, Subflows: 2, Announce: true, AnnouncePort: 8443},
			{Name: "phone", Side: SideAny, Strategy: StrategyBackup, MaxSubflows: 3, Subflows: 5},
		},
	}
}

func TestUserspaceMarshalRoundTrip(t *testing.T) {
	c := Default()
	c.Mode = ModeUserspace
	c.Userspace = everyUserspaceKey()
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`initial = '1.5s'`, `max = '1h30m'`, `strategy = 'ndiffports'`, `remote_ports = [873, 22]`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("Marshal does not write %s:\n%s", want, data)
		}
	}
	got, err := Parse(data, "marshalled.toml")
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if diff := cmp.Diff(c, got, cmpPrefix); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, data)
	}
}

const matchRules = `
[[userspace.rule]]
name = "ssh"
side = "client"
remote_ports = [22]
strategy = "none"

[[userspace.rule]]
name = "storage"
remote_prefixes = ["10.20.0.0/16", "2001:db8:20::/48"]
strategy = "ndiffports"
subflows = 4

[[userspace.rule]]
name = "https"
side = "server"
local_ports = [443, 8443]
strategy = "none"
announce = true

[[userspace.rule]]
name = "link-local peers"
side = "client"
remote_prefixes = ["fe80::/10"]
strategy = "per-interface"

[[userspace.rule]]
name = "clients"
side = "client"
strategy = "fullmesh"
`

func TestUserspaceMatch(t *testing.T) {
	c, err := Parse([]byte(matchRules), "match.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := &c.Userspace
	ap := netip.MustParseAddrPort
	tests := []struct {
		side          Side
		local, remote string
		rule          string // "" for no match
	}{
		{SideClient, "192.0.2.1:40000", "10.20.1.1:22", "ssh"},                       // the first match wins over "storage"
		{SideServer, "192.0.2.1:22", "10.20.1.1:40000", "storage"},                   // "storage" is for either side
		{SideClient, "192.0.2.1:40000", "10.20.1.1:873", "storage"},                  // remote port
		{SideClient, "[::ffff:192.0.2.1]:40000", "[::ffff:10.20.9.9]:80", "storage"}, // IPv4-mapped
		{SideClient, "[2001:db8::1]:40000", "[2001:db8:20::5]:80", "storage"},        // IPv6 prefix
		{SideClient, "[2001:db8::1]:40000", "[2001:db8:21::5]:80", "clients"},        // outside the prefix
		{SideClient, "192.0.2.1:40000", "10.21.0.1:80", "clients"},
		{SideServer, "192.0.2.1:443", "198.51.100.7:50000", "https"}, // local port
		{SideServer, "[2001:db8::1]:8443", "[2001:db8:99::7]:50000", "https"},
		{SideServer, "192.0.2.1:80", "198.51.100.7:50000", ""},                        // no server rule for port 80
		{SideClient, "192.0.2.1:40000", "198.51.100.7:443", "clients"},                // local_ports are for the server rule only
		{SideClient, "[fe80::1%eth0]:40000", "[fe80::2%eth0]:80", "link-local peers"}, // zones are ignored
		{SideServer, "[fe80::1%eth0]:80", "[fe80::2%eth0]:40000", ""},
		{SideAny, "192.0.2.1:40000", "10.20.1.1:22", "storage"}, // SideAny matches rules for any side only
		{SideAny, "192.0.2.1:40000", "198.51.100.7:22", ""},
		{SideClient, "192.0.2.1:40000", "", "clients"}, // the zero AddrPort matches rules without conditions
	}
	for _, tt := range tests {
		var local, remote netip.AddrPort
		if tt.local != "" {
			local = ap(tt.local)
		}
		if tt.remote != "" {
			remote = ap(tt.remote)
		}
		r, i := u.Match(tt.side, local, remote)
		switch {
		case tt.rule == "" && r != nil:
			t.Errorf("Match(%s, %s, %s) = %q, want no match", tt.side, tt.local, tt.remote, r.Name)
		case tt.rule == "" && i != -1:
			t.Errorf("Match(%s, %s, %s): no match with index %d, want -1", tt.side, tt.local, tt.remote, i)
		case tt.rule != "" && r == nil:
			t.Errorf("Match(%s, %s, %s): no match, want %q", tt.side, tt.local, tt.remote, tt.rule)
		case r != nil && r.Name != tt.rule:
			t.Errorf("Match(%s, %s, %s) = %q, want %q", tt.side, tt.local, tt.remote, r.Name, tt.rule)
		case r != nil && r != &u.Rules[i]:
			t.Errorf("Match(%s, %s, %s) = %p, index %d: not &Rules[index]", tt.side, tt.local, tt.remote, r, i)
		}
	}

	// The defaults: a full mesh for clients, announcements for servers.
	d := Default().Userspace
	if r, i := d.Match(SideClient, ap("192.0.2.1:40000"), ap("198.51.100.1:443")); r == nil || i != 0 || r.Strategy != StrategyFullmesh {
		t.Errorf("default client rule: %+v, %d", r, i)
	}
	if r, i := d.Match(SideServer, ap("192.0.2.1:443"), ap("198.51.100.1:40000")); r == nil || i != 1 || !r.Announce || r.Strategy != StrategyNone {
		t.Errorf("default server rule: %+v, %d", r, i)
	}
	var empty Userspace
	if r, i := empty.Match(SideClient, ap("192.0.2.1:1"), ap("192.0.2.2:2")); r != nil || i != -1 {
		t.Errorf("Match without rules = %+v, %d", r, i)
	}
}

// TestUserspaceMatchAllocs checks that Match, which runs for every new
// connection, does not allocate, whichever rule matches.
func TestUserspaceMatchAllocs(t *testing.T) {
	c, err := Parse([]byte(matchRules), "match.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := &c.Userspace
	local := netip.MustParseAddrPort("[fe80::1%eth0]:40000")
	remotes := []netip.AddrPort{
		netip.MustParseAddrPort("[::ffff:10.20.9.9]:22"),
		netip.MustParseAddrPort("[2001:db8:20::5]:80"),
		netip.MustParseAddrPort("[fe80::2%eth0]:80"),
		netip.MustParseAddrPort("198.51.100.7:443"),
	}
	for _, side := range Sides() {
		for _, remote := range remotes {
			if n := testing.AllocsPerRun(100, func() { u.Match(side, local, remote) }); n != 0 {
				t.Errorf("Match(%s, %s, %s) allocates %v times", side, local, remote, n)
			}
		}
	}
	p := &UserspacePeer{Accept: true, AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, DenyPrefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}}
	addr := netip.MustParseAddr("2001:db8:2::1%eth0")
	if n := testing.AllocsPerRun(100, func() { p.Allows(addr) }); n != 0 {
		t.Errorf("Allows(%s) allocates %v times", addr, n)
	}
}

func BenchmarkUserspaceMatch(b *testing.B) {
	c, err := Parse([]byte(matchRules), "match.toml")
	if err != nil {
		b.Fatal(err)
	}
	u := &c.Userspace
	local := netip.MustParseAddrPort("192.0.2.1:40000")
	remote := netip.MustParseAddrPort("[::ffff:198.51.100.7]:443") // the last rule
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := u.Match(SideClient, local, remote); r == nil {
			b.Fatal("no match")
		}
	}
}

func TestUserspacePeerAllows(t *testing.T) {
	pfx := netip.MustParsePrefix
	def := Default().Userspace.Peer
	filtered := UserspacePeer{
		Accept:        true,
		AllowPrefixes: []netip.Prefix{pfx("192.0.2.0/24"), pfx("2001:db8::/32")},
		DenyPrefixes:  []netip.Prefix{pfx("192.0.2.128/25"), pfx("2001:db8:bad::/48")},
	}
	denyOnly := UserspacePeer{Accept: true, DenyPrefixes: []netip.Prefix{pfx("10.0.0.0/8")}}
	refuse := Default().Userspace.Peer
	refuse.Accept = false
	tests := []struct {
		peer   UserspacePeer
		addr   string
		reason string // "" when allowed
	}{
		{def, "198.51.100.1", ""},
		{def, "2001:db8::1", ""},
		{def, "::ffff:198.51.100.1", ""},
		{def, "10.1.2.3", ""},
		{def, "fd00::1", ""},
		{def, "", "no address"},
		{def, "0.0.0.0", "unspecified"},
		{def, "::", "unspecified"},
		{def, "::ffff:0.0.0.0", "unspecified"},
		{def, "127.0.0.1", "loopback"},
		{def, "127.9.9.9", "loopback"},
		{def, "::1", "loopback"},
		{def, "::ffff:127.0.0.1", "loopback"},
		{def, "169.254.1.1", "link-local"},
		{def, "fe80::1", "link-local"},
		{def, "fe80::1%eth0", "link-local"},
		{def, "224.0.0.1", "multicast"},
		{def, "239.1.2.3", "multicast"},
		{def, "ff02::1", "multicast"},
		{def, "ff0e::1", "multicast"},
		{def, "255.255.255.255", "broadcast"},
		{denyOnly, "10.1.2.3", "denied by userspace.peer.deny_prefixes 10.0.0.0/8"},
		{denyOnly, "::ffff:10.1.2.3", "denied by userspace.peer.deny_prefixes 10.0.0.0/8"},
		{denyOnly, "11.1.2.3", ""},
		{denyOnly, "127.0.0.1", "loopback"},
		{filtered, "192.0.2.1", ""},
		{filtered, "::ffff:192.0.2.1", ""},
		{filtered, "2001:db8::1%eth0", ""},
		{filtered, "192.0.2.200", "denied by userspace.peer.deny_prefixes 192.0.2.128/25"},
		{filtered, "2001:db8:bad::1", "denied by userspace.peer.deny_prefixes 2001:db8:bad::/48"},
		{filtered, "198.51.100.1", "outside userspace.peer.allow_prefixes"},
		{filtered, "2001:db9::1", "outside userspace.peer.allow_prefixes"},
		{refuse, "198.51.100.1", "userspace.peer.accept is false"},
	}
	for _, tt := range tests {
		var addr netip.Addr
		if tt.addr != "" {
			addr = netip.MustParseAddr(tt.addr)
		}
		ok, reason := tt.peer.Allows(addr)
		if ok != (tt.reason == "") || reason != tt.reason {
			t.Errorf("%+v.Allows(%s) = %v, %q; want reason %q", tt.peer, tt.addr, ok, reason, tt.reason)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		text string
		want time.Duration
		str  string // String, when not text
	}{
		{"500ms", 500 * time.Millisecond, ""},
		{"30s", 30 * time.Second, ""},
		{"1m", time.Minute, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1h", time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1h0m1s", time.Hour + time.Second, ""},
		{"24h", 24 * time.Hour, ""},
		{"1h0m0s", time.Hour, "1h"},
		{"90s", 90 * time.Second, "1m30s"},
		{"1.5s", 1500 * time.Millisecond, ""},
		{"250us", 250 * time.Microsecond, "250µs"},
		{"0", 0, "0s"},
		{"-2m", -2 * time.Minute, ""},
	} {
		var d Duration
		if err := d.UnmarshalText([]byte(tt.text)); err != nil || d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tt.text, d.Duration, err, tt.want)
			continue
		}
		str := tt.str
		if str == "" {
			str = tt.text
		}
		out, _ := d.MarshalText()
		if d.String() != str || string(out) != str {
			t.Errorf("%v: String %q, MarshalText %q; want %q", tt.want, d.String(), out, str)
		}
		var back Duration
		if err := back.UnmarshalText(out); err != nil || back != d {
			t.Errorf("%q reads back as %v, %v", out, back, err)
		}
	}
	for _, bad := range []string{"", "5", "1.5", "5 seconds", "1d", "s", "1h-1m"} {
		d := Duration{time.Second}
		err := d.UnmarshalText([]byte(bad))
		if err == nil || !strings.Contains(err.Error(), wantDuration) {
			t.Errorf("UnmarshalText(%q) = %v, %v; want an error saying %s", bad, d, err, wantDuration)
		}
	}
}

func TestStrategiesAndSides(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{join(Strategies()), "fullmesh, per-interface, ndiffports, backup, none"},
		{join(Sides()), "client, server, any"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	// want describes the same words.
	for _, s := range Strategies() {
		if !strings.Contains(want("userspace.rule[1].strategy"), `"`+string(s)+`"`) {
			t.Errorf("want(strategy) lacks %q", s)
		}
	}
	for _, s := range Sides() {
		if !strings.Contains(want("userspace.rule[1].side"), `"`+string(s)+`"`) {
			t.Errorf("want(side) lacks %q", s)
		}
	}
}
