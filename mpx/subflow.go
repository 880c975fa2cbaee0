package mpx

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// subflow is one TCP connection of a session. Its fields below the line
// are guarded by the session's lock.
type subflow struct {
	c    *Conn
	nc   net.Conn
	raw  syscall.RawConn
	slot uint8
	// local and remote are the TCP connection's ends; localID and
	// remoteID name them as JOIN does (§5), and gen is the JOIN's
	// generation.
	local, remote     netip.AddrPort
	localID, remoteID uint8
	gen               uint32
	since             time.Time
	bufs              [2][]byte

	// ---
	backup, peerBackup bool
	established        bool
	waiting            bool
	writerRunning      bool
	wake               chan struct{}
	ctrl               []byte
	ackWanted          bool
	stale              bool
	staleSince         time.Time
	closing            bool
	dead               bool
	srtt, rttvar       time.Duration
	lastData, lastSend time.Time
	lastProgress       time.Time
	outstanding        bool
	bytesSent          uint64
	bytesRecv          uint64
}

// SubflowInfo describes a subflow.
type SubflowInfo struct {
	Local, Remote     netip.AddrPort
	LocalID, RemoteID uint8
	Backup            bool
	// PeerBackup is set when the peer asked for backup (PRIO).
	PeerBackup bool
	Stale      bool
	RTT        time.Duration
	BytesSent  uint64
	BytesRecv  uint64
	Since      time.Time
}

func (sf *subflow) info() SubflowInfo {
	return SubflowInfo{
		Local: sf.local, Remote: sf.remote, LocalID: sf.localID, RemoteID: sf.remoteID,
		Backup: sf.backup, PeerBackup: sf.peerBackup, Stale: sf.stale, RTT: sf.srtt,
		BytesSent: sf.bytesSent, BytesRecv: sf.bytesRecv, Since: sf.since,
	}
}

func (sf *subflow) isBackup() bool { return sf.backup || sf.peerBackup }

// tcpConnOf returns the TCP connection under nc (which may be TLS).
func tcpConnOf(nc net.Conn) (*net.TCPConn, bool) {
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	tc, ok := nc.(*net.TCPConn)
	return tc, ok
}

// tuneSocket sets the subflow's socket options: TCP_NOTSENT_LOWAT for late
// binding, TCP_USER_TIMEOUT so a dead path ends, and the mark.
func tuneSocket(tc *net.TCPConn, cfg *Config) (syscall.RawConn, error) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("subflow socket: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range []struct {
			name string
			opt  int
			v    int
		}{
			{"TCP_NOTSENT_LOWAT", unix.TCP_NOTSENT_LOWAT, cfg.NotSentLowat},
			{"TCP_USER_TIMEOUT", unix.TCP_USER_TIMEOUT, int(cfg.UserTimeout / time.Millisecond)},
		} {
			e := unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, o.opt, o.v)
			// A kernel MPTCP socket (KernelMPTCP) may not have every TCP
			// option; its subflows then keep the kernel's defaults.
			if e != nil && !errors.Is(e, unix.ENOPROTOOPT) && !errors.Is(e, unix.EOPNOTSUPP) {
				serr = fmt.Errorf("%s: %w", o.name, e)
				return
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("subflow socket: %w", err)
	}
	return raw, nil
}

// attach adds an established subflow to the session and starts its
// reader and writer. It fails when the session has ended or is full.
func (c *Conn) attach(sf *subflow) error {
	tc, ok := tcpConnOf(sf.nc)
	if !ok {
		return errors.New("subflow is not a TCP connection")
	}
	raw, err := tuneSocket(tc, c.cfg)
	if err != nil {
		return err
	}
	sf.raw = raw
	sf.c = c
	sf.wake = make(chan struct{}, 1)
	sf.since = time.Now()
	sf.lastSend, sf.lastProgress = sf.since, sf.since
	sf.srtt = time.Millisecond
	if s := sf.sample(); s.ok {
		sf.srtt, sf.rttvar = s.rtt, s.rttvar
	}
	c.mu.Lock()
	if c.err != nil || c.appClosed {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(c.subflows) >= maxSubflows {
		c.mu.Unlock()
		return &StatusError{Status: StatusBusy, Text: "the session has the most subflows it may"}
	}
	for i := range uint8(maxSubflows) {
		if c.slotsUsed&(1<<i) == 0 {
			sf.slot = i
			break
		}
	}
	c.slotsUsed |= 1 << sf.slot
	sf.established = true
	c.subflows = append(c.subflows, sf)
	c.orphaned = time.Time{}
	// The new subflow learns where the stream stands at once.
	sf.ackWanted = true
	if sf.backup {
		sf.ctrl = appendPrio(sf.ctrl, true)
	}
	c.wakeData()
	c.armTick(tickActive)
	c.mu.Unlock()
	go sf.readLoop()
	c.emit(Event{Kind: EventSubEstablished, Token: c.keys.token, Subflow: sf.infoLocked()})
	return nil
}

func (sf *subflow) infoLocked() SubflowInfo {
	sf.c.mu.Lock()
	defer sf.c.mu.Unlock()
	return sf.info()
}

// writeLoop sends what the session gives this subflow until it ends.
func (sf *subflow) writeLoop() {
	c := sf.c
	var head []byte
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		h, ch, st := c.next(sf, head[:0], idle)
		if st == idleExit {
			return
		}
		if st == stopIt {
			break
		}
		bufs := net.Buffers(sf.bufs[:1])
		bufs[0] = h
		if ch != nil && len(ch.data) > 0 {
			bufs = append(bufs, ch.data)
		}
		_, err := bufs.WriteTo(sf.nc)
		sf.bufs = [2][]byte{}
		c.sent(ch)
		if err != nil {
			c.subflowGone(sf, fmt.Errorf("writing to subflow %v→%v: %w", sf.local, sf.remote, err))
			return
		}
		head = h
	}
	// Graceful end: the peer reads EOF after everything queued.
	if cw, ok := sf.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = sf.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
}

// readLoop takes in frames until the subflow ends.
func (sf *subflow) readLoop() {
	c := sf.c
	fr := &frameReader{r: bufio.NewReaderSize(sf.nc, 2048)}
	err := sf.readFrames(fr)
	if errors.Is(err, io.EOF) {
		c.mu.Lock()
		graceful := sf.closing
		c.mu.Unlock()
		if graceful {
			err = nil
		} else {
			err = fmt.Errorf("subflow %v→%v closed by the peer", sf.local, sf.remote)
		}
	}
	if errors.Is(err, ErrMalformed) {
		c.reset(StatusMalformed, err.Error(), err)
	}
	c.subflowGone(sf, err)
}

func (sf *subflow) readFrames(fr *frameReader) error {
	c := sf.c
	for {
		h, err := fr.readHeader()
		if err != nil {
			return err
		}
		if h.typ == frameData {
			dsn, err := fr.readDSN()
			if err != nil {
				return err
			}
			n := h.length - 8
			var data []byte
			var buf *[]byte
			if n > 2048 {
				buf = c.pool.get()
				data = (*buf)[:n]
			} else {
				data = make([]byte, n)
			}
			if _, err := io.ReadFull(fr.r, data); err != nil {
				c.put(buf)
				return unexpected(err)
			}
			if err := c.onData(sf, dsn, data, buf, h.flags&flagFIN != 0); err != nil {
				return err
			}
			continue
		}
		body, err := fr.readBody(h)
		if err != nil {
			return err
		}
		if err := c.onControl(sf, h, body); err != nil {
			return err
		}
	}
}

// subflowGone removes a subflow that ended, for err (nil: cleanly).
func (c *Conn) subflowGone(sf *subflow, err error) {
	c.mu.Lock()
	if sf.dead {
		c.mu.Unlock()
		return
	}
	running := c.err == nil
	if running {
		c.reinjectFrom(sf)
	}
	sf.dead = true
	if sf.writerRunning {
		signal(sf.wake)
	}
	if i := slices.Index(c.subflows, sf); i >= 0 {
		c.subflows = slices.Delete(c.subflows, i, i+1)
	}
	bit := uint64(1) << sf.slot
	c.slotsUsed &^= bit
	for _, ch := range c.queue {
		ch.sent &^= bit
	}
	if len(c.subflows) == 0 && running {
		c.orphaned = time.Now()
		c.armTick(tickActive)
	}
	info := sf.info()
	c.mu.Unlock()
	_ = sf.nc.Close()
	if running {
		c.cfg.Logger.Debug("subflow closed", "token", fmt.Sprintf("%016x", c.keys.token), "local", sf.local, "remote", sf.remote, "err", err)
	}
	c.emit(Event{Kind: EventSubClosed, Token: c.keys.token, Subflow: info, Err: err})
	if running && c.onSubflowGone != nil {
		c.onSubflowGone(sf)
	}
}

// shutdown ends a subflow as its session ends: the writer flushes and
// half-closes, the reader waits a little for the peer's end.
func (sf *subflow) shutdown() {
	_ = sf.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
}

// onControl takes in a control frame.
func (c *Conn) onControl(sf *subflow, h frameHeader, body []byte) error {
	switch h.typ {
	case frameDataAck:
		return c.onAck(binary.BigEndian.Uint64(body), binary.BigEndian.Uint32(body[8:]))
	case framePing:
		c.mu.Lock()
		sf.ctrl = appendPing(sf.ctrl, framePong, binary.BigEndian.Uint64(body))
		c.wakeSF(sf)
		c.mu.Unlock()
	case framePong:
	case framePrio:
		c.mu.Lock()
		sf.peerBackup = h.flags&flagBackup != 0
		info := sf.info()
		c.wakeData()
		c.mu.Unlock()
		c.emit(Event{Kind: EventSubPriority, Token: c.keys.token, Subflow: info})
	case frameAddAddr:
		if !c.client {
			return malformed("ADD_ADDR sent to the converter")
		}
		a, err := parseAddAddr(h.flags, body, &c.keys.join)
		if err != nil {
			return err
		}
		c.emit(Event{Kind: EventAnnounced, Token: c.keys.token, Addr: a.Addr, AddrID: a.ID})
		if c.onAddAddr != nil {
			c.onAddAddr(a)
		}
	case frameRemoveAddr:
		c.onRemoveAddr(body[0])
	case frameClose:
		c.mu.Lock()
		if !sf.closing {
			sf.closing = true
			sf.ctrl = appendByteFrame(sf.ctrl, frameClose, 0)
			c.reinjectFrom(sf)
			c.wakeSF(sf)
		}
		c.mu.Unlock()
	case frameReset:
		text := string(body[1:])
		err := &StatusError{Status: Status(body[0]), Text: text}
		c.end(fmt.Errorf("%w: %w", ErrReset, err))
	}
	return nil
}

// onRemoveAddr closes the subflows to an address the peer withdrew: the
// client's remote ID or the converter's local (client-side) ID.
func (c *Conn) onRemoveAddr(id uint8) {
	c.mu.Lock()
	var gone []*subflow
	for _, sf := range c.subflows {
		peerID := sf.localID
		if c.client {
			peerID = sf.remoteID
		}
		if peerID == id && !sf.closing {
			sf.closing = true
			c.reinjectFrom(sf)
			gone = append(gone, sf)
		}
	}
	c.mu.Unlock()
	if c.client {
		c.emit(Event{Kind: EventRemoved, Token: c.keys.token, AddrID: id})
	}
	for _, sf := range gone {
		c.subflowGone(sf, fmt.Errorf("the peer withdrew address %d", id))
	}
}

// withdraw tells the peer that local address id is gone (REMOVE_ADDR on
// every other subflow) and drops the subflows that used it at once.
func (c *Conn) withdraw(id uint8) {
	c.mu.Lock()
	var gone []*subflow
	for _, sf := range c.subflows {
		own := sf.localID
		if !c.client {
			own = sf.remoteID
		}
		if own == id {
			gone = append(gone, sf)
			continue
		}
		sf.ctrl = appendByteFrame(sf.ctrl, frameRemoveAddr, id)
		c.wakeSF(sf)
	}
	for _, sf := range gone {
		sf.stale = true
	}
	for _, sf := range gone {
		c.reinjectFrom(sf)
	}
	c.mu.Unlock()
	for _, sf := range gone {
		c.subflowGone(sf, fmt.Errorf("local address %d is gone", id))
	}
}

// setBackup marks the subflows of local address id as backup or not, and
// tells the peer (PRIO) on each subflow that changed.
func (c *Conn) setBackup(id uint8, backup bool) {
	c.mu.Lock()
	var changed []SubflowInfo
	for _, sf := range c.subflows {
		own := sf.localID
		if !c.client {
			own = sf.remoteID
		}
		if own != id || sf.backup == backup {
			continue
		}
		sf.backup = backup
		sf.ctrl = appendPrio(sf.ctrl, backup)
		c.wakeSF(sf)
		changed = append(changed, sf.info())
	}
	if len(changed) > 0 {
		c.wakeData()
	}
	c.mu.Unlock()
	for _, info := range changed {
		c.emit(Event{Kind: EventSubPriority, Token: c.keys.token, Subflow: info})
	}
}

// tcpSample is what the periodic check reads from TCP_INFO.
type tcpSample struct {
	ok          bool
	rtt, rttvar time.Duration
	unacked     uint32
	lastAckRecv time.Duration
}

func (sf *subflow) sample() tcpSample {
	var s tcpSample
	if sf.raw == nil {
		return s
	}
	_ = sf.raw.Control(func(fd uintptr) {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		s = tcpSample{
			ok:          true,
			rtt:         time.Duration(ti.Rtt) * time.Microsecond,
			rttvar:      time.Duration(ti.Rttvar) * time.Microsecond,
			unacked:     ti.Unacked,
			lastAckRecv: time.Duration(ti.Last_ack_recv) * time.Millisecond,
		}
	})
	return s
}

// alive says whether a subflow other than sfs[i] is usable and heard from
// recently: nothing in flight, or an acknowledgement within its timeout.
func alive(sfs []*subflow, samples []tcpSample, i int) bool {
	for j, o := range sfs {
		if j == i || !samples[j].ok || o.dead || o.stale || o.closing {
			continue
		}
		rto := max(200*time.Millisecond, o.srtt+4*o.rttvar)
		if samples[j].unacked == 0 || samples[j].lastAckRecv < rto {
			return true
		}
	}
	return false
}

// onTick is the session's periodic check: round-trip times, stale
// subflows, keep-alives, a session left without subflows.
func (c *Conn) onTick() {
	c.mu.Lock()
	c.nextTick = time.Time{}
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	sfs := slices.Clone(c.subflows)
	c.mu.Unlock()
	samples := make([]tcpSample, len(sfs))
	for i, sf := range sfs {
		samples[i] = sf.sample()
	}
	now := time.Now()
	var expired []*subflow
	var events []Event
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	next := c.cfg.KeepAlive
	for i, sf := range sfs {
		if sf.dead {
			continue
		}
		s := samples[i]
		if s.ok && s.rtt > 0 {
			sf.srtt, sf.rttvar = s.rtt, s.rttvar
		}
		rto := max(200*time.Millisecond, sf.srtt+4*sf.rttvar)
		limit := max(200*time.Millisecond, time.Duration(c.cfg.StaleLossCnt)*rto)
		// With another subflow that is being acknowledged, two timeouts of
		// silence are enough to move the data there (as the kernel's
		// MPTCP-level retransmission would); stale_loss_cnt applies to a
		// subflow that has no alternative.
		if alive(sfs, samples, i) {
			limit = min(limit, 2*rto)
		}
		silent := s.ok && s.unacked > 0 && s.lastAckRecv >= limit
		switch {
		case silent && !sf.stale:
			sf.stale, sf.staleSince = true, now
			n := c.reinjectFrom(sf)
			c.cfg.Logger.Debug("subflow stale", "token", fmt.Sprintf("%016x", c.keys.token),
				"local", sf.local, "remote", sf.remote, "silent", s.lastAckRecv, "reinjected_chunks", n)
			events = append(events, Event{Kind: EventSubStale, Token: c.keys.token, Subflow: sf.info()})
			c.wakeData()
		case sf.stale && !silent:
			sf.stale = false
			c.wakeData()
		case sf.stale && now.Sub(sf.staleSince) > c.cfg.UserTimeout:
			expired = append(expired, sf)
		}
		interval := c.cfg.KeepAlive
		if sf.isBackup() || sf.stale {
			interval = time.Second
		}
		if now.Sub(sf.lastSend) >= interval && !sf.closing {
			sf.ctrl = appendPing(sf.ctrl, framePing, uint64(now.UnixNano()))
			c.wakeSF(sf)
			sf.lastSend = now
		}
		next = min(next, interval)
		if sf.stale || s.unacked > 0 {
			next = tickActive
		}
	}
	if c.hasOutstanding() {
		next = tickActive
	}
	orphaned := !c.orphaned.IsZero() && now.Sub(c.orphaned) > c.cfg.OrphanTimeout
	if !c.orphaned.IsZero() {
		next = tickActive
	}
	c.armTick(next)
	c.mu.Unlock()
	for _, e := range events {
		c.emit(e)
	}
	for _, sf := range expired {
		c.subflowGone(sf, fmt.Errorf("subflow %v→%v stale for more than %v", sf.local, sf.remote, c.cfg.UserTimeout))
	}
	if orphaned {
		c.end(fmt.Errorf("no subflow for %v", c.cfg.OrphanTimeout))
	}
}
