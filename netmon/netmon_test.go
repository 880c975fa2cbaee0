package netmon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		linkKind string
		arphrd   uint16
		name     string
		want     Kind
	}{
		{"", arphrdLoopback, "lo", KindLoopback},
		{"veth", arphrdLoopback, "lo", KindLoopback}, // the hardware type wins for loopback
		{"", arphrdEther, "eth0", KindPhysical},
		{"", arphrdEther, "wlp2s0", KindPhysical}, // Wi-Fi is Ethernet to the kernel
		{"", arphrdEther, "", KindPhysical},
		{"", arphrdEEther, "eeth0", KindPhysical},
		{"", arphrdIEEE802, "tr0", KindPhysical},
		{"", arphrdInfiniband, "ib0", KindPhysical},
		{"", arphrdIEEE80211, "wifi0", KindPhysical},
		{"", arphrdIEEE80211Prism, "prism0", KindPhysical},
		{"", arphrdIEEE80211Radiotap, "mon0", KindPhysical},
		{"", arphrdEther, "br0", KindPhysical}, // no link kind: not a bridge, whatever its name
		{"veth", arphrdEther, "veth0", KindVeth},
		{"bridge", arphrdEther, "br0", KindBridge},
		{"vlan", arphrdEther, "eth0.10", KindVLAN},
		{"bond", arphrdEther, "bond0", KindBond},
		{"wireguard", arphrdNone, "wg0", KindWireGuard},
		{"tun", arphrdNone, "tun0", KindTun},
		{"tun", arphrdEther, "tap0", KindTun},
		{"dummy", arphrdEther, "dummy0", KindDummy},
		{"macvlan", arphrdEther, "mv0", KindMACVLAN},
		{"ipvlan", arphrdEther, "iv0", KindIPVLAN},
		{"vxlan", arphrdEther, "vx0", KindVXLAN},
		{"wwan", arphrdNone, "wwan0", KindWWAN},
		{"wwan", arphrdRawIP, "mhi_hwip0", KindWWAN},
		{"rmnet", arphrdRawIP, "rmnet_data0", KindWWAN},
		{"bridge", arphrdEther, "wwan0", KindBridge},      // a link kind wins over a name
		{"wireguard", arphrdNone, "wwan0", KindWireGuard}, // likewise
		{"", arphrdRawIP, "wwan0", KindWWAN},              // qmi_wwan in raw-IP mode
		{"", arphrdRawIP, "mhi_swip0", KindWWAN},          // raw IP is only ever a modem
		{"", arphrdNone, "rmnet_ipa0", KindWWAN},          // IPA's rmnet device
		{"", arphrdNone, "wwan1", KindWWAN},
		{"", arphrdEther, "wwan0", KindWWAN},          // qmi_wwan/cdc_mbim in Ethernet mode
		{"", arphrdEther, "wwp0s20f0u6i12", KindWWAN}, // systemd's predictable WWAN name
		{"", arphrdEther, "rmnet_usb0", KindWWAN},
		{"", arphrdInfiniband, "wwan-ib", KindPhysical}, // only Ethernet and address-less devices are modems by name
		{"", arphrdNone, "RMNET0", KindOther},           // names are case-sensitive
		{"", arphrdNone, "ppp0", KindOther},             // address-less and not a modem by name
		{"", arphrdNone, "wg0", KindOther},              // WireGuard without its link kind
		{"", 776, "sit0", KindOther},                    // ARPHRD_SIT
		{"", 280, "can0", KindOther},                    // ARPHRD_CAN: not an IP NIC
		{"", 0xffff, "x", KindOther},                    // ARPHRD_VOID
		{"sit", 776, "sit0", KindOther},                 // link kinds not listed
		{"gre", 778, "gre1", KindOther},
		{"vrf", arphrdEther, "vrf-blue", KindOther},
		{"team", arphrdEther, "team0", KindOther},
		{"macvtap", arphrdEther, "macvtap0", KindOther},
		{"VETH", arphrdEther, "v", KindOther},     // link kinds are case-sensitive
		{"loopback", arphrdEther, "x", KindOther}, // "loopback" is not a link kind
		{"unknown-future-kind", arphrdEther, "x0", KindOther},
	} {
		if got := classify(tc.linkKind, tc.arphrd, tc.name); got != tc.want {
			t.Errorf("classify(%q, %d, %q) = %q, want %q", tc.linkKind, tc.arphrd, tc.name, got, tc.want)
		}
	}
}

func u32(v uint32) *uint32 { return &v }

func TestLinkFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    rtnetlink.LinkMessage
		want Link
		ok   bool
	}{
		{
			name: "veth up with carrier",
			m: rtnetlink.LinkMessage{Type: arphrdEther, Index: 5, Flags: iffUp | iffRunning | iffLowerUp,
				Attributes: &rtnetlink.LinkAttributes{Name: "veth0", Type: 9, Info: &rtnetlink.LinkInfo{Kind: "veth"}}},
			want: Link{Index: 5, Name: "veth0", Kind: KindVeth, Up: true, Running: true}, // the peer is no parent
			ok:   true,
		},
		{
			name: "up without carrier",
			m:    rtnetlink.LinkMessage{Type: arphrdEther, Index: 2, Flags: iffUp, Attributes: &rtnetlink.LinkAttributes{Name: "eth0"}},
			want: Link{Index: 2, Name: "eth0", Kind: KindPhysical, Up: true},
			ok:   true,
		},
		{
			name: "carrier but not yet operationally up",
			m:    rtnetlink.LinkMessage{Type: arphrdEther, Index: 2, Flags: iffUp | iffLowerUp, Attributes: &rtnetlink.LinkAttributes{Name: "eth0"}},
			want: Link{Index: 2, Name: "eth0", Kind: KindPhysical, Up: true, Running: true},
			ok:   true,
		},
		{
			name: "running flag without up is not running",
			m:    rtnetlink.LinkMessage{Type: arphrdEther, Index: 2, Flags: iffRunning, Attributes: &rtnetlink.LinkAttributes{Name: "eth0"}},
			want: Link{Index: 2, Name: "eth0", Kind: KindPhysical},
			ok:   true,
		},
		{
			name: "vlan with parent",
			m: rtnetlink.LinkMessage{Type: arphrdEther, Index: 7, Flags: iffUp,
				Attributes: &rtnetlink.LinkAttributes{Name: "eth0.10", Type: 2, Info: &rtnetlink.LinkInfo{Kind: "vlan"}}},
			want: Link{Index: 7, Name: "eth0.10", Kind: KindVLAN, Up: true, ParentIndex: 2},
			ok:   true,
		},
		{
			name: "IFLA_LINK naming itself",
			m:    rtnetlink.LinkMessage{Type: arphrdEther, Index: 3, Attributes: &rtnetlink.LinkAttributes{Name: "x", Type: 3}},
			want: Link{Index: 3, Name: "x", Kind: KindPhysical},
			ok:   true,
		},
		{
			name: "bridge port: slave kind is not the kind",
			m: rtnetlink.LinkMessage{Type: arphrdEther, Index: 4,
				Attributes: &rtnetlink.LinkAttributes{Name: "eth1", Master: u32(9), Info: &rtnetlink.LinkInfo{SlaveKind: "bridge"}}},
			want: Link{Index: 4, Name: "eth1", Kind: KindPhysical},
			ok:   true,
		},
		{
			name: "no attributes",
			m:    rtnetlink.LinkMessage{Type: arphrdNone, Index: 4},
			want: Link{Index: 4, Kind: KindOther},
			ok:   true,
		},
		{name: "index 0", m: rtnetlink.LinkMessage{Type: arphrdEther}, ok: false},
		{name: "index past int32", m: rtnetlink.LinkMessage{Type: arphrdEther, Index: 1 << 31}, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := linkFrom(&tc.m)
			if ok != tc.ok {
				t.Fatalf("linkFrom ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); ok && diff != "" {
				t.Errorf("linkFrom (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddrFrom(t *testing.T) {
	v4 := net.IPv4(192, 0, 2, 1).To4()
	v6 := net.ParseIP("2001:db8::1")
	for _, tc := range []struct {
		name string
		m    rtnetlink.AddressMessage
		want Addr
		ok   bool
	}{
		{
			name: "IPv4 permanent",
			m: rtnetlink.AddressMessage{Family: afInet, PrefixLength: 24, Flags: ifaFPermanent, Index: 2,
				Attributes: &rtnetlink.AddressAttributes{Address: v4, Local: v4, Flags: ifaFPermanent}},
			want: Addr{Index: 2, Prefix: netip.MustParsePrefix("192.0.2.1/24"), Permanent: true},
			ok:   true,
		},
		{
			name: "IPv4 secondary is not temporary",
			m: rtnetlink.AddressMessage{Family: afInet, PrefixLength: 24, Flags: ifaFPermanent | ifaFTemporary, Index: 2,
				Attributes: &rtnetlink.AddressAttributes{Address: v4, Local: v4, Flags: ifaFPermanent | ifaFTemporary}},
			want: Addr{Index: 2, Prefix: netip.MustParsePrefix("192.0.2.1/24"), Permanent: true},
			ok:   true,
		},
		{
			name: "IPv4 point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer's",
			m: rtnetlink.AddressMessage{Family: afInet, PrefixLength: 32, Index: 6,
				Attributes: &rtnetlink.AddressAttributes{Address: net.IPv4(198, 51, 100, 10).To4(), Local: net.IPv4(198, 51, 100, 9).To4()}},
			want: Addr{Index: 6, Prefix: netip.MustParsePrefix("198.51.100.9/32")},
			ok:   true,
		},
		{
			name: "IPv6 temporary, deprecated, from IFA_FLAGS",
			m: rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Index: 3,
				Attributes: &rtnetlink.AddressAttributes{Address: v6, Flags: ifaFTemporary | ifaFDeprecated | 0x100}},
			want: Addr{Index: 3, Prefix: netip.MustParsePrefix("2001:db8::1/64"), Temporary: true, Deprecated: true},
			ok:   true,
		},
		{
			name: "IPv6 tentative, from ifa_flags alone (no IFA_FLAGS)",
			m: rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Flags: ifaFTentative | ifaFPermanent, Scope: 253, Index: 3,
				Attributes: &rtnetlink.AddressAttributes{Address: v6}},
			want: Addr{Index: 3, Prefix: netip.MustParsePrefix("2001:db8::1/64"), Scope: 253, Tentative: true, Permanent: true},
			ok:   true,
		},
		{name: "no attributes", m: rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Index: 3}},
		{name: "no address", m: rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Index: 3, Attributes: &rtnetlink.AddressAttributes{}}},
		{name: "IPv6 address in an IPv4 message", m: rtnetlink.AddressMessage{Family: afInet, PrefixLength: 24, Index: 3, Attributes: &rtnetlink.AddressAttributes{Address: v6}}},
		{name: "IPv4 address in an IPv6 message", m: rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 24, Index: 3, Attributes: &rtnetlink.AddressAttributes{Address: v4}}},
		{name: "prefix too long", m: rtnetlink.AddressMessage{Family: afInet, PrefixLength: 33, Index: 3, Attributes: &rtnetlink.AddressAttributes{Address: v4}}},
		{name: "other family", m: rtnetlink.AddressMessage{Family: 3, PrefixLength: 8, Index: 3, Attributes: &rtnetlink.AddressAttributes{Address: v4}}},
		{name: "index 0", m: rtnetlink.AddressMessage{Family: afInet, PrefixLength: 24, Attributes: &rtnetlink.AddressAttributes{Address: v4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := addrFrom(&tc.m)
			if ok != tc.ok {
				t.Fatalf("addrFrom ok = %v (%+v), want %v", ok, got, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); ok && diff != "" {
				t.Errorf("addrFrom (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoutesFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    rtnetlink.RouteMessage
		want []Route
	}{
		{
			name: "IPv4 default",
			m: rtnetlink.RouteMessage{Family: afInet, Table: 254, Type: rtnUnicast,
				Attributes: rtnetlink.RouteAttributes{Gateway: net.IPv4(192, 0, 2, 2).To4(), OutIface: 2, Table: 254}},
			want: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Index: 2, Table: 254}},
		},
		{
			name: "IPv6 default",
			m:    rtnetlink.RouteMessage{Family: afInet6, Table: 254, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{OutIface: 2, Table: 254}},
			want: []Route{{Dst: netip.MustParsePrefix("::/0"), Index: 2, Table: 254}},
		},
		{
			name: "table above 255 only in RTA_TABLE",
			m: rtnetlink.RouteMessage{Family: afInet, DstLength: 24, Table: 252, Type: rtnUnicast,
				Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(203, 0, 113, 0).To4(), OutIface: 4, Table: 1000}},
			want: []Route{{Dst: netip.MustParsePrefix("203.0.113.0/24"), Index: 4, Table: 1000}},
		},
		{
			name: "no RTA_TABLE",
			m: rtnetlink.RouteMessage{Family: afInet, DstLength: 24, Table: 100, Type: rtnUnicast,
				Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(203, 0, 113, 0).To4(), OutIface: 4}},
			want: []Route{{Dst: netip.MustParsePrefix("203.0.113.0/24"), Index: 4, Table: 100}},
		},
		{
			name: "multipath: one route per next hop",
			m: rtnetlink.RouteMessage{Family: afInet, Table: 254, Type: rtnUnicast,
				Attributes: rtnetlink.RouteAttributes{Table: 254, Multipath: []rtnetlink.NextHop{{Hop: rtnetlink.RTNextHop{IfIndex: 2}}, {Hop: rtnetlink.RTNextHop{IfIndex: 3}}}}},
			want: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Index: 2, Table: 254}, {Dst: netip.MustParsePrefix("0.0.0.0/0"), Index: 3, Table: 254}},
		},
		{
			name: "nexthop object: no interface",
			m:    rtnetlink.RouteMessage{Family: afInet, Table: 254, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{Table: 254}},
		},
		{name: "local", m: rtnetlink.RouteMessage{Family: afInet, DstLength: 32, Type: 2, Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(192, 0, 2, 1).To4(), OutIface: 2, Table: 255}}},
		{name: "blackhole", m: rtnetlink.RouteMessage{Family: afInet, DstLength: 24, Type: 6, Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(192, 0, 2, 0).To4(), Table: 254}}},
		{name: "cloned", m: rtnetlink.RouteMessage{Family: afInet6, DstLength: 128, Type: rtnUnicast, Flags: rtmFCloned, Attributes: rtnetlink.RouteAttributes{Dst: net.ParseIP("2001:db8::9"), OutIface: 2, Table: 254}}},
		{name: "multicast routing family", m: rtnetlink.RouteMessage{Family: 128, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{OutIface: 2, Table: 254}}},
		{name: "destination of the wrong family", m: rtnetlink.RouteMessage{Family: afInet, DstLength: 64, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{Dst: net.ParseIP("2001:db8::"), OutIface: 2, Table: 254}}},
		{name: "prefix too long", m: rtnetlink.RouteMessage{Family: afInet, DstLength: 40, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{OutIface: 2, Table: 254}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, routesFrom(&tc.m), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("routesFrom (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHasRoute(t *testing.T) {
	p := netip.MustParsePrefix
	s := State{
		Addrs: []Addr{
			{Index: 2, Prefix: p("192.0.2.1/28")},
			{Index: 2, Prefix: p("2001:db8::1/64")},
			{Index: 2, Prefix: p("fe80::1/64")},
			{Index: 3, Prefix: p("198.51.100.1/24")},
			{Index: 4, Prefix: p("203.0.113.1/24")},
		},
		Routes: []Route{
			{Dst: p("192.0.2.0/28"), Index: 2, Table: 254},
			{Dst: p("2001:db8::/64"), Index: 2, Table: 254},
			{Dst: p("fe80::/64"), Index: 2, Table: 254},
			{Dst: p("198.51.100.0/24"), Index: 3, Table: 254},
			{Dst: p("0.0.0.0/0"), Index: 3, Table: 254},
			{Dst: p("203.0.113.0/24"), Index: 4, Table: 254},
			{Dst: p("192.0.2.0/28"), Index: 4, Table: 100}, // another interface's subnet
			{Dst: p("::/0"), Index: 5, Table: 100},         // no address at all
		},
	}
	for index, want := range map[int]bool{1: false, 2: false, 3: true, 4: true, 5: true} {
		if got := s.HasRoute(index); got != want {
			t.Errorf("HasRoute(%d) = %v, want %v", index, got, want)
		}
	}
}

func TestBuildState(t *testing.T) {
	links := []*rtnetlink.LinkMessage{
		{Type: arphrdEther, Index: 3, Flags: iffUp, Attributes: &rtnetlink.LinkAttributes{Name: "mv0", Type: 2, Info: &rtnetlink.LinkInfo{Kind: "macvlan"}}},
		{Type: arphrdEther, Index: 2, Flags: iffUp, Attributes: &rtnetlink.LinkAttributes{Name: "eth0"}},
		// A VLAN whose parent stayed in another namespace.
		{Type: arphrdEther, Index: 4, Attributes: &rtnetlink.LinkAttributes{Name: "eth9.5", Type: 9, Info: &rtnetlink.LinkInfo{Kind: "vlan"}}},
		{Type: arphrdEther}, // index 0: dropped
	}
	v6 := net.ParseIP("2001:db8::1")
	addrs := []*rtnetlink.AddressMessage{
		{Family: afInet6, PrefixLength: 64, Index: 3, Attributes: &rtnetlink.AddressAttributes{Address: v6}},
		{Family: afInet, PrefixLength: 24, Index: 3, Attributes: &rtnetlink.AddressAttributes{Local: net.IPv4(198, 51, 100, 1).To4()}},
		{Family: afInet, PrefixLength: 28, Index: 2, Attributes: &rtnetlink.AddressAttributes{Local: net.IPv4(192, 0, 2, 1).To4()}},
		{Family: afInet, PrefixLength: 28, Index: 2}, // no attributes: dropped
	}
	routes := []*rtnetlink.RouteMessage{
		{Family: afInet, DstLength: 24, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(198, 51, 100, 0).To4(), OutIface: 3, Table: 254}},
		{Family: afInet, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{OutIface: 3, Table: 254}},
		{Family: afInet, DstLength: 28, Type: rtnUnicast, Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(192, 0, 2, 0).To4(), OutIface: 2, Table: 254}},
		{Family: afInet, DstLength: 32, Type: 2, Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(192, 0, 2, 1).To4(), OutIface: 2, Table: 255}},
	}
	p := netip.MustParsePrefix
	want := State{
		Links: map[int]Link{
			2: {Index: 2, Name: "eth0", Kind: KindPhysical, Up: true},
			3: {Index: 3, Name: "mv0", Kind: KindMACVLAN, Up: true, ParentIndex: 2},
			4: {Index: 4, Name: "eth9.5", Kind: KindVLAN},
		},
		Addrs: []Addr{
			{Index: 2, Prefix: p("192.0.2.1/28")},
			{Index: 3, Prefix: p("198.51.100.1/24")},
			{Index: 3, Prefix: p("2001:db8::1/64")},
		},
		Routes: []Route{
			{Dst: p("192.0.2.0/28"), Index: 2, Table: 254},
			{Dst: p("0.0.0.0/0"), Index: 3, Table: 254},
			{Dst: p("198.51.100.0/24"), Index: 3, Table: 254},
		},
	}
	got := buildState(links, addrs, routes)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("buildState (-want +got):\n%s", diff)
	}
	if !got.HasRoute(3) || got.HasRoute(2) {
		t.Errorf("HasRoute(3), HasRoute(2) = %v, %v; want true, false", got.HasRoute(3), got.HasRoute(2))
	}
}

// readSeed reads a file of the fuzz corpus: a message type and its body.
func readSeed(t *testing.T, name string) (uint16, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzMessage", name))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" {
		t.Fatalf("seed %s: not a two-value corpus file", name)
	}
	typ, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(lines[1], "uint16("), ")"), 10, 16)
	if err != nil {
		t.Fatalf("seed %s: type: %v", name, err)
	}
	data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("seed %s: body: %v", name, err)
	}
	return uint16(typ), []byte(data)
}

// TestKernelMessages decodes messages a 6.18 kernel sent (the seed corpus)
// and checks what a user would see of them.
func TestKernelMessages(t *testing.T) {
	p := netip.MustParsePrefix
	links := map[string]Link{
		"link_loopback":          {Index: 1, Name: "lo", Kind: KindLoopback, Up: true, Running: true},
		"link_veth":              {Index: 2, Name: "veth0", Kind: KindVeth, Up: true, Running: true},
		"link_bridge":            {Index: 3, Name: "br0", Kind: KindBridge, Up: true, Running: true},
		"link_macvlan_on_bridge": {Index: 4, Name: "mv0", Kind: KindMACVLAN, Up: true, Running: true, ParentIndex: 3},
		"link_vxlan_down":        {Index: 5, Name: "vx0", Kind: KindVXLAN},
		"link_tun_down":          {Index: 6, Name: "tun0", Kind: KindTun},
		"event_dellink_tap":      {Index: 7, Name: "tap0", Kind: KindTun},
	}
	for name, want := range links {
		_, data := readSeed(t, name)
		var m rtnetlink.LinkMessage
		if err := m.UnmarshalBinary(data); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got, ok := linkFrom(&m); !ok || got != want {
			t.Errorf("%s: linkFrom = %+v, %v; want %+v", name, got, ok, want)
		}
	}
	addrs := map[string]Addr{
		"addr_v4_loopback":           {Index: 1, Prefix: p("127.0.0.1/8"), Scope: 254, Permanent: true},
		"addr_v4_primary":            {Index: 2, Prefix: p("192.0.2.1/28"), Permanent: true},
		"addr_v4_peer":               {Index: 6, Prefix: p("198.51.100.9/32"), Permanent: true},
		"addr_v6_tentative":          {Index: 2, Prefix: p("2001:db8:0:ff::5/64"), Tentative: true, Permanent: true},
		"addr_v6_nodad":              {Index: 2, Prefix: p("2001:db8::1/64"), Permanent: true},
		"addr_v6_linklocal":          {Index: 2, Prefix: p("fe80::9483:b3ff:fec1:4e7a/64"), Scope: 253, Permanent: true},
		"event_deladdr_v4_secondary": {Index: 2, Prefix: p("203.0.113.7/24"), Permanent: true},
	}
	for name, want := range addrs {
		_, data := readSeed(t, name)
		var m rtnetlink.AddressMessage
		if err := m.UnmarshalBinary(data); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got, ok := addrFrom(&m); !ok || got != want {
			t.Errorf("%s: addrFrom = %+v, %v; want %+v", name, got, ok, want)
		}
	}
	routes := map[string][]Route{
		"route_v4_multipath_table100": {{Dst: p("203.0.113.128/25"), Index: 2, Table: 100}, {Dst: p("203.0.113.128/25"), Index: 4, Table: 100}},
		"route_v4_default":            {{Dst: p("0.0.0.0/0"), Index: 2, Table: 254}},
		"route_v4_connected":          {{Dst: p("192.0.2.0/28"), Index: 2, Table: 254}},
		"route_v6_connected":          {{Dst: p("2001:db8::/64"), Index: 2, Table: 254}},
		"route_v6_default":            {{Dst: p("::/0"), Index: 2, Table: 254}},
		"route_v4_blackhole":          nil,
		"route_v4_local":              nil,
		"route_v4_broadcast":          nil,
		"route_v6_local":              nil,
		"route_v6_multicast":          nil,
		"event_delroute_v4_local":     nil,
	}
	for name, want := range routes {
		typ, data := readSeed(t, name)
		var m rtnetlink.RouteMessage
		if err := m.UnmarshalBinary(data); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := routesFrom(&m)
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("%s: routesFrom (-want +got):\n%s", name, diff)
		}
		// A notification of a route State does not list wakes nobody.
		nm := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data}
		if rel := relevant(nm); rel != (len(want) > 0) {
			t.Errorf("%s: relevant = %v, want %v", name, rel, len(want) > 0)
		}
	}
}

func TestRelevant(t *testing.T) {
	for _, tc := range []struct {
		typ  netlink.HeaderType
		data []byte
		want bool
	}{
		{rtmNewLink, nil, true},
		{rtmDelLink, nil, true},
		{rtmNewAddr, nil, true},
		{rtmDelAddr, nil, true},
		{rtmNewRoute, []byte{1, 2, 3}, true}, // undecodable: re-read to be safe
		{rtmDelRoute, nil, true},
		{netlink.Done, nil, false},
		{28, nil, false}, // RTM_NEWNEIGH
	} {
		if got := relevant(netlink.Message{Header: netlink.Header{Type: tc.typ}, Data: tc.data}); got != tc.want {
			t.Errorf("relevant(type %d, % x) = %v, want %v", tc.typ, tc.data, got, tc.want)
		}
	}
}

// FuzzMessage feeds notifications and dump replies through rtnetlink/v2's
// decoding and this package's conversions.
func FuzzMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		_ = relevant(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data})
		switch typ {
		case rtmNewLink, rtmDelLink:
			var m rtnetlink.LinkMessage
			if m.UnmarshalBinary(data) != nil {
				return
			}
			if l, ok := linkFrom(&m); ok {
				if l.Index <= 0 || l.Kind == "" || (l.Running && !l.Up) || l.ParentIndex < 0 {
					t.Fatalf("linkFrom(%+v) = %+v", m, l)
				}
				_ = buildState([]*rtnetlink.LinkMessage{&m}, nil, nil)
			}
		case rtmNewAddr, rtmDelAddr:
			direct, directOK, err := decodeAddr(data)
			var m rtnetlink.AddressMessage
			if m.UnmarshalBinary(data) != nil {
				return
			}
			a, ok := addrFrom(&m)
			if ok {
				if a.Index <= 0 || !a.Prefix.IsValid() || a.Prefix.Addr().Zone() != "" || (a.Temporary && a.Prefix.Addr().Is4()) {
					t.Fatalf("addrFrom(%+v) = %+v", m, a)
				}
			}
			// The notifications' own decoder agrees with rtnetlink's.
			if err != nil || directOK != ok || direct != a {
				t.Fatalf("decodeAddr = %+v, %t, %v; addrFrom of rtnetlink's decoding = %+v, %t", direct, directOK, err, a, ok)
			}
		case rtmNewRoute, rtmDelRoute:
			var m rtnetlink.RouteMessage
			if m.UnmarshalBinary(data) != nil {
				return
			}
			rs := routesFrom(&m)
			for _, r := range rs {
				if r.Index <= 0 || !r.Dst.IsValid() || r.Dst != r.Dst.Masked() {
					t.Fatalf("routesFrom(%+v) = %+v", m, rs)
				}
			}
			s := buildState(nil, nil, []*rtnetlink.RouteMessage{&m})
			for _, r := range rs {
				if !s.HasRoute(r.Index) {
					t.Fatalf("HasRoute(%d) = false with no addresses and route %+v", r.Index, r)
				}
			}
		}
	})
}

func TestOptions(t *testing.T) {
	o, err := newOptions(nil)
	if err != nil || o.debounce != DefaultDebounce || o.netns != 0 {
		t.Errorf("newOptions() = %+v, %v; want debounce %s, namespace 0", o, err, DefaultDebounce)
	}
	o, err = newOptions([]Option{WithNetNS(7), WithDebounce(0)})
	if err != nil || o.debounce != 0 || o.netns != 7 {
		t.Errorf("newOptions(WithNetNS(7), WithDebounce(0)) = %+v, %v", o, err)
	}
	if _, err := newOptions([]Option{WithDebounce(-time.Second)}); err == nil || !strings.Contains(err.Error(), "debounce") {
		t.Errorf("newOptions(WithDebounce(-1s)) = %v, want an error naming the debounce", err)
	}
	if _, err := newOptions([]Option{WithNetNS(-1)}); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("newOptions(WithNetNS(-1)) = %v, want an error naming the namespace", err)
	}
	if _, err := New(WithDebounce(-time.Second)); err == nil {
		t.Error("New(WithDebounce(-1s)) succeeded")
	}
}

// fakeSource is an eventSource fed by the test; its read deadline behaves
// as a socket's.
type fakeSource struct {
	batches chan error     // nil: a relevant batch; errEventsLost or another error
	added   chan []NewAddr // a relevant batch with new addresses

	mu      sync.Mutex
	expired chan struct{} // closed while the deadline is in the past
	closed  bool
}

func newFakeSource() *fakeSource {
	return &fakeSource{batches: make(chan error), added: make(chan []NewAddr), expired: make(chan struct{})}
}

func (f *fakeSource) next() (batch, error) {
	f.mu.Lock()
	expired := f.expired
	f.mu.Unlock()
	select {
	case err := <-f.batches:
		return batch{changed: err == nil || errors.Is(err, errEventsLost)}, err
	case added := <-f.added:
		return batch{changed: true, added: added}, nil
	case <-expired:
		return batch{}, os.ErrDeadlineExceeded
	}
}

func (f *fakeSource) commit() {}

func (f *fakeSource) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.expired:
		if t.IsZero() || t.After(time.Now()) {
			f.expired = make(chan struct{})
		}
	default:
		if !t.IsZero() && !t.After(time.Now()) {
			close(f.expired)
		}
	}
	return nil
}

func (f *fakeSource) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

type fakeReader struct{ s State }

func (r fakeReader) read() (State, error) { return r.s, nil }
func (fakeReader) Close() error           { return nil }

// startFake runs a Monitor on a fakeSource; the returned channel gets Run's
// result.
func startFake(t *testing.T, debounce time.Duration) (*Monitor, *fakeSource, context.CancelFunc, <-chan error) {
	t.Helper()
	src := newFakeSource()
	m := newMonitor(options{debounce: debounce}, src, fakeReader{})
	ctx, cancel := context.WithCancel(context.Background())
	runc := make(chan error, 1)
	go func() { runc <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = m.Close()
	})
	return m, src, cancel, runc
}

func send(t *testing.T, src *fakeSource, err error) {
	t.Helper()
	select {
	case src.batches <- err:
	case <-time.After(5 * time.Second):
		t.Fatal("the pump did not read a batch within 5s")
	}
}

func waitChange(t *testing.T, m *Monitor, within time.Duration) {
	t.Helper()
	select {
	case <-m.Changes():
	case <-time.After(within):
		t.Fatalf("no change signalled within %s", within)
	}
}

func noChange(t *testing.T, m *Monitor, during time.Duration) {
	t.Helper()
	select {
	case <-m.Changes():
		t.Fatalf("a change was signalled within %s, want none", during)
	case <-time.After(during):
	}
}

// TestRunDebounces: the first change after a quiet spell is signalled at
// once; the rest of a burst gives exactly one more wake-up, at the end of
// the debounce window; then quiet.
func TestRunDebounces(t *testing.T) {
	const debounce = 300 * time.Millisecond
	m, src, _, _ := startFake(t, debounce)
	start := time.Now()
	send(t, src, nil)
	waitChange(t, m, debounce/2)
	for range 49 {
		send(t, src, nil)
	}
	waitChange(t, m, 5*time.Second)
	if d := time.Since(start); d < debounce {
		t.Errorf("the burst's second wake-up came %s after the first notification, before the %s window ended", d, debounce)
	}
	noChange(t, m, 2*debounce)

	// A later change, after the quiet spell, wakes at once.
	send(t, src, nil)
	waitChange(t, m, debounce/2)
}

func TestRunNoDebounce(t *testing.T) {
	m, src, _, _ := startFake(t, 0)
	send(t, src, nil)
	waitChange(t, m, time.Second)
	send(t, src, nil)
	waitChange(t, m, time.Second)
}

func TestRunEventsLost(t *testing.T) {
	m, src, _, runc := startFake(t, time.Millisecond)
	send(t, src, errEventsLost)
	waitChange(t, m, 5*time.Second)
	// Run goes on.
	send(t, src, nil)
	waitChange(t, m, 5*time.Second)
	select {
	case err := <-runc:
		t.Fatalf("Run returned %v after lost events, want it to go on", err)
	default:
	}
}

func TestRunSourceError(t *testing.T) {
	_, src, _, runc := startFake(t, time.Millisecond)
	boom := errors.New("boom")
	send(t, src, boom)
	select {
	case err := <-runc:
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "receiving rtnetlink notifications") {
			t.Errorf("Run = %v, want the source's error with context", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the source failed")
	}
}

// pumpRunning reports whether a pump goroutine exists.
func pumpRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "netmon.(*Monitor).pump")
}

func TestRunStopsOnCancel(t *testing.T) {
	m, src, cancel, runc := startFake(t, 10*time.Second)
	send(t, src, nil) // a debounce timer is pending
	start := time.Now()
	cancel()
	wantRunStopped(t, start, runc)
	// Run again: the past deadline of the first run must not stop it.
	ctx, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	runc2 := make(chan error, 1)
	go func() { runc2 <- m.Run(ctx) }()
	send(t, src, nil)
	cancel2()
	if err := <-runc2; err != nil {
		t.Errorf("second Run = %v, want nil", err)
	}
}

func TestClose(t *testing.T) {
	m, src, _, runc := startFake(t, time.Millisecond)
	send(t, src, nil) // Run is running
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	// Close waited for Run.
	select {
	case err := <-runc:
		if err != nil {
			t.Errorf("Run = %v after Close, want nil", err)
		}
	default:
		t.Fatal("Close returned before Run did")
	}
	if pumpRunning() {
		t.Error("the pump goroutine outlived Close")
	}
	src.mu.Lock()
	closed := src.closed
	src.mu.Unlock()
	if !closed {
		t.Error("Close did not close the notification socket")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := m.State(); !errors.Is(err, ErrClosed) {
		t.Errorf("State after Close = %v, want ErrClosed", err)
	}
	if err := m.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestRunTwice(t *testing.T) {
	m, src, _, _ := startFake(t, time.Millisecond)
	send(t, src, nil) // the first Run is running
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second concurrent Run = %v, want an error", err)
	}
}

// wantRunStopped checks that Run, cancelled at start, returned nil within a
// second and left no pump goroutine behind.
func wantRunStopped(t *testing.T, start time.Time, runc <-chan error) {
	t.Helper()
	select {
	case err := <-runc:
		if err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Run returned %s after cancel, want < 1s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	if pumpRunning() {
		t.Error("the pump goroutine outlived Run")
	}
}

// TestRunNewAddrs: new addresses go to the WithNewAddrs callback before
// Changes is signalled.
func TestRunNewAddrs(t *testing.T) {
	a := NewAddr{
		Addr: Addr{Index: 2, Prefix: netip.MustParsePrefix("192.0.2.10/24")},
		Link: Link{Index: 2, Name: "wlan0", Up: true, Running: true},
	}
	type call struct {
		added     []NewAddr
		signalled bool
	}
	calls := make(chan call, 1)
	var m *Monitor
	o := options{onNewAddrs: func(added []NewAddr) {
		calls <- call{added, len(m.Changes()) > 0}
	}}
	src := newFakeSource()
	m = newMonitor(o, src, fakeReader{})
	ctx, cancel := context.WithCancel(context.Background())
	runc := make(chan error, 1)
	go func() { runc <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-runc
	}()

	select {
	case src.added <- []NewAddr{a}:
	case <-time.After(5 * time.Second):
		t.Fatal("the pump did not read a batch within 5s")
	}
	waitChange(t, m, 5*time.Second)
	select {
	case c := <-calls:
		if c.signalled {
			t.Error("Changes was signalled before the callback")
		}
		if len(c.added) != 1 || c.added[0] != a {
			t.Errorf("callback got %+v, want %+v", c.added, a)
		}
	default:
		t.Fatal("callback not called")
	}
}
