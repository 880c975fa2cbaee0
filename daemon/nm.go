package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/netns"
	"github.com/mptcpd/mptcpd/nm"
)

// How the daemon asks NetworkManager: the time to connect to the bus and
// read the devices at start, or to re-read them later; how long a burst
// of its signals is gathered before a re-read; and how often they are
// re-read without a signal (a connection reapplied with other
// mptcp-flags sends none).
const (
	nmTimeout  = 3 * time.Second
	nmDebounce = 200 * time.Millisecond
	nmResync   = time.Minute
)

// rtTableMain is the main routing table, where NetworkManager looks for a
// default route.
const rtTableMain = 254

// nmWatch follows, over D-Bus, the interfaces on which NetworkManager
// manages MPTCP endpoints, for the reconciler (DeferInterfaces).
type nmWatch struct {
	log    *slog.Logger
	client *nm.Client
	// netID names the managed namespace (netIdentity): only a
	// NetworkManager running in it is asked.
	netID uint64
	// enabled is net.mptcp.enabled, opened in the managed namespace (nil
	// if it could not be: enabled is assumed).
	enabled *os.File
	// changed is signalled (size 1) when the devices change.
	changed chan struct{}

	mu sync.Mutex
	// devs are the devices as NetworkManager last listed them.
	devs []nm.Device
	// status is how the last re-read went, as last logged.
	status string
}

// dialNetworkManager connects to the system bus and reads NetworkManager's
// devices. It returns nil, having said so in the log, if the bus cannot
// be reached: the foreign-endpoint rule alone applies then.
func dialNetworkManager(ctx context.Context, log *slog.Logger, nsfd int, netID uint64) *nmWatch {
	ctx, cancel := context.WithTimeout(ctx, nmTimeout)
	defer cancel()
	c, err := nm.Dial(ctx, log)
	if err != nil {
		log.Info("cannot ask NetworkManager over D-Bus on which interfaces it manages MPTCP; only the foreign-endpoint rule applies", "error", err)
		return nil
	}
	w := &nmWatch{log: log, client: c, netID: netID, changed: make(chan struct{}, 1)}
	if err := netns.Do(nsfd, func() error {
		var err error
		w.enabled, err = os.Open(filepath.Join(genl.SysctlDir, "enabled"))
		return err
	}); err != nil {
		log.Warn("cannot read net.mptcp.enabled; taken as 1 when weighing NetworkManager's mptcp-flags", "error", err)
	}
	w.refresh(ctx)
	return w
}

// changes returns the channel signalled when NetworkManager's devices
// change; nil (never) for a nil w.
func (w *nmWatch) changes() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.changed
}

func (w *nmWatch) close() {
	_ = w.client.Close()
	if w.enabled != nil {
		_ = w.enabled.Close()
	}
}

// run re-reads the devices whenever NetworkManager signals a change, until
// ctx ends or the connection to the bus is lost.
func (w *nmWatch) run(ctx context.Context) {
	err := w.client.Watch(ctx, nmDebounce, nmResync, func() {
		rctx, cancel := context.WithTimeout(ctx, nmTimeout)
		defer cancel()
		w.refresh(rctx)
	})
	if err != nil {
		w.log.Warn("lost the system bus: NetworkManager's interfaces stay as it last said, besides the foreign-endpoint rule", "error", err)
	}
}

// refresh re-reads NetworkManager's devices, logs how that went when it
// differs from the last time, and signals changed if they changed. When
// NetworkManager cannot be asked, what it said last stands.
func (w *nmWatch) refresh(ctx context.Context) {
	devs, status, err := w.list(ctx)
	w.mu.Lock()
	last := w.status
	w.status = status
	changed := false
	if status == "ok" || status == "elsewhere" {
		changed = !slices.Equal(devs, w.devs)
		w.devs = devs
	}
	w.mu.Unlock()
	if status != last {
		switch status {
		case "ok":
			w.log.Info("asking NetworkManager over D-Bus on which interfaces it manages MPTCP endpoints", "devices", len(devs))
		case "absent":
			w.log.Info("NetworkManager is not on the system bus; until it is, what it said last and the foreign-endpoint rule apply")
		case "elsewhere":
			w.log.Info("the NetworkManager on the system bus runs in another network namespace; only the foreign-endpoint rule applies", "reason", err)
		default:
			w.log.Warn("asking NetworkManager over D-Bus failed; what it said last and the foreign-endpoint rule apply", "error", err)
		}
	}
	if !changed {
		return
	}
	for _, d := range devs {
		w.log.Debug("NetworkManager device", "interface", d.Interface, "state", d.State, "applied", d.Applied, "mptcp_flags", d.Flags.String())
	}
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// list reads NetworkManager's devices, if the NetworkManager on the bus
// runs in the managed namespace, and says how it went: "ok", "absent"
// (not on the bus), "elsewhere" (in another namespace; no devices), or
// "error".
func (w *nmWatch) list(ctx context.Context) ([]nm.Device, string, error) {
	pid, err := w.client.OwnerPID(ctx)
	switch {
	case errors.Is(err, nm.ErrNotOnBus):
		return nil, "absent", err
	case err != nil:
		return nil, "error", err
	}
	id, err := netIdentityOf(int(pid))
	if err != nil {
		return nil, "elsewhere", fmt.Errorf("the namespace of pid %d: %w", pid, err)
	}
	if id != w.netID {
		return nil, "elsewhere", fmt.Errorf("pid %d runs in another network namespace", pid)
	}
	devs, err := w.client.Devices(ctx)
	switch {
	case errors.Is(err, nm.ErrNotOnBus):
		return nil, "absent", err
	case err != nil:
		return nil, "error", err
	}
	return devs, "ok", nil
}

// managed returns the interfaces of st on which NetworkManager manages
// MPTCP endpoints, each with why: the reconciler's DeferInterfaces. The
// default route counts when st carries routes (require_route); a state
// without any route is taken as read without them, and a default route is
// then assumed.
func (w *nmWatch) managed(st netmon.State) map[string]string {
	w.mu.Lock()
	devs := w.devs
	w.mu.Unlock()
	if len(devs) == 0 {
		return nil
	}
	c := nm.Conditions{MPTCPEnabled: w.mptcpEnabled()}
	if len(st.Routes) > 0 {
		c.DefaultRoute = func(name string) bool {
			idx := st.IndexOf(name)
			return idx != 0 && slices.ContainsFunc(st.Routes, func(r netmon.Route) bool {
				return r.Index == idx && r.Dst.Bits() == 0 && r.Table == rtTableMain
			})
		}
	}
	return nm.Managed(devs, c)
}

// mptcpEnabled reads net.mptcp.enabled of the managed namespace; true if
// it cannot.
func (w *nmWatch) mptcpEnabled() bool {
	if w.enabled == nil {
		return true
	}
	var b [1]byte
	if n, _ := w.enabled.ReadAt(b[:], 0); n != 1 {
		return true
	}
	return b[0] != '0'
}
