// Package fallback runs mptcpd's userspace fallback datapath: the client
// role (mode "fallback"), which takes applications' TCP connections in
// through SOCKS5 or transparent capture and carries each over an MPX
// session (see mpx and docs/mpx-protocol.md), and the converter role,
// which ends those sessions and forwards them to their destinations. Both
// take their paths and limits from the same policy as kernel mode: the
// interface rules' subflow, backup and fullmesh endpoints are the client's
// paths, its signal endpoints the converter's advertised addresses.
package fallback

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mptcpd/mptcpd/capture"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/relay"
)

// ErrNotAllowed is wrapped by a destination the converter's rules refuse.
var ErrNotAllowed = errors.New("destination not allowed by the converter's rules")

// ConverterOptions configure a Converter.
type ConverterOptions struct {
	Config config.Converter
	// Keys are the clients' pre-shared keys by key id.
	Keys map[string][]byte
	// TLS, when set, requires mutual TLS on every subflow.
	TLS *tls.Config
	// Limits bound each session (limits.subflows).
	Limits mpx.Limits
	// Engine tunes the sessions.
	Engine mpx.Config
	// Mark is set on the sockets that reach destinations.
	Mark uint32
	// InNS, when set, runs fn in the managed network namespace.
	InNS func(fn func() error) error
	Log  *slog.Logger
}

// Converter is the converter role.
type Converter struct {
	opts  ConverterOptions
	srv   *mpx.Server
	relay relay.Relay

	mu      sync.Mutex
	own     []netip.Addr
	adverts []mpx.Advert
}

// NewConverter checks opts and returns a Converter.
func NewConverter(opts ConverterOptions) (*Converter, error) {
	if len(opts.Keys) == 0 && opts.TLS == nil {
		return nil, errors.New("converter: no client keys and no TLS: no client could authenticate (set converter.keys_file or converter.tls)")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Engine.Logger = opts.Log
	if err := opts.Engine.Validate(); err != nil {
		return nil, fmt.Errorf("converter: %w", err)
	}
	c := &Converter{opts: opts}
	c.srv = &mpx.Server{
		TLS:               opts.TLS,
		Connect:           c.connect,
		Handle:            c.handle,
		Advertise:         c.advertised,
		Config:            opts.Engine,
		MaxSessionsPerKey: opts.Config.MaxSessionsPerKey,
	}
	if opts.Limits.Subflows > 0 {
		c.srv.MaxSubflows = opts.Limits.Subflows + 1
	}
	if len(opts.Keys) > 0 {
		keys := opts.Keys
		c.srv.Key = func(id string) ([]byte, bool) {
			k, ok := keys[id]
			return k, ok
		}
	}
	return c, nil
}

// SetHost gives the converter this host's own addresses (refused as
// destinations unless allow_own) and the addresses to advertise.
func (c *Converter) SetHost(own []netip.Addr, adverts []mpx.Advert) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.own = slices.Clone(own)
	c.adverts = slices.Clone(adverts)
}

func (c *Converter) advertised() []mpx.Advert {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.adverts)
}

// Sessions returns the live sessions.
func (c *Converter) Sessions() []*mpx.Conn { return c.srv.Sessions() }

// Listen opens the configured listeners (MPTCP-enabled, so that clients
// in kernel mode reach the converter over kernel MPTCP) in the calling
// thread's network namespace.
func (c *Converter) Listen(ctx context.Context) ([]net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	var lns []net.Listener
	for _, addr := range c.opts.Config.Listen {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("converter: listening on %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Serve accepts sessions on lns until ctx ends.
func (c *Converter) Serve(ctx context.Context, lns []net.Listener) error {
	var wg sync.WaitGroup
	errs := make([]error, len(lns))
	for i, ln := range lns {
		c.opts.Log.Info("converter listening", "addr", ln.Addr())
		wg.Go(func() { errs[i] = c.srv.Serve(ctx, ln) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Allowed says whether the rules let a client reach ip:port.
func (c *Converter) Allowed(ip netip.Addr, port uint16) error {
	cfg := c.opts.Config
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsMulticast(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %v is not a unicast address", ErrNotAllowed, ip)
	case ip.IsLoopback() && !cfg.AllowLoopback:
		return fmt.Errorf("%w: %v is a loopback address (converter.allow_loopback)", ErrNotAllowed, ip)
	case (ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast()) && !cfg.AllowLinkLocal:
		return fmt.Errorf("%w: %v is link-local (converter.allow_link_local)", ErrNotAllowed, ip)
	}
	if !cfg.AllowOwn {
		c.mu.Lock()
		own := slices.Contains(c.own, ip)
		c.mu.Unlock()
		if own {
			return fmt.Errorf("%w: %v is the converter's own address (converter.allow_own)", ErrNotAllowed, ip)
		}
	}
	for _, p := range cfg.DenyPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %v is in denied prefix %v", ErrNotAllowed, ip, p)
		}
	}
	if len(cfg.AllowPrefixes) > 0 && !slices.ContainsFunc(cfg.AllowPrefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return fmt.Errorf("%w: %v is in no allowed prefix", ErrNotAllowed, ip)
	}
	if len(cfg.AllowPorts) > 0 && !slices.Contains(cfg.AllowPorts, port) {
		return fmt.Errorf("%w: port %d is not allowed", ErrNotAllowed, port)
	}
	return nil
}

// connect reaches a session's destination: names are resolved here, every
// address checked against the rules, and the first allowed one that
// answers is used, over MPTCP where the destination speaks it.
func (c *Converter) connect(ctx context.Context, keyID string, dst mpx.Addr) (net.Conn, netip.AddrPort, error) {
	timeout := c.opts.Config.DialTimeout.Duration
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ips := []netip.Addr{dst.IP}
	if dst.Host != "" {
		var err error
		if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", dst.Host); err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("resolving %s: %w", dst.Host, err)
		}
	}
	var errs []error
	d := net.Dialer{}
	d.SetMultipathTCP(true)
	if c.opts.Mark != 0 {
		capture.MarkDialer(&d, c.opts.Mark)
	}
	for _, ip := range ips {
		if err := c.Allowed(ip, dst.Port); err != nil {
			errs = append(errs, err)
			continue
		}
		var nc net.Conn
		var err error
		dialIt := func() error {
			nc, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip.Unmap(), dst.Port).String())
			return nil
		}
		if c.opts.InNS != nil {
			if nsErr := c.opts.InNS(dialIt); nsErr != nil {
				return nil, netip.AddrPort{}, nsErr
			}
		} else {
			_ = dialIt()
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tc := nc.(*net.TCPConn)
		mptcp, _ := tc.MultipathTCP()
		c.opts.Log.Debug("destination reached", "key_id", keyID, "destination", dst, "addr", ip, "mptcp", mptcp)
		return tc, netip.MustParseAddrPort(tc.LocalAddr().String()), nil
	}
	err := errors.Join(errs...)
	if len(errs) > 0 && errors.Is(errs[0], ErrNotAllowed) && len(errs) == len(ips) {
		return nil, netip.AddrPort{}, &mpx.StatusError{Status: mpx.StatusNotAllowed, Text: err.Error()}
	}
	if len(errs) == 1 {
		return nil, netip.AddrPort{}, errs[0]
	}
	return nil, netip.AddrPort{}, err
}

func (c *Converter) handle(ctx context.Context, s *mpx.Conn, upstream net.Conn) {
	up, ok := upstream.(relay.HalfCloser)
	if !ok {
		_ = upstream.Close()
		_ = s.Close()
		return
	}
	if _, _, err := c.relay.Pipe(ctx, s, up); err != nil && ctx.Err() == nil {
		c.opts.Log.Debug("session relay ended", "token", fmt.Sprintf("%016x", s.Token()), "err", err)
	}
}
