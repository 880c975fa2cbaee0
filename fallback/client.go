package fallback

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/mptcpd/mptcpd/capture"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/relay"
	"github.com/mptcpd/mptcpd/socks5"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	Config config.Fallback
	// Key is the pre-shared key (unless TLS is set).
	Key []byte
	// TLS, when set, authenticates with a client certificate.
	TLS *tls.Config
	// Users, when not empty, are the SOCKS5 server's users.
	Users map[string]string
	// Limits bound each session's subflows.
	Limits mpx.Limits
	// Engine tunes the sessions; Config's scheduler and sizes are applied
	// on top.
	Engine mpx.Config
	Log    *slog.Logger
	// Ready, when set, is called once every way in is open.
	Ready func()
}

// Client is the client role: the ways in (SOCKS5, transparent capture)
// and the MPX client that carries what comes in.
type Client struct {
	opts  ClientOptions
	mpx   *mpx.Client
	relay relay.Relay
}

// NewClient checks opts and returns a Client; Run starts it.
func NewClient(opts ClientOptions) (*Client, error) {
	cfg := opts.Config
	conv, err := netip.ParseAddrPort(cfg.Converter)
	if err != nil {
		return nil, fmt.Errorf("fallback.converter %q: want IP:port: %w", cfg.Converter, err)
	}
	if opts.TLS == nil && len(opts.Key) < 32 {
		return nil, errors.New("fallback: no key of 32 bytes or more and no TLS certificate")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	e := opts.Engine
	e.Scheduler = mpx.Scheduler(cfg.Scheduler)
	e.StaleLossCnt = cfg.StaleLossCnt
	e.ReceiveWindow = cfg.ReceiveWindow
	e.SendBuffer = cfg.SendBuffer
	e.Mark = cfg.Mark
	e.Logger = opts.Log
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("fallback: %w", err)
	}
	c := &Client{opts: opts}
	c.mpx = &mpx.Client{
		Converter: netip.AddrPortFrom(conv.Addr().Unmap(), conv.Port()),
		KeyID:     cfg.KeyID,
		Key:       opts.Key,
		TLS:       opts.TLS,
		Config:    e,
		Limits:    opts.Limits,
	}
	return c, nil
}

// MPX returns the client's session manager.
func (c *Client) MPX() *mpx.Client { return c.mpx }

// Dial opens a session to dst.
func (c *Client) Dial(ctx context.Context, dst mpx.Addr) (*mpx.Conn, error) {
	return c.mpx.Dial(ctx, dst)
}

// Run opens the ways in, in the calling thread's network namespace, and
// serves until ctx ends; then it removes the capture rules it installed
// and resets the sessions.
func (c *Client) Run(ctx context.Context) error {
	cfg := c.opts.Config
	log := c.opts.Log
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.mpx.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if cfg.SocksListen != "" {
		ln, err := net.Listen("tcp", cfg.SocksListen)
		if err != nil {
			return fmt.Errorf("fallback.socks_listen %s: %w", cfg.SocksListen, err)
		}
		srv := &socks5.Server{Users: c.opts.Users, Connect: c.socksConnect, Logger: log}
		log.Info("SOCKS5 server listening", "addr", ln.Addr())
		wg.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				log.Error("SOCKS5 server stopped", "err", err)
			}
		})
	}
	capt := cfg.Capture
	if capt.RedirectPort != 0 || capt.TProxyPort != 0 {
		exclude := append([]netip.Prefix{netip.PrefixFrom(c.mpx.Converter.Addr(), c.mpx.Converter.Addr().BitLen())}, capt.ExcludePrefixes...)
		rcfg := capture.Config{
			RedirectPort: capt.RedirectPort, TProxyPort: capt.TProxyPort,
			TProxyInterfaces: capt.TProxyInterfaces, Mark: cfg.Mark, Exclude: exclude, Ports: capt.Ports,
		}
		var lns []*capture.Listener
		closeAll := func() {
			for _, l := range lns {
				_ = l.Close()
			}
		}
		for _, l := range []struct {
			mode capture.Mode
			port uint16
		}{{capture.Redirect, capt.RedirectPort}, {capture.TProxy, capt.TProxyPort}} {
			if l.port == 0 {
				continue
			}
			ln, err := capture.Listen(ctx, l.mode, "tcp", fmt.Sprintf("[::]:%d", l.port), log)
			if err != nil {
				closeAll()
				return fmt.Errorf("fallback capture: %w", err)
			}
			lns = append(lns, ln)
		}
		rules, err := capture.Install(ctx, rcfg)
		if err != nil {
			closeAll()
			return fmt.Errorf("fallback capture: installing nftables rules: %w", err)
		}
		log.Info("transparent capture installed", "redirect_port", capt.RedirectPort, "tproxy_port", capt.TProxyPort)
		defer func() {
			if err := rules.Remove(); err != nil {
				log.Error("removing capture rules", "err", err)
			} else {
				log.Info("transparent capture removed")
			}
		}()
		for _, ln := range lns {
			wg.Go(func() { c.serveCaptured(ctx, ln) })
		}
		defer closeAll()
	}
	if c.opts.Ready != nil {
		c.opts.Ready()
	}
	<-ctx.Done()
	return nil
}

func (c *Client) socksConnect(ctx context.Context, t socks5.Target) (relay.HalfCloser, netip.AddrPort, error) {
	dst := mpx.Addr{Host: t.Host, IP: t.Addr, Port: t.Port}
	s, err := c.mpx.Dial(ctx, dst)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return s, netip.AddrPort{}, nil
}

func (c *Client) serveCaptured(ctx context.Context, ln *capture.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		a, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				c.opts.Log.Error("capture listener stopped", "err", err)
			}
			return
		}
		wg.Go(func() {
			s, err := c.mpx.Dial(ctx, mpx.AddrFromAddrPort(a.Dst))
			if err != nil {
				c.opts.Log.Debug("captured connection refused", "destination", a.Dst, "err", err)
				// Like the destination itself would: a reset.
				_ = a.Conn.SetLinger(0)
				_ = a.Conn.Close()
				return
			}
			_, _, _ = c.relay.Pipe(ctx, a.Conn, s)
		})
	}
}
