package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFallbackDefaults(t *testing.T) {
	wantFB := Fallback{
		Scheduler:     "minrtt",
		StaleLossCnt:  4,
		ReceiveWindow: 4 << 20,
		SendBuffer:    4 << 20,
		SocksListen:   "127.0.0.1:1080",
		Mark:          0x4d50,
	}
	if diff := cmp.Diff(wantFB, Default().Fallback); diff != "" {
		t.Errorf("Default().Fallback (-want +got):\n%s", diff)
	}
	wantConv := Converter{
		Listen:            []string{"[::]:7445"},
		MaxSessionsPerKey: 10000,
		DialTimeout:       Duration{10 * time.Second},
	}
	if diff := cmp.Diff(wantConv, Default().Converter); diff != "" {
		t.Errorf("Default().Converter (-want +got):\n%s", diff)
	}
	if join(Schedulers()) != "minrtt, roundrobin, redundant" {
		t.Errorf("Schedulers() = %q", Schedulers())
	}
	for _, s := range Schedulers() {
		if !strings.Contains(want("fallback.scheduler"), `"`+s+`"`) {
			t.Errorf("want(fallback.scheduler) lacks %q", s)
		}
	}
	// The defaults are valid in every mode, and the converter is off.
	for _, m := range Modes() {
		c := Default()
		c.Mode = m
		err := c.Validate()
		if m == ModeFallback {
			if err == nil || !strings.Contains(err.Error(), "fallback.converter: empty") {
				t.Errorf("mode fallback with the default [fallback]: %v, want an error about the converter", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("mode %s: %v", m, err)
		}
	}
}

const fallbackFile = `mode = "fallback"

[fallback]
converter = "[2001:db8::7]:7445"
key_id = "laptop-1"
key_file = "/etc/mptcpd/laptop.key"
scheduler = "redundant"
stale_loss_cnt = 100
receive_window = 65536
send_buffer = 1073741824
socks_listen = "[::1]:1081"
socks_users_file = "/etc/mptcpd/socks-users"
mark = 0x1234

[fallback.tls]
server_name = "converter.example.org"

[fallback.capture]
redirect_port = 7777
tproxy_port = 7778
tproxy_interfaces = ["eth1", "wlan0"]
ports = [80, 443]
exclude_prefixes = ["192.0.2.0/24", "2001:db8::/32"]
`

const converterFile = `[converter]
enabled = true
listen = ["192.0.2.1:7445", "[2001:db8::1]:7445"]
keys_file = "/etc/mptcpd/clients"
allow_prefixes = ["0.0.0.0/0", "::/0"]
deny_prefixes = ["10.0.0.0/8"]
allow_ports = [80, 443, 8443]
allow_loopback = true
allow_link_local = true
allow_own = true
max_sessions_per_key = 1000000
dial_timeout = "5m"

[converter.tls]
cert = "/etc/mptcpd/converter.pem"
key = "/etc/mptcpd/converter.key"
client_ca = "/etc/mptcpd/clients-ca.pem"
`

func TestParseFallbackAndConverter(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		doc  string
		want func(c *Config)
	}{
		{"every fallback key", fallbackFile, func(c *Config) {
			c.Mode = ModeFallback
			c.Fallback = Fallback{
				Converter:      "[2001:db8::7]:7445",
				KeyID:          "laptop-1",
				KeyFile:        "/etc/mptcpd/laptop.key",
				TLS:            FallbackTLS{ServerName: "converter.example.org"},
				Scheduler:      "redundant",
				StaleLossCnt:   100,
				ReceiveWindow:  65536,
				SendBuffer:     1 << 30,
				SocksListen:    "[::1]:1081",
				SocksUsersFile: "/etc/mptcpd/socks-users",
				Mark:           0x1234,
				Capture: Capture{
					RedirectPort:     7777,
					TProxyPort:       7778,
					TProxyInterfaces: []string{"eth1", "wlan0"},
					Ports:            []uint16{80, 443},
					ExcludePrefixes:  []netip.Prefix{pfx("192.0.2.0/24"), pfx("2001:db8::/32")},
				},
			}
		}},
		{"every converter key", converterFile, func(c *Config) {
			c.Converter = Converter{
				Enabled:           true,
				Listen:            []string{"192.0.2.1:7445", "[2001:db8::1]:7445"},
				KeysFile:          "/etc/mptcpd/clients",
				TLS:               ConverterTLS{Cert: "/etc/mptcpd/converter.pem", Key: "/etc/mptcpd/converter.key", ClientCA: "/etc/mptcpd/clients-ca.pem"},
				AllowPrefixes:     []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0")},
				DenyPrefixes:      []netip.Prefix{pfx("10.0.0.0/8")},
				AllowPorts:        []uint16{80, 443, 8443},
				AllowLoopback:     true,
				AllowLinkLocal:    true,
				AllowOwn:          true,
				MaxSessionsPerKey: 1_000_000,
				DialTimeout:       Duration{5 * time.Minute},
			}
		}},
		{"fallback with tls, capture only", `mode = "fallback"
[fallback]
converter = "198.51.100.9:443"
socks_listen = ""
tls.cert = "/c.pem"
tls.key = "/k.pem"
tls.ca = "/ca.pem"
capture = { redirect_port = 1 }
`, func(c *Config) {
			c.Mode = ModeFallback
			c.Fallback.Converter = "198.51.100.9:443"
			c.Fallback.SocksListen = ""
			c.Fallback.TLS = FallbackTLS{Cert: "/c.pem", Key: "/k.pem", CA: "/ca.pem"}
			c.Fallback.Capture.RedirectPort = 1
		}},
		{"auto without a converter needs nothing", "mode = \"auto\"\n[fallback]\nsocks_listen = \"\"\n", func(c *Config) {
			c.Mode = ModeAuto
			c.Fallback.SocksListen = ""
		}},
		{"auto with a converter", "mode = \"auto\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\nkey_id = \"k\"\nkey_file = \"/k\"\n", func(c *Config) {
			c.Mode = ModeAuto
			c.Fallback.Converter = "192.0.2.1:7445"
			c.Fallback.KeyID = "k"
			c.Fallback.KeyFile = "/k"
		}},
		{"kernel mode ignores an incomplete fallback", "[fallback]\nkey_id = \"k\"\nsocks_listen = \"\"\n", func(c *Config) {
			c.Fallback.KeyID = "k"
			c.Fallback.SocksListen = ""
		}},
		{"converter with keys only", "[converter]\nenabled = true\nkeys_file = \"/etc/mptcpd/clients\"\n", func(c *Config) {
			c.Converter.Enabled = true
			c.Converter.KeysFile = "/etc/mptcpd/clients"
		}},
		{"converter disabled needs nothing", "[converter]\nlisten = []\n", func(c *Config) { c.Converter.Listen = nil }},
		{"empty lists", "[fallback.capture]\nports = []\ntproxy_interfaces = []\nexclude_prefixes = []\n[converter]\nallow_ports = []\nallow_prefixes = []\ndeny_prefixes = []\n", func(*Config) {}},
		{"zoned converter", "mode = \"fallback\"\n[fallback]\nconverter = \"[fe80::1%eth0]:7445\"\nkey_id = \"!~\"\nkey_file = \"/k\"\n", func(c *Config) {
			c.Mode = ModeFallback
			c.Fallback.Converter = "[fe80::1%eth0]:7445"
			c.Fallback.KeyID = "!~"
			c.Fallback.KeyFile = "/k"
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

func TestFallbackMarshalRoundTrip(t *testing.T) {
	for _, doc := range []string{fallbackFile, converterFile} {
		c, err := Parse([]byte(doc), "test.toml")
		if err != nil {
			t.Fatal(err)
		}
		data, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(data, "marshalled.toml")
		if err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		if diff := cmp.Diff(c, got, cmpPrefix); diff != "" {
			t.Errorf("round trip (-want +got):\n%s\n%s", diff, data)
		}
	}
}

// fb is a valid [fallback] table of mode "fallback" (line 1 is the mode,
// line 2 the table's header) to which a test adds lines from line 6 on.
const fb = "mode = \"fallback\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\nkey_id = \"laptop\"\nkey_file = \"/etc/mptcpd/key\"\n"

// conv is an enabled [converter] table with keys (lines 1 to 3) to which a
// test adds lines from line 4 on.
const conv = "[converter]\nenabled = true\nkeys_file = \"/etc/mptcpd/clients\"\n"

func TestParseBadFallback(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
		key  string
		want []string
	}{
		// Completeness in mode "fallback", placed on the mode's line when the
		// file has no [fallback] table.
		{"no converter", "\nmode = \"fallback\"\n[fallback.tls]\ncert = \"/c\"\nkey = \"/k\"\nca = \"/ca\"\n", 2, "fallback.converter",
			[]string{`empty, but mode "fallback" needs a converter`, `want a string: the converter's IP address and port, e.g. "192.0.2.1:7445"`}},
		{"no converter, table", "mode = \"fallback\"\n[fallback]\nkey_id = \"a\"\nkey_file = \"/k\"\n", 2, "fallback.converter", []string{"needs a converter"}},
		{"no authentication", "mode = \"fallback\"\n\n[fallback]\nconverter = \"192.0.2.1:7445\"\n", 3, "fallback.key_id",
			[]string{"no way to authenticate to the converter", "set key_id and key_file", "tls.cert, tls.key and tls.ca"}},
		{"auto with converter and no authentication", "mode = \"auto\"\nfallback.converter = \"192.0.2.1:7445\"\n", 2, "fallback.key_id", []string{"no way to authenticate"}},
		{"key_id without key_file", "mode = \"fallback\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\nkey_id = \"a\"\n", 2, "fallback.key_file",
			[]string{"empty, but key_id is set", "needs both", "an absolute path"}},
		{"key_file without key_id", "mode = \"fallback\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\nkey_file = \"/k\"\n", 2, "fallback.key_id",
			[]string{"empty, but key_file is set", `e.g. "laptop"`}},
		{"key and tls", fb + "[fallback.tls]\ncert = \"/c\"\n", 7, "fallback.tls.cert",
			[]string{"both a pre-shared key (key_id, key_file) and TLS", "use one"}},
		{"tls incomplete", "mode = \"fallback\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\n[fallback.tls]\ncert = \"/c\"\n", 4, "fallback.tls.key",
			[]string{"TLS needs cert, key, ca, but key, ca are not set", "[fallback.tls]"}},
		{"tls without ca", "mode = \"fallback\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\n[fallback.tls]\ncert = \"/c\"\nkey = \"/k\"\n", 4, "fallback.tls.ca",
			[]string{"but ca is not set"}},
		{"no way in", fb + "socks_listen = \"\"\n", 6, "fallback.socks_listen",
			[]string{"applications would have no way to use the fallback", "capture.redirect_port or capture.tproxy_port"}},

		// Values, in every mode.
		{"converter name", "[fallback]\nconverter = \"conv.example.org:7445\"\nkey_id = \"k\"\nkey_file = \"/k\"\n", 2, "fallback.converter",
			[]string{`"conv.example.org:7445" names its host`, "by IP address", `"[2001:db8::1]:7445"`}},
		{"converter without port", "mode = \"fallback\"\n[fallback]\nkey_id = \"a\"\nkey_file = \"/k\"\nconverter = \"192.0.2.1\"\n", 5, "fallback.converter", []string{`"192.0.2.1" is not IP:port`}},
		{"converter port 0", "[fallback]\nconverter = \"192.0.2.1:0\"\nkey_id = \"k\"\nkey_file = \"/k\"\n", 2, "fallback.converter", []string{"port 0", "1..65535"}},
		{"converter port too big", "[fallback]\nconverter = \"192.0.2.1:65536\"\nkey_id = \"k\"\nkey_file = \"/k\"\n", 2, "fallback.converter", []string{"is not IP:port"}},
		{"converter unspecified", "[fallback]\nconverter = \"[::]:7445\"\nkey_id = \"k\"\nkey_file = \"/k\"\n", 2, "fallback.converter", []string{":: is not a unicast address"}},
		{"converter multicast", "[fallback]\nconverter = \"224.0.0.1:7445\"\nkey_id = \"k\"\nkey_file = \"/k\"\n", 2, "fallback.converter", []string{"224.0.0.1 is not a unicast address"}},
		{"converter type", "[fallback]\nconverter = 7445\n", 2, "fallback.converter", []string{"got an integer", "IP address and port"}},
		{"key_id space", "[fallback]\nkey_id = \"my laptop\"\n", 2, "fallback.key_id", []string{`"my laptop" contains " " (byte 3)`, `printable ASCII characters without spaces or "#"`}},
		{"key_id hash", "[fallback]\nkey_id = \"a#b\"\n", 2, "fallback.key_id", []string{`contains "#"`}},
		{"key_id non-ASCII", "[fallback]\nkey_id = \"café\"\n", 2, "fallback.key_id", []string{`contains "\xc3" (byte 4)`}},
		{"key_id too long", "[fallback]\nkey_id = \"" + strings.Repeat("k", 65) + "\"\n", 2, "fallback.key_id", []string{"65 bytes long, at most 64"}},
		{"key_file relative", "[fallback]\nkey_file = \"laptop.key\"\n", 2, "fallback.key_file", []string{`"laptop.key" is not an absolute path`, `or "" for none`}},
		{"tls cert relative", "[fallback.tls]\ncert = \"c.pem\"\n", 2, "fallback.tls.cert", []string{`"c.pem" is not an absolute path`, "PEM"}},
		{"tls key relative", "[fallback.tls]\nkey = \"k.pem\"\n", 2, "fallback.tls.key", []string{"not an absolute path"}},
		{"tls ca relative", "[fallback.tls]\nca = \"./ca.pem\"\n", 2, "fallback.tls.ca", []string{"not an absolute path"}},
		{"server_name space", "[fallback.tls]\nserver_name = \"a b\"\n", 2, "fallback.tls.server_name", []string{"spaces or control characters"}},
		{"scheduler", "[fallback]\nscheduler = \"blest\"\n", 2, "fallback.scheduler", []string{`unknown scheduler "blest"`, "want minrtt, roundrobin, redundant"}},
		{"stale_loss_cnt 0", "[fallback]\nstale_loss_cnt = 0\n", 2, "fallback.stale_loss_cnt", []string{"0 is out of range", "want an integer 1..100"}},
		{"stale_loss_cnt 101", "[fallback]\nstale_loss_cnt = 101\n", 2, "fallback.stale_loss_cnt", []string{"101 is out of range"}},
		{"receive_window small", "[fallback]\nreceive_window = 65535\n", 2, "fallback.receive_window", []string{"65535 is out of range", "65536..1073741824"}},
		{"send_buffer big", "[fallback]\nsend_buffer = 1073741825\n", 2, "fallback.send_buffer", []string{"1073741825 is out of range", "65536..1073741824"}},
		{"send_buffer type", "[fallback]\nsend_buffer = \"4M\"\n", 2, "fallback.send_buffer", []string{"got a string", "an integer 65536..1073741824"}},
		{"socks_listen", "[fallback]\nsocks_listen = \"1080\"\n", 2, "fallback.socks_listen", []string{`"1080" is not host:port`}},
		{"socks_listen port 0", "[fallback]\nsocks_listen = \"127.0.0.1:0\"\n", 2, "fallback.socks_listen", []string{"port 0"}},
		{"socks_users_file relative", "[fallback]\nsocks_users_file = \"users\"\n", 2, "fallback.socks_users_file", []string{`"users" is not an absolute path`}},
		{"mark 0", "[fallback]\nmark = 0\n", 2, "fallback.mark", []string{"0 sets no mark", "want an integer 1..4294967295"}},
		{"mark negative", "[fallback]\nmark = -1\n", 2, "fallback.mark", []string{"-1 is out of range", "1..4294967295"}},
		{"mark too big", "[fallback]\nmark = 0x100000000\n", 2, "fallback.mark", []string{"out of range"}},
		{"mark of tproxy", "[fallback]\nmark = 0x4d51\n[fallback.capture]\ntproxy_port = 7778\n", 2, "fallback.mark",
			[]string{"0x4d51 is the mark capture gives TPROXY'd packets", "choose another mark"}},
		{"capture port too big", "[fallback.capture]\nredirect_port = 65536\n", 2, "fallback.capture.redirect_port", []string{"65536 is out of range", "0..65535 (0 for none)"}},
		{"capture port negative", "[fallback.capture]\ntproxy_port = -1\n", 2, "fallback.capture.tproxy_port", []string{"out of range"}},
		{"capture ports equal", "[fallback.capture]\nredirect_port = 7777\ntproxy_port = 7777\n", 3, "fallback.capture.tproxy_port",
			[]string{"7777 is also redirect_port", "a listener each"}},
		{"capture port is the socks port", "[fallback]\nsocks_listen = \"127.0.0.1:7777\"\n[fallback.capture]\nredirect_port = 7777\n", 4, "fallback.capture.redirect_port",
			[]string{"7777 is also socks_listen's port"}},
		{"tproxy port is the socks port", "[fallback.capture]\ntproxy_port = 1080\n", 2, "fallback.capture.tproxy_port", []string{"1080 is also socks_listen's port"}},
		{"tproxy_interfaces without tproxy_port", "[fallback.capture]\ntproxy_interfaces = [\"eth0\"]\n", 2, "fallback.capture.tproxy_interfaces",
			[]string{"tproxy_port is 0", "set tproxy_port"}},
		{"tproxy_interfaces bad pattern", "[fallback.capture]\ntproxy_port = 7778\ntproxy_interfaces = [\n  \"eth0\",\n  \"eth[\",\n]\n", 5, "fallback.capture.tproxy_interfaces",
			[]string{`"eth[" is not an interface name`, "patterns are not matched here"}},
		{"tproxy_interfaces lo", "[fallback.capture]\ntproxy_port = 7778\ntproxy_interfaces = [\"lo\"]\n", 3, "fallback.capture.tproxy_interfaces", []string{`"lo" cannot be a TPROXY interface`}},
		{"tproxy_interfaces long", "[fallback.capture]\ntproxy_port = 7778\ntproxy_interfaces = [\"enp0s31f6abcdefgh\"]\n", 3, "fallback.capture.tproxy_interfaces",
			[]string{"17 bytes long", "at most 15"}},
		{"tproxy_interfaces twice", "[fallback.capture]\ntproxy_port = 7778\ntproxy_interfaces = [\"wlan0\", \"wlan0\"]\n", 3, "fallback.capture.tproxy_interfaces", []string{`"wlan0" is listed twice`}},
		{"tproxy_interfaces type", "[fallback.capture]\ntproxy_interfaces = \"eth0\"\n", 2, "fallback.capture.tproxy_interfaces", []string{"got a string", "a list of interface names"}},
		{"capture ports without capture", "[fallback.capture]\nports = [80]\n", 2, "fallback.capture.ports", []string{"nothing is captured"}},
		{"capture port 0", "[fallback.capture]\nredirect_port = 7777\nports = [80,\n  0]\n", 4, "fallback.capture.ports", []string{"0 is not a port", "want an integer 1..65535"}},
		{"capture port twice", "[fallback.capture]\nredirect_port = 7777\nports = [80, 80]\n", 3, "fallback.capture.ports", []string{"port 80 is listed twice"}},
		{"capture port element too big", "[fallback.capture]\nports = [70000]\n", 2, "fallback.capture.ports[1]", []string{"70000 is out of range", "want an integer 1..65535"}},
		{"exclude_prefixes", "[fallback.capture]\nexclude_prefixes = [\"192.0.2.1\"]\n", 2, "fallback.capture.exclude_prefixes[1]", []string{`invalid prefix "192.0.2.1"`, "CIDR"}},
		{"exclude_prefixes mapped", "[fallback.capture]\nexclude_prefixes = [\"::ffff:192.0.2.0/120\"]\n", 2, "fallback.capture.exclude_prefixes",
			[]string{"IPv4-mapped IPv6 prefix", `write "192.0.2.0/24"`}},
		{"exclude_prefixes mapped short", "[fallback.capture]\nexclude_prefixes = [\"::ffff:0.0.0.0/80\"]\n", 2, "fallback.capture.exclude_prefixes",
			[]string{"written with an IPv4-mapped address"}},
		{"unknown fallback key", "[fallback]\nsocks = \"127.0.0.1:1080\"\n", 2, "fallback.socks",
			[]string{"unknown key", "[fallback] takes converter, key_id, key_file, scheduler,", "and the tables [fallback.tls], [fallback.capture]"}},
		{"unknown capture key", "[fallback.capture]\nredirect = 7777\n", 2, "fallback.capture.redirect",
			[]string{"unknown key", "[fallback.capture] takes redirect_port, tproxy_port, tproxy_interfaces, ports, exclude_prefixes"}},
		{"unknown fallback table", "[fallback.socks]\n", 1, "fallback.socks", []string{"unknown table", "[fallback] takes"}},
		{"fallback as a list", "[[fallback]]\n", 1, "fallback", []string{"one table", "write [fallback]"}},
		{"fallback as a value", "fallback = \"on\"\n", 1, "fallback", []string{"got a string", "want a table, [fallback]"}},
		{"fallback upper case", "[fallback]\nScheduler = \"minrtt\"\n", 2, "fallback.Scheduler", []string{`write "scheduler"`}},

		// [converter]
		{"converter no listen", conv + "listen = []\n", 4, "converter.listen",
			[]string{"empty, so no client could reach the converter", `["[::]:7445"]`}},
		{"converter bad listen", conv + "listen = [\n  \"[::]:7445\",\n  \"7446\",\n]\n", 6, "converter.listen",
			[]string{`"7446" is not host:port`}},
		{"converter empty listen", conv + "listen = [\"\"]\n", 4, "converter.listen", []string{"element 1 is empty", `"[::]:7445"`}},
		{"converter listen twice", conv + "listen = [\"[::]:7445\", \"[::]:7445\"]\n", 4, "converter.listen", []string{"listed twice"}},
		{"converter listen port 0", "[converter]\nlisten = [\"[::]:0\"]\n", 2, "converter.listen", []string{"port 0"}},
		{"converter no authentication", "\n[converter]\nenabled = true\n", 2, "converter.keys_file",
			[]string{"no way for clients to authenticate", "never an open proxy", "[converter.tls]"}},
		{"converter keys_file relative", "[converter]\nkeys_file = \"clients\"\n", 2, "converter.keys_file", []string{`"clients" is not an absolute path`}},
		{"converter tls incomplete", "[converter]\nenabled = true\n[converter.tls]\ncert = \"/c\"\nclient_ca = \"/ca\"\n", 3, "converter.tls.key",
			[]string{"TLS needs cert, key, client_ca, but key is not set", "[converter.tls]"}},
		{"converter tls relative", "[converter.tls]\nclient_ca = \"ca.pem\"\n", 2, "converter.tls.client_ca", []string{"not an absolute path"}},
		{"converter allow_prefixes", conv + "allow_prefixes = [\"10.0.0.0/33\"]\n", 4, "converter.allow_prefixes[1]", []string{`invalid prefix "10.0.0.0/33"`}},
		{"converter deny_prefixes mapped", conv + "deny_prefixes = [\"::ffff:10.0.0.0/104\"]\n", 4, "converter.deny_prefixes", []string{"IPv4-mapped", `write "10.0.0.0/8"`}},
		{"converter allow_ports 0", conv + "allow_ports = [0]\n", 4, "converter.allow_ports", []string{"0 is not a port"}},
		{"converter allow_ports twice", conv + "allow_ports = [443, 80, 443]\n", 4, "converter.allow_ports", []string{"port 443 is listed twice"}},
		{"converter max_sessions_per_key 0", "[converter]\nmax_sessions_per_key = 0\n", 2, "converter.max_sessions_per_key", []string{"0 is out of range", "want an integer 1..1000000"}},
		{"converter max_sessions_per_key big", conv + "max_sessions_per_key = 1000001\n", 4, "converter.max_sessions_per_key", []string{"1000001 is out of range"}},
		{"converter dial_timeout short", conv + "dial_timeout = \"99ms\"\n", 4, "converter.dial_timeout", []string{"99ms is out of range", "want a duration 100ms..5m"}},
		{"converter dial_timeout long", "[converter]\ndial_timeout = \"5m1s\"\n", 2, "converter.dial_timeout", []string{"5m1s is out of range"}},
		{"converter dial_timeout no unit", "[converter]\ndial_timeout = \"10\"\n", 2, "converter.dial_timeout", []string{`duration "10" has no unit`}},
		{"converter dial_timeout type", "[converter]\ndial_timeout = 10\n", 2, "converter.dial_timeout", []string{"got an integer", "want a duration"}},
		{"converter enabled type", "[converter]\nenabled = \"yes\"\n", 2, "converter.enabled", []string{"got a string", "want true or false"}},
		{"converter unknown key", "# a comment\n[converter]\nenabled = false\nkeys = \"/k\"\n", 4, "converter.keys",
			[]string{"unknown key", "[converter] takes enabled, listen, keys_file,", "and the tables [converter.tls]"}},
		{"converter tls unknown key", "[converter.tls]\nca = \"/ca\"\n", 2, "converter.tls.ca", []string{"unknown key", "[converter.tls] takes cert, key, client_ca"}},
		{"converter inline", "converter = { enabled = true, keys_file = \"/k\", max_sessions_per_key = 0 }\n", 1, "converter.max_sessions_per_key", []string{"0 is out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParseError(t, tt.doc, tt.line, tt.key, tt.want)
		})
	}
}

// checkParseError checks that Parse refuses doc with one problem, at line
// and key, whose message says each of want.
func checkParseError(t *testing.T, doc string, line int, key string, want []string) {
	t.Helper()
	c, err := Parse([]byte(doc), "test.toml")
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
	if e.File != "test.toml" || e.Line != line || e.Key != key {
		t.Errorf("Parse error at %s:%d key %q, want test.toml:%d key %q\n%v", e.File, e.Line, e.Key, line, key, err)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if strings.Count(msg, "\n") != 0 {
		t.Errorf("want one problem, got:\n%s", msg)
	}
}

// TestFallbackReportsEveryProblem checks that an empty fallback
// configuration in mode "fallback" is told all it lacks, each problem on
// the line of its key, of the [fallback] table or else of the mode.
func TestFallbackReportsEveryProblem(t *testing.T) {
	const converter = `fallback.converter: empty, but mode "fallback" needs a converter to carry the traffic (want a string: the converter's IP address and port, e.g. "192.0.2.1:7445" or "[2001:db8::1]:7445")`
	const auth = `fallback.key_id: no way to authenticate to the converter (set key_id and key_file to a pre-shared key the converter knows, or tls.cert, tls.key and tls.ca for a client certificate)`
	const wayIn = `fallback.socks_listen: empty, and capture has neither redirect_port nor tproxy_port, so applications would have no way to use the fallback (set socks_listen, e.g. "127.0.0.1:1080", or capture.redirect_port or capture.tproxy_port)`
	for _, tt := range []struct{ doc, want string }{
		{"# mptcpd\nmode = \"fallback\"\n", "test.toml:2: " + converter + "\ntest.toml:2: " + auth},
		{"# mptcpd\nmode = \"fallback\"\n[fallback]\nscheduler = \"minrtt\"\nsocks_listen = \"\"\n",
			"test.toml:3: " + converter + "\ntest.toml:3: " + auth + "\ntest.toml:5: " + wayIn},
	} {
		_, err := Parse([]byte(tt.doc), "test.toml")
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q:\ngot:\n%v\nwant:\n%s", tt.doc, err, tt.want)
		}
	}
}

func TestValidateFallback(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"fallback mode", func(c *Config) {
			c.Mode = ModeFallback
			c.Fallback.Converter = "192.0.2.1:7445"
			c.Fallback.TLS.CA = "/ca"
		}, "fallback.tls.cert: TLS needs cert, key, ca, but cert, key are not set (set them all in [fallback.tls], or leave them all \"\")"},
		{"zero scheduler", func(c *Config) { c.Fallback.Scheduler = "" }, `fallback.scheduler: unknown scheduler "" (want minrtt, roundrobin, redundant)`},
		{"zero dial timeout", func(c *Config) { c.Converter.DialTimeout = Duration{} },
			`converter.dial_timeout: 0s is out of range (want a duration 100ms..5m: a string such as "500ms", "30s" or "1m30s" (units ns, us, ms, s, m, h))`},
		{"zero prefix", func(c *Config) { c.Fallback.Capture.ExcludePrefixes = []netip.Prefix{{}} },
			`fallback.capture.exclude_prefixes: element 1 is not a valid prefix (want CIDR notation such as "192.0.2.0/24" or "2001:db8::/32")`},
		{"too many ports", func(c *Config) {
			c.Fallback.Capture.RedirectPort = 7777
			for i := range 1025 {
				c.Fallback.Capture.Ports = append(c.Fallback.Capture.Ports, uint16(i+1))
			}
		}, "fallback.capture.ports: 1025 ports, at most 1024 allowed (leave ports empty to capture every port)"},
		{"too many prefixes", func(c *Config) {
			for i := range 1025 {
				c.Fallback.Capture.ExcludePrefixes = append(c.Fallback.Capture.ExcludePrefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32))
			}
		}, "fallback.capture.exclude_prefixes: 1025 prefixes, at most 1024 allowed"},
		{"too many interfaces", func(c *Config) {
			c.Fallback.Capture.TProxyPort = 7778
			for i := range 257 {
				c.Fallback.Capture.TProxyInterfaces = append(c.Fallback.Capture.TProxyInterfaces, fmt.Sprintf("eth%d", i))
			}
		}, "fallback.capture.tproxy_interfaces: 257 patterns, at most 256 allowed"},
		{"NUL in a path", func(c *Config) { c.Converter.KeysFile = "/k\x00" },
			`converter.keys_file: "/k\x00" is not an absolute path (want a string: an absolute path, or "" for none)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}

// writeFile writes data to a new file in dir, mode 0600, and returns its
// path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	k32 := bytes.Repeat([]byte{0xa5}, 32)
	k64 := make([]byte, 64)
	for i := range k64 {
		k64[i] = byte(i)
	}
	k48 := bytes.Repeat([]byte{0xfb}, 48) // base64 of only letters and '+', '/'
	good := []struct {
		name, data string
		want       []byte
	}{
		{"hex", hex.EncodeToString(k32) + "\n", k32},
		{"hex upper case", strings.ToUpper(hex.EncodeToString(k64)), k64},
		{"hex with spaces and CRLF", "  " + hex.EncodeToString(k32) + " \r\n", k32},
		{"base64", base64.StdEncoding.EncodeToString(k32) + "\n", k32},
		{"base64 without padding", base64.RawStdEncoding.EncodeToString(k32), k32},
		{"base64 of 48 bytes", base64.StdEncoding.EncodeToString(k48), k48},
		{"base64 of 64 bytes", base64.StdEncoding.EncodeToString(k64) + "\n", k64},
	}
	for _, tt := range good {
		path := writeFile(t, dir, "good", tt.data)
		got, err := LoadKey(path)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("%s: LoadKey = %x, %v; want %x", tt.name, got, err, tt.want)
		}
	}

	bad := []struct {
		name, data string
		want       string // the whole message, with PATH for the file's path
	}{
		{"20 bytes", hex.EncodeToString(make([]byte, 20)) + "\n",
			"key file PATH: 20 bytes; want 32 to 64 (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`)"},
		{"65 bytes", base64.StdEncoding.EncodeToString(make([]byte, 65)),
			"key file PATH: 65 bytes; want 32 to 64 (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`)"},
		{"odd hex", strings.Repeat("a", 65),
			"key file PATH: 65 hex digits, an odd number; want 64 to 128 (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`)"},
		{"empty", "\n\n",
			"key file PATH: empty; want a key of 32 to 64 bytes in hex or base64 (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`)"},
		{"wrapped base64", base64.StdEncoding.EncodeToString(k64)[:76] + "\n" + base64.StdEncoding.EncodeToString(k64)[76:] + "\n",
			"key file PATH: 2 lines; want the key on one line (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`); for base64, `base64 -w0` does not wrap it"},
		{"not a key", "correct horse battery staple, which is not a key",
			"key file PATH: not hex or standard base64 (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`)"},
		{"url base64", strings.Repeat("-_", 22),
			"key file PATH: not hex or standard base64 (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > PATH`)"},
		{"too large", strings.Repeat("0", 5000),
			"key file PATH: larger than 4096 bytes; is it the right file?"},
	}
	for _, tt := range bad {
		path := writeFile(t, dir, "bad", tt.data)
		got, err := LoadKey(path)
		want := strings.ReplaceAll(tt.want, "PATH", path)
		if err == nil || err.Error() != want {
			t.Errorf("%s: LoadKey = %x, %v\nwant error %s", tt.name, got, err, want)
		}
	}

	missing := filepath.Join(dir, "missing")
	if _, err := LoadKey(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadKey of a missing file: %v, want fs.ErrNotExist naming the file", err)
	}
	if _, err := LoadKey(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadKey of a directory: %v", err)
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 64)
	path := writeFile(t, dir, "clients", "# converter clients\n\nlaptop "+hex.EncodeToString(k1)+"  # Alice's\r\n"+
		"\tphone-2\t"+base64.StdEncoding.EncodeToString(k2)+"\n   \n#retired "+hex.EncodeToString(k1)+"\n")
	got, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"laptop": k1, "phone-2": k2}, got); diff != "" {
		t.Errorf("LoadKeys (-want +got):\n%s", diff)
	}

	key := hex.EncodeToString(k1)
	bad := []struct {
		name, data string
		want       string // with PATH for the file's path
	}{
		{"one field", "# clients\nlaptop\n", `PATH:2: 1 fields; want "key-id key", e.g. "laptop 5f1c…" (a key made by ` + "`head -c 32 /dev/urandom | xxd -p -c 64`)"},
		{"three fields", "a " + key + " extra\n", `PATH:1: 3 fields; want "key-id key"`},
		{"duplicate", "a " + key + "\nb " + key + "\n\na " + key + "\n", `PATH:4: key id "a" is also on line 1 (give each client its own key id)`},
		{"short key", "a " + key + "\nb 00ff\n", `PATH:2: key of "b": 2 bytes; want 32 to 64 (make one with ` + "`head -c 32 /dev/urandom | xxd -p -c 64`)"},
		{"bad key", "a !!!!\n", `PATH:1: key of "a": not hex or standard base64`},
		{"long id", strings.Repeat("i", 65) + " " + key + "\n", `PATH:1: key id: 65 bytes long, at most 64 allowed`},
		{"control byte in id", "a\x01b " + key + "\n", `PATH:1: key id: "a\x01b" contains "\x01" (byte 2)`},
		{"no keys", "# nobody yet\n\n", `PATH: no keys; want one "key-id key" line per client`},
		{"empty", "", `PATH: no keys`},
	}
	for _, tt := range bad {
		path := writeFile(t, dir, "bad", tt.data)
		got, err := LoadKeys(path)
		want := strings.ReplaceAll(tt.want, "PATH", path)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: LoadKeys = %v, %v\nwant error %s", tt.name, got, err, want)
			continue
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error shows a key: %v", tt.name, err)
		}
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadKeys of a missing file: %v", err)
	}
}

func TestLoadUsers(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("p", 255)
	path := writeFile(t, dir, "users", "# SOCKS5 users\nalice:s3cret\r\n\n  # bob left\nbob:pa:ss word \ncarol:"+long+"\n"+strings.Repeat("u", 255)+":x")
	got, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": "s3cret", "bob": "pa:ss word ", "carol": long, strings.Repeat("u", 255): "x"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadUsers (-want +got):\n%s", diff)
	}

	bad := []struct {
		name, data string
		want       string
	}{
		{"no colon", "alice:a\nhunter2\n", `PATH:2: no ':'; want "user:password"`},
		{"empty user", ":hunter2\n", `PATH:1: user name of 0 bytes; want 1 to 255`},
		{"long user", strings.Repeat("u", 256) + ":hunter2\n", `PATH:1: user name of 256 bytes; want 1 to 255`},
		{"empty password", "alice:\n", `PATH:1: password of 0 bytes for user "alice"; want 1 to 255`},
		{"long password", "\nalice:" + strings.Repeat("p", 256) + "\n", `PATH:2: password of 256 bytes for user "alice"; want 1 to 255`},
		{"duplicate", "alice:a\nbob:b\nalice:hunter2\n", `PATH:3: user "alice" is also on line 1 (list each user once)`},
		{"no users", "# nobody\n", `PATH: no users; want one "user:password" line per user`},
	}
	for _, tt := range bad {
		path := writeFile(t, dir, "bad", tt.data)
		got, err := LoadUsers(path)
		want := strings.ReplaceAll(tt.want, "PATH", path)
		if err == nil || err.Error() != want {
			t.Errorf("%s: LoadUsers = %v, %v\nwant error %s", tt.name, got, err, want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows a password: %v", tt.name, err)
		}
	}
	if _, err := LoadUsers(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadUsers of a missing file: %v", err)
	}
}

func TestCheckPrivate(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "key", "x")
	if err := CheckPrivate(path); err != nil {
		t.Errorf("CheckPrivate of a 0600 file: %v", err)
	}
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o644, 0o700 | 0o001} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		err := CheckPrivate(path)
		want := fmt.Sprintf("%s has mode %#o: readable by group or others (`chmod 600 %s`)", path, mode, path)
		if !errors.Is(err, ErrNotPrivate) || err.Error() != want {
			t.Errorf("CheckPrivate of a %#o file: %v, want %s", mode, err, want)
		}
	}
	if err := CheckPrivate(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotPrivate) {
		t.Errorf("CheckPrivate of a missing file: %v", err)
	}
}

// FuzzParseKeys feeds parseKeys arbitrary files: it must not panic, what it
// accepts must hold valid ids and keys, and its errors name the file and,
// for a line, its number.
func FuzzParseKeys(f *testing.F) {
	key := hex.EncodeToString(bytes.Repeat([]byte{7}, 32))
	f.Add([]byte("# clients\nlaptop " + key + " # Alice\n\nphone " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 64)) + "\r\n"))
	f.Add([]byte("a " + key + "\na " + key + "\n"))
	f.Add([]byte("a 00\n"))
	f.Add([]byte("a#b " + key))
	f.Add([]byte("\xff " + key + "\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseKeys(data, "keys")
		if err != nil {
			if keys != nil || !strings.HasPrefix(err.Error(), "keys:") {
				t.Fatalf("parseKeys = %v, %v", keys, err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("parseKeys accepted a file without keys")
		}
		for id, k := range keys {
			if checkKeyID(id) != nil || len(k) < keyMin || len(k) > keyMax {
				t.Fatalf("parseKeys accepted key id %q with a key of %d bytes", id, len(k))
			}
		}
	})
}

// FuzzParseUsers feeds parseUsers arbitrary files: it must not panic, what
// it accepts must fit SOCKS5, and its errors name the file.
func FuzzParseUsers(f *testing.F) {
	f.Add([]byte("# users\nalice:s3cret\r\n\nbob:pa:ss\n"))
	f.Add([]byte("alice\n"))
	f.Add([]byte(":x\nx:\n"))
	f.Add([]byte("a:b\na:c\n"))
	f.Add([]byte("  #a:b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseUsers(data, "users")
		if err != nil {
			if users != nil || !strings.HasPrefix(err.Error(), "users:") {
				t.Fatalf("parseUsers = %v, %v", users, err)
			}
			return
		}
		if len(users) == 0 {
			t.Fatal("parseUsers accepted a file without users")
		}
		for u, p := range users {
			if len(u) < 1 || len(u) > 255 || len(p) < 1 || len(p) > 255 || strings.ContainsAny(u, ":\n") || strings.Contains(p, "\n") {
				t.Fatalf("parseUsers accepted %q:%q", u, p)
			}
		}
	})
}

// TestKernelModeConverterNeedsCredentials: in kernel mode a converter
// set in [fallback] is used (over kernel MPTCP), so the table must be
// complete there too.
func TestKernelModeConverterNeedsCredentials(t *testing.T) {
	checkParseError(t, "mode = \"kernel\"\n[fallback]\nconverter = \"192.0.2.1:7445\"\n", 2, "fallback.key_id",
		[]string{"no way to authenticate to the converter"})
}
