package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/fallback"
	"github.com/mptcpd/mptcpd/metrics"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/netns"
	"github.com/mptcpd/mptcpd/pm"
)

// fallbackLimits turns the policy's limits into the fallback's: explicit
// values as they are, "auto" as many extra subflows as paths beyond the
// first and every advertised address.
func fallbackLimits(cfg *config.Config, paths int) mpx.Limits {
	l := mpx.Limits{Subflows: int(cfg.Limits.Subflows.Value), AddAddrAccepted: int(cfg.Limits.AddAddrAccepted.Value)}
	if cfg.Limits.Subflows.Auto {
		l.Subflows = min(max(paths-1, 1), config.MaxLimit)
	}
	if cfg.Limits.AddAddrAccepted.Auto {
		l.AddAddrAccepted = config.MaxLimit
	}
	return l
}

// newFallbackClient builds the client role from the configuration.
func newFallbackClient(cfg *config.Config, nsfd int, log *slog.Logger, ready func(), events func(mpx.Event)) (*fallback.Client, error) {
	f := cfg.Fallback
	opts := fallback.ClientOptions{Config: f, Log: log.With("role", "fallback"), Ready: ready, Engine: mpx.Config{Events: events}}
	if f.TLS.Cert != "" {
		tc, err := clientTLS(f.TLS)
		if err != nil {
			return nil, fmt.Errorf("fallback.tls: %w", err)
		}
		opts.TLS = tc
	} else {
		key, err := config.LoadKey(f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("fallback.key_file: %w", err)
		}
		opts.Key = key
	}
	if f.SocksUsersFile != "" {
		users, err := config.LoadUsers(f.SocksUsersFile)
		if err != nil {
			return nil, fmt.Errorf("fallback.socks_users_file: %w", err)
		}
		opts.Users = users
	}
	opts.Limits = fallbackLimits(cfg, 2)
	c, err := fallback.NewClient(opts)
	if err != nil {
		return nil, err
	}
	if nsfd != 0 {
		c.MPX().InNS = func(fn func() error) error { return netns.Do(nsfd, fn) }
	}
	return c, nil
}

// clientTLS is the fallback client's certificate and the converter's CA.
func clientTLS(t config.FallbackTLS) (*tls.Config, error) {
	conf, err := api.ClientTLS(t.Cert, t.Key, t.CA)
	if err != nil {
		return nil, err
	}
	conf.ServerName = t.ServerName
	return conf, nil
}

// newConverter builds the converter role from the configuration.
func newConverter(cfg *config.Config, nsfd int, log *slog.Logger, events func(mpx.Event)) (*fallback.Converter, error) {
	c := cfg.Converter
	opts := fallback.ConverterOptions{Config: c, Mark: cfg.Fallback.Mark, Log: log.With("role", "converter"),
		Limits: fallbackLimits(cfg, 2), Engine: mpx.Config{Events: events}}
	if !cfg.Limits.Subflows.Auto {
		opts.Limits.Subflows = int(cfg.Limits.Subflows.Value)
	} else {
		opts.Limits.Subflows = config.MaxLimit
	}
	if c.KeysFile != "" {
		keys, err := config.LoadKeys(c.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("converter.keys_file: %w", err)
		}
		opts.Keys = keys
	}
	if c.TLS.Cert != "" {
		conf, err := api.ServerTLS(c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("converter.tls: %w", err)
		}
		opts.TLS = conf
	}
	if nsfd != 0 {
		opts.InNS = func(fn func() error) error { return netns.Do(nsfd, fn) }
	}
	return fallback.NewConverter(opts)
}

// converterRole is a running converter.
type converterRole struct {
	conv *fallback.Converter
	port uint16
	ids  fallback.IDs
	done chan struct{}
}

// startConverter opens the converter's listeners in the namespace and
// serves them until ctx ends.
func startConverter(ctx context.Context, cfg *config.Config, nsfd int, log *slog.Logger, events func(mpx.Event)) (*converterRole, error) {
	conv, err := newConverter(cfg, nsfd, log, events)
	if err != nil {
		return nil, err
	}
	var lns []net.Listener
	if err := netns.Do(nsfd, func() error {
		var err error
		lns, err = conv.Listen(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	r := &converterRole{conv: conv, done: make(chan struct{})}
	if _, p, err := net.SplitHostPort(cfg.Converter.Listen[0]); err == nil {
		n, _ := strconv.Atoi(p)
		r.port = uint16(n)
	}
	go func() {
		defer close(r.done)
		if err := conv.Serve(ctx, lns); err != nil {
			log.Error("converter stopped", "err", err)
		}
	}()
	return r, nil
}

// update gives the converter the host's addresses and what to advertise.
func (r *converterRole) update(cfg *config.Config, st netmon.State, wants []pm.Want) {
	own := make([]netip.Addr, 0, len(st.Addrs))
	for _, a := range st.Addrs {
		own = append(own, a.Prefix.Addr())
	}
	r.conv.SetHost(own, fallback.Adverts(wants, r.port, &r.ids))
}

// fallbackUsable says whether the fallback client is configured enough to
// run (mode auto uses it only then).
func fallbackUsable(cfg *config.Config) bool {
	f := cfg.Fallback
	return f.Converter != "" && (f.KeyFile != "" || f.TLS.Cert != "")
}

// runFallback is the daemon in fallback mode: no kernel MPTCP is used; the
// interfaces the policy selects are the fallback client's paths.
func runFallback(ctx context.Context, opts Options, cfg *config.Config, nsfd int, reason string) error {
	log := opts.Log
	fn := &fallbackNode{started: time.Now(), nsfd: nsfd, reason: reason, source: opts.ConfigPath, cfg: cfg, broker: &events.Broker{}}
	publish := func(e mpx.Event) {
		if ev, ok := mpxEvent(e); ok {
			fn.broker.Publish(ev)
		}
	}
	opened := make(chan struct{})
	client, err := newFallbackClient(cfg, nsfd, log, func() { close(opened) }, publish)
	if err != nil {
		return err
	}
	fn.client = client.MPX()
	var m *metrics.Metrics
	var ml net.Listener
	if cfg.Metrics.Listen != "" {
		m = metrics.New(func() float64 { return float64(len(client.MPX().Sessions())) })
		if ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			return err
		}
		defer ml.Close()
	}
	svc, err := listenAPI(cfg, fn, m, log)
	if err != nil {
		return err
	}
	defer svc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var conv *converterRole
	if cfg.Converter.Enabled {
		if conv, err = startConverter(ctx, cfg, nsfd, log, publish); err != nil {
			return err
		}
		fn.conv = conv
	}
	w, err := watch(ctx, nsfd, cfg.Addresses.RequireRoute, nil)
	if err != nil {
		return err
	}
	defer w.close()

	log.Info("mptcpd started", "mode", "fallback", "reason", reason, "netns", cfg.NetNS,
		"config", opts.ConfigPath, "converter", cfg.Fallback.Converter, "api", cfg.SocketPath())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := svc.Serve(ctx); err != nil {
			log.Error("API stopped", "error", err)
		}
	})
	if ml != nil {
		wg.Go(func() {
			if err := m.Serve(ctx, ml); err != nil {
				log.Error("metrics stopped", "error", err)
			}
		})
	}
	runErr := make(chan error, 1)
	wg.Go(func() {
		// The ways in (listeners, nftables rules) belong to the namespace:
		// they are opened on a thread inside it.
		runErr <- netns.Do(nsfd, func() error { return client.Run(ctx) })
	})
	select {
	case <-opened:
	case err := <-runErr:
		cancel()
		wg.Wait()
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	go func() {
		if err := <-runErr; err != nil {
			log.Error("fallback client stopped", "err", err)
			cancel()
		}
	}()

	var ids fallback.IDs
	apply := func(why string) error {
		st, err := w.mon.State()
		if err != nil {
			return err
		}
		wants, _ := pm.Desired(cfg, st)
		paths := fallback.Paths(wants, &ids)
		limits := fallbackLimits(cfg, len(paths))
		client.MPX().SetLimits(limits)
		client.MPX().SetPaths(paths)
		fn.update(cfg, st, paths, limits)
		if conv != nil {
			conv.update(cfg, st, wants)
		}
		log.Debug("fallback paths", "trigger", why, "paths", len(paths))
		return nil
	}
	w.mon.Refresh()
	if err := apply("start"); err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("reading interfaces: %w", err)
	}
	fn.ready.Store(true)
	svc.SetServing(true)
	notify(log, sddaemon.SdNotifyReady)
	log.Info("ready", "reason", "fallback paths applied")
	resync := time.NewTicker(5 * time.Minute)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			notify(log, sddaemon.SdNotifyStopping)
			wg.Wait()
			if conv != nil {
				<-conv.done
			}
			log.Info("mptcpd stopped")
			return nil
		case err := <-w.done:
			cancel()
			wg.Wait()
			return fmt.Errorf("watching interfaces stopped: %w", err)
		case <-w.mon.Changes():
			if err := apply("interface change"); err != nil {
				log.Error("applying paths", "err", err)
			}
		case <-resync.C:
			w.mon.Refresh()
			_ = apply("periodic resync")
		case <-opts.Reload:
			notify(log, sddaemon.SdNotifyReloading)
			next, err := LoadConfig(Options{ConfigPath: opts.ConfigPath, NetNS: cfg.NetNS})
			switch {
			case err != nil:
				log.Error("reload refused: the configuration is invalid; keeping the running one", "error", err)
			case !reflect.DeepEqual(next.Fallback, cfg.Fallback) || next.Mode != cfg.Mode:
				log.Error("reload refused: [fallback] and mode cannot change while running; restart mptcpd")
			default:
				cfg = next
				_ = apply("reload")
				log.Info("configuration reloaded", "config", opts.ConfigPath)
			}
			notify(log, sddaemon.SdNotifyReady)
		}
	}
}
