// Package daemon is mptcpd's main loop: it loads the configuration, takes
// charge of one network namespace, follows its interfaces and keeps the
// kernel's path manager reconciled with the policy until it is stopped.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
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
	if cfg.Mode != "kernel" && cfg.Mode != "auto" {
		return nil, fmt.Errorf("%s: mode %q is not available in this version of mptcpd: only \"kernel\" (and \"auto\", which picks it) are; set mode = \"kernel\"", opts.ConfigPath, cfg.Mode)
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
	if others := otherPathManagers(inode); len(others) > 0 {
		return fmt.Errorf("another MPTCP path-manager daemon manages %s: %s; two would fight over the endpoints — stop it first (systemctl stop mptcp.service) and start mptcpd again",
			nsName, strings.Join(others, ", "))
	}

	caps, err := genl.Probe(genl.WithNetNS(nsfd))
	if err != nil {
		return fmt.Errorf("probing the kernel's MPTCP: %w", err)
	}
	if !caps.Family {
		return fmt.Errorf("the kernel has no MPTCP path manager (no %s netlink family): %w", genl.FamilyName, genl.ErrUnavailable)
	}
	if cfg.Mode == "auto" {
		log.Info("mode auto picked kernel", "reason", "the only mode this version implements")
	}
	client, err := genl.New(genl.WithNetNS(nsfd))
	if err != nil {
		return err
	}
	defer client.Close()
	store := &pm.FileStore{Path: filepath.Join(cfg.StateDir, fmt.Sprintf("netns-%d.json", inode))}
	defer store.Close()
	rec := pm.NewReconciler(kernel{client, nsfd}, store, log)
	if !caps.Enabled {
		log.Warn("MPTCP is disabled in this namespace (net.mptcp.enabled = 0): endpoints are kept, but applications get plain TCP")
	}
	if networkManagerIn(inode) {
		rec.DeferTo("NetworkManager")
		log.Info("NetworkManager runs in this namespace: interfaces on which it has MPTCP endpoints are left to it")
	}
	if err := rec.SelectPathManager(genl.PathManagerKernel); err != nil {
		return err
	}

	log.Info("mptcpd started", "mode", "kernel", "netns", cfg.NetNS, "config", opts.ConfigPath,
		"path_managers", caps.PathManagers, "family_version", caps.FamilyVersion)

	err = loop(ctx, opts, log, cfg, rec, nsfd)

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
}

// watch starts a Monitor of the namespace; it reads and watches routes only
// when the policy needs them (require_route), so a host with a large
// routing table does not re-read it on every change. Without routes, new
// addresses go to rec's fast path straight from the goroutine that
// receives them, ahead of the full reconcile.
func watch(ctx context.Context, log *slog.Logger, nsfd int, routes bool, rec *pm.Reconciler) (*watcher, error) {
	opts := []netmon.Option{netmon.WithNetNS(nsfd)}
	if !routes {
		opts = append(opts, netmon.WithoutRoutes(), netmon.WithNewAddrs(func(added []netmon.NewAddr) {
			res, err := rec.AddNew(added)
			if !log.Enabled(ctx, slog.LevelDebug) {
				return
			}
			if err != nil {
				// The full reconcile that follows tries again, and reports
				// what still fails.
				log.Debug("fast path failed; the full reconcile follows", "error", err)
			}
			for _, s := range res.Skipped {
				log.Debug("new address not made an endpoint at once", "addr", s.Addr, "interface", s.Interface, "reason", s.Reason)
			}
		}))
	}
	mon, err := netmon.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("watching interfaces: %w", err)
	}
	ctx, stop := context.WithCancel(ctx)
	w := &watcher{mon: mon, done: make(chan error, 1), stop: stop, routes: routes}
	go func() { w.done <- mon.Run(ctx) }()
	return w, nil
}

func (w *watcher) close() {
	w.stop()
	<-w.done
	_ = w.mon.Close()
}

// loop reconciles at start, on every interface change, on reload and
// periodically, until ctx ends.
func loop(ctx context.Context, opts Options, log *slog.Logger, cfg *config.Config, rec *pm.Reconciler, nsfd int) error {
	w, err := watch(ctx, log, nsfd, cfg.Addresses.RequireRoute, rec)
	if err != nil {
		return err
	}
	defer func() { w.close() }()
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
	ready := false

	// reconcile reads the interfaces and applies the policy. Only a change
	// notification may use the state netmon keeps from notifications; the
	// first run, retries, reloads and the periodic resync read everything
	// afresh.
	reconcile := func(why string) {
		start := time.Now()
		if why != "interface change" {
			w.mon.Refresh()
		}
		// The state read next has every change signalled so far: a signal
		// still waiting would only repeat this reconcile.
		select {
		case <-w.mon.Changes():
		default:
		}
		st, err := w.mon.State()
		if err == nil {
			read := time.Since(start)
			var res pm.Result
			res, err = rec.Reconcile(cfg, st)
			log.Debug("reconciled", "trigger", why, "changes", res.Changes(), "owned", len(res.Owned), "foreign", len(res.Foreign), "skipped", len(res.Skipped),
				"read_interfaces", read, "took", time.Since(start))
			for _, s := range res.Skipped {
				log.Debug("address not used", "addr", s.Addr, "interface", s.Interface, "reason", s.Reason)
			}
		}
		if err != nil {
			log.Error("reconcile failed; retrying", "trigger", why, "error", err, "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
			return
		}
		backoff = time.Second
		if !ready {
			ready = true
			notify(log, sddaemon.SdNotifyReady)
			log.Info("ready", "reason", "first reconcile done")
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.done:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watching interfaces stopped: %w", err)
		case <-retry.C:
			reconcile("start or retry")
		case <-w.mon.Changes():
			reconcile("interface change")
		case <-periodic.C:
			reconcile("periodic resync")
		case <-watchdog:
			notify(log, sddaemon.SdNotifyWatchdog)
		case <-opts.Reload:
			notify(log, sddaemon.SdNotifyReloading)
			next, err := LoadConfig(Options{ConfigPath: opts.ConfigPath, NetNS: cfg.NetNS})
			switch {
			case err != nil:
				log.Error("reload refused: the configuration is invalid; keeping the running one", "error", err)
			case next.NetNS != cfg.NetNS || next.StateDir != cfg.StateDir:
				log.Error("reload refused: netns and state_dir cannot change while running; restart mptcpd", "netns", next.NetNS, "state_dir", next.StateDir)
			default:
				if next.Addresses.RequireRoute != w.routes {
					nw, err := watch(ctx, log, nsfd, next.Addresses.RequireRoute, rec)
					if err != nil {
						log.Error("reload refused: cannot watch interfaces", "error", err)
						break
					}
					w.close()
					w = nw
				}
				cfg = next
				setLevel(opts.LogLevel, cfg)
				log.Info("configuration reloaded", "config", opts.ConfigPath)
				reconcile("reload")
			}
			notify(log, sddaemon.SdNotifyReady)
		}
	}
}
