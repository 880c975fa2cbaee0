package nm

import (
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestFlagsString(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{0, "default"},
		{FlagDisabled, "disabled"},
		{FlagEnabled | FlagSubflow, "enabled,subflow"},
		{FlagSignal | FlagSubflow | FlagBackup | FlagFullmesh, "signal,subflow,backup,fullmesh"},
		{FlagAlsoWithoutSysctl | FlagAlsoWithoutDefaultRoute, "also-without-sysctl,also-without-default-route"},
		{0x120, "subflow,0x100"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(0x%x).String() = %q, want %q", uint32(tc.f), got, tc.want)
		}
	}
}

// TestManages checks the rule NetworkManager documents for
// connection.mptcp-flags.
func TestManages(t *testing.T) {
	route := func(has bool) func(string) bool { return func(string) bool { return has } }
	on := Conditions{MPTCPEnabled: true, DefaultRoute: route(true)}
	for _, tc := range []struct {
		name string
		f    Flags
		c    Conditions
		want bool
		why  string
	}{
		{"default, sysctl on, default route", 0, on, true, "mptcp-flags default, which is enabled,subflow"},
		{"default, routes not known", 0, Conditions{MPTCPEnabled: true}, true, "a default route is assumed"},
		{"default, sysctl off", 0, Conditions{DefaultRoute: route(true)}, false, "net.mptcp.enabled is 0"},
		{"default, no default route", 0, Conditions{MPTCPEnabled: true, DefaultRoute: route(false)}, false, "no default route on eth0"},
		{"disabled", FlagDisabled, on, false, "mptcp-flags disabled"},
		{"disabled wins over the rest", FlagDisabled | FlagEnabled | FlagSubflow | FlagAlsoWithoutSysctl, on, false, "disabled"},
		{"subflow implies enabled", FlagSubflow, on, true, "mptcp-flags subflow"},
		{"signal implies enabled", FlagSignal, on, true, "signal"},
		{"enabled alone", FlagEnabled, on, true, "enabled"},
		{"a flag from a newer NetworkManager", 0x100, on, true, "0x100"},
		{"sysctl off", FlagSubflow, Conditions{DefaultRoute: route(true)}, false, "net.mptcp.enabled is 0"},
		{"also-without-sysctl", FlagSubflow | FlagAlsoWithoutSysctl, Conditions{DefaultRoute: route(true)}, true, "also-without-sysctl"},
		{"no default route", FlagSubflow, Conditions{MPTCPEnabled: true, DefaultRoute: route(false)}, false, "no default route"},
		{"also-without-default-route", FlagSubflow | FlagAlsoWithoutDefaultRoute, Conditions{MPTCPEnabled: true, DefaultRoute: route(false)}, true, "also-without-default-route"},
		{"both overrides, nothing else", FlagAlsoWithoutSysctl | FlagAlsoWithoutDefaultRoute, Conditions{DefaultRoute: route(false)}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := tc.f.Manages(tc.c, "eth0")
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("Flags(0x%x).Manages = %v, %q; want %v, with %q", uint32(tc.f), got, why, tc.want, tc.why)
			}
		})
	}
}

// TestManaged: only devices with an applied connection in an active
// state count, by their IP interface.
func TestManaged(t *testing.T) {
	devs := []Device{
		{Path: "/1", Interface: "eth0", State: StateActivated, Applied: true, Flags: FlagSubflow},
		{Path: "/2", Interface: "eth1", State: StateActivated, Applied: true, Flags: FlagDisabled},
		{Path: "/3", Interface: "wlan0", State: StatePrepare, Applied: true},
		{Path: "/4", Interface: "wlan1", State: 30, Applied: true, Flags: FlagSubflow}, // disconnected
		{Path: "/5", Interface: "eth2", State: StateActivated},                         // no applied connection
		{Path: "/6", Interface: "eth3", State: 120, Applied: true},                     // failed
		{Path: "/7", Interface: "eth4", State: StateDeactivating, Applied: true},
	}
	got := Managed(devs, Conditions{MPTCPEnabled: true})
	want := map[string]bool{"eth0": true, "wlan0": true, "eth4": true}
	if len(got) != len(want) {
		t.Errorf("Managed = %v, want the interfaces %v", got, want)
	}
	for name := range want {
		if got[name] == "" {
			t.Errorf("Managed = %v: %s missing, or without a reason", got, name)
		}
	}
}

func TestValidInterface(t *testing.T) {
	for _, ok := range []string{"eth0", "wlp3s0", "a", "123456789012345", "veth-1.2@x"} {
		if err := validInterface(ok); err != nil {
			t.Errorf("validInterface(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "1234567890123456", "a/b", "a:b", "a b", "a\nb", "a\x00"} {
		if err := validInterface(bad); err == nil {
			t.Errorf("validInterface(%q) = nil, want an error", bad)
		}
	}
}

// variantOf returns a value of one of several D-Bus types, chosen by kind,
// and whether it is a u; nil for a missing value.
func variantOf(kind uint8, n uint64, s string) (*dbus.Variant, bool) {
	var v any
	switch kind % 7 {
	case 0:
		v = uint32(n)
	case 1:
		v = int32(n)
	case 2:
		v = s
	case 3:
		v = n
	case 4:
		v = n%2 == 1
	case 5:
		return nil, false
	case 6:
		v = []string{s}
	}
	dv := dbus.MakeVariant(v)
	return &dv, kind%7 == 0
}

// FuzzFlagsFrom: an applied connection's mptcp-flags of any type is
// either taken, when it is a u, missing (the default), or refused with an
// error naming its type; never a panic.
func FuzzFlagsFrom(f *testing.F) {
	f.Add(uint8(0), uint64(0x20), "")
	f.Add(uint8(2), uint64(0), "subflow")
	f.Add(uint8(5), uint64(0), "")
	f.Add(uint8(3), uint64(1<<40), "")
	f.Fuzz(func(t *testing.T, kind uint8, n uint64, s string) {
		v, isU := variantOf(kind, n, s)
		settings := map[string]map[string]dbus.Variant{"connection": {"id": dbus.MakeVariant(s)}}
		if v != nil {
			settings["connection"]["mptcp-flags"] = *v
		}
		got, err := flagsFrom(settings)
		switch {
		case v == nil && (err != nil || got != 0):
			t.Errorf("missing mptcp-flags: %v, %v; want the default 0", got, err)
		case isU && (err != nil || got != Flags(uint32(n))):
			t.Errorf("mptcp-flags u %d: %v, %v", uint32(n), got, err)
		case v != nil && !isU && (err == nil || !strings.Contains(err.Error(), "want u")):
			t.Errorf("mptcp-flags of type %s: %v, %v; want an error naming the type", v.Signature(), got, err)
		}
	})
}

// FuzzDeviceFrom: a device's properties of any type and any name are
// either taken, when they are right, or refused with an error; never a
// panic, and never an invalid interface name taken.
func FuzzDeviceFrom(f *testing.F) {
	f.Add("eth0", "", uint8(0), uint64(100))
	f.Add("eth0", "ppp0", uint8(0), uint64(70))
	f.Add("a/b", "", uint8(0), uint64(100))
	f.Add("eth0", "", uint8(2), uint64(100))
	f.Fuzz(func(t *testing.T, name, ipName string, kind uint8, n uint64) {
		props := map[string]dbus.Variant{"Interface": dbus.MakeVariant(name)}
		if ipName != "" {
			props["IpInterface"] = dbus.MakeVariant(ipName)
		}
		v, isU := variantOf(kind, n, name)
		if v != nil {
			props["State"] = *v
		}
		d, err := deviceFrom("/x", props)
		if err != nil {
			return
		}
		if !isU || d.State != DeviceState(uint32(n)) {
			t.Errorf("state %v taken as %d", v, d.State)
		}
		if validInterface(d.Interface) != nil {
			t.Errorf("invalid interface name %q taken", d.Interface)
		}
		want := name
		if ipName != "" {
			want = ipName
		}
		if d.Interface != want {
			t.Errorf("interface %q, want %q (the IP interface when there is one)", d.Interface, want)
		}
	})
}
