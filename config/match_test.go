package config

import (
	"net/netip"
	"testing"
)

func TestMatch(t *testing.T) {
	c, err := Parse([]byte(`
[interfaces]
allow = ["eth*", "wlan*", "wwan*", "veth*", "lo", "br*", "bond0"]
deny = ["eth9", "wlan-guest*"]
deny_kinds = ["loopback", "bridge"]

[[rule]]
name = "cellular"
interfaces = ["wwan*"]
kinds = ["wwan"]
flags = ["subflow", "backup"]

[[rule]]
name = "uplink"
interfaces = ["eth1"]
flags = ["signal"]

[[rule]]
name = "wired"
kinds = ["physical", "bond"]
flags = ["subflow"]

[[rule]]
name = "catch-all eth"
interfaces = ["eth*"]
flags = ["fullmesh"]
`), "match.toml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kind Kind
		rule string // "" for no match
	}{
		{"wwan0", KindWWAN, "cellular"},
		{"wwan0", KindPhysical, "wired"},    // kinds must match too: the next rule wins
		{"eth1", KindPhysical, "uplink"},    // the first matching rule wins over "wired"
		{"eth0", KindPhysical, "wired"},     // …and "wired" over "catch-all eth"
		{"eth0", KindVeth, "catch-all eth"}, // no kind restriction on the last rule
		{"eth9", KindPhysical, ""},          // interfaces.deny
		{"wlan0", KindPhysical, "wired"},
		{"wlan-guest0", KindPhysical, ""}, // deny wins over allow
		{"bond0", KindBond, "wired"},
		{"bond1", KindBond, ""},      // not in interfaces.allow
		{"enp3s0", KindPhysical, ""}, // not in interfaces.allow
		{"br0", KindBridge, ""},      // deny_kinds
		{"lo", KindLoopback, ""},     // deny_kinds
		{"veth0", KindVeth, ""},      // allowed, but no rule matches
	}
	for _, tt := range tests {
		r, ok := c.Match(tt.name, tt.kind)
		switch {
		case tt.rule == "" && ok:
			t.Errorf("Match(%q, %q) = rule %q, want no match", tt.name, tt.kind, r.Name)
		case tt.rule != "" && !ok:
			t.Errorf("Match(%q, %q): no match, want rule %q", tt.name, tt.kind, tt.rule)
		case ok && r.Name != tt.rule:
			t.Errorf("Match(%q, %q) = rule %q, want %q", tt.name, tt.kind, r.Name, tt.rule)
		case !ok && r != nil:
			t.Errorf("Match(%q, %q) returned a rule with ok false", tt.name, tt.kind)
		}
	}
	if r, _ := c.Match("eth1", KindPhysical); r != &c.Rules[1] {
		t.Error("Match does not point into c.Rules")
	}
}

func TestMatchDefault(t *testing.T) {
	c := Default()
	for _, tt := range []struct {
		name string
		kind Kind
		ok   bool
	}{
		{"eth0", KindPhysical, true},
		{"wlp2s0", KindPhysical, true},
		{"wwan0", KindWWAN, true},
		{"eth0.100", KindVLAN, true},
		{"bond0", KindBond, true},
		{"lo", KindLoopback, false},
		{"veth1", KindVeth, false},
		{"docker0", KindBridge, false},
		{"wg0", KindWireGuard, false},
		{"tun0", KindTun, false},
		{"dummy0", KindDummy, false},
		{"vxlan0", KindVXLAN, false},
		{"x", KindOther, false},
	} {
		r, ok := c.Match(tt.name, tt.kind)
		if ok != tt.ok {
			t.Errorf("Default().Match(%q, %q) ok = %v, want %v", tt.name, tt.kind, ok, tt.ok)
		}
		if ok && (r.Name != "default" || r.EndpointFlags().String() != "subflow") {
			t.Errorf("Default().Match(%q, %q) = %+v", tt.name, tt.kind, r)
		}
	}
}

func TestAllows(t *testing.T) {
	addr := netip.MustParseAddr
	pfx := func(s ...string) []netip.Prefix {
		var l []netip.Prefix
		for _, p := range s {
			l = append(l, netip.MustParsePrefix(p))
		}
		return l
	}
	def := Default().Addresses
	with := func(change func(a *Addresses)) Addresses {
		a := Default().Addresses
		change(&a)
		return a
	}
	tests := []struct {
		name   string
		a      Addresses
		info   AddrInfo
		ok     bool
		reason string
	}{
		{"global IPv4", def, AddrInfo{Addr: addr("192.0.2.1")}, true, ""},
		{"private IPv4", def, AddrInfo{Addr: addr("10.1.2.3")}, true, ""},
		{"global IPv6", def, AddrInfo{Addr: addr("2001:db8::1")}, true, ""},
		{"no address", def, AddrInfo{}, false, "no address"},
		{"IPv4-mapped", def, AddrInfo{Addr: addr("::ffff:192.0.2.1")}, false, "IPv4-mapped IPv6 address"},
		{"unspecified", def, AddrInfo{Addr: addr("0.0.0.0")}, false, "not a unicast address"},
		{"multicast", def, AddrInfo{Addr: addr("ff02::1")}, false, "not a unicast address"},
		{"broadcast", def, AddrInfo{Addr: addr("255.255.255.255")}, false, "not a unicast address"},

		{"IPv4 disabled", with(func(a *Addresses) { a.IPv4 = false }), AddrInfo{Addr: addr("192.0.2.1")}, false, "IPv4 disabled"},
		{"IPv6 disabled", with(func(a *Addresses) { a.IPv6 = false }), AddrInfo{Addr: addr("2001:db8::1")}, false, "IPv6 disabled"},
		{"IPv4 still with IPv6 disabled", with(func(a *Addresses) { a.IPv6 = false }), AddrInfo{Addr: addr("192.0.2.1")}, true, ""},

		{"IPv4 loopback", def, AddrInfo{Addr: addr("127.0.0.1")}, false, "loopback"},
		{"IPv4 loopback, other", def, AddrInfo{Addr: addr("127.1.2.3")}, false, "loopback"},
		{"IPv6 loopback", def, AddrInfo{Addr: addr("::1")}, false, "loopback"},
		{"loopback allowed", with(func(a *Addresses) { a.Loopback = true }), AddrInfo{Addr: addr("::1")}, true, ""},

		{"IPv4 link-local", def, AddrInfo{Addr: addr("169.254.10.1")}, false, "link-local"},
		{"IPv6 link-local", def, AddrInfo{Addr: addr("fe80::1")}, false, "link-local"},
		{"IPv6 link-local with zone", def, AddrInfo{Addr: addr("fe80::1%eth0")}, false, "link-local"},
		{"IPv6 link-local, upper fe80::/10", def, AddrInfo{Addr: addr("febf::1")}, false, "link-local"},
		{"link-local allowed", with(func(a *Addresses) { a.LinkLocal = true }), AddrInfo{Addr: addr("fe80::1%eth0")}, true, ""},
		{"link-local allowed, IPv4", with(func(a *Addresses) { a.LinkLocal = true }), AddrInfo{Addr: addr("169.254.1.1")}, true, ""},

		{"ULA allowed by default", def, AddrInfo{Addr: addr("fd12:3456::1")}, true, ""},
		{"ULA fc00::/8", with(func(a *Addresses) { a.ULA = false }), AddrInfo{Addr: addr("fc00::1")}, false, "unique local (ULA)"},
		{"ULA fd00::/8", with(func(a *Addresses) { a.ULA = false }), AddrInfo{Addr: addr("fd12:3456::1")}, false, "unique local (ULA)"},
		{"ULA off leaves IPv4 private alone", with(func(a *Addresses) { a.ULA = false }), AddrInfo{Addr: addr("10.0.0.1")}, true, ""},

		{"temporary", def, AddrInfo{Addr: addr("2001:db8::1234"), Temporary: true}, false, "temporary"},
		{"temporary allowed", with(func(a *Addresses) { a.Temporary = true }), AddrInfo{Addr: addr("2001:db8::1234"), Temporary: true}, true, ""},

		{"tentative", def, AddrInfo{Addr: addr("2001:db8::1"), Tentative: true}, false, "tentative"},
		{"tentative, everything allowed", with(func(a *Addresses) { a.Temporary, a.LinkLocal = true, true }), AddrInfo{Addr: addr("fe80::1"), Tentative: true, Temporary: true}, false, "tentative"},
		{"deprecated", def, AddrInfo{Addr: addr("2001:db8::1"), Deprecated: true}, false, "deprecated"},
		{"deprecated IPv4", def, AddrInfo{Addr: addr("192.0.2.1"), Deprecated: true}, false, "deprecated"},

		{"require_route, no route", with(func(a *Addresses) { a.RequireRoute = true }), AddrInfo{Addr: addr("192.0.2.1")}, false, "no route beyond its own subnet (require_route)"},
		{"require_route, route", with(func(a *Addresses) { a.RequireRoute = true }), AddrInfo{Addr: addr("192.0.2.1"), HasRoute: true}, true, ""},
		{"no route, not required", def, AddrInfo{Addr: addr("192.0.2.1")}, true, ""},

		{"deny_prefixes", with(func(a *Addresses) { a.DenyPrefixes = pfx("2001:db8:1::/48", "10.0.0.0/8") }), AddrInfo{Addr: addr("10.9.8.7")}, false, "denied by deny_prefixes 10.0.0.0/8"},
		{"deny_prefixes, outside", with(func(a *Addresses) { a.DenyPrefixes = pfx("10.0.0.0/8") }), AddrInfo{Addr: addr("192.0.2.1")}, true, ""},
		{"deny_prefixes, zoned", with(func(a *Addresses) { a.LinkLocal = true; a.DenyPrefixes = pfx("fe80::/64") }), AddrInfo{Addr: addr("fe80::1%eth0")}, false, "denied by deny_prefixes fe80::/64"},
		{"allow_prefixes, inside", with(func(a *Addresses) { a.AllowPrefixes = pfx("192.0.2.0/24", "2001:db8::/32") }), AddrInfo{Addr: addr("2001:db8::5")}, true, ""},
		{"allow_prefixes, outside", with(func(a *Addresses) { a.AllowPrefixes = pfx("192.0.2.0/24") }), AddrInfo{Addr: addr("198.51.100.1")}, false, "outside allow_prefixes"},
		{"allow_prefixes, other family", with(func(a *Addresses) { a.AllowPrefixes = pfx("192.0.2.0/24") }), AddrInfo{Addr: addr("2001:db8::1")}, false, "outside allow_prefixes"},
		{"allow_prefixes, host bits in the prefix", with(func(a *Addresses) { a.AllowPrefixes = pfx("192.0.2.77/24") }), AddrInfo{Addr: addr("192.0.2.1")}, true, ""},
		{"deny beats allow", with(func(a *Addresses) {
			a.AllowPrefixes = pfx("192.0.2.0/24")
			a.DenyPrefixes = pfx("192.0.2.128/25")
		}), AddrInfo{Addr: addr("192.0.2.200")}, false, "denied by deny_prefixes 192.0.2.128/25"},
		{"deny does not widen allow", with(func(a *Addresses) {
			a.AllowPrefixes = pfx("192.0.2.0/24")
			a.DenyPrefixes = pfx("192.0.2.128/25")
		}), AddrInfo{Addr: addr("192.0.2.100")}, true, ""},
		{"allow_prefixes cannot allow link-local", with(func(a *Addresses) { a.AllowPrefixes = pfx("169.254.0.0/16") }), AddrInfo{Addr: addr("169.254.1.1")}, false, "link-local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := tt.a.Allows(tt.info)
			if ok != tt.ok || reason != tt.reason {
				t.Errorf("Allows(%+v) = %v, %q, want %v, %q", tt.info, ok, reason, tt.ok, tt.reason)
			}
		})
	}
}
