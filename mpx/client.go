package mpx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Path is a local address subflows may leave from: one of the
// endpoints the policy gives, with the kernel's words.
type Path struct {
	// ID is the endpoint's ID, 1–255; it names the path to the converter
	// (JOIN's L) and in REMOVE_ADDR.
	ID uint8
	// Addr is the local address; an invalid Addr lets routing choose.
	Addr netip.Addr
	// Dev, when set, binds subflows to the interface (SO_BINDTODEVICE).
	Dev string
	// Backup subflows carry data only when no other subflow can.
	Backup bool
	// Fullmesh opens a subflow from this path to every converter address
	// known, advertised ones included; otherwise the path opens one
	// subflow, to the address the session was opened on.
	Fullmesh bool
}

// Limits are the kernel's MPTCP limits, with the same meaning.
type Limits struct {
	// Subflows is the most extra subflows per session (default 2).
	Subflows int
	// AddAddrAccepted is the most advertised converter addresses a
	// session uses (default 0: none).
	AddAddrAccepted int
}

// Client opens sessions to a converter and keeps their subflows as the
// paths say: the fallback mode's path manager.
type Client struct {
	// Converter is the address sessions are opened on (R = 0).
	Converter netip.AddrPort
	// KeyID and Key are the client's pre-shared key; with TLS they are
	// unused.
	KeyID string
	Key   []byte
	// TLS, when set, makes every subflow TLS with a client certificate.
	TLS *tls.Config
	// Config tunes the sessions.
	Config Config
	// Limits bound each session's subflows.
	Limits Limits
	// DialTimeout bounds one subflow's TCP connect and handshake
	// (default 5 s).
	DialTimeout time.Duration
	// KernelMPTCP opens subflows as kernel MPTCP sockets, for a client
	// in kernel mode whose kernel does the multipath itself.
	KernelMPTCP bool
	// InNS, when set, runs fn with the calling thread in the network
	// namespace subflows belong to (netns.NS.Do).
	InNS func(fn func() error) error

	once     sync.Once
	cfg      Config
	pool     *pool
	mu       sync.Mutex
	paths    []Path
	sessions map[*Conn]*clientSession
	closed   bool
}

// clientSession is the path manager's state of one session.
type clientSession struct {
	c       *Conn
	keys    sessionKeys
	remotes map[uint8]addrAdvert
	slots   map[subflowKey]*slotState
}

type subflowKey struct{ local, remote uint8 }

// slotState is one wanted subflow: dialling, live, or waiting to retry.
type slotState struct {
	gen      uint32
	live     bool
	dialing  bool
	failures int
	retry    *time.Timer
	retryAt  time.Time
}

func (cl *Client) init() {
	cl.once.Do(func() {
		cl.cfg = cl.Config.withDefaults()
		cl.pool = newPool()
		cl.sessions = make(map[*Conn]*clientSession)
		if cl.Limits.Subflows == 0 {
			cl.Limits.Subflows = 2
		}
		if cl.DialTimeout == 0 {
			cl.DialTimeout = 5 * time.Second
		}
	})
}

// SetPaths replaces the local paths and brings every session to them:
// new paths get subflows at once, subflows of removed paths are
// withdrawn.
func (cl *Client) SetPaths(paths []Path) {
	cl.init()
	cl.mu.Lock()
	old := cl.paths
	cl.paths = slices.Clone(paths)
	sessions := make([]*clientSession, 0, len(cl.sessions))
	for _, s := range cl.sessions {
		sessions = append(sessions, s)
	}
	cl.mu.Unlock()
	for _, p := range old {
		i := slices.IndexFunc(paths, func(q Path) bool { return q.ID == p.ID && q.Addr == p.Addr })
		switch {
		case i < 0:
			for _, s := range sessions {
				s.c.withdraw(p.ID)
			}
		case paths[i].Backup != p.Backup:
			// The path stays, its backup flag changed: MP_PRIO's job.
			for _, s := range sessions {
				s.c.setBackup(p.ID, paths[i].Backup)
			}
		}
	}
	for _, s := range sessions {
		// A path back after a failure is tried at once.
		cl.mu.Lock()
		for k, st := range s.slots {
			if !st.live && !st.dialing && slices.ContainsFunc(paths, func(q Path) bool { return q.ID == k.local }) {
				if st.retry != nil {
					st.retry.Stop()
				}
				st.retryAt = time.Time{}
			}
		}
		cl.mu.Unlock()
		cl.reconcile(s)
	}
}

// SetLimits changes the limits; sessions follow them as their subflows
// come and go.
func (cl *Client) SetLimits(l Limits) {
	cl.init()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if l.Subflows == 0 {
		l.Subflows = 2
	}
	cl.Limits = l
}

// Paths returns the current local paths.
func (cl *Client) Paths() []Path {
	cl.init()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return slices.Clone(cl.paths)
}

// Sessions returns the live sessions.
func (cl *Client) Sessions() []*Conn {
	cl.init()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	all := make([]*Conn, 0, len(cl.sessions))
	for c := range cl.sessions {
		all = append(all, c)
	}
	return all
}

// Close resets every session and refuses new ones.
func (cl *Client) Close() {
	cl.init()
	cl.mu.Lock()
	cl.closed = true
	all := make([]*Conn, 0, len(cl.sessions))
	for c := range cl.sessions {
		all = append(all, c)
	}
	cl.mu.Unlock()
	for _, c := range all {
		c.reset(StatusFailure, "client shutting down", ErrClosed)
	}
}

// Dial opens a session to dst through the converter. It returns once the
// converter has reached dst, with the converter's refusal as a
// *StatusError otherwise.
func (cl *Client) Dial(ctx context.Context, dst Addr) (*Conn, error) {
	if err := dst.Validate(); err != nil {
		return nil, fmt.Errorf("destination %v: %w", dst, err)
	}
	if err := cl.Config.Validate(); err != nil {
		return nil, err
	}
	cl.init()
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, ErrClosed
	}
	paths := cl.ordered()
	cl.mu.Unlock()
	var nc net.Conn
	var first Path
	var errs []error
	for _, p := range paths {
		var err error
		if nc, err = cl.dial(ctx, p, cl.Converter); err == nil {
			first = p
			break
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if nc == nil {
		return nil, fmt.Errorf("no path reaches converter %v: %w", cl.Converter, errors.Join(errs...))
	}
	psk, err := cl.psk(nc)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	// The converter answers after reaching the destination, which has its
	// own time limit there; allow for it.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	keys, acc, err := clientOpen(nc, psk, cl.KeyID, dst, first.ID, first.Backup, uint32(cl.cfg.ReceiveWindow), time.Now())
	stop()
	if err != nil {
		_ = nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("opening a session to %v: %w", dst, ctx.Err())
		}
		return nil, fmt.Errorf("opening a session to %v: %w", dst, err)
	}
	_ = nc.SetDeadline(time.Time{})
	c := newConn(&cl.cfg, cl.pool, true, keys, dst, acc.window)
	s := &clientSession{c: c, keys: keys, remotes: make(map[uint8]addrAdvert), slots: make(map[subflowKey]*slotState)}
	s.remotes[0] = addrAdvert{Addr: cl.Converter}
	key := subflowKey{first.ID, 0}
	s.slots[key] = &slotState{live: true, gen: 1}
	c.onSubflowGone = func(sf *subflow) { cl.subflowGone(s, sf) }
	c.onAddAddr = func(a addrAdvert) { cl.addAddr(s, a) }
	c.onDone = func(c *Conn) { cl.forget(s) }
	cl.mu.Lock()
	cl.sessions[c] = s
	cl.mu.Unlock()
	c.emit(Event{Kind: EventCreated, Token: keys.token})
	sf := &subflow{nc: nc, local: addrPortOf(nc.LocalAddr()), remote: addrPortOf(nc.RemoteAddr()),
		localID: first.ID, gen: 1, backup: first.Backup}
	if err := c.attach(sf); err != nil {
		c.end(err)
		_ = nc.Close()
		return nil, err
	}
	c.emit(Event{Kind: EventEstablished, Token: keys.token})
	cl.cfg.Logger.Debug("session opened", "token", fmt.Sprintf("%016x", keys.token), "destination", dst, "bound", acc.bound)
	cl.reconcile(s)
	return c, nil
}

// ordered returns the paths to try the first subflow on: non-backup
// first; an unbound path when there are none.
func (cl *Client) ordered() []Path {
	if len(cl.paths) == 0 {
		return []Path{{}}
	}
	ps := slices.Clone(cl.paths)
	slices.SortStableFunc(ps, func(a, b Path) int {
		switch {
		case a.Backup == b.Backup:
			return 0
		case b.Backup:
			return -1
		}
		return 1
	})
	return ps
}

func (cl *Client) psk(nc net.Conn) ([]byte, error) {
	if cl.TLS == nil {
		if len(cl.Key) < 32 {
			return nil, errors.New("pre-shared key shorter than 32 bytes")
		}
		return cl.Key, nil
	}
	st := nc.(*tls.Conn).ConnectionState()
	k, err := st.ExportKeyingMaterial("EXPORTER-mpx1-open", nil, 32)
	if err != nil {
		return nil, fmt.Errorf("TLS exporter: %w", err)
	}
	return k, nil
}

// dial opens one subflow's TCP (and TLS) connection from path p.
func (cl *Client) dial(ctx context.Context, p Path, to netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: cl.DialTimeout}
	d.SetMultipathTCP(cl.KernelMPTCP)
	if p.Addr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.Addr, 0))
	}
	mark := cl.cfg.Mark
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if mark != 0 {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); serr != nil {
					serr = fmt.Errorf("SO_MARK: %w", serr)
					return
				}
			}
			if p.Dev != "" {
				if serr = unix.BindToDevice(int(fd), p.Dev); serr != nil {
					serr = fmt.Errorf("binding to %s: %w", p.Dev, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	network := "tcp"
	if to.Addr().Is4() {
		network = "tcp4"
	}
	var nc net.Conn
	var err error
	dialIt := func() error {
		nc, err = d.DialContext(ctx, network, to.String())
		return nil
	}
	if cl.InNS != nil {
		if nsErr := cl.InNS(dialIt); nsErr != nil {
			return nil, nsErr
		}
	} else {
		_ = dialIt()
	}
	if err != nil {
		return nil, fmt.Errorf("subflow from %s to %v: %w", pathName(p), to, err)
	}
	if cl.TLS != nil {
		cfg := cl.TLS
		if cfg.ServerName == "" {
			// Every subflow checks the converter's certificate against the
			// address sessions are opened on, whichever address it dialled.
			cfg = cfg.Clone()
			cfg.ServerName = cl.Converter.Addr().String()
		}
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, cl.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("TLS to converter %v: %w", to, err)
		}
		nc = tc
	}
	return nc, nil
}

func pathName(p Path) string {
	switch {
	case p.Dev != "" && p.Addr.IsValid():
		return fmt.Sprintf("%s (%s, id %d)", p.Addr, p.Dev, p.ID)
	case p.Addr.IsValid():
		return fmt.Sprintf("%s (id %d)", p.Addr, p.ID)
	case p.Dev != "":
		return p.Dev
	}
	return "the default route"
}

// wanted lists the subflows the session should have, in order of
// preference, within the limits.
func (cl *Client) wanted(s *clientSession) map[subflowKey]Path {
	want := make(map[subflowKey]Path)
	total := cl.Limits.Subflows + 1
	add := func(k subflowKey, p Path) {
		if len(want) < total {
			want[k] = p
		}
	}
	if len(cl.paths) == 0 {
		add(subflowKey{0, 0}, Path{})
	}
	for _, p := range cl.paths {
		add(subflowKey{p.ID, 0}, p)
	}
	var ids []uint8
	for id := range s.remotes {
		if id != 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > cl.Limits.AddAddrAccepted {
		ids = ids[:cl.Limits.AddAddrAccepted]
	}
	fullmesh := slices.ContainsFunc(cl.paths, func(p Path) bool { return p.Fullmesh })
	for _, id := range ids {
		r := s.remotes[id]
		if fullmesh {
			for _, p := range cl.paths {
				if p.Fullmesh && p.Addr.Is4() == r.Addr.Addr().Is4() {
					pp := p
					pp.Backup = p.Backup || r.Backup
					add(subflowKey{p.ID, id}, pp)
				}
			}
		} else {
			add(subflowKey{0, id}, Path{Backup: r.Backup})
		}
	}
	return want
}

// reconcile dials the wanted subflows that are missing and not waiting
// for a retry.
func (cl *Client) reconcile(s *clientSession) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed || s.c.isDone() {
		return
	}
	now := time.Now()
	for k, p := range cl.wanted(s) {
		st := s.slots[k]
		if st == nil {
			st = &slotState{}
			s.slots[k] = st
		}
		if st.live || st.dialing || now.Before(st.retryAt) {
			continue
		}
		st.dialing = true
		st.gen++
		remote := s.remotes[k.remote].Addr
		go cl.join(s, k, p, remote, st.gen)
	}
}

// join opens one subflow and JOINs it to the session.
func (cl *Client) join(s *clientSession, k subflowKey, p Path, remote netip.AddrPort, gen uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), cl.DialTimeout)
	err := cl.joinOnce(ctx, s, k, p, remote, gen)
	cancel()
	cl.mu.Lock()
	st := s.slots[k]
	st.dialing = false
	if err == nil {
		st.live = true
		st.failures = 0
		cl.mu.Unlock()
		return
	}
	if (errors.Is(err, &StatusError{Status: StatusUnknownToken}) || errors.Is(err, syscall.ECONNREFUSED)) && !s.anyLive() {
		// The converter has forgotten the session (it restarted), or
		// nothing listens where it was: with no subflow left, the
		// session is over.
		cl.mu.Unlock()
		s.c.end(fmt.Errorf("the converter ended the session: %w", err))
		return
	}
	cl.scheduleRetry(s, k, st)
	cl.mu.Unlock()
	cl.cfg.Logger.Debug("join failed", "token", fmt.Sprintf("%016x", s.keys.token), "path", pathName(p), "remote", remote, "err", err)
}

func (cl *Client) joinOnce(ctx context.Context, s *clientSession, k subflowKey, p Path, remote netip.AddrPort, gen uint32) error {
	nc, err := cl.dial(ctx, p, remote)
	if err != nil {
		return err
	}
	_ = nc.SetDeadline(time.Now().Add(cl.DialTimeout))
	j := &joinRequest{backup: p.Backup, local: k.local, remote: k.remote, generation: gen}
	if err := clientJoin(nc, &s.keys, j); err != nil {
		_ = nc.Close()
		return err
	}
	_ = nc.SetDeadline(time.Time{})
	sf := &subflow{nc: nc, local: addrPortOf(nc.LocalAddr()), remote: addrPortOf(nc.RemoteAddr()),
		localID: k.local, remoteID: k.remote, gen: gen, backup: p.Backup}
	if err := s.c.attach(sf); err != nil {
		_ = nc.Close()
		return err
	}
	return nil
}

// scheduleRetry waits before the next attempt: 1 s, doubling up to 30 s,
// with jitter. Called with cl.mu held.
func (cl *Client) scheduleRetry(s *clientSession, k subflowKey, st *slotState) {
	st.failures++
	d := time.Second << min(st.failures-1, 5)
	d = min(d, 30*time.Second)
	d = d/2 + rand.N(d/2+1)
	st.retryAt = time.Now().Add(d)
	if st.retry != nil {
		st.retry.Stop()
	}
	st.retry = time.AfterFunc(d, func() { cl.reconcile(s) })
}

// subflowGone re-dials a subflow that ended, after a pause.
func (cl *Client) subflowGone(s *clientSession, sf *subflow) {
	cl.mu.Lock()
	k := subflowKey{sf.localID, sf.remoteID}
	st := s.slots[k]
	if st != nil && st.gen == sf.gen {
		st.live = false
		cl.scheduleRetry(s, k, st)
	}
	cl.mu.Unlock()
}

// addAddr takes in an address the converter advertised.
func (cl *Client) addAddr(s *clientSession, a addrAdvert) {
	cl.mu.Lock()
	if _, ok := s.remotes[a.ID]; !ok && len(s.remotes) > 255 {
		cl.mu.Unlock()
		return
	}
	s.remotes[a.ID] = a
	cl.mu.Unlock()
	cl.reconcile(s)
}

// anyLive says whether the session has a live subflow. Called with cl.mu
// held.
func (s *clientSession) anyLive() bool {
	for _, st := range s.slots {
		if st.live {
			return true
		}
	}
	return false
}

func (cl *Client) forget(s *clientSession) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	delete(cl.sessions, s.c)
	for _, st := range s.slots {
		if st.retry != nil {
			st.retry.Stop()
		}
	}
}

// PathDown withdraws a local path's subflows at once, before TCP would
// notice: the interface under it went down.
func (cl *Client) PathDown(id uint8) {
	for _, c := range cl.Sessions() {
		c.withdraw(id)
	}
}

func (c *Conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
