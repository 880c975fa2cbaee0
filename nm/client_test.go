package nm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/mptcpd/mptcpd/nm"
	"github.com/mptcpd/mptcpd/nm/nmtest"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// byName returns the device with the interface name, false if none.
func byName(devs []nm.Device, name string) (nm.Device, bool) {
	for _, d := range devs {
		if d.Interface == name {
			return d, true
		}
	}
	return nm.Device{}, false
}

// TestClient runs the client against a stand-in NetworkManager on a
// private bus: the devices and their applied mptcp-flags as it says them,
// the ones it says wrongly left out with a warning logged once, the
// watch following its signals and its leaving the bus, and the end of the
// connection ending the watch.
func TestClient(t *testing.T) {
	addr := nmtest.StartBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	logs := &logBuffer{}
	c, err := nm.Dial(ctx, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Devices(ctx); !errors.Is(err, nm.ErrNotOnBus) {
		t.Errorf("Devices before NetworkManager is on the bus: %v, want ErrNotOnBus", err)
	}
	if _, err := c.OwnerPID(ctx); !errors.Is(err, nm.ErrNotOnBus) {
		t.Errorf("OwnerPID before NetworkManager is on the bus: %v, want ErrNotOnBus", err)
	}

	// The watch, from before NetworkManager comes.
	changed := make(chan struct{}, 16)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- c.Watch(ctx, 20*time.Millisecond, 0, func() { changed <- struct{}{} })
	}()
	waitChanged := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change reported within 5s after %s", what)
		}
	}
	drain := func() {
		for {
			select {
			case <-changed:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}

	fconn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fconn.Close()
	fake, err := nmtest.Serve(fconn)
	if err != nil {
		t.Fatal(err)
	}
	waitChanged("NetworkManager came onto the bus")
	for _, d := range []nmtest.Device{
		{Interface: "eth0", State: 100, Applied: true, Flags: 0x20},
		{Interface: "eth1", State: 100, Applied: true, Flags: 0x1},
		{Interface: "eth2", State: 100, Applied: true}, // the default
		{Interface: "wlan0", State: 30},                // disconnected
		{Interface: "eth3", State: 100},                // refuses GetAppliedConnection
		{Interface: "bad0", StateValue: "activated", Applied: true},
		{Interface: "bad1", State: 100, Applied: true, FlagsValue: "subflow"},
		{Interface: "bad/2", State: 100, Applied: true},
	} {
		if err := fake.Set(d); err != nil {
			t.Fatal(err)
		}
	}
	waitChanged("devices were added")
	drain()

	devs, err := c.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		applied bool
		flags   nm.Flags
	}{
		{"eth0", true, nm.FlagSubflow},
		{"eth1", true, nm.FlagDisabled},
		{"eth2", true, 0},
		{"wlan0", false, 0},
		{"eth3", false, 0},
	} {
		d, ok := byName(devs, tc.name)
		if !ok || d.Applied != tc.applied || d.Flags != tc.flags {
			t.Errorf("device %s: %+v (listed %v); want applied %v, flags %s", tc.name, d, ok, tc.applied, tc.flags)
		}
	}
	if len(devs) != 5 {
		t.Errorf("%d devices listed, want the 5 described right: %+v", len(devs), devs)
	}
	got := nm.Managed(devs, nm.Conditions{MPTCPEnabled: true})
	if len(got) != 2 || got["eth0"] == "" || got["eth2"] == "" {
		t.Errorf("Managed = %v, want eth0 (subflow) and eth2 (the default)", got)
	}
	// Listed again: the same warnings are not logged twice.
	if _, err := c.Devices(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"property State is of type s, want u", "connection.mptcp-flags is of type s, want u", `interface name \"bad/2\"`} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("the log says %q %d times, want once:\n%s", want, n, logs.String())
		}
	}

	if pid, err := c.OwnerPID(ctx); err != nil || pid != uint32(os.Getpid()) {
		t.Errorf("OwnerPID = %d, %v; want this process, %d", pid, err, os.Getpid())
	}

	// A change of a device's flags is signalled.
	if err := fake.Set(nmtest.Device{Interface: "eth1", State: 100, Applied: true, Flags: 0x20}); err != nil {
		t.Fatal(err)
	}
	waitChanged("eth1 changed")
	if devs, err = c.Devices(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := byName(devs, "eth1"); d.Flags != nm.FlagSubflow {
		t.Errorf("eth1 after the change: %+v, want flags subflow", d)
	}
	if err := fake.Remove("eth0"); err != nil {
		t.Fatal(err)
	}
	waitChanged("eth0 removed")
	if devs, err = c.Devices(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := byName(devs, "eth0"); ok {
		t.Errorf("eth0 still listed after it was removed: %+v", devs)
	}

	// NetworkManager leaves the bus.
	drain()
	_ = fconn.Close()
	waitChanged("NetworkManager left the bus")
	if _, err := c.Devices(ctx); !errors.Is(err, nm.ErrNotOnBus) {
		t.Errorf("Devices once NetworkManager has left: %v, want ErrNotOnBus", err)
	}

	// The connection closed: the watch ends with an error.
	_ = c.Close()
	select {
	case err := <-watchDone:
		if err == nil {
			t.Error("Watch returned nil when the connection closed; want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5s of the connection closing")
	}
}

// TestWatchResyncAndContext: the watch calls back every resync without
// any signal, and returns nil when its context ends.
func TestWatchResyncAndContext(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", nmtest.StartBus(t))
	c, err := nm.Dial(context.Background(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, time.Millisecond, 10*time.Millisecond, func() { calls <- struct{}{} }) }()
	for range 2 {
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatal("no resync call within 5s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch after its context ended: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5s of its context ending")
	}
}

// TestDialUnreachable: no bus at the address is an error, at once.
func TestDialUnreachable(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+t.TempDir()+"/none")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := nm.Dial(ctx, slog.New(slog.DiscardHandler)); err == nil {
		_ = c.Close()
		t.Fatal("Dial to a bus that is not there succeeded")
	}
}
