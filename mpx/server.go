package mpx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// handshakeTimeout bounds a subflow's OPEN or JOIN exchange.
const handshakeTimeout = 5 * time.Second

// Server is the converter's end of MPX: it accepts sessions from
// authenticated clients, connects them to their destinations and lets
// further subflows join them.
type Server struct {
	// Key returns the pre-shared key of a client's key id. Required
	// unless TLS is set.
	Key func(keyID string) ([]byte, bool)
	// TLS, when set, makes every subflow TLS; it must require and verify
	// client certificates (mutual TLS), which then authenticate clients.
	TLS *tls.Config
	// Connect reaches a session's destination for the client keyID (the
	// certificate's subject with TLS). It returns the connection and the
	// local address it is bound to, or an error: a *StatusError (e.g.
	// StatusNotAllowed) is sent as it is, network errors are mapped
	// (refused, unreachable, timeout).
	Connect func(ctx context.Context, keyID string, dst Addr) (net.Conn, netip.AddrPort, error)
	// Handle runs a session once it is established, with the connection
	// Connect returned; it owns both. Required.
	Handle func(ctx context.Context, c *Conn, upstream net.Conn)
	// Advertise returns the converter's addresses to advertise to
	// clients (ADD_ADDR), with IDs 1–255.
	Advertise func() []Advert
	// Config tunes the sessions.
	Config Config
	// MaxSubflows bounds a session's subflows (limits.subflows + 1).
	// Default 9.
	MaxSubflows int
	// MaxSessionsPerKey bounds one client's sessions. Default 10,000.
	MaxSessionsPerKey int
	// MaxHandshakes bounds the handshakes in progress. Default 1,024.
	MaxHandshakes int
	// JoinRate and JoinBurst bound JOINs per second per source address
	// and per token. Defaults 50 and 100.
	JoinRate, JoinBurst float64

	once     sync.Once
	cfg      Config
	pool     *pool
	mu       sync.Mutex
	sessions map[uint64]*Conn
	perKey   map[string]int
	keyOf    map[uint64]string
	replay   *replayCache
	joinsBy  *limiter
	shakes   chan struct{}
}

// Advert is an address the converter advertises.
type Advert struct {
	ID     uint8
	Addr   netip.AddrPort
	Backup bool
}

func (s *Server) init() {
	s.once.Do(func() {
		s.cfg = s.Config.withDefaults()
		s.pool = newPool()
		s.sessions = make(map[uint64]*Conn)
		s.perKey = make(map[string]int)
		s.keyOf = make(map[uint64]string)
		s.replay = newReplayCache(1 << 20)
		if s.MaxSubflows == 0 {
			s.MaxSubflows = 9
		}
		if s.MaxSessionsPerKey == 0 {
			s.MaxSessionsPerKey = 10000
		}
		if s.MaxHandshakes == 0 {
			s.MaxHandshakes = 1024
		}
		if s.JoinRate == 0 {
			s.JoinRate, s.JoinBurst = 50, 100
		}
		s.joinsBy = newLimiter(s.JoinRate, s.JoinBurst, 1<<16)
		s.shakes = make(chan struct{}, s.MaxHandshakes)
	})
}

// Serve accepts subflows on ln until ctx ends or ln fails. Sessions end
// with ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Handle == nil || s.Connect == nil || s.Key == nil && s.TLS == nil {
		return errors.New("mpx server needs Handle, Connect, and Key or TLS")
	}
	if err := s.Config.Validate(); err != nil {
		return err
	}
	s.init()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.closeAll()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			s.closeAll()
			return fmt.Errorf("accepting subflows: %w", err)
		}
		select {
		case s.shakes <- struct{}{}:
		default:
			s.cfg.Logger.Warn("too many handshakes in progress; refusing a subflow", "remote", nc.RemoteAddr())
			_ = nc.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handshake(ctx, nc)
		}()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	all := make([]*Conn, 0, len(s.sessions))
	for _, c := range s.sessions {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		c.reset(StatusFailure, "converter shutting down", ErrClosed)
	}
}

// Sessions returns the live sessions.
func (s *Server) Sessions() []*Conn {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*Conn, 0, len(s.sessions))
	for _, c := range s.sessions {
		all = append(all, c)
	}
	return all
}

// handshake runs one subflow's OPEN or JOIN.
func (s *Server) handshake(ctx context.Context, nc net.Conn) {
	released := false
	release := func() {
		if !released {
			released = true
			<-s.shakes
		}
	}
	defer release()
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	remote := addrPortOf(nc.RemoteAddr())
	log := s.cfg.Logger.With("remote", remote)
	var psk []byte
	keyID := ""
	if s.TLS != nil {
		tc := tls.Server(nc, s.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			log.Debug("TLS handshake failed", "err", err)
			_ = nc.Close()
			return
		}
		st := tc.ConnectionState()
		if len(st.PeerCertificates) == 0 {
			log.Debug("TLS client without a certificate")
			_ = nc.Close()
			return
		}
		keyID = st.PeerCertificates[0].Subject.String()
		var err error
		if psk, err = st.ExportKeyingMaterial("EXPORTER-mpx1-open", nil, 32); err != nil {
			_ = nc.Close()
			return
		}
		nc = tc
	}
	typ, raw, err := helloType(nc)
	if err != nil {
		s.refuse(log, nc, nil, nil, err)
		return
	}
	if typ == msgJoin {
		s.join(log, nc, raw, remote)
		return
	}
	o, err := readOpen(nc, raw)
	if err != nil {
		s.refuse(log, nc, nil, nil, err)
		return
	}
	if s.TLS != nil {
		if o.keyID != "" {
			s.refuse(log, nc, nil, nil, &StatusError{Status: StatusMalformed, Text: "key id with mutual TLS"})
			return
		}
		o.keyID = keyID
	} else {
		key, ok := s.Key(o.keyID)
		if !ok {
			s.refuse(log, nc, nil, nil, &StatusError{Status: StatusAuthFailed, Text: fmt.Sprintf("unknown key id %q", o.keyID)})
			return
		}
		psk = key
	}
	now := time.Now()
	if err := verifyOpen(o, psk, now); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == StatusAuthFailed {
			psk = nil
		}
		s.refuse(log, nc, o, psk, err)
		return
	}
	if err := s.replay.add(o.keyID, o.nonce, now); err != nil {
		s.refuse(log, nc, o, psk, err)
		return
	}
	s.mu.Lock()
	busy := s.perKey[o.keyID] >= s.MaxSessionsPerKey
	if !busy {
		s.perKey[o.keyID]++
	}
	s.mu.Unlock()
	if busy {
		s.refuse(log, nc, o, psk, &StatusError{Status: StatusBusy, Text: "client has its most sessions"})
		return
	}
	counted := true
	defer func() {
		if counted {
			s.mu.Lock()
			s.perKey[o.keyID]--
			s.mu.Unlock()
		}
	}()
	// Reaching the destination takes its own time: the handshake deadline
	// does not cover it, the destination's dial has its own.
	release()
	_ = nc.SetDeadline(time.Time{})
	upstream, bound, err := s.Connect(ctx, o.keyID, o.dst)
	if err != nil {
		s.refuse(log.With("key_id", o.keyID, "destination", o.dst), nc, o, psk, statusOf(err))
		return
	}
	keys, msg, err := serverAccept(o, psk, uint32(s.cfg.ReceiveWindow), bound)
	if err != nil {
		s.refuse(log, nc, o, psk, err)
		_ = upstream.Close()
		return
	}
	// The session is in the table before the client hears of it: its
	// JOINs may follow the ACCEPT at once.
	c := newConn(&s.cfg, s.pool, false, keys, o.dst, o.window)
	c.onDone = s.forget
	s.mu.Lock()
	if _, dup := s.sessions[keys.token]; dup {
		s.mu.Unlock()
		c.end(ErrClosed)
		s.refuse(log, nc, o, psk, &StatusError{Status: StatusBusy, Text: "token in use"})
		_ = upstream.Close()
		return
	}
	s.sessions[keys.token] = c
	s.keyOf[keys.token] = o.keyID
	counted = false
	s.mu.Unlock()
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := nc.Write(msg); err != nil {
		log.Debug("sending ACCEPT failed", "err", err)
		s.forget(c)
		c.end(err)
		_ = nc.Close()
		_ = upstream.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	s.cfg.Logger.Info("session opened", "token", fmt.Sprintf("%016x", keys.token), "key_id", o.keyID,
		"remote", remote, "destination", o.dst, "bound", bound)
	c.emit(Event{Kind: EventCreated, Token: keys.token})
	sf := &subflow{nc: nc, local: addrPortOf(nc.LocalAddr()), remote: remote, localID: o.local, peerBackup: o.backup}
	if err := c.attach(sf); err != nil {
		c.end(err)
		_ = nc.Close()
		_ = upstream.Close()
		return
	}
	c.emit(Event{Kind: EventEstablished, Token: keys.token})
	if s.Advertise != nil {
		c.mu.Lock()
		for _, a := range s.Advertise() {
			if a.ID == 0 || a.Addr == sf.local {
				continue
			}
			sf.ctrl = appendAddAddr(sf.ctrl, addrAdvert(a), &keys.join)
		}
		c.wakeSF(sf)
		c.mu.Unlock()
	}
	go func() {
		stop := context.AfterFunc(ctx, func() { c.reset(StatusFailure, "converter shutting down", ErrClosed) })
		defer stop()
		s.Handle(ctx, c, upstream)
	}()
}

// forget removes an ended session from the table.
func (s *Server) forget(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[c.keys.token] == c {
		delete(s.sessions, c.keys.token)
		key := s.keyOf[c.keys.token]
		delete(s.keyOf, c.keys.token)
		if s.perKey[key]--; s.perKey[key] <= 0 {
			delete(s.perKey, key)
		}
	}
}

// refuse answers a handshake with the status of err and closes the
// subflow.
func (s *Server) refuse(log interface{ Debug(string, ...any) }, nc net.Conn, o *openRequest, psk []byte, err error) {
	se := statusOf(err)
	log.Debug("handshake refused", "status", se.Status.String(), "err", err)
	if o != nil || se.Status == StatusBadVersion || se.Status == StatusMalformed || se.Status == StatusAuthFailed || se.Status == StatusBadAddress {
		_ = serverRefuse(nc, o, psk, se.Status)
	}
	_ = nc.Close()
}

// statusOf maps an error to the status a client is sent.
func statusOf(err error) *StatusError {
	var se *StatusError
	if errors.As(err, &se) {
		return se
	}
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, ErrMalformed):
		return &StatusError{Status: StatusMalformed, Text: err.Error()}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &StatusError{Status: StatusRefused}
	case errors.Is(err, syscall.ENETUNREACH):
		return &StatusError{Status: StatusNetUnreachable}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.As(err, &dnsErr):
		return &StatusError{Status: StatusHostUnreachable}
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &StatusError{Status: StatusTimeout}
	}
	return &StatusError{Status: StatusFailure}
}

// join runs the converter's side of a JOIN (§5).
func (s *Server) join(log interface{ Debug(string, ...any) }, nc net.Conn, raw []byte, remote netip.AddrPort) {
	j, err := readJoin(nc, raw)
	if err != nil {
		s.refuse(log, nc, nil, nil, err)
		return
	}
	status := func(st Status) {
		_, _ = nc.Write([]byte{byte(st)})
		log.Debug("join refused", "status", st.String(), "token", fmt.Sprintf("%016x", j.token))
		_ = nc.Close()
	}
	now := time.Now()
	if !s.joinsBy.allow("a"+remote.Addr().String(), now) || !s.joinsBy.allow(fmt.Sprintf("t%016x", j.token), now) {
		status(StatusBusy)
		return
	}
	s.mu.Lock()
	c := s.sessions[j.token]
	s.mu.Unlock()
	if c == nil {
		status(StatusUnknownToken)
		return
	}
	c.mu.Lock()
	full := len(c.subflows) >= s.MaxSubflows
	c.mu.Unlock()
	if full {
		status(StatusBusy)
		return
	}
	if err := serverChallenge(nc, &c.keys.join, j); err != nil {
		se := statusOf(err)
		status(se.Status)
		return
	}
	// Duplicates: a live subflow with the same (L, R) and a generation at
	// least as new; an older one is replaced.
	var old *subflow
	c.mu.Lock()
	for _, sf := range c.subflows {
		if sf.localID == j.local && sf.remoteID == j.remote {
			if sf.gen >= j.generation {
				c.mu.Unlock()
				status(StatusDuplicate)
				return
			}
			old = sf
		}
	}
	c.mu.Unlock()
	if old != nil {
		c.subflowGone(old, fmt.Errorf("replaced by a newer subflow (generation %d)", j.generation))
	}
	if _, err := nc.Write([]byte{byte(StatusOK)}); err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	sf := &subflow{nc: nc, local: addrPortOf(nc.LocalAddr()), remote: remote,
		localID: j.local, remoteID: j.remote, gen: j.generation, peerBackup: j.backup}
	if err := c.attach(sf); err != nil {
		_ = nc.Close()
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// replayCache remembers OPEN nonces for ReplayWindow.
type replayCache struct {
	mu    sync.Mutex
	seen  map[replayKey]struct{}
	order []replayEntry
	max   int
}

type replayKey struct {
	keyID string
	nonce [nonceLen]byte
}

type replayEntry struct {
	key replayKey
	at  time.Time
}

func newReplayCache(n int) *replayCache {
	return &replayCache{seen: make(map[replayKey]struct{}), max: n}
}

func (r *replayCache) add(keyID string, nonce [nonceLen]byte, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.order) > 0 && now.Sub(r.order[0].at) > ReplayWindow {
		delete(r.seen, r.order[0].key)
		r.order[0] = replayEntry{}
		r.order = r.order[1:]
	}
	k := replayKey{keyID, nonce}
	if _, ok := r.seen[k]; ok {
		return &StatusError{Status: StatusReplayed, Text: "this OPEN was seen before"}
	}
	if len(r.seen) >= r.max {
		return &StatusError{Status: StatusBusy, Text: "too many recent handshakes to remember"}
	}
	r.seen[k] = struct{}{}
	r.order = append(r.order, replayEntry{k, now})
	return nil
}

// limiter is a set of token buckets by key.
type limiter struct {
	mu          sync.Mutex
	rate, burst float64
	max         int
	buckets     map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate, burst float64, max int) *limiter {
	return &limiter{rate: rate, burst: burst, max: max, buckets: make(map[string]*bucket)}
}

// allow takes a token from key's bucket.
func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			// Drop the buckets that are full again; if none is, refuse.
			for k, o := range l.buckets {
				if o.tokens+now.Sub(o.at).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= l.max {
				return false
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
