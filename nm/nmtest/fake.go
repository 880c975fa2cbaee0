// Package nmtest is a stand-in for NetworkManager on a D-Bus bus, for
// tests: it owns NetworkManager's name and exports the manager object and
// device objects with the properties and the method package nm reads,
// and sends NetworkManager's signals when a device changes.
package nmtest

import (
	"fmt"
	"slices"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/mptcpd/mptcpd/nm"
)

// Device is a device of the fake, by interface name.
type Device struct {
	Interface string
	// State is the device's state; 100 is activated.
	State uint32
	// Applied says whether a connection is applied; Flags are its
	// connection.mptcp-flags, left out of the connection when 0, as
	// NetworkManager does.
	Applied bool
	Flags   uint32
	// StateValue and FlagsValue, if set, are sent instead of State and
	// Flags: values of the wrong type, to test a client's checks.
	StateValue, FlagsValue any
}

// Fake is the stand-in NetworkManager.
type Fake struct {
	conn *dbus.Conn

	mu   sync.Mutex
	devs []Device // in the order added; device i has path devicePath(i)
	gone []bool
}

// devicePath returns the object path of the i-th device added.
func devicePath(i int) dbus.ObjectPath {
	return dbus.ObjectPath(fmt.Sprintf("%s/Devices/%d", nm.ManagerPath, i+1))
}

// Serve exports the manager object on conn, a connection to a bus, and
// takes NetworkManager's name.
func Serve(conn *dbus.Conn) (*Fake, error) {
	f := &Fake{conn: conn}
	err := conn.ExportMethodTable(map[string]any{
		"GetDevices": f.getDevices,
	}, nm.ManagerPath, nm.ManagerInterface)
	if err != nil {
		return nil, fmt.Errorf("exporting the manager: %w", err)
	}
	reply, err := conn.RequestName(nm.BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return nil, fmt.Errorf("requesting %s: %w", nm.BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return nil, fmt.Errorf("requesting %s: %s", nm.BusName, reply)
	}
	return f, nil
}

func (f *Fake) getDevices() ([]dbus.ObjectPath, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var paths []dbus.ObjectPath
	for i := range f.devs {
		if !f.gone[i] {
			paths = append(paths, devicePath(i))
		}
	}
	return paths, nil
}

// Set adds the device d, or changes the one with its interface name, and
// sends the signals NetworkManager sends: DeviceAdded for a new device,
// and StateChanged and PropertiesChanged on the device.
func (f *Fake) Set(d Device) error {
	f.mu.Lock()
	i := slices.IndexFunc(f.devs, func(x Device) bool { return x.Interface == d.Interface })
	old := uint32(0)
	isNew := i < 0 || f.gone[i]
	if i < 0 {
		i = len(f.devs)
		f.devs = append(f.devs, d)
		f.gone = append(f.gone, false)
	} else {
		old = f.devs[i].State
		f.devs[i] = d
		f.gone[i] = false
	}
	f.mu.Unlock()
	path := devicePath(i)
	if isNew {
		if err := f.export(i, path); err != nil {
			return err
		}
		if err := f.conn.Emit(nm.ManagerPath, nm.ManagerInterface+".DeviceAdded", path); err != nil {
			return fmt.Errorf("sending DeviceAdded: %w", err)
		}
	}
	if err := f.conn.Emit(path, nm.DeviceInterface+".StateChanged", d.State, old, uint32(0)); err != nil {
		return fmt.Errorf("sending StateChanged: %w", err)
	}
	changed := map[string]dbus.Variant{"State": dbus.MakeVariant(d.State)}
	if err := f.conn.Emit(path, "org.freedesktop.DBus.Properties.PropertiesChanged", nm.DeviceInterface, changed, []string{}); err != nil {
		return fmt.Errorf("sending PropertiesChanged: %w", err)
	}
	return nil
}

// Remove removes the device with the interface name, sending
// DeviceRemoved.
func (f *Fake) Remove(name string) error {
	f.mu.Lock()
	i := slices.IndexFunc(f.devs, func(x Device) bool { return x.Interface == name })
	if i < 0 || f.gone[i] {
		f.mu.Unlock()
		return fmt.Errorf("no device %s", name)
	}
	f.gone[i] = true
	f.mu.Unlock()
	path := devicePath(i)
	if err := f.conn.Emit(nm.ManagerPath, nm.ManagerInterface+".DeviceRemoved", path); err != nil {
		return fmt.Errorf("sending DeviceRemoved: %w", err)
	}
	return nil
}

// device returns device i, false if it is gone.
func (f *Fake) device(i int) (Device, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.devs) || f.gone[i] {
		return Device{}, false
	}
	return f.devs[i], true
}

// export exports the objects of device i at path.
func (f *Fake) export(i int, path dbus.ObjectPath) error {
	unknown := func() *dbus.Error {
		e := dbus.MakeNoObjectError(path)
		return &e
	}
	props := func(iface string) (map[string]dbus.Variant, *dbus.Error) {
		d, ok := f.device(i)
		if !ok {
			return nil, unknown()
		}
		if iface != nm.DeviceInterface {
			return map[string]dbus.Variant{}, nil
		}
		var state any = d.State
		if d.StateValue != nil {
			state = d.StateValue
		}
		return map[string]dbus.Variant{
			"Interface":   dbus.MakeVariant(d.Interface),
			"IpInterface": dbus.MakeVariant(d.Interface),
			"State":       dbus.MakeVariant(state),
			"Driver":      dbus.MakeVariant("fake"),
		}, nil
	}
	err := f.conn.ExportMethodTable(map[string]any{
		"GetAll": props,
		"Get": func(iface, name string) (dbus.Variant, *dbus.Error) {
			all, err := props(iface)
			if err != nil {
				return dbus.Variant{}, err
			}
			v, ok := all[name]
			if !ok {
				return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"no property " + name})
			}
			return v, nil
		},
	}, path, "org.freedesktop.DBus.Properties")
	if err != nil {
		return fmt.Errorf("exporting device %s: %w", path, err)
	}
	err = f.conn.ExportMethodTable(map[string]any{
		"GetAppliedConnection": func(flags uint32) (map[string]map[string]dbus.Variant, uint64, *dbus.Error) {
			d, ok := f.device(i)
			if !ok {
				return nil, 0, unknown()
			}
			if !d.Applied {
				return nil, 0, dbus.NewError("org.freedesktop.NetworkManager.Device.NotActive", []any{"Device is not activated"})
			}
			conn := map[string]dbus.Variant{
				"id":             dbus.MakeVariant(d.Interface),
				"interface-name": dbus.MakeVariant(d.Interface),
				"type":           dbus.MakeVariant("802-3-ethernet"),
			}
			switch {
			case d.FlagsValue != nil:
				conn["mptcp-flags"] = dbus.MakeVariant(d.FlagsValue)
			case d.Flags != 0:
				conn["mptcp-flags"] = dbus.MakeVariant(d.Flags)
			}
			return map[string]map[string]dbus.Variant{"connection": conn, "ipv4": {"method": dbus.MakeVariant("manual")}}, 1, nil
		},
	}, path, nm.DeviceInterface)
	if err != nil {
		return fmt.Errorf("exporting device %s: %w", path, err)
	}
	return nil
}
