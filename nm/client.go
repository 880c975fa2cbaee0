package nm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// The names NetworkManager uses on D-Bus.
const (
	BusName          = "org.freedesktop.NetworkManager"
	ManagerPath      = "/org/freedesktop/NetworkManager"
	ManagerInterface = "org.freedesktop.NetworkManager"
	DeviceInterface  = "org.freedesktop.NetworkManager.Device"
)

const (
	busName          = "org.freedesktop.DBus"
	propsIface       = "org.freedesktop.DBus.Properties"
	errNoOwner       = "org.freedesktop.DBus.Error.NameHasNoOwner"
	errNoService     = "org.freedesktop.DBus.Error.ServiceUnknown"
	maxDevices       = 1 << 14
	maxWarnings      = 256
	nameOwnerChanged = "NameOwnerChanged"
)

// ErrNotOnBus is returned when nobody owns NetworkManager's name on the
// bus: NetworkManager is not running, or has not claimed its name yet.
var ErrNotOnBus = errors.New("NetworkManager is not on the system bus")

// Client is a connection to the system bus that reads NetworkManager's
// devices and notes its signals. Its methods are safe for concurrent use.
type Client struct {
	conn *dbus.Conn
	log  *slog.Logger
	// kick is signalled (size 1, coalescing) by every signal of
	// NetworkManager's that the match rules let through.
	kick signals

	mu     sync.Mutex
	warned map[string]bool
}

// signals is the connection's signal handler: it notes that a signal came
// and drops it.
type signals chan struct{}

// DeliverSignal notes a signal; it never blocks the connection's reader.
func (s signals) DeliverSignal(iface, member string, _ *dbus.Signal) {
	if iface == busName && member != nameOwnerChanged {
		return // NameAcquired and NameLost, about this connection itself
	}
	select {
	case s <- struct{}{}:
	default:
	}
}

// Dial connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS, or the
// standard socket) and subscribes to the signals NetworkManager sends
// when its devices change, or when it comes onto the bus or leaves it.
// ctx bounds the connecting only. Problems with what NetworkManager says
// are logged to log, at Warn, once each.
func Dial(ctx context.Context, log *slog.Logger) (*Client, error) {
	kick := make(signals, 1)
	conn, err := dbus.SystemBusPrivate(dbus.WithSignalHandler(kick))
	if err != nil {
		return nil, fmt.Errorf("connecting to the system bus: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	err = conn.Auth(nil)
	if err == nil {
		err = conn.Hello()
	}
	if !stop() {
		_ = conn.Close()
		return nil, fmt.Errorf("connecting to the system bus: %w", context.Cause(ctx))
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connecting to the system bus: %w", err)
	}
	c := &Client{conn: conn, log: log, kick: kick, warned: map[string]bool{}}
	if err := c.subscribe(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// subscribe adds the match rules for NetworkManager's signals: a device's
// state or properties changing, the manager's signals (devices added and
// removed), and its name changing hands.
func (c *Client) subscribe(ctx context.Context) error {
	rules := [][]dbus.MatchOption{
		{dbus.WithMatchSender(BusName), dbus.WithMatchInterface(DeviceInterface)},
		{dbus.WithMatchSender(BusName), dbus.WithMatchInterface(propsIface), dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchArg(0, DeviceInterface)},
		{dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(ManagerPath), dbus.WithMatchInterface(ManagerInterface)},
		{dbus.WithMatchSender(busName), dbus.WithMatchInterface(busName), dbus.WithMatchMember(nameOwnerChanged), dbus.WithMatchArg(0, BusName)},
	}
	for _, r := range rules {
		if err := c.conn.AddMatchSignalContext(ctx, r...); err != nil {
			return fmt.Errorf("subscribing to NetworkManager's signals: %w", err)
		}
	}
	return nil
}

// Close closes the connection; Watch returns.
func (c *Client) Close() error { return c.conn.Close() }

// OwnerPID returns the process ID of the connection that owns
// NetworkManager's name on the bus, as the bus knows it; ErrNotOnBus if
// nobody owns it.
func (c *Client) OwnerPID(ctx context.Context) (uint32, error) {
	var pid uint32
	err := c.conn.BusObject().CallWithContext(ctx, busName+".GetConnectionUnixProcessID", 0, BusName).Store(&pid)
	switch {
	case noOwner(err):
		return 0, ErrNotOnBus
	case err != nil:
		return 0, fmt.Errorf("asking the bus who owns %s: %w", BusName, err)
	}
	return pid, nil
}

// Devices lists NetworkManager's devices, sorted by object path, each
// with the mptcp-flags of its applied connection when it is active. A
// device that goes away while it is read is left out; so is one about
// which NetworkManager says something of the wrong type, with the reason
// logged. It returns ErrNotOnBus if NetworkManager is not on the bus.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	var paths []dbus.ObjectPath
	err := c.conn.Object(BusName, ManagerPath).CallWithContext(ctx, ManagerInterface+".GetDevices", 0).Store(&paths)
	switch {
	case noOwner(err):
		return nil, ErrNotOnBus
	case err != nil:
		return nil, fmt.Errorf("listing NetworkManager's devices: %w", err)
	case len(paths) > maxDevices:
		return nil, fmt.Errorf("listing NetworkManager's devices: %d of them, more than the %d this reads", len(paths), maxDevices)
	}
	devs := make([]Device, 0, len(paths))
	for _, p := range paths {
		if !p.IsValid() {
			c.warn("NetworkManager lists a device with an invalid object path; ignored", "path", string(p))
			continue
		}
		d, ok, err := c.device(ctx, p)
		if err != nil {
			return nil, err
		}
		if ok {
			devs = append(devs, d)
		}
	}
	slices.SortFunc(devs, func(a, b Device) int { return strings.Compare(a.Path, b.Path) })
	return slices.CompactFunc(devs, func(a, b Device) bool { return a.Path == b.Path }), nil
}

// device reads one device. It returns ok false for a device to leave out
// (logged if NetworkManager said something wrong of it), and an error
// only when the listing as a whole cannot go on.
func (c *Client) device(ctx context.Context, p dbus.ObjectPath) (Device, bool, error) {
	obj := c.conn.Object(BusName, p)
	var props map[string]dbus.Variant
	if err := obj.CallWithContext(ctx, propsIface+".GetAll", 0, DeviceInterface).Store(&props); err != nil {
		return Device{}, false, c.deviceError(ctx, p, "reading the properties", err)
	}
	d, err := deviceFrom(string(p), props)
	if err != nil {
		c.warn("NetworkManager describes a device wrongly; ignored", "path", string(p), "error", err)
		return Device{}, false, nil
	}
	if !d.State.Active() {
		return d, true, nil
	}
	var (
		settings map[string]map[string]dbus.Variant
		version  uint64
	)
	// Flags 0: the connection as applied, secrets left out.
	if err := obj.CallWithContext(ctx, DeviceInterface+".GetAppliedConnection", 0, uint32(0)).Store(&settings, &version); err != nil {
		var de dbus.Error
		if errors.As(err, &de) && !noOwner(err) && ctx.Err() == nil {
			// Refused, typically because the activation ended a moment
			// ago: no connection is applied.
			c.log.Debug("NetworkManager has no applied connection for a device", "path", string(p), "interface", d.Interface, "error", err)
			return d, true, nil
		}
		return Device{}, false, c.deviceError(ctx, p, "reading the applied connection", err)
	}
	flags, err := flagsFrom(settings)
	if err != nil {
		c.warn("NetworkManager's applied connection of a device is not understood; device ignored", "path", string(p), "interface", d.Interface, "error", err)
		return Device{}, false, nil
	}
	d.Applied, d.Flags = true, flags
	return d, true, nil
}

// deviceError sorts out an error reading a device: the end of ctx, of
// the connection or of NetworkManager on the bus stops the listing; an
// error from NetworkManager (the device went away) leaves the device out;
// anything else (an answer of the wrong types) is logged and the device
// left out.
func (c *Client) deviceError(ctx context.Context, p dbus.ObjectPath, what string, err error) error {
	var de dbus.Error
	switch {
	case noOwner(err):
		return ErrNotOnBus
	case ctx.Err() != nil || c.conn.Context().Err() != nil:
		return fmt.Errorf("%s of NetworkManager's device %s: %w", what, p, err)
	case errors.As(err, &de):
		c.log.Debug("NetworkManager's device went away while read", "path", string(p), "error", err)
	default:
		c.warn("NetworkManager's answer about a device is not understood; device ignored", "path", string(p), "reading", what, "error", err)
	}
	return nil
}

// deviceFrom checks a device's properties: Interface a valid interface
// name, IpInterface, if present, one or empty, and State a u.
func deviceFrom(path string, props map[string]dbus.Variant) (Device, error) {
	d := Device{Path: path}
	v, ok := props["Interface"]
	if !ok {
		return d, errors.New("no Interface property")
	}
	name, ok := v.Value().(string)
	if !ok {
		return d, fmt.Errorf("property Interface is of type %s, want s", v.Signature())
	}
	if v, ok := props["IpInterface"]; ok {
		ip, ok := v.Value().(string)
		if !ok {
			return d, fmt.Errorf("property IpInterface is of type %s, want s", v.Signature())
		}
		if ip != "" {
			name = ip
		}
	}
	if err := validInterface(name); err != nil {
		return d, fmt.Errorf("property Interface or IpInterface: %w", err)
	}
	d.Interface = name
	v, ok = props["State"]
	if !ok {
		return d, errors.New("no State property")
	}
	state, ok := v.Value().(uint32)
	if !ok {
		return d, fmt.Errorf("property State is of type %s, want u", v.Signature())
	}
	d.State = DeviceState(state)
	return d, nil
}

// flagsFrom returns connection.mptcp-flags of an applied connection: 0
// (the default) when the connection setting or the key is missing, as
// NetworkManager leaves out properties at their default value.
func flagsFrom(settings map[string]map[string]dbus.Variant) (Flags, error) {
	v, ok := settings["connection"]["mptcp-flags"]
	if !ok {
		return 0, nil
	}
	f, ok := v.Value().(uint32)
	if !ok {
		return 0, fmt.Errorf("connection.mptcp-flags is of type %s, want u", v.Signature())
	}
	return Flags(f), nil
}

// noOwner reports whether err says nobody owns the name called.
func noOwner(err error) bool {
	var de dbus.Error
	return errors.As(err, &de) && (de.Name == errNoOwner || de.Name == errNoService)
}

// warn logs a problem with what NetworkManager said once per distinct
// problem, so that a device described wrongly does not fill the log at
// every re-read.
func (c *Client) warn(msg string, args ...any) {
	key := msg + fmt.Sprint(args...)
	c.mu.Lock()
	seen := c.warned[key]
	if !seen {
		if len(c.warned) >= maxWarnings {
			clear(c.warned)
		}
		c.warned[key] = true
	}
	c.mu.Unlock()
	if !seen {
		c.log.Warn(msg, args...)
	}
}

// Watch calls changed each time NetworkManager's devices may have
// changed: once at most every debounce after the first of a burst of its
// signals (devices added or removed, a device's state or properties
// changed, NetworkManager coming onto the bus or leaving it), and every
// resync besides (0: never), which catches what no signal announces (a
// connection reapplied with other mptcp-flags). changed is called from
// Watch's goroutine, one call at a time. Watch returns nil when ctx ends,
// and an error when the connection to the bus is lost.
func (c *Client) Watch(ctx context.Context, debounce, resync time.Duration, changed func()) error {
	var tick <-chan time.Time
	if resync > 0 {
		t := time.NewTicker(resync)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.conn.Context().Done():
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("the connection to the system bus was lost")
		case <-c.kick:
			if pending == nil {
				timer.Reset(debounce)
				pending = timer.C
			}
		case <-pending:
			pending = nil
			changed()
		case <-tick:
			changed()
		}
	}
}
