package capture

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"redirect only", Config{RedirectPort: 7777}, ""},
		{"tproxy only", Config{TProxyPort: 7778, TProxyInterfaces: []string{"eth0", "wlan0"}}, ""},
		{"everything", Config{Table: "mpx-1.a_b", RedirectPort: 1, TProxyPort: 2, Mark: 1, TProxyMark: 2, RouteTable: 100,
			Exclude: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/24"), netip.MustParsePrefix("2001:db8::/32")}, Ports: []uint16{80, 443}}, ""},
		{"nothing to capture", Config{}, "RedirectPort and TProxyPort are both 0"},
		{"same ports", Config{RedirectPort: 7777, TProxyPort: 7777}, "RedirectPort and TProxyPort are both 7777"},
		{"table with space", Config{Table: "my table", RedirectPort: 1}, "Table: invalid name"},
		{"table starting with digit", Config{Table: "1abc", RedirectPort: 1}, "Table: invalid name"},
		{"table too long", Config{Table: long, RedirectPort: 1}, "Table: name is 256 bytes long"},
		{"interfaces without tproxy", Config{RedirectPort: 1, TProxyInterfaces: []string{"eth0"}}, "TProxyInterfaces [\"eth0\"] given but TProxyPort is 0"},
		{"empty interface", Config{TProxyPort: 1, TProxyInterfaces: []string{""}}, "TProxyInterfaces[0]: empty interface name"},
		{"long interface", Config{TProxyPort: 1, TProxyInterfaces: []string{"eth0", "abcdefghijklmnop"}}, "TProxyInterfaces[1]: interface name \"abcdefghijklmnop\" is 16 bytes"},
		{"slash interface", Config{TProxyPort: 1, TProxyInterfaces: []string{"a/b"}}, "TProxyInterfaces[0]: invalid interface name"},
		{"lo interface", Config{TProxyPort: 1, TProxyInterfaces: []string{"lo"}}, "TProxyInterfaces[0]: \"lo\" cannot be a TPROXY interface"},
		{"duplicate interface", Config{TProxyPort: 1, TProxyInterfaces: []string{"eth0", "eth0"}}, "TProxyInterfaces[1]: \"eth0\" is listed twice"},
		{"too many interfaces", Config{TProxyPort: 1, TProxyInterfaces: make([]string, MaxInterfaces+1)}, "TProxyInterfaces has 257 names"},
		{"same marks", Config{RedirectPort: 1, Mark: 5, TProxyMark: 5}, "Mark and TProxyMark are both 0x5"},
		{"mark equals default tproxy mark", Config{RedirectPort: 1, Mark: DefaultTProxyMark}, "Mark and TProxyMark are both 0x4d51"},
		{"main table", Config{TProxyPort: 1, RouteTable: 254}, "RouteTable 254 is one of the kernel's own tables"},
		{"local table", Config{TProxyPort: 1, RouteTable: 255}, "RouteTable 255"},
		{"invalid prefix", Config{RedirectPort: 1, Exclude: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), {}}}, "Exclude[1]: invalid prefix"},
		{"mapped prefix", Config{RedirectPort: 1, Exclude: []netip.Prefix{netip.MustParsePrefix("::ffff:192.0.2.1/128")}}, "Exclude[0]: ::ffff:192.0.2.1/128 is an IPv4-mapped"},
		{"too many prefixes", Config{RedirectPort: 1, Exclude: make([]netip.Prefix, MaxExclude+1)}, "Exclude has 1025 prefixes"},
		{"port zero", Config{RedirectPort: 1, Ports: []uint16{80, 0}}, "Ports[1]: port 0"},
		{"duplicate port", Config{RedirectPort: 1, Ports: []uint16{80, 443, 80}}, "Ports[2]: port 80 is listed twice"},
		{"too many ports", Config{RedirectPort: 1, Ports: make([]uint16, MaxPorts+1)}, "Ports has 1025 ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	got := Config{RedirectPort: 1}.withDefaults()
	if got.Table != "mptcpd" || got.Mark != 0x4d50 || got.TProxyMark != 0x4d51 || got.RouteTable != 0x4d51 {
		t.Errorf("defaults = table %q mark %#x tproxy mark %#x route table %d", got.Table, got.Mark, got.TProxyMark, got.RouteTable)
	}
	set := Config{Table: "t", Mark: 1, TProxyMark: 2, RouteTable: 3}.withDefaults()
	if set.Table != "t" || set.Mark != 1 || set.TProxyMark != 2 || set.RouteTable != 3 {
		t.Errorf("withDefaults changed set fields: %+v", set)
	}
}
