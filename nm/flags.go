// Package nm asks NetworkManager, over D-Bus on the system bus, on which
// interfaces it manages MPTCP endpoints, and follows its changes, so that
// mptcpd can leave those interfaces to it.
//
// NetworkManager (1.40 and later) configures MPTCP endpoints for the
// addresses of a device as the connection.mptcp-flags of the connection
// applied to it say. Flags and Conditions hold that rule; Client reads the
// devices and their applied connections and watches for changes.
package nm

import (
	"fmt"
	"strings"
)

// Flags are the values of a connection's connection.mptcp-flags.
type Flags uint32

// The flags, as NetworkManager numbers them.
const (
	// FlagDisabled: no MPTCP endpoints on the device, whatever else is set.
	FlagDisabled Flags = 0x1
	// FlagEnabled: endpoints are configured; implied by any other flag.
	FlagEnabled Flags = 0x2
	// FlagAlsoWithoutSysctl: configure endpoints even while
	// net.mptcp.enabled is 0.
	FlagAlsoWithoutSysctl Flags = 0x4
	// FlagAlsoWithoutDefaultRoute: configure endpoints even on an
	// interface without a default route.
	FlagAlsoWithoutDefaultRoute Flags = 0x8
	// The endpoint flags, as ip-mptcp(8) names them.
	FlagSignal   Flags = 0x10
	FlagSubflow  Flags = 0x20
	FlagBackup   Flags = 0x40
	FlagFullmesh Flags = 0x80
)

// DefaultFlags are what NetworkManager uses for a connection whose
// mptcp-flags are 0 (the default) when NetworkManager.conf sets no default
// of its own.
const DefaultFlags = FlagEnabled | FlagSubflow

// flagName returns the name of one flag, "" if it has none.
func flagName(f Flags) string {
	switch f {
	case FlagDisabled:
		return "disabled"
	case FlagEnabled:
		return "enabled"
	case FlagAlsoWithoutSysctl:
		return "also-without-sysctl"
	case FlagAlsoWithoutDefaultRoute:
		return "also-without-default-route"
	case FlagSignal:
		return "signal"
	case FlagSubflow:
		return "subflow"
	case FlagBackup:
		return "backup"
	case FlagFullmesh:
		return "fullmesh"
	}
	return ""
}

// String returns the flags as nmcli writes them ("enabled,subflow"),
// "default" for 0, with bits it does not know in hexadecimal.
func (f Flags) String() string {
	if f == 0 {
		return "default"
	}
	var parts []string
	for bit := Flags(1); bit != 0; bit <<= 1 {
		if f&bit == 0 {
			continue
		}
		if name := flagName(bit); name != "" {
			parts = append(parts, name)
		} else {
			parts = append(parts, fmt.Sprintf("0x%x", uint32(bit)))
		}
	}
	return strings.Join(parts, ",")
}

// Conditions are what the caller knows of the namespace NetworkManager
// runs in, which decide whether enabled flags make endpoints.
type Conditions struct {
	// MPTCPEnabled is net.mptcp.enabled.
	MPTCPEnabled bool
	// DefaultRoute reports whether the named interface carries a default
	// route (0.0.0.0/0 or ::/0 in the main table). Nil when the routes are
	// not known: a default route is then assumed, so that an interface
	// NetworkManager may take is left to it.
	DefaultRoute func(iface string) bool
}

// Manages reports whether NetworkManager configures MPTCP endpoints on
// the interface iface of a device whose applied connection has the flags
// f, under c, and why (for the log). As NetworkManager documents it:
// disabled wins; 0 means the default, DefaultFlags (a default set in
// NetworkManager.conf cannot be seen from here); any other flag implies
// enabled (bits this package does not know too: a newer NetworkManager's
// flag is taken to enable MPTCP, as all but disabled do); enabled needs net.mptcp.enabled unless also-without-sysctl, and
// a default route unless also-without-default-route. NetworkManager
// weighs the default route per address family; an interface is taken
// whole if either family has one.
func (f Flags) Manages(c Conditions, iface string) (bool, string) {
	why := "mptcp-flags " + f.String()
	if f == 0 {
		f = DefaultFlags
		why = "mptcp-flags default, which is " + f.String()
	}
	switch {
	case f&FlagDisabled != 0:
		return false, why
	case !c.MPTCPEnabled && f&FlagAlsoWithoutSysctl == 0:
		return false, why + ", and net.mptcp.enabled is 0"
	case f&FlagAlsoWithoutDefaultRoute != 0:
		return true, why
	case c.DefaultRoute == nil:
		return true, why + "; a default route is assumed"
	case !c.DefaultRoute(iface):
		return false, why + ", and no default route on " + iface
	}
	return true, why
}

// DeviceState is a device's state (NMDeviceState).
type DeviceState uint32

// The device states during which a connection is applied to a device.
const (
	StatePrepare      DeviceState = 40
	StateActivated    DeviceState = 100
	StateDeactivating DeviceState = 110
)

// Active reports whether a connection is being activated on the device,
// is active, or is being taken down: the states in which NetworkManager
// has a connection applied and may configure endpoints.
func (s DeviceState) Active() bool { return s >= StatePrepare && s <= StateDeactivating }

// Device is what NetworkManager says of one of its devices.
type Device struct {
	// Path is the device's object path.
	Path string
	// Interface is the interface its addresses are on: the device's
	// IpInterface, or its Interface when it has none.
	Interface string
	State     DeviceState
	// Applied reports whether a connection is applied to the device;
	// Flags are its connection.mptcp-flags (0, the default, when it does
	// not set them).
	Applied bool
	Flags   Flags
}

// Managed returns the interfaces of devs on which NetworkManager manages
// MPTCP endpoints under c, each with why.
func Managed(devs []Device, c Conditions) map[string]string {
	out := make(map[string]string)
	for _, d := range devs {
		if !d.Applied || !d.State.Active() {
			continue
		}
		if ok, why := d.Flags.Manages(c, d.Interface); ok {
			out[d.Interface] = why
		}
	}
	return out
}

// validInterface checks an interface name as the kernel does: 1 to 15
// bytes, not "." or "..", without '/', ':' or white space.
func validInterface(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q: longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q: not a name", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("interface name %q: contains '/', ':', white space or NUL", name)
	}
	return nil
}
