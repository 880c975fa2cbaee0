package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"

	"github.com/mptcpd/mptcpd/genl"
)

// defaultFile is the commented default configuration.
const defaultFile = "../systemd/mptcpd.toml"

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestDefaultFileIsDefault(t *testing.T) {
	data, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "mptcpd.toml")
	if err != nil {
		t.Fatalf("the default file does not parse:\n%v", err)
	}
	if diff := cmp.Diff(Default(), c, cmpPrefix); diff != "" {
		t.Errorf("the default file differs from Default() (-Default +file):\n%s", diff)
	}
	if !reflect.DeepEqual(Default(), c) {
		t.Errorf("the default file is not exactly Default(): %#v", c)
	}
}

// TestDefaultFileHasEveryKey checks that the default file spells out every
// key, each under a comment.
func TestDefaultFileHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	d := newDocument(data, "mptcpd.toml")
	if err := d.index(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, key := range leafKeys(reflect.TypeFor[Config](), "") {
		p, ok := d.keys[key]
		if !ok || p.what != placeValue {
			t.Errorf("%s is missing from %s", key, defaultFile)
			continue
		}
		if prev := strings.TrimSpace(lines[p.line-2]); !strings.HasPrefix(prev, "#") {
			t.Errorf("%s:%d: %s has no comment on the line above it", defaultFile, p.line, key)
		}
	}
}

// leafKeys lists the keys of every value in the schema, with the first
// element of lists of tables.
func leafKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key := joinKey(prefix, tomlKey(f))
		switch {
		case isTable(f.Type):
			keys = append(keys, leafKeys(f.Type, key)...)
		case isTableList(f.Type):
			keys = append(keys, leafKeys(f.Type.Elem(), key+"[1]")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// TestWantCoversSchema checks that every key has its own description of
// what it takes.
func TestWantCoversSchema(t *testing.T) {
	for _, key := range leafKeys(reflect.TypeFor[Config](), "") {
		if w := want(key); w == want("no.such.key") {
			t.Errorf("want(%q) has no description", key)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(Default(), Default()) || Default() == Default() {
		t.Fatal("Default must return equal, distinct values")
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want func(c *Config)
	}{
		{"empty", "", func(*Config) {}},
		{"comments only", "# nothing\n\n   # here\n", func(*Config) {}},
		{"explicit empty lists", "[interfaces]\ndeny = []\n[addresses]\nallow_prefixes = []\n", func(*Config) {}},
		{"one key", "[log]\nlevel = \"debug\"\n", func(c *Config) { c.Log.Level = "debug" }},
		{"dotted key", "log.format = \"json\"\n", func(c *Config) { c.Log.Format = "json" }},
		{"top-level keys", `
mode = "userspace"
netns = "blue"
keep_on_exit = true
keep_path_manager = true
state_dir = "/var/lib/mptcpd"
`, func(c *Config) {
			c.Mode = ModeUserspace
			c.NetNS = "blue"
			c.KeepOnExit = true
			c.KeepPathManager = true
			c.StateDir = "/var/lib/mptcpd"
		}},
		{"fallback mode", "mode = \"fallback\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\nkey_id = \"laptop\"\nkey_file = \"/etc/mptcpd/key\"\n", func(c *Config) {
			c.Mode = ModeFallback
			c.Fallback.Converter = "192.0.2.1:7445"
			c.Fallback.KeyID = "laptop"
			c.Fallback.KeyFile = "/etc/mptcpd/key"
		}},
		{"auto mode", `mode = "auto"`, func(c *Config) { c.Mode = ModeAuto }},
		{"numeric limits", "[limits]\nsubflows = 0x4\nadd_addr_accepted = 0\n", func(c *Config) {
			c.Limits = Limits{Subflows: Limit{Value: 4}, AddAddrAccepted: Limit{Value: 0}}
		}},
		{"limit 8", "[limits]\nsubflows = 8\nadd_addr_accepted = 'auto'\n", func(c *Config) {
			c.Limits.Subflows = Limit{Value: 8}
		}},
		{"inline limits", "limits = { subflows = 2 }\n", func(c *Config) { c.Limits.Subflows = Limit{Value: 2} }},
		{"addresses", `
[addresses]
ipv4 = false
loopback = true
link_local = true
ula = false
temporary = true
require_route = true
allow_prefixes = ["192.0.2.0/24", "2001:db8::/32"]
deny_prefixes = [
  "192.0.2.128/25",
]
`, func(c *Config) {
			c.Addresses = Addresses{
				IPv6: true, Loopback: true, LinkLocal: true, Temporary: true, RequireRoute: true,
				AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
				DenyPrefixes:  []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")},
			}
		}},
		{"interfaces", `
[interfaces]
allow = ["eth*", "wlan?", "wwan[0-9]"]
deny = ["eth9"]
deny_kinds = ["loopback", "veth", "bridge"]
`, func(c *Config) {
			c.Interfaces = Interfaces{
				Allow:     []string{"eth*", "wlan?", "wwan[0-9]"},
				Deny:      []string{"eth9"},
				DenyKinds: []Kind{KindLoopback, KindVeth, KindBridge},
			}
		}},
		{"rules replace the default", `
[[rule]]
name = "cellular"
interfaces = ["wwan*"]
kinds = ["wwan"]
flags = ["subflow", "backup"]
preference = -5

[[rule]]
flags = ["signal", "laminar"]
port = 8443
preference = 100

[[rule]]
kinds = ["physical"]
`, func(c *Config) {
			c.Rules = []Rule{
				{Name: "cellular", Interfaces: []string{"wwan*"}, Kinds: []Kind{KindWWAN}, Flags: []string{"subflow", "backup"}, Preference: -5},
				{Name: "rule 2", Flags: []string{"signal", "laminar"}, Port: 8443, Preference: 100},
				{Name: "rule 3", Kinds: []Kind{KindPhysical}},
			}
		}},
		{"inline rules", `rule = [{ name = "a", flags = ["fullmesh", "backup"] }, { kinds = ["bond"] }]`, func(c *Config) {
			c.Rules = []Rule{
				{Name: "a", Flags: []string{"fullmesh", "backup"}},
				{Name: "rule 2", Kinds: []Kind{KindBond}},
			}
		}},
		{"rule keeps no default field", "[[rule]]\ninterfaces = []\nkinds = []\nflags = []\n", func(c *Config) {
			c.Rules = []Rule{{Name: "rule 1"}}
		}},
		{"every kind", `
[interfaces]
deny_kinds = ["physical", "veth", "bridge", "vlan", "bond", "wireguard", "tun", "wwan",
  "loopback", "dummy", "macvlan", "ipvlan", "vxlan", "other"]
`, func(c *Config) { c.Interfaces.DenyKinds = Kinds() }},
		{"quoted keys", "\"mode\" = \"auto\"\n['log']\n'level' = \"warn\"\n", func(c *Config) {
			c.Mode = ModeAuto
			c.Log.Level = "warn"
		}},
		{"windows line ends", "mode = \"auto\"\r\n[log]\r\nlevel = \"error\"\r\n", func(c *Config) {
			c.Mode = ModeAuto
			c.Log.Level = "error"
		}},

		// [userspace]
		{"userspace peer and retry", `
mode = "userspace"
[userspace.peer]
accept = false
allow_prefixes = ["192.0.2.0/24", "2001:db8::/32"]
deny_prefixes = ["192.0.2.128/25"]
max_accepted = 255
rate = 1000000
[userspace.retry]
initial = "1ms"
max = "24h"
attempts = 0
`, func(c *Config) {
			c.Mode = ModeUserspace
			c.Userspace.Peer = UserspacePeer{
				AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
				DenyPrefixes:  []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")},
				MaxAccepted:   255, Rate: 1000000,
			}
			c.Userspace.Retry = UserspaceRetry{Initial: Duration{time.Millisecond}, Max: Duration{24 * time.Hour}}
		}},
		{"userspace retry bounds", "[userspace.retry]\ninitial = \"1h\"\nmax = \"1h0m0s\"\nattempts = 1000\n", func(c *Config) {
			c.Userspace.Retry = UserspaceRetry{Initial: Duration{time.Hour}, Max: Duration{time.Hour}, Attempts: 1000}
		}},
		{"userspace retry compound durations", "userspace.retry = { initial = \"1.5s\", max = \"1m30s\" }\n", func(c *Config) {
			c.Userspace.Retry.Initial = Duration{1500 * time.Millisecond}
			c.Userspace.Retry.Max = Duration{90 * time.Second}
		}},
		{"userspace every strategy and side", `
[[userspace.rule]]
name = "ssh"
side = "client"
remote_ports = [22, 2222]
strategy = "none"

[[userspace.rule]]
name = "storage"
remote_prefixes = ["10.20.0.0/16", "2001:db8:20::/48"]
strategy = "ndiffports"
max_subflows = 64
subflows = 64

[[userspace.rule]]
side = "server"
local_ports = [443]
strategy = "per-interface"
announce = true
announce_port = 8443

[[userspace.rule]]
side = "any"
strategy = "backup"
max_subflows = 1

[[userspace.rule]]
strategy = "fullmesh"
remote_prefixes = []
remote_ports = []
local_ports = []
`, func(c *Config) {
			c.Userspace.Rules = []UserspaceRule{
				{Name: "ssh", Side: SideClient, RemotePorts: []uint16{22, 2222}, Strategy: StrategyNone, MaxSubflows: 8, Subflows: 2},
				{Name: "storage", Side: SideAny, RemotePrefixes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("2001:db8:20::/48")},
					Strategy: StrategyNDiffPorts, MaxSubflows: 64, Subflows: 64},
				{Name: "userspace.rule 3", Side: SideServer, LocalPorts: []uint16{443}, Strategy: StrategyPerInterface, MaxSubflows: 8, Subflows: 2, Announce: true, AnnouncePort: 8443},
				// subflows (2) > max_subflows (1) matters for ndiffports only.
				{Name: "userspace.rule 4", Side: SideAny, Strategy: StrategyBackup, MaxSubflows: 1, Subflows: 2},
				{Name: "userspace.rule 5", Side: SideAny, Strategy: StrategyFullmesh, MaxSubflows: 8, Subflows: 2},
			}
		}},
		{"userspace inline rules under [userspace]", `
[userspace]
rule = [
  { name = "a", strategy = "none", side = "server", announce = true },
  { strategy = "fullmesh", max_subflows = 2 },
]
`, func(c *Config) {
			c.Userspace.Rules = []UserspaceRule{
				{Name: "a", Side: SideServer, Strategy: StrategyNone, MaxSubflows: 8, Subflows: 2, Announce: true},
				{Name: "userspace.rule 2", Side: SideAny, Strategy: StrategyFullmesh, MaxSubflows: 2, Subflows: 2},
			}
		}},
		{"userspace dotted inline rules", `userspace.rule = [{ strategy = "ndiffports", subflows = 3, side = "client" }]`, func(c *Config) {
			c.Userspace.Rules = []UserspaceRule{{Name: "userspace.rule 1", Side: SideClient, Strategy: StrategyNDiffPorts, MaxSubflows: 8, Subflows: 3}}
		}},
		{"userspace empty tables", "[userspace]\n[userspace.peer]\n[userspace.retry]\n", func(*Config) {}},
		{"userspace mapped and zoned", "[[userspace.rule]]\nstrategy = \"none\"\nremote_prefixes = [\"::ffff:10.0.0.0/95\", \"fe80::/10\"]\n", func(c *Config) {
			// A prefix that holds more than IPv4-mapped addresses is fine.
			c.Userspace.Rules = []UserspaceRule{{Name: "userspace.rule 1", Side: SideAny, Strategy: StrategyNone, MaxSubflows: 8, Subflows: 2,
				RemotePrefixes: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/95"), netip.MustParsePrefix("fe80::/10")}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Default()
			tt.want(want)
			got, err := Parse([]byte(tt.doc), "test.toml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(want, got, cmpPrefix); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

// sixRules is a file whose first rule's flags are on line 12.
const sixRules = `# A file with the error on line 12.
mode = "kernel"

[log]
level = "info"

[[rule]]
name = "cellular"
interfaces = ["wwan*"]
kinds = ["wwan"]
flags = [
  "subflow", "sigal",
]
`

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
		key  string
		want []string // each must be in the message: what is wrong, what is allowed
	}{
		{"example from the docs", sixRules, 12, "rule[1].flags",
			[]string{`unknown flag "sigal" (want signal, subflow, backup, fullmesh, laminar)`}},

		// Syntax and structure.
		{"syntax", "mode = \"kernel\"\nlog = \n", 2, "", []string{"not valid TOML", "column", "toml.io"}},
		{"unterminated string", "\n\nmode = \"kernel\n", 3, "", []string{"not valid TOML"}},
		{"unknown top-level key", "mode = \"kernel\"\nmodes = 1\n", 2, "modes",
			[]string{"unknown key", "the top level takes mode, netns, keep_on_exit, keep_path_manager, state_dir and the tables [log], [limits], [addresses], [interfaces], [[rule]]"}},
		{"unknown key in a table", "[log]\nlevel = \"info\"\nlvl = \"debug\"\n", 3, "log.lvl",
			[]string{"unknown key", "[log] takes level, format"}},
		{"unknown key in the second rule", "[[rule]]\nname = \"a\"\n\n[[rule]]\nnme = \"b\"\n", 5, "rule[2].nme",
			[]string{"unknown key", "a [[rule]] table takes name, interfaces, kinds, flags, port, preference"}},
		{"unknown key in an inline rule", "\nrule = [{ name = \"a\" }, { name = \"b\", bad = 1 }]\n", 2, "rule[2].bad",
			[]string{"unknown key", "a [[rule]] table takes name,"}},
		{"unknown dotted key", "log.level = \"info\"\nlog.colour = true\n", 2, "log.colour",
			[]string{"unknown key", "[log] takes level, format"}},
		{"unknown table", "mode = \"auto\"\n\n[logging]\nlevel = \"info\"\n", 3, "logging",
			[]string{"unknown table", "the top level takes", "[log]"}},
		{"unknown sub-table", "[addresses]\n[addresses.v4]\n", 2, "addresses.v4",
			[]string{"unknown table", "[addresses] takes ipv4, ipv6"}},
		{"key in upper case", "\nMode = \"kernel\"\n", 2, "Mode", []string{"keys are lower case", `write "mode"`}},
		{"table in upper case", "[LOG]\nlevel = \"info\"\n", 1, "LOG", []string{"keys are lower case", `write "log"`}},
		{"key twice", "mode = \"kernel\"\nnetns = \"\"\nmode = \"auto\"\n", 3, "mode", []string{"defined twice, first on line 1", "keep one"}},
		{"table twice", "[log]\nlevel = \"info\"\n[log]\nformat = \"json\"\n", 3, "log", []string{"table defined twice, first on line 1"}},
		{"table and inline table", "log = { level = \"info\" }\n[log]\nformat = \"json\"\n", 2, "log", []string{"defined once"}},
		{"[rule] for [[rule]]", "[rule]\nname = \"x\"\n", 1, "rule", []string{"a list of tables", "write [[rule]]"}},
		{"[[log]] for [log]", "[[log]]\nlevel = \"info\"\n", 1, "log", []string{"one table", "write [log]"}},
		{"table for a value", "[limits.subflows]\nauto = true\n", 1, "limits.subflows", []string{"got a table", `want "auto" or an integer 0..8`}},
		{"dotted key into a value", "mode.name = \"kernel\"\n", 1, "mode", []string{"got a table", `"kernel", "userspace", "fallback" or "auto"`}},
		{"value for a table", "\nlog = 3\n", 2, "log", []string{"got an integer", "want a table, [log]"}},
		{"no rules", "mode = \"kernel\"\nrule = []\n", 2, "rule", []string{"no rules", "add at least one [[rule]]"}},

		// Top level.
		{"mode", "mode = \"kernal\"\n", 1, "mode", []string{`unknown mode "kernal"`, "want kernel, userspace, fallback, auto"}},
		{"mode type", "mode = 1\n", 1, "mode", []string{"got an integer", `want a string: "kernel", "userspace", "fallback" or "auto"`}},
		{"netns slash", "\nnetns = \"a/b\"\n", 2, "netns", []string{"invalid network namespace name", "ip netns list"}},
		{"netns dotdot", "netns = \"..\"\n", 1, "netns", []string{"invalid network namespace name", "ip netns list"}},
		{"netns too long", "netns = \"" + strings.Repeat("n", 256) + "\"\n", 1, "netns", []string{"at most 255", "ip netns list"}},
		{"state_dir relative", "state_dir = \"run/mptcpd\"\n", 1, "state_dir", []string{"not an absolute path", `"/run/mptcpd"`}},
		{"state_dir empty", "state_dir = \"\"\n", 1, "state_dir", []string{"empty", "absolute path"}},
		{"keep_on_exit type", "keep_on_exit = 1\n", 1, "keep_on_exit", []string{"got an integer", "want true or false"}},
		{"keep_path_manager type", "keep_path_manager = \"no\"\n", 1, "keep_path_manager", []string{"got a string", "want true or false"}},

		// [api], [metrics]
		{"api socket relative", "[api]\nsocket = \"mptcpd.sock\"\n", 2, "api.socket", []string{"not an absolute path"}},
		{"api group unknown", "[api]\n\ngroup = \"no-such-group-mptcpd\"\n", 3, "api.group", []string{`no group "no-such-group-mptcpd"`, "groupadd"}},
		{"api admin group unknown", "[api]\nadmin_group = \"no-such-group-mptcpd\"\n", 2, "api.admin_group", []string{`no group "no-such-group-mptcpd"`}},
		{"tcp without tls", "[api.tcp]\nlisten = \"198.51.100.1:8421\"\n", 2, "api.tcp.listen", []string{"needs mutual TLS, but cert, key, client_ca not set"}},
		{"tcp insecure not loopback", "[api.tcp]\nlisten = \"198.51.100.1:8421\"\ninsecure = true\n", 3, "api.tcp.insecure", []string{"loopback", `not "198.51.100.1"`}},
		{"tcp listen bad", "[api.tcp]\nlisten = \"8421\"\n", 2, "api.tcp.listen", []string{`"8421" is not host:port`}},
		{"tcp relative cert", "[api.tcp]\nlisten = \"[::1]:8421\"\ncert = \"c.pem\"\nkey = \"/k.pem\"\nclient_ca = \"/ca.pem\"\n", 3, "api.tcp.cert", []string{`"c.pem" is not an absolute path`}},
		{"metrics port", "[metrics]\nlisten = \"127.0.0.1:0\"\n", 2, "metrics.listen", []string{"port 0"}},
		{"metrics type", "[metrics]\nlisten = 9184\n", 2, "metrics.listen", []string{"got an integer", "host:port"}},

		// [log]
		{"log level", "[log]\nformat = \"text\"\nlevel = \"verbose\"\n", 3, "log.level", []string{`unknown log level "verbose"`, "want debug, info, warn, error"}},
		{"log level type", "log.level = 5\n", 1, "log.level", []string{"got an integer", `"debug", "info", "warn" or "error"`}},
		{"log format", "[log]\nformat = \"xml\"\n", 2, "log.format", []string{`unknown log format "xml"`, "want text, json"}},

		// [limits]
		{"limit above 8", "[limits]\nsubflows = 9\n", 2, "limits.subflows", []string{"9 is above the kernel's maximum of 8", `want "auto" or an integer 0..8`}},
		{"limit negative", "[limits]\n\nadd_addr_accepted = -1\n", 3, "limits.add_addr_accepted", []string{"-1 is out of range", `want "auto" or an integer 0..8`}},
		{"limit huge", "[limits]\nsubflows = 99999999999999999999\n", 2, "limits.subflows", []string{"out of range", `want "auto" or an integer 0..8`}},
		{"limit quoted number", "[limits]\nsubflows = \"4\"\n", 2, "limits.subflows", []string{`invalid limit "4"`, `"auto" or an integer 0..8, without quotes for a number`}},
		{"limit AUTO", "[limits]\nsubflows = \"AUTO\"\n", 2, "limits.subflows", []string{`invalid limit "AUTO"`, `"auto" or an integer 0..8`}},
		{"limit bool", "[limits]\nsubflows = true\n", 2, "limits.subflows", []string{"got a boolean", `want "auto" or an integer 0..8`}},
		{"limit float", "[limits]\nadd_addr_accepted = 1.5\n", 2, "limits.add_addr_accepted", []string{"got a float", `want "auto" or an integer 0..8`}},
		{"inline limit", "limits = { subflows = 10 }\n", 1, "limits.subflows", []string{"10 is above the kernel's maximum of 8"}},

		// [addresses]
		{"ipv4 type", "[addresses]\nipv4 = \"yes\"\n", 2, "addresses.ipv4", []string{"got a string", "want true or false"}},
		{"no family", "[addresses]\nipv6 = false\nipv4 = false\n", 3, "addresses.ipv4", []string{"both false", "set at least one of them to true"}},
		{"bad prefix", "[addresses]\nallow_prefixes = [\n  \"10.0.0.0/8\",\n  \"10.1.2.3\",\n]\n", 4, "addresses.allow_prefixes[2]",
			[]string{`invalid prefix "10.1.2.3"`, `CIDR notation such as "192.0.2.0/24"`}},
		{"bad prefix length", "[addresses]\ndeny_prefixes = [\"2001:db8::/129\"]\n", 2, "addresses.deny_prefixes[1]", []string{`invalid prefix "2001:db8::/129"`, "CIDR"}},
		{"prefix list type", "[addresses]\ndeny_prefixes = \"10.0.0.0/8\"\n", 2, "addresses.deny_prefixes", []string{"got a string", `want a list of prefixes, e.g. ["192.0.2.0/24"`}},
		{"prefix element type", "[addresses]\ndeny_prefixes = [10]\n", 2, "addresses.deny_prefixes[1]", []string{"got an integer", "want a string in CIDR notation"}},

		// [interfaces]
		{"allow empty", "[interfaces]\nallow = []\n", 2, "interfaces.allow", []string{"empty, so no interface would be used", `["*"]`}},
		{"bad pattern", "[interfaces]\nallow = [\"eth*\",\n  \"eth[\"]\n", 3, "interfaces.allow", []string{`bad pattern "eth["`, `want shell-style name patterns such as "eth*"`}},
		{"pattern with slash", "[interfaces]\ndeny = [\"a/b\"]\n", 2, "interfaces.deny", []string{"contains '/'", "want shell-style"}},
		{"empty pattern", "[interfaces]\ndeny = [\"\"]\n", 2, "interfaces.deny", []string{"empty pattern", "want shell-style"}},
		{"pattern type", "interfaces.allow = [1]\n", 1, "interfaces.allow[1]", []string{"got an integer", `an interface name pattern such as "eth*"`}},
		{"unknown kind", "[interfaces]\ndeny_kinds = [\"loopback\", \"wifi\"]\n", 2, "interfaces.deny_kinds",
			[]string{`unknown kind "wifi"`, "want physical, veth, bridge, vlan, bond, wireguard, tun, wwan, loopback, dummy, macvlan, ipvlan, vxlan, other"}},

		// [[rule]]
		{"rule unknown kind", "[[rule]]\nkinds = [\"ethernet\"]\n", 2, "rule[1].kinds", []string{`unknown kind "ethernet"`, "want physical,"}},
		{"rule bad pattern", "[[rule]]\nflags = []\n[[rule]]\ninterfaces = [\"[\"]\n", 4, "rule[2].interfaces", []string{`bad pattern "["`}},
		{"implicit", "[[rule]]\nflags = [\"implicit\"]\n", 2, "rule[1].flags", []string{`flag "implicit" is set by the kernel only`, "want signal, subflow, backup, fullmesh, laminar"}},
		{"signal and fullmesh", "[[rule]]\nname = \"x\"\nflags = [\"signal\", \"fullmesh\"]\n", 3, "rule[1].flags", []string{"signal and fullmesh cannot be combined"}},
		{"flag twice", "[[rule]]\nflags = [\"backup\", \"subflow\", \"backup\"]\n", 2, "rule[1].flags", []string{`flag "backup" is listed twice`}},
		{"two flags in one string", "[[rule]]\nflags = [\"signal,backup\"]\n", 2, "rule[1].flags", []string{`"signal,backup" is not one flag`, `["subflow", "backup"]`}},
		{"flags type", "[[rule]]\nflags = \"subflow\"\n", 2, "rule[1].flags", []string{"got a string", `want a list of flags, e.g. ["subflow", "backup"]`}},
		{"port without signal", "[[rule]]\nflags = [\"subflow\"]\nport = 8080\n", 3, "rule[1].port", []string{"a port needs the signal flag", `add "signal" to flags`}},
		{"port too big", "[[rule]]\nflags = [\"signal\"]\nport = 70000\n", 3, "rule[1].port", []string{"70000 is out of range", "want an integer 0..65535"}},
		{"port negative", "[[rule]]\nport = -1\n", 2, "rule[1].port", []string{"-1 is out of range", "want an integer 0..65535"}},
		{"port type", "[[rule]]\nport = \"80\"\n", 2, "rule[1].port", []string{"got a string", "want an integer 0..65535"}},
		{"preference type", "[[rule]]\npreference = 1.5\n", 2, "rule[1].preference", []string{"got a float", "want an integer"}},
		{"name type", "[[rule]]\nname = 1\n", 2, "rule[1].name", []string{"got an integer", "want a string"}},
		{"duplicate names", "[[rule]]\nname = \"up\"\n\n[[rule]]\nkinds = [\"wwan\"]\nname = \"up\"\n", 6, "rule[2].name",
			[]string{`"up" is also the name of rule[1]`, "give each rule its own name"}},
		{"inline rule flags", "rule = [\n  { flags = [\"subflow\"] },\n  { flags = [\"sigal\"] },\n]\n", 3, "rule[2].flags", []string{`unknown flag "sigal"`}},
		{"rule as a value", "rule = 1\n", 1, "rule", []string{"got an integer", "want [[rule]] tables"}},
		{"rule element type", "rule = [1]\n", 1, "rule[1]", []string{"got an integer", "want a [[rule]] table"}},
		{"date", "[[rule]]\nname = 1979-05-27\n", 2, "rule[1].name", []string{"got a date or time", "want a string"}},

		// [userspace]
		{"userspace as a value", "userspace = 1\n", 1, "userspace", []string{"got an integer", "want a table, [userspace]"}},
		{"userspace unknown table", "[userspace]\n[userspace.peers]\n", 2, "userspace.peers",
			[]string{"unknown table", "[userspace] takes the tables [userspace.peer], [userspace.retry], [[userspace.rule]]"}},
		{"userspace.rule as one table", "[userspace.rule]\nstrategy = \"none\"\n", 1, "userspace.rule", []string{"a list of tables", "write [[userspace.rule]]"}},
		{"userspace.peer as a list", "[[userspace.peer]]\n", 1, "userspace.peer", []string{"one table", "write [userspace.peer]"}},
		{"userspace upper case", "[userspace.Peer]\n", 1, "userspace.Peer", []string{"keys are lower case", `write "peer"`}},
		{"userspace rule as a value", "[userspace]\nrule = 1\n", 2, "userspace.rule", []string{"got an integer", "want [[userspace.rule]] tables"}},
		{"userspace rule element", "[userspace]\nrule = [\"x\"]\n", 2, "userspace.rule[1]", []string{"got a string", "want a [[userspace.rule]] table"}},
		{"userspace no rules", "mode = \"userspace\"\n[userspace]\nrule = []\n", 3, "userspace.rule", []string{"no rules", "add at least one [[userspace.rule]] table"}},
		{"userspace no rules dotted", "userspace.rule = []\n", 1, "userspace.rule", []string{"no rules"}},

		// [userspace.peer]
		{"peer unknown key", "[userspace.peer]\nacept = true\n", 2, "userspace.peer.acept",
			[]string{"unknown key", "[userspace.peer] takes accept, allow_prefixes, deny_prefixes, max_accepted, rate"}},
		{"peer accept type", "[userspace.peer]\naccept = \"yes\"\n", 2, "userspace.peer.accept", []string{"got a string", "want true or false"}},
		{"peer bad prefix", "[userspace.peer]\ndeny_prefixes = [\"fe80::/10\", \"10.0.0.1\"]\n", 2, "userspace.peer.deny_prefixes[2]",
			[]string{`invalid prefix "10.0.0.1"`, "CIDR notation"}},
		{"peer mapped prefix", "[userspace.peer]\nallow_prefixes = [\n  \"192.0.2.0/24\",\n  \"::ffff:10.0.0.0/104\",\n]\n", 4, "userspace.peer.allow_prefixes",
			[]string{"IPv4-mapped IPv6 prefix", "matches nothing", `write "10.0.0.0/8"`}},
		{"peer max_accepted", "[userspace.peer]\nmax_accepted = 256\n", 2, "userspace.peer.max_accepted", []string{"256 is out of range", "want an integer 0..255"}},
		{"peer max_accepted negative", "[userspace.peer]\nmax_accepted = -1\n", 2, "userspace.peer.max_accepted", []string{"-1 is out of range", "want an integer 0..255"}},
		{"peer rate 0", "[userspace.peer]\nrate = 0\n", 2, "userspace.peer.rate", []string{"0 is out of range", "want an integer 1..1000000"}},
		{"peer rate big", "[userspace.peer]\nrate = 1_000_001\n", 2, "userspace.peer.rate", []string{"1000001 is out of range", "want an integer 1..1000000"}},
		{"peer rate float", "[userspace.peer]\nrate = 0.5\n", 2, "userspace.peer.rate", []string{"got a float", "want an integer 1..1000000"}},

		// [userspace.retry]
		{"retry bad duration", "[userspace.retry]\ninitial = \"5 seconds\"\n", 2, "userspace.retry.initial",
			[]string{`invalid duration "5 seconds"`, `want a string such as "500ms", "30s" or "1m30s" (units ns, us, ms, s, m, h)`}},
		{"retry no unit", "[userspace.retry]\nmax = \"30\"\n", 2, "userspace.retry.max", []string{`duration "30" has no unit`, `"30s"`}},
		{"retry integer", "[userspace.retry]\n\ninitial = 500\n", 3, "userspace.retry.initial",
			[]string{"got an integer", `want a duration 1ms..1h: a string such as "500ms"`}},
		{"retry initial 0", "[userspace.retry]\ninitial = \"0s\"\n", 2, "userspace.retry.initial", []string{"0s is out of range", "want a duration 1ms..1h"}},
		{"retry initial too long", "[userspace.retry]\ninitial = \"61m\"\nmax = \"2h\"\n", 2, "userspace.retry.initial", []string{"1h1m is out of range", "want a duration 1ms..1h"}},
		{"retry initial negative", "userspace.retry.initial = \"-1s\"\n", 1, "userspace.retry.initial", []string{"-1s is out of range"}},
		{"retry max below initial", "[userspace.retry]\ninitial = \"2s\"\nmax = \"1500ms\"\n", 3, "userspace.retry.max",
			[]string{"1.5s is less than initial (2s)", "raise max to at least 2s, or lower initial"}},
		{"retry max too long", "[userspace.retry]\nmax = \"48h\"\n", 2, "userspace.retry.max", []string{"48h is out of range", "want a duration from initial up to 24h"}},
		{"retry attempts", "[userspace.retry]\nattempts = 1001\n", 2, "userspace.retry.attempts", []string{"1001 is out of range", "want an integer 0..1000"}},
		{"retry attempts negative", "[userspace.retry]\nattempts = -1\n", 2, "userspace.retry.attempts", []string{"-1 is out of range", "0 never re-creates"}},

		// [[userspace.rule]]
		{"rule unknown key", "[[userspace.rule]]\nstrategy = \"none\"\nport = 1\n", 3, "userspace.rule[1].port",
			[]string{"unknown key", "a [[userspace.rule]] table takes name, side, remote_prefixes, remote_ports, local_ports, strategy, max_subflows, subflows, announce, announce_port"}},
		{"unknown strategy", "[[userspace.rule]]\nname = \"x\"\nstrategy = \"mesh\"\n", 3, "userspace.rule[1].strategy",
			[]string{`unknown strategy "mesh"`, "want fullmesh, per-interface, ndiffports, backup, none"}},
		{"no strategy", "\n[[userspace.rule]]\nname = \"x\"\n", 2, "userspace.rule[1].strategy",
			[]string{"no strategy", "set strategy to one of fullmesh, per-interface, ndiffports, backup, none"}},
		{"strategy type", "[[userspace.rule]]\nstrategy = [\"fullmesh\"]\n", 2, "userspace.rule[1].strategy",
			[]string{"got a list", `want a string: "fullmesh", "per-interface", "ndiffports", "backup" or "none"`}},
		{"unknown side", "[[userspace.rule]]\nstrategy = \"none\"\nside = \"clients\"\n", 3, "userspace.rule[1].side",
			[]string{`unknown side "clients"`, "want client, server, any"}},
		{"empty side", "[[userspace.rule]]\nstrategy = \"none\"\nside = \"\"\n", 3, "userspace.rule[1].side", []string{"empty", "want client, server, any"}},
		{"remote port 0", "[[userspace.rule]]\nstrategy = \"none\"\nremote_ports = [\n  443,\n  0,\n]\n", 5, "userspace.rule[1].remote_ports",
			[]string{"0 is not a port", "want an integer 1..65535"}},
		{"local port too big", "[[userspace.rule]]\nstrategy = \"none\"\nlocal_ports = [70000]\n", 3, "userspace.rule[1].local_ports[1]",
			[]string{"70000 is out of range", "want an integer 1..65535"}},
		{"local port negative", "[[userspace.rule]]\nstrategy = \"none\"\nlocal_ports = [-443]\n", 3, "userspace.rule[1].local_ports[1]", []string{"-443 is out of range"}},
		{"port listed twice", "[[userspace.rule]]\nstrategy = \"none\"\nlocal_ports = [80, 443, 80]\n", 3, "userspace.rule[1].local_ports",
			[]string{"port 80 is listed twice", "list each port once"}},
		{"ports type", "[[userspace.rule]]\nstrategy = \"none\"\nremote_ports = 443\n", 3, "userspace.rule[1].remote_ports",
			[]string{"got an integer", "want a list of ports, e.g. [443, 8443]"}},
		{"port element type", "[[userspace.rule]]\nstrategy = \"none\"\nremote_ports = [\"https\"]\n", 3, "userspace.rule[1].remote_ports[1]",
			[]string{"got a string", "want an integer 1..65535"}},
		{"remote prefix", "[[userspace.rule]]\nstrategy = \"none\"\nremote_prefixes = [\"2001:db8::/33\", \"10.0.0.0/33\"]\n", 3, "userspace.rule[1].remote_prefixes[2]",
			[]string{`invalid prefix "10.0.0.0/33"`, "CIDR notation"}},
		{"remote mapped prefix", "[[userspace.rule]]\nstrategy = \"none\"\nremote_prefixes = [\"::ffff:192.0.2.1/128\"]\n", 3, "userspace.rule[1].remote_prefixes",
			[]string{"IPv4-mapped", `write "192.0.2.1/32"`}},
		{"max_subflows 0", "[[userspace.rule]]\nstrategy = \"fullmesh\"\nmax_subflows = 0\n", 3, "userspace.rule[1].max_subflows",
			[]string{"0 is out of range", "want an integer 1..64 (the initial subflow included)"}},
		{"max_subflows 65", "[[userspace.rule]]\nstrategy = \"fullmesh\"\nmax_subflows = 65\n", 3, "userspace.rule[1].max_subflows", []string{"65 is out of range", "1..64"}},
		{"max_subflows type", "[[userspace.rule]]\nstrategy = \"fullmesh\"\nmax_subflows = \"8\"\n", 3, "userspace.rule[1].max_subflows", []string{"got a string", "want an integer 1..64"}},
		{"subflows 1", "[[userspace.rule]]\nstrategy = \"ndiffports\"\nsubflows = 1\n", 3, "userspace.rule[1].subflows",
			[]string{"1 is out of range", "want an integer 2..64, at most max_subflows"}},
		{"subflows above max_subflows", "[[userspace.rule]]\nstrategy = \"ndiffports\"\nmax_subflows = 4\nsubflows = 6\n", 4, "userspace.rule[1].subflows",
			[]string{"6 is more than max_subflows (4) allows", "raise max_subflows to at least 6, or lower subflows"}},
		{"subflows above default max_subflows", "[[userspace.rule]]\nstrategy = \"ndiffports\"\nsubflows = 9\n", 3, "userspace.rule[1].subflows",
			[]string{"9 is more than max_subflows (8) allows"}},
		{"announce_port without announce", "[[userspace.rule]]\nside = \"server\"\nstrategy = \"none\"\nannounce_port = 8443\n", 4, "userspace.rule[1].announce_port",
			[]string{"announce_port needs announce = true", "or announce_port = 0"}},
		{"announce_port too big", "[[userspace.rule]]\nstrategy = \"none\"\nannounce = true\nannounce_port = 65536\n", 4, "userspace.rule[1].announce_port",
			[]string{"65536 is out of range", "want an integer 0..65535 (0 for the connection's own port)"}},
		{"announce on the client side", "[[userspace.rule]]\nside = \"client\"\nstrategy = \"fullmesh\"\nannounce = true\n", 4, "userspace.rule[1].announce",
			[]string{"announces on server-side connections only", `set side = "server" or "any", or announce = false`}},
		{"announce type", "[[userspace.rule]]\nstrategy = \"none\"\nannounce = 1\n", 3, "userspace.rule[1].announce", []string{"got an integer", "want true or false"}},
		{"userspace duplicate names", "[[userspace.rule]]\nname = \"a\"\nstrategy = \"none\"\n\n[[userspace.rule]]\nstrategy = \"none\"\nname = \"a\"\n", 7, "userspace.rule[2].name",
			[]string{`"a" is also the name of userspace.rule[1]`, "give each rule its own name"}},
		{"userspace name clashes with a default name", "[[userspace.rule]]\nstrategy = \"none\"\n[[userspace.rule]]\nname = \"userspace.rule 1\"\nstrategy = \"none\"\n", 4, "userspace.rule[2].name",
			[]string{`"userspace.rule 1" is also the name of userspace.rule[1]`}},
		{"inline userspace rule", "userspace.rule = [\n  { strategy = \"none\" },\n  { strategy = \"mesh\" },\n]\n", 3, "userspace.rule[2].strategy",
			[]string{`unknown strategy "mesh"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc), "test.toml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %T is not an *Error: %v", err, err)
			}
			if e.File != "test.toml" || e.Line != tt.line || e.Key != tt.key {
				t.Errorf("Parse error at %s:%d key %q, want test.toml:%d key %q\n%v", e.File, e.Line, e.Key, tt.line, tt.key, err)
			}
			msg := err.Error()
			prefix := fmt.Sprintf("test.toml:%d: ", tt.line)
			if tt.key != "" {
				prefix += tt.key + ": "
			}
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("want one problem, got:\n%s", msg)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := `mode = "kernal"
[log]
level = "loud"
[[rule]]
flags = ["sigal"]
port = 1
`
	_, err := Parse([]byte(doc), "test.toml")
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := `test.toml:1: mode: unknown mode "kernal" (want kernel, userspace, fallback, auto)
test.toml:3: log.level: unknown log level "loud" (want debug, info, warn, error)
test.toml:5: rule[1].flags: unknown flag "sigal" (want signal, subflow, backup, fullmesh, laminar)
test.toml:6: rule[1].port: a port needs the signal flag (add "signal" to flags, or set port = 0)`
	if got := err.Error(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 1 {
		t.Errorf("errors.As finds %+v, want the first problem", e)
	}

	// Unknown keys are reported together too.
	_, err = Parse([]byte("a = 1\n[log]\nb = 2\n"), "test.toml")
	if got := err.Error(); !strings.HasPrefix(got, "test.toml:1: a: unknown key") || !strings.Contains(got, "\ntest.toml:3: log.b: unknown key") {
		t.Errorf("got:\n%s", got)
	}
}

func TestParseWithoutFileName(t *testing.T) {
	_, err := Parse([]byte("\nmode = 3\n"), "")
	if err == nil || !strings.HasPrefix(err.Error(), "line 2: mode: got an integer") {
		t.Errorf("got %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // the whole message: Validate knows no file or line
	}{
		{"mode", func(c *Config) { c.Mode = "" }, `mode: unknown mode "" (want kernel, userspace, fallback, auto)`},
		{"limit", func(c *Config) { c.Limits.AddAddrAccepted = Limit{Value: 100} }, `limits.add_addr_accepted: 100 is above the kernel's maximum of 8 (want "auto" or an integer 0..8)`},
		{"zero prefix", func(c *Config) { c.Addresses.DenyPrefixes = []netip.Prefix{{}} }, `addresses.deny_prefixes: element 1 is not a valid prefix (want CIDR notation such as "192.0.2.0/24" or "2001:db8::/32")`},
		{"no rules", func(c *Config) { c.Rules = nil }, "rule: no rules, so no interface would be used (add at least one [[rule]] table)"},
		{"flags", func(c *Config) { c.Rules[0].Flags = []string{"subflow", "sigal"} }, `rule[1].flags: unknown flag "sigal" (want signal, subflow, backup, fullmesh, laminar)`},
		{"state_dir NUL", func(c *Config) { c.StateDir = "/run/\x00" }, `state_dir: contains a NUL byte (want an absolute path, e.g. "/run/mptcpd")`},
		{"userspace strategy", func(c *Config) { c.Userspace.Rules[1].Strategy = "mesh" },
			`userspace.rule[2].strategy: unknown strategy "mesh" (want fullmesh, per-interface, ndiffports, backup, none)`},
		{"userspace no rules", func(c *Config) { c.Userspace.Rules = nil },
			`userspace.rule: no rules, so the daemon would leave every connection alone (add at least one [[userspace.rule]] table; side = "any" with strategy = "none" for one that does nothing)`},
		{"userspace zero prefix", func(c *Config) { c.Userspace.Rules[0].RemotePrefixes = []netip.Prefix{{}} },
			`userspace.rule[1].remote_prefixes: element 1 is not a valid prefix (want CIDR notation such as "192.0.2.0/24" or "2001:db8::/32")`},
		{"userspace zero retry", func(c *Config) { c.Userspace.Retry.Initial = Duration{} },
			`userspace.retry.initial: 0s is out of range (want a duration 1ms..1h: a string such as "500ms", "30s" or "1m30s" (units ns, us, ms, s, m, h))`},
		{"userspace zero rule", func(c *Config) { c.Userspace.Rules = []UserspaceRule{{Name: "zero"}} }, strings.Join([]string{
			`userspace.rule[1].side: empty (want client, server, any)`,
			`userspace.rule[1].strategy: no strategy (set strategy to one of fullmesh, per-interface, ndiffports, backup, none)`,
			`userspace.rule[1].max_subflows: 0 is out of range (want an integer 1..64 (the initial subflow included))`,
			`userspace.rule[1].subflows: 0 is out of range (want an integer 2..64, at most max_subflows)`,
		}, "\n")},
		{"netns NUL", func(c *Config) { c.NetNS = "a\x00" }, `netns: invalid network namespace name "a\x00": no '/', '.' or '..' (want a namespace name as ` + "`ip netns list`" + ` shows it, or "" for the daemon's own namespace)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
		})
	}
	// Value is ignored when Auto is set, and unnamed rules are fine.
	c := Default()
	c.Limits.Subflows = Limit{Auto: true, Value: 100}
	c.Rules = append(c.Rules, Rule{}, Rule{})
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	missing := filepath.Join(dir, "mptcpd.toml")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "systemd/mptcpd.toml") {
		t.Errorf("Load of a missing file does not name it and say how to create it: %v", err)
	}

	name := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(name, []byte("mode = \"auto\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(name)
	if err != nil || c.Mode != ModeAuto {
		t.Errorf("Load = %+v, %v", c, err)
	}

	name = filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(name, []byte("\nmode = \"manual\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(name)
	if err == nil || !strings.HasPrefix(err.Error(), name+":2: mode: ") {
		t.Errorf("Load of a bad file: %v", err)
	}

	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load of a directory: %v", err)
	}
}

func TestLimit(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want Limit
		err  bool
	}{
		{`"auto"`, Limit{Auto: true}, false},
		{`'auto'`, Limit{Auto: true}, false},
		{`0`, Limit{}, false},
		{`8`, Limit{Value: 8}, false},
		{`0x10`, Limit{Value: 16}, false},
		{`4294967295`, Limit{Value: 1<<32 - 1}, false},
		{`4294967296`, Limit{}, true},
		{`-1`, Limit{}, true},
		{`"4"`, Limit{}, true},
		{`true`, Limit{}, true},
		{`[1]`, Limit{}, true},
		{`1 x = 2`, Limit{}, true},
		{``, Limit{}, true},
	} {
		l := Limit{Auto: true, Value: 7} // UnmarshalTOML must set both fields
		err := l.UnmarshalTOML([]byte(tt.raw))
		if (err != nil) != tt.err {
			t.Errorf("UnmarshalTOML(%s) error %v, want error %v", tt.raw, err, tt.err)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), wantLimit) {
				t.Errorf("UnmarshalTOML(%s) error %q does not say what is allowed", tt.raw, err)
			}
			continue
		}
		if l != tt.want {
			t.Errorf("UnmarshalTOML(%s) = %+v, want %+v", tt.raw, l, tt.want)
		}
		out, err := l.MarshalTOML()
		if err != nil {
			t.Fatal(err)
		}
		var back Limit
		if err := back.UnmarshalTOML(out); err != nil || back != l {
			t.Errorf("MarshalTOML(%+v) = %s, which reads back as %+v, %v", l, out, back, err)
		}
	}
	if !strings.HasSuffix(wantLimit, fmt.Sprintf("0..%d", MaxLimit)) {
		t.Errorf("wantLimit %q does not end with MaxLimit", wantLimit)
	}
	if s := (Limit{Auto: true}).String(); s != "auto" {
		t.Errorf("String = %q", s)
	}
	if s := (Limit{Value: 3}).String(); s != "3" {
		t.Errorf("String = %q", s)
	}
}

// TestEncodeRoundTrip checks that a Config written with go-toml reads back
// as the same Config, as a daemon printing its configuration would need.
func TestEncodeRoundTrip(t *testing.T) {
	c := Default()
	c.Limits.Subflows = Limit{Value: 3}
	c.Addresses.DenyPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.Rules = append(c.Rules, Rule{Name: "srv", Flags: []string{"signal"}, Port: 443, Preference: 7})
	c.Userspace = everyUserspaceKey()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).EnableMarshalerInterface().Encode(c); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(buf.Bytes(), "encoded.toml")
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	if diff := cmp.Diff(c, got, cmpPrefix); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, buf.Bytes())
	}
}

func TestEndpointFlags(t *testing.T) {
	for _, tt := range []struct {
		flags []string
		want  genl.EndpointFlags
	}{
		{nil, 0},
		{[]string{"subflow"}, genl.FlagSubflow},
		{[]string{"signal", "backup"}, genl.FlagSignal | genl.FlagBackup},
		{[]string{"fullmesh", "laminar", "subflow"}, genl.FlagFullmesh | genl.FlagLaminar | genl.FlagSubflow},
		{[]string{"Signal"}, genl.FlagSignal},
		{[]string{"sigal", "backup"}, genl.FlagBackup},
	} {
		if got := (Rule{Flags: tt.flags}).EndpointFlags(); got != tt.want {
			t.Errorf("EndpointFlags(%q) = %v, want %v", tt.flags, got, tt.want)
		}
	}
}

func TestLogSlogLevel(t *testing.T) {
	for _, level := range logLevels() {
		if got := (Log{Level: level}).SlogLevel().String(); !strings.EqualFold(got, level) {
			t.Errorf("SlogLevel(%q) = %s", level, got)
		}
	}
}

func TestKinds(t *testing.T) {
	if len(Kinds()) != 14 {
		t.Errorf("%d kinds, want 14", len(Kinds()))
	}
	for _, k := range Kinds() {
		if !k.Known() {
			t.Errorf("%q not Known", k)
		}
	}
	if Kind("wifi").Known() || Kind("").Known() {
		t.Error("unknown kinds are Known")
	}
}
