// Package daemon is mptcpd's main loop: it loads the configuration, takes
// charge of one network namespace, follows its interfaces and keeps the
// kernel's path manager reconciled with the policy until it is stopped.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/metrics"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/netns"
	"github.com/mptcpd/mptcpd/pm"
)

// Options are what the command line gives the daemon.
type Options struct {
	// ConfigPath is the configuration file.
	ConfigPath string
	// Config, if set, is the configuration already loaded from ConfigPath
	// (with LoadConfig); Run loads it otherwise.
	Config *config.Config
	// NetNS, if set, overrides the configuration's netns.
	NetNS string
	// Reload delivers a value for each reload request (SIGHUP).
	Reload <-chan os.Signal
	// Log is the logger; LogLevel, if set, is adjusted to the configuration.
	Log      *slog.Logger
	LogLevel *slog.LevelVar
	// Resync is how often the whole state is re-read even without events,
	// to catch changes made by others; 0 means every 5 minutes.
	Resync time.Duration
}

// notify sends a state to systemd; without NOTIFY_SOCKET it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		log.Warn("telling systemd", "state", state, "error", err)
	}
}

// LoadConfig reads the configuration and applies the command-line
// overrides.
func LoadConfig(opts Options) (*config.Config, error) {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.NetNS != "" {
		if err := netns.ValidName(opts.NetNS); err != nil {
			return nil, fmt.Errorf("--netns: %w", err)
		}
		cfg.NetNS = opts.NetNS
	}
	return cfg, nil
}

// Run runs the daemon until ctx ends, then releases what it owns (unless
// the configuration says to keep it) and returns.
func Run(ctx context.Context, opts Options) error {
	log := opts.Log
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = LoadConfig(opts); err != nil {
			return err
		}
	}
	setLevel(opts.LogLevel, cfg)

	nsName, nsfd := "this network namespace", 0
	if cfg.NetNS != "" {
		ns, err := netns.Open(cfg.NetNS)
		if err != nil {
			return err
		}
		defer ns.Close()
		nsName, nsfd = fmt.Sprintf("network namespace %q", cfg.NetNS), ns.FD()
		if err := ns.Do(func() error { return nil }); errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("netns = %q: entering another network namespace needs CAP_SYS_ADMIN, which mptcpd lacks here (%w); run it as root, or start it inside the namespace (under systemd: NetworkNamespacePath=/run/netns/%s, with netns = \"\")", cfg.NetNS, err, cfg.NetNS)
		}
	}
	inode, err := nsInode(nsfd)
	if err != nil {
		return err
	}
	lock, err := lockNamespace(cfg.StateDir, inode, nsName)
	if err != nil {
		return err
	}
	defer lock.Close()
	netID, err := netIdentity(nsfd)
	if err != nil {
		return err
	}
	if others := otherPathManagers(netID); len(others) > 0 {
		return fmt.Errorf("another MPTCP path-manager daemon manages %s: %s; two would fight over the endpoints — stop it first (systemctl stop mptcp.service) and start mptcpd again",
			nsName, strings.Join(others, ", "))
	}

	if cfg.Mode == config.ModeFallback {
		return runFallback(ctx, opts, cfg, nsfd, "")
	}
	caps, err := genl.Probe(genl.WithNetNS(nsfd))
	if cfg.Mode == config.ModeAuto && (err != nil || !caps.Family || !caps.Enabled) && fallbackUsable(cfg) {
		why := "the kernel has no MPTCP path manager"
		switch {
		case err != nil:
			why = "probing the kernel's MPTCP failed: " + err.Error()
		case caps.Family && !caps.Enabled:
			why = "MPTCP is disabled in this namespace (net.mptcp.enabled = 0)"
		}
		log.Info("mode auto picked fallback", "reason", why)
		return runFallback(ctx, opts, cfg, nsfd, why)
	}
	if err != nil {
		return fmt.Errorf("probing the kernel's MPTCP: %w", err)
	}
	if !caps.Family {
		return fmt.Errorf("the kernel has no MPTCP path manager (no %s netlink family): %w", genl.FamilyName, genl.ErrUnavailable)
	}
	mode, reason := pickMode(cfg.Mode, caps)
	if cfg.Mode == config.ModeAuto {
		log.Info("mode auto picked "+mode, "reason", reason)
	}
	if mode == "userspace" && !caps.Supports(genl.PathManagerUserspace) {
		return fmt.Errorf("mode userspace: this kernel has no userspace path manager (it has %v): %w; set mode = \"kernel\"", caps.PathManagers, genl.ErrUnavailable)
	}
	// A large event buffer: in userspace mode every connection's events
	// are decisions to make, and a burst must not overflow it. Events are
	// read on the reader's own thread, one wake-up less on the way from a
	// connection's ESTABLISHED to its next subflow.
	client, err := genl.New(genl.WithNetNS(nsfd), genl.WithEventBuffer(16<<20), genl.WithDirectEventReads())
	if err != nil {
		return err
	}
	defer client.Close()
	store := &pm.FileStore{Path: filepath.Join(cfg.StateDir, fmt.Sprintf("netns-%d.json", inode))}
	defer store.Close()
	// The fast path writes its requests on a socket the runtime does not
	// poll: the kernel's answers then wake no thread in the middle.
	fast, err := genl.New(genl.WithNetNS(nsfd), genl.WithRawRequests())
	if err != nil {
		return err
	}
	defer fast.Close()
	kern := &kernel{Client: client, fast: fast, nsfd: nsfd}
	rec := pm.NewReconciler(kern, store, log)
	if !caps.Enabled {
		log.Warn("MPTCP is disabled in this namespace (net.mptcp.enabled = 0): endpoints are kept, but applications get plain TCP")
	}
	var nmw *nmWatch
	if networkManagerIn(netID) {
		rec.DeferTo("NetworkManager")
		log.Info("NetworkManager runs in this namespace: interfaces on which it has MPTCP endpoints are left to it")
		if mode == "kernel" {
			if nmw = dialNetworkManager(ctx, log, nsfd, netID); nmw != nil {
				defer nmw.close()
				rec.DeferInterfaces("NetworkManager", nmw.managed)
			}
		}
	}
	pmName := genl.PathManagerKernel
	if mode == "userspace" {
		pmName = genl.PathManagerUserspace
	}
	if err := rec.SelectPathManager(pmName); err != nil {
		return err
	}

	dc, err := diag.New(diag.WithNetNS(nsfd))
	if err != nil {
		return fmt.Errorf("opening the connection inventory: %w", err)
	}
	defer dc.Close()

	n := &node{
		log: log, opts: opts, nsfd: nsfd, caps: caps, client: client, diag: dc, rec: rec,
		started: time.Now(), mode: mode, reason: reason, cfg: cfg, source: opts.ConfigPath, applied: time.Now(), kick: make(chan struct{}, 1), subscribed: make(chan struct{}),
	}
	rec.OnChange(n.onChange)

	var ml net.Listener
	if cfg.Metrics.Listen != "" {
		n.metrics = metrics.New(func() float64 {
			conns, err := dc.Connections(context.Background(), diag.Filter{NoSubflows: true})
			if err != nil {
				return 0
			}
			return float64(len(conns))
		})
		if ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			return err
		}
		kern.metrics = n.metrics
	}

	svc, err := listenAPI(cfg, n, n.metrics, log)
	if err != nil {
		if ml != nil {
			_ = ml.Close()
		}
		return err
	}
	log.Info("mptcpd started", "mode", mode, "netns", cfg.NetNS, "config", opts.ConfigPath,
		"path_managers", caps.PathManagers, "family_version", caps.FamilyVersion, "api", cfg.SocketPath())

	bg, stopBG := context.WithCancel(ctx)
	n.bg = bg
	if cfg.Converter.Enabled {
		if n.conv, err = startConverter(bg, cfg, nsfd, log, n.publishMPX); err != nil {
			stopBG()
			svc.Close()
			if ml != nil {
				_ = ml.Close()
			}
			return err
		}
	}
	var wg sync.WaitGroup
	if fallbackUsable(cfg) {
		// A converter is configured: applications reach it through the
		// fallback client's ways in, over one kernel MPTCP connection per
		// application connection; the kernel's path manager adds the
		// subflows.
		fc, err := newFallbackClient(cfg, nsfd, log, nil, n.publishMPX)
		if err != nil {
			stopBG()
			svc.Close()
			return err
		}
		fc.MPX().KernelMPTCP = true
		n.fb = fc.MPX()
		wg.Go(func() {
			if err := netns.Do(nsfd, func() error { return fc.Run(bg) }); err != nil {
				log.Error("fallback client stopped", "err", err)
			}
		})
	}
	wg.Go(func() {
		if err := svc.Serve(bg); err != nil {
			log.Error("API stopped", "error", err)
		}
	})
	if ml != nil {
		wg.Go(func() {
			if err := n.metrics.Serve(bg, ml); err != nil {
				log.Error("metrics stopped", "error", err)
			}
		})
	}
	if !caps.EventsGroup {
		close(n.subscribed)
	}
	if caps.EventsGroup {
		wg.Go(func() { n.kernelEventsLoop(bg) })
	}
	if nmw != nil {
		wg.Go(func() { nmw.run(bg) })
	}

	err = n.loop(ctx, svc, nmw.changes())
	stopBG()
	wg.Wait()
	if n.usDone != nil {
		<-n.usDone
	}
	if n.conv != nil {
		<-n.conv.done
	}

	notify(log, sddaemon.SdNotifyStopping)
	relErr := rec.Release(cfg.KeepOnExit, cfg.KeepPathManager)
	if relErr != nil {
		relErr = fmt.Errorf("releasing what mptcpd owns: %w", relErr)
	}
	log.Info("mptcpd stopped", "kept_endpoints", cfg.KeepOnExit)
	return errors.Join(err, relErr)
}

func setLevel(lv *slog.LevelVar, cfg *config.Config) {
	if lv == nil {
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(cfg.Log.Level)); err == nil {
		lv.Set(l)
	}
}

// watcher is a running netmon.Monitor.
type watcher struct {
	mon    *netmon.Monitor
	done   chan error
	stop   context.CancelFunc
	routes bool
	ctx    context.Context // the daemon's, for a replacement watcher
}

// watch starts a Monitor of the namespace; it reads and watches routes only
// when the policy needs them (require_route), so a host with a large
// routing table does not re-read it on every change. Without routes, new
// addresses go to rec's fast path straight from the goroutine that
// receives them, ahead of the full reconcile.
func watch(ctx context.Context, nsfd int, routes bool, newAddrs func([]netmon.NewAddr)) (*watcher, error) {
	opts := []netmon.Option{netmon.WithNetNS(nsfd)}
	if !routes {
		opts = append(opts, netmon.WithoutRoutes(), netmon.WithNewAddrs(newAddrs))
	}
	mon, err := netmon.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("watching interfaces: %w", err)
	}
	wctx, stop := context.WithCancel(ctx)
	w := &watcher{mon: mon, done: make(chan error, 1), stop: stop, routes: routes, ctx: ctx}
	go func() { w.done <- mon.Run(wctx) }()
	return w, nil
}

func (w *watcher) close() {
	w.stop()
	<-w.done
	_ = w.mon.Close()
}

// loop reconciles at start, on every interface change, on reload, when
// NetworkManager's interfaces change (nmChanged, nil without it) and
// periodically, until ctx ends.
func (n *node) loop(ctx context.Context, svc *api.Service, nmChanged <-chan struct{}) error {
	opts, log := n.opts, n.log
	w, err := watch(ctx, n.nsfd, n.cfg.Addresses.RequireRoute, n.newAddrs)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.w = w
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.w.close()
		n.mu.Unlock()
	}()
	resync := opts.Resync
	if resync <= 0 {
		resync = 5 * time.Minute
	}
	var watchdog <-chan time.Time
	if interval, err := sddaemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		watchdog = t.C
	}
	retry := time.NewTimer(0) // the first reconcile, at once
	defer retry.Stop()
	periodic := time.NewTicker(resync)
	defer periodic.Stop()
	backoff := time.Second

	// reconcile reads the interfaces and applies the policy. Only a change
	// notification may use the state netmon keeps from notifications; the
	// first run, retries, reloads and the periodic resync read everything
	// afresh.
	reconcile := func(why string) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if err := n.reconcile(why, why != "interface change"); err != nil {
			log.Error("reconcile failed; retrying", "trigger", why, "error", err, "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
			return
		}
		backoff = time.Second
		if !n.ready {
			n.ready = true
			svc.SetServing(true)
			notify(log, sddaemon.SdNotifyReady)
			log.Info("ready", "reason", "first reconcile done")
		}
	}

	for {
		n.mu.Lock()
		w := n.w
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.done:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watching interfaces stopped: %w", err)
		case <-n.kick:
			// The watcher was replaced: select on the new one.
		case <-retry.C:
			reconcile("start or retry")
		case <-w.mon.Changes():
			reconcile("interface change")
		case <-periodic.C:
			reconcile("periodic resync")
		case <-nmChanged:
			reconcile("NetworkManager change")
		case <-watchdog:
			notify(log, sddaemon.SdNotifyWatchdog)
		case <-opts.Reload:
			notify(log, sddaemon.SdNotifyReloading)
			n.reload()
			notify(log, sddaemon.SdNotifyReady)
		}
	}
}

// reload re-reads the configuration file and applies it (SIGHUP). An
// invalid file, or one that changes what needs a restart, is refused and
// the running policy kept.
func (n *node) reload() {
	log := n.log
	n.mu.Lock()
	defer n.mu.Unlock()
	next, err := LoadConfig(Options{ConfigPath: n.opts.ConfigPath, NetNS: n.cfg.NetNS})
	switch {
	case err != nil:
		log.Error("reload refused: the configuration is invalid; keeping the running one", "error", err)
		return
	case next.NetNS != n.cfg.NetNS || next.StateDir != n.cfg.StateDir:
		log.Error("reload refused: netns and state_dir cannot change while running; restart mptcpd", "netns", next.NetNS, "state_dir", next.StateDir)
		return
	case next.API != n.cfg.API || next.Metrics != n.cfg.Metrics:
		log.Error("reload refused: [api] and [metrics] cannot change while running; restart mptcpd")
		return
	}
	if err := n.switchWatcher(next); err != nil {
		log.Error("reload refused: cannot watch interfaces", "error", err)
		return
	}
	prev := n.cfg
	n.cfg = next
	setLevel(n.opts.LogLevel, next)
	log.Info("configuration reloaded", "config", n.opts.ConfigPath)
	if err := n.reconcile("reload", true); err != nil {
		log.Error("reconcile after reload failed; the periodic resync retries", "error", err)
	}
	_ = prev
	n.source, n.applied = n.opts.ConfigPath, time.Now()
	n.broker.Publish(events.Event{Kind: events.KindPolicyApplied, Reason: "reload (SIGHUP)", Reconcile: n.lastReconcile})
}

// listenAPI opens the API's listeners as the configuration says.
func listenAPI(cfg *config.Config, backend api.Backend, m *metrics.Metrics, log *slog.Logger) (*api.Service, error) {
	opts := api.Options{
		Socket:    cfg.SocketPath(),
		SocketGID: -1,
		Access:    api.Access{DaemonUID: os.Getuid(), AdminGID: -1, ReadGID: os.Getgid(), AdminGroup: cfg.API.AdminGroup},
		TCP:       cfg.API.TCP.Listen,
		Insecure:  cfg.API.TCP.Insecure,
		Log:       log,
	}
	if g := cfg.API.Group; g != "" {
		gid, err := lookupGroup(g)
		if err != nil {
			return nil, fmt.Errorf("api.group: %w", err)
		}
		opts.SocketGID, opts.Access.ReadGID = gid, gid
	}
	if g := cfg.API.AdminGroup; g != "" {
		gid, err := lookupGroup(g)
		if err != nil {
			return nil, fmt.Errorf("api.admin_group: %w", err)
		}
		opts.Access.AdminGID = gid
	}
	if t := cfg.API.TCP; t.Listen != "" && !t.Insecure {
		tlsConf, err := api.ServerTLS(t.Cert, t.Key, t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("api.tcp: %w", err)
		}
		opts.TLS = tlsConf
	}
	if m != nil {
		opts.Unary = append(opts.Unary, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			resp, err := handler(ctx, req)
			m.Request(info.FullMethod, status.Code(api.ToStatus(err)).String())
			return resp, err
		})
	}
	return api.Listen(opts, backend)
}

func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("no group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %q has gid %q: %w", name, g.Gid, err)
	}
	return gid, nil
}

// pickMode returns the mode to run in for the configured one: auto picks
// the userspace path manager when the kernel has it (the daemon then
// decides per connection), the in-kernel one otherwise.
func pickMode(configured config.Mode, caps genl.Capabilities) (mode, reason string) {
	switch configured {
	case config.ModeAuto:
		if caps.Supports(genl.PathManagerUserspace) {
			return "userspace", "the kernel has the userspace path manager, so mptcpd decides per connection"
		}
		return "kernel", "the kernel has no userspace path manager; its in-kernel one decides"
	case config.ModeUserspace:
		return "userspace", ""
	}
	return "kernel", ""
}
