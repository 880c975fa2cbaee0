package mpx

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// ErrClosed is returned by a session's methods after Close.
var ErrClosed = net.ErrClosed

// ErrReset wraps a session's error when the peer reset it.
var ErrReset = errors.New("session reset by peer")

// ackEvery is how much new data makes a receiver acknowledge at once;
// less is acknowledged within ackDelay.
const (
	ackEvery = 64 << 10
	ackDelay = 5 * time.Millisecond
	// tickActive is how often subflows are checked while data is in
	// flight.
	tickActive = 50 * time.Millisecond
	// maxSubflows bounds a session's subflows (the sent mask's width).
	maxSubflows = 64
	// lingerTimeout bounds how long a closed session waits for its last
	// data and FIN to be acknowledged.
	lingerTimeout = 10 * time.Second
	// maxUnsent bounds the data a session holds that no subflow has taken
	// yet: subflows take data as their sockets drain (late binding), so
	// more would only add delay.
	maxUnsent = 256 << 10
)

// chunk is a run of bytes of the sending direction, from DSN offset off
// (relative to the initial DSN), sent in one DATA frame.
type chunk struct {
	off  uint64
	data []byte
	buf  *[]byte
	fin  bool
	// sent has bit i set once the chunk went out on subflow slot i.
	sent uint64
	// writers counts subflow writers that are sending it now; acked is
	// set once the peer acknowledged it, and the buffer is freed when both
	// allow.
	writers    int
	acked      bool
	reinjected bool
	opportune  bool
}

// end is the offset after the chunk, its FIN included.
func (ch *chunk) end() uint64 {
	e := ch.off + uint64(len(ch.data))
	if ch.fin {
		e++
	}
	return e
}

// rchunk is received data waiting for the reader.
type rchunk struct {
	off  uint64
	data []byte
	buf  *[]byte
}

// Conn is one MPX session: a byte stream in each direction carried over
// one or more subflows. It implements net.Conn, and CloseWrite.
type Conn struct {
	cfg    *Config
	pool   *pool
	client bool
	keys   sessionKeys
	dst    Addr
	// sendIDSN and recvIDSN are the initial DSNs of the two directions.
	sendIDSN, recvIDSN uint64
	started            time.Time

	// onSubflowGone is told when a subflow ended, after the lock is
	// released (the client's path manager re-dials).
	onSubflowGone func(sf *subflow)
	// onDone is called once when the session ends.
	onDone func(c *Conn)
	// onAddAddr is told of the converter's advertised addresses (client).
	onAddAddr func(a addrAdvert)

	mu sync.Mutex

	// Sending direction. queue holds every chunk from sndUna on, in
	// order; queue[nextNew:] were never sent.
	sndUna, sndNxt uint64
	peerWnd        uint64
	queue          []*chunk
	nextNew        int
	reinject       []*chunk
	sndBytes       int
	unsent         int
	finQueued      bool
	finAcked       bool
	rrTurn         uint64

	// Receiving direction.
	rcvNxt     uint64
	ooo        []rchunk
	ready      []rchunk
	unread     int
	oooBytes   int
	finOff     uint64
	finKnown   bool
	eof        bool
	ackSent    uint64
	wndSent    uint64
	ackPending bool

	subflows  []*subflow
	slotsUsed uint64
	orphaned  time.Time

	appClosed bool
	err       error
	done      chan struct{}
	doneOnce  sync.Once
	tick      *time.Timer
	nextTick  time.Time
	ackTimer  *time.Timer
	readWake  chan struct{}
	writeWake chan struct{}
	rdl, wdl  time.Time
	dlTimer   [2]*time.Timer

	bytesSent, bytesRecv uint64
}

func newConn(cfg *Config, p *pool, client bool, keys sessionKeys, dst Addr, peerWnd uint32) *Conn {
	c := &Conn{
		cfg: cfg, pool: p, client: client, keys: keys, dst: dst,
		started:   time.Now(),
		peerWnd:   uint64(peerWnd),
		done:      make(chan struct{}),
		readWake:  make(chan struct{}, 1),
		writeWake: make(chan struct{}, 1),
		wndSent:   uint64(cfg.ReceiveWindow),
	}
	c.sendIDSN, c.recvIDSN = keys.idsnServer, keys.idsnClient
	if client {
		c.sendIDSN, c.recvIDSN = keys.idsnClient, keys.idsnServer
	}
	c.tick = time.AfterFunc(tickActive, c.onTick)
	return c
}

// Token is the session's token, as subflows join it.
func (c *Conn) Token() uint64 { return c.keys.token }

// Destination is where the converter forwards the session.
func (c *Conn) Destination() Addr { return c.dst }

// Done is closed when the session has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the session ended: nil while it runs or after a clean end.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(c.err, errCleanEnd) {
		return nil
	}
	return c.err
}

var errCleanEnd = errors.New("session ended")

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Write queues p for sending, blocking while the send buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	written := 0
	for len(p) > 0 {
		if err := c.writeErr(); err != nil {
			return written, err
		}
		space := min(c.cfg.SendBuffer-c.sndBytes, maxUnsent-c.unsent)
		if space <= 0 {
			if err := c.wait(c.writeWake, 1); err != nil {
				return written, err
			}
			continue
		}
		n := min(len(p), space)
		c.append(p[:n])
		p = p[n:]
		written += n
		c.wakeData()
	}
	return written, nil
}

// writeErr says why nothing more may be written.
func (c *Conn) writeErr() error {
	switch {
	case c.err != nil && !errors.Is(c.err, errCleanEnd):
		return c.err
	case c.appClosed || c.err != nil:
		return ErrClosed
	case c.finQueued:
		return fmt.Errorf("write after CloseWrite: %w", ErrClosed)
	}
	return nil
}

// append copies p into unsent chunks, filling the last one first.
func (c *Conn) append(p []byte) {
	for len(p) > 0 {
		var ch *chunk
		if n := len(c.queue); n > c.nextNew {
			if last := c.queue[n-1]; last.sent == 0 && len(last.data) < MaxPayload {
				ch = last
			}
		}
		if ch == nil {
			b := c.pool.get()
			ch = &chunk{off: c.sndNxt, buf: b, data: (*b)[:0]}
			c.queue = append(c.queue, ch)
		}
		n := copy(ch.data[len(ch.data):MaxPayload], p)
		ch.data = ch.data[:len(ch.data)+n]
		p = p[n:]
		c.sndNxt += uint64(n)
		c.sndBytes += n
		c.unsent += n
	}
}

// CloseWrite ends the sending direction: the peer reads EOF after the
// data written so far.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeWrite()
}

func (c *Conn) closeWrite() error {
	if c.finQueued {
		return nil
	}
	if err := c.writeErr(); err != nil {
		return err
	}
	c.finQueued = true
	if n := len(c.queue); n > c.nextNew && c.queue[n-1].sent == 0 {
		c.queue[n-1].fin = true
	} else {
		c.queue = append(c.queue, &chunk{off: c.sndNxt, fin: true})
	}
	c.sndNxt++
	c.wakeData()
	return nil
}

// Read reads data in order.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if len(c.ready) > 0 {
			n := 0
			for n < len(p) && len(c.ready) > 0 {
				r := &c.ready[0]
				k := copy(p[n:], r.data)
				n += k
				r.data = r.data[k:]
				if len(r.data) == 0 {
					c.freeRecv(*r)
					c.ready[0] = rchunk{}
					c.ready = c.ready[1:]
				}
			}
			c.unread -= n
			c.maybeWindowUpdate()
			return n, nil
		}
		if c.eof {
			return 0, io.EOF
		}
		if c.appClosed {
			return 0, ErrClosed
		}
		if c.err != nil {
			return 0, c.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if err := c.wait(c.readWake, 0); err != nil {
			return 0, err
		}
	}
}

// WriteTo writes the stream to w until its end, without a buffer of its
// own: received payloads go to w as they are, and while nothing is ready
// it holds no memory (io.Copy and relays use it).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		c.mu.Lock()
		var r rchunk
		for {
			if len(c.ready) > 0 {
				r = c.ready[0]
				c.ready[0] = rchunk{}
				c.ready = c.ready[1:]
				c.unread -= len(r.data)
				c.maybeWindowUpdate()
				break
			}
			var err error
			switch {
			case c.eof:
				c.mu.Unlock()
				return total, nil
			case c.appClosed:
				err = ErrClosed
			case c.err != nil:
				err = c.err
			}
			if err == nil {
				err = c.wait(c.readWake, 0)
			}
			if err != nil {
				c.mu.Unlock()
				return total, err
			}
		}
		c.mu.Unlock()
		n, err := w.Write(r.data)
		total += int64(n)
		c.mu.Lock()
		c.freeRecv(r)
		c.mu.Unlock()
		if err != nil {
			return total, err
		}
	}
}

func (c *Conn) freeRecv(r rchunk) {
	if r.buf != nil {
		c.pool.put(r.buf)
	}
}

// wait releases the lock until ch is signalled, the session ends or the
// deadline (0 read, 1 write) passes.
func (c *Conn) wait(ch chan struct{}, which int) error {
	dl := c.rdl
	if which == 1 {
		dl = c.wdl
	}
	if !dl.IsZero() && !time.Now().Before(dl) {
		return os.ErrDeadlineExceeded
	}
	c.mu.Unlock()
	select {
	case <-ch:
	case <-c.done:
	}
	c.mu.Lock()
	return nil
}

// Close ends the session. After both directions ended cleanly it lingers
// until the last acknowledgements are through; otherwise it resets the
// session.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.appClosed {
		c.mu.Unlock()
		return nil
	}
	c.appClosed = true
	signal(c.readWake)
	signal(c.writeWake)
	if c.err != nil {
		c.mu.Unlock()
		return nil
	}
	if !c.eof || c.unread > 0 {
		c.mu.Unlock()
		c.reset(StatusFailure, "closed by the application before the end of the stream", ErrClosed)
		return nil
	}
	_ = c.closeWrite()
	c.checkDone()
	c.mu.Unlock()
	time.AfterFunc(lingerTimeout, func() {
		c.end(fmt.Errorf("closing: the peer did not acknowledge the end of the stream within %v", lingerTimeout))
	})
	return nil
}

// reset sends RESET on every subflow and ends the session with err.
func (c *Conn) reset(code Status, text string, err error) {
	c.mu.Lock()
	if c.err == nil {
		for _, sf := range c.subflows {
			sf.ctrl = appendReset(sf.ctrl, code, text)
			sf.closing = true
			c.wakeSF(sf)
		}
	}
	c.mu.Unlock()
	c.end(err)
}

// end ends the session once: it records err, wakes everyone, stops the
// timers and lets the subflows finish.
func (c *Conn) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	subflows := slices.Clone(c.subflows)
	for _, sf := range subflows {
		sf.closing = true
		c.wakeSF(sf)
	}
	c.tick.Stop()
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	for _, t := range c.dlTimer {
		if t != nil {
			t.Stop()
		}
	}
	c.mu.Unlock()
	c.doneOnce.Do(func() { close(c.done) })
	for _, sf := range subflows {
		sf.shutdown()
	}
	c.emit(Event{Kind: EventClosed, Token: c.keys.token, Err: c.Err()})
	if c.onDone != nil {
		c.onDone(c)
	}
}

// checkDone ends the session cleanly once both directions have ended and
// the application closed it. Called with the lock held.
func (c *Conn) checkDone() {
	if c.appClosed && c.eof && c.finAcked && c.err == nil {
		// The last ack (of the peer's FIN) must go out first: flag every
		// subflow closing, and its writer sends what is queued before it
		// ends.
		go c.end(errCleanEnd)
	}
}

// LocalAddr is the local address of the session's first live subflow.
func (c *Conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sf := range c.subflows {
		return net.TCPAddrFromAddrPort(sf.local)
	}
	return &net.TCPAddr{}
}

// RemoteAddr is the destination when it is an IP address, else the
// converter end of the first live subflow.
func (c *Conn) RemoteAddr() net.Addr {
	if ap := c.dst.AddrPort(); ap.IsValid() {
		return net.TCPAddrFromAddrPort(ap)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sf := range c.subflows {
		return net.TCPAddrFromAddrPort(sf.remote)
	}
	return &net.TCPAddr{}
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline makes a blocked Read return os.ErrDeadlineExceeded at t.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(0, t) }

// SetWriteDeadline makes a blocked Write return os.ErrDeadlineExceeded at t.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(1, t) }

func (c *Conn) setDeadline(which int, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	wake := c.readWake
	if which == 0 {
		c.rdl = t
	} else {
		c.wdl = t
		wake = c.writeWake
	}
	if c.dlTimer[which] != nil {
		c.dlTimer[which].Stop()
		c.dlTimer[which] = nil
	}
	if !t.IsZero() {
		c.dlTimer[which] = time.AfterFunc(time.Until(t), func() { signal(wake) })
	}
	signal(wake)
	return nil
}

// Stats are a session's counters.
type Stats struct {
	Token      uint64
	Client     bool
	Dest       Addr
	Started    time.Time
	BytesSent  uint64
	BytesRecv  uint64
	BytesAcked uint64
	Subflows   []SubflowInfo
}

// Stats returns the session's counters and its subflows.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Token: c.keys.token, Client: c.client, Dest: c.dst, Started: c.started,
		BytesSent: c.bytesSent, BytesRecv: c.bytesRecv, BytesAcked: c.sndUna,
	}
	for _, sf := range c.subflows {
		s.Subflows = append(s.Subflows, sf.info())
	}
	return s
}

func (c *Conn) emit(e Event) {
	if c.cfg.Events != nil {
		c.cfg.Events(e)
	}
}

// wakeData wakes every subflow writer that waits for data, and starts
// those that ended while idle.
func (c *Conn) wakeData() {
	for _, sf := range c.subflows {
		if sf.waiting || !sf.writerRunning {
			c.wakeSF(sf)
		}
	}
}

// usable says whether sf may carry data now, the backup rule aside.
func (sf *subflow) usable() bool {
	return sf.established && !sf.stale && !sf.closing
}

// primaryUsable says whether any non-backup subflow may carry data.
func (c *Conn) primaryUsable() bool {
	for _, sf := range c.subflows {
		if sf.usable() && !sf.isBackup() {
			return true
		}
	}
	return false
}

// dataAllowed says whether sf may take data: it is usable and either not
// a backup subflow or no primary subflow is.
func (c *Conn) dataAllowed(sf *subflow) bool {
	return sf.usable() && (!sf.isBackup() || !c.primaryUsable())
}

// preferred says whether the scheduler gives the next new data to sf
// rather than to another waiting subflow. When it does not, it wakes the
// subflow it prefers, so that data never waits on a preference that
// changed (round-trip times move) while both writers slept.
func (c *Conn) preferred(sf *subflow) bool {
	var best *subflow
	switch c.cfg.Scheduler {
	case RoundRobin:
		for _, o := range c.subflows {
			if o != sf && o.waiting && c.dataAllowed(o) && o.lastData.Before(sf.lastData) && (best == nil || o.lastData.Before(best.lastData)) {
				best = o
			}
		}
	case MinRTT:
		for _, o := range c.subflows {
			if o != sf && o.waiting && c.dataAllowed(o) && (o.srtt < sf.srtt || o.srtt == sf.srtt && o.slot < sf.slot) &&
				(best == nil || o.srtt < best.srtt || o.srtt == best.srtt && o.slot < best.slot) {
				best = o
			}
		}
	}
	if best != nil {
		signal(best.wake)
		return false
	}
	return true
}

// pick chooses the chunk sf sends next, or nil. Called with the lock
// held.
func (c *Conn) pick(sf *subflow) *chunk {
	if !c.dataAllowed(sf) {
		return nil
	}
	bit := uint64(1) << sf.slot
	// Data taken from a failed subflow goes first.
	for len(c.reinject) > 0 {
		ch := c.reinject[0]
		if ch.acked {
			c.reinject = c.reinject[1:]
			continue
		}
		if ch.sent&bit != 0 {
			break
		}
		c.reinject = c.reinject[1:]
		ch.reinjected = false
		return ch
	}
	if c.cfg.Scheduler == Redundant {
		for _, ch := range c.queue[:c.nextNew] {
			if !ch.acked && ch.sent&bit == 0 {
				return ch
			}
		}
	}
	if c.nextNew < len(c.queue) {
		ch := c.queue[c.nextNew]
		if ch.off+uint64(len(ch.data)) <= c.sndUna+c.peerWnd {
			if !c.preferred(sf) {
				return nil
			}
			c.nextNew++
			c.unsent -= len(ch.data)
			signal(c.writeWake)
			return ch
		}
		// Held up by the peer's window: the oldest unacknowledged chunk
		// is late. Send it again here if this subflow is faster than
		// every subflow it went out on (opportunistic re-sending).
		if c.nextNew > 0 {
			ch := c.queue[0]
			if !ch.acked && !ch.opportune && ch.sent&bit == 0 && c.fasterThanAll(sf, ch.sent) {
				ch.opportune = true
				return ch
			}
		}
	}
	return nil
}

func (c *Conn) fasterThanAll(sf *subflow, mask uint64) bool {
	for _, o := range c.subflows {
		if mask&(1<<o.slot) != 0 && o.usable() && o.srtt <= sf.srtt {
			return false
		}
	}
	return true
}

// writerState says what a writer does after next.
type writerState int

const (
	writeIt  writerState = iota // write what next returned
	stopIt                      // the subflow ends: half-close it
	idleExit                    // nothing to do for a while: end the goroutine
)

// writerIdle is how long a subflow's writer goroutine waits for work
// before it ends; wakeSF starts a new one. An idle session then holds no
// writer goroutines.
const writerIdle = 2 * time.Second

// next blocks until sf has something to send: control frames (appended
// to head) and maybe a chunk, whose DATA header ends head.
func (c *Conn) next(sf *subflow, head []byte, idle *time.Timer) (_ []byte, _ *chunk, _ writerState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if sf.dead {
			sf.writerRunning = false
			return head, nil, stopIt
		}
		head = append(head, sf.ctrl...)
		sf.ctrl = sf.ctrl[:0]
		if sf.ackWanted {
			sf.ackWanted = false
			head = appendAck(head, c.recvIDSN+c.rcvNxt, uint32(c.window()))
		}
		var ch *chunk
		if !sf.closing && c.err == nil {
			ch = c.pick(sf)
		}
		if ch != nil {
			ch.writers++
			ch.sent |= 1 << sf.slot
			sf.lastData = time.Now()
			sf.outstanding = true
			head = appendDataHeader(head, c.sendIDSN+ch.off, len(ch.data), ch.fin)
			c.bytesSent += uint64(len(ch.data))
			sf.bytesSent += uint64(len(ch.data))
			c.armTick(tickActive)
		}
		if len(head) > 0 || ch != nil {
			sf.lastSend = time.Now()
			return head, ch, writeIt
		}
		if sf.closing {
			sf.writerRunning = false
			return head, nil, stopIt
		}
		sf.waiting = true
		c.mu.Unlock()
		idle.Reset(writerIdle)
		timedOut := false
		select {
		case <-sf.wake:
			idle.Stop()
		case <-idle.C:
			timedOut = true
		}
		c.mu.Lock()
		sf.waiting = false
		if timedOut {
			select {
			case <-sf.wake:
				// Work came as the timer fired.
			default:
				sf.writerRunning = false
				return head, nil, idleExit
			}
		}
	}
}

// wakeSF makes sf's writer look for work, starting it if it ended while
// idle. Called with the lock held.
func (c *Conn) wakeSF(sf *subflow) {
	switch {
	case sf.writerRunning:
		signal(sf.wake)
	case !sf.dead:
		sf.writerRunning = true
		go sf.writeLoop()
	}
}

// sent is told by a writer that its write of ch (nil for control frames
// only) finished.
func (c *Conn) sent(ch *chunk) {
	if ch == nil {
		return
	}
	c.mu.Lock()
	ch.writers--
	if ch.writers == 0 && ch.acked {
		c.freeChunk(ch)
	}
	c.mu.Unlock()
}

func (c *Conn) freeChunk(ch *chunk) {
	if ch.buf != nil {
		c.pool.put(ch.buf)
		ch.buf, ch.data = nil, nil
	}
}

// window is how much more the receiver will buffer beyond rcvNxt.
func (c *Conn) window() uint64 {
	if c.unread >= c.cfg.ReceiveWindow {
		return 0
	}
	return uint64(c.cfg.ReceiveWindow - c.unread)
}

// ackNow queues an acknowledgement on every subflow.
func (c *Conn) ackNow() {
	c.ackPending = false
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.ackSent = c.rcvNxt
	c.wndSent = c.window()
	for _, sf := range c.subflows {
		if sf.established && !sf.closing {
			sf.ackWanted = true
			c.wakeSF(sf)
		}
	}
}

// maybeWindowUpdate acknowledges when the reader opened the window by a
// quarter or more since the last acknowledgement.
func (c *Conn) maybeWindowUpdate() {
	if w := c.window(); w >= c.wndSent+uint64(c.cfg.ReceiveWindow/4) {
		c.ackNow()
	}
}

// onData takes in a DATA frame's payload at absolute DSN dsn. buf (may be
// nil) is returned to the pool when the data is consumed.
func (c *Conn) onData(sf *subflow, dsn uint64, data []byte, buf *[]byte, fin bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	off := dsn - c.recvIDSN
	end := off + uint64(len(data))
	c.bytesRecv += uint64(len(data))
	sf.bytesRecv += uint64(len(data))
	if fin {
		if c.finKnown && c.finOff != end {
			return malformed("second FIN at a different data sequence number")
		}
		c.finKnown, c.finOff = true, end
	}
	if c.finKnown && end > c.finOff {
		return malformed("data beyond the FIN")
	}
	// Anything from the current point on must fit the window (with
	// wrapping offsets, a very old duplicate looks like a far one).
	if int64(end-c.rcvNxt) > int64(c.window()) {
		if int64(off-c.rcvNxt) < 0 && int64(c.rcvNxt-off) <= int64(c.cfg.ReceiveWindow)+MaxPayload {
			// An old duplicate: nothing new in it.
			c.put(buf)
			c.ackNow()
			return nil
		}
		return malformed("data at offset %d, beyond the receive window (expected %d, window %d)", off, c.rcvNxt, c.window())
	}
	if int64(end-c.rcvNxt) <= 0 {
		c.put(buf)
		c.deliverFIN()
		c.ackNow()
		return nil
	}
	if int64(off-c.rcvNxt) < 0 {
		data = data[c.rcvNxt-off:]
		off = c.rcvNxt
	}
	hole := len(c.ooo) > 0
	if off == c.rcvNxt {
		c.deliver(rchunk{off: off, data: data, buf: buf})
		for len(c.ooo) > 0 && int64(c.ooo[0].off-c.rcvNxt) <= 0 {
			r := c.ooo[0]
			c.ooo = c.ooo[1:]
			c.oooBytes -= len(r.data)
			if e := r.off + uint64(len(r.data)); int64(e-c.rcvNxt) > 0 {
				r.data = r.data[c.rcvNxt-r.off:]
				r.off = c.rcvNxt
				c.deliver(r)
			} else {
				c.freeRecv(r)
			}
		}
	} else {
		i, found := slices.BinarySearchFunc(c.ooo, off, func(r rchunk, off uint64) int {
			return cmpOff(r.off, off)
		})
		if found && len(c.ooo[i].data) >= len(data) {
			c.put(buf)
		} else {
			if found {
				c.oooBytes -= len(c.ooo[i].data)
				c.freeRecv(c.ooo[i])
				c.ooo[i] = rchunk{off: off, data: data, buf: buf}
			} else {
				c.ooo = slices.Insert(c.ooo, i, rchunk{off: off, data: data, buf: buf})
			}
			c.oooBytes += len(data)
		}
	}
	c.deliverFIN()
	switch {
	case hole && len(c.ooo) == 0, c.eof, c.rcvNxt-c.ackSent >= ackEvery:
		c.ackNow()
	case !c.ackPending:
		c.ackPending = true
		if c.ackTimer == nil {
			c.ackTimer = time.AfterFunc(ackDelay, c.delayedAck)
		} else {
			c.ackTimer.Reset(ackDelay)
		}
	}
	return nil
}

func cmpOff(a, b uint64) int {
	switch d := int64(a - b); {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

func (c *Conn) put(buf *[]byte) {
	if buf != nil {
		c.pool.put(buf)
	}
}

func (c *Conn) delayedAck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ackPending && c.err == nil {
		c.ackNow()
	}
}

// deliver hands in-order data to the reader.
func (c *Conn) deliver(r rchunk) {
	if len(r.data) == 0 {
		c.freeRecv(r)
		return
	}
	c.ready = append(c.ready, r)
	c.unread += len(r.data)
	c.rcvNxt = r.off + uint64(len(r.data))
	signal(c.readWake)
}

// deliverFIN marks the end of the stream once everything before the FIN
// arrived.
func (c *Conn) deliverFIN() {
	if c.finKnown && !c.eof && c.rcvNxt == c.finOff {
		c.eof = true
		c.rcvNxt++
		signal(c.readWake)
		c.checkDone()
	}
}

// onAck takes in a DATA_ACK.
func (c *Conn) onAck(ack uint64, wnd uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	off := ack - c.sendIDSN
	if int64(off-c.sndNxt) > 0 {
		return malformed("acknowledgement of data never sent (offset %d, sent up to %d)", off, c.sndNxt)
	}
	if int64(off-c.sndUna) < 0 {
		return nil // older than one already seen
	}
	c.peerWnd = uint64(wnd)
	if off == c.sndUna {
		c.wakeData()
		return nil
	}
	c.sndUna = off
	n := 0
	for n < len(c.queue) && c.queue[n].end() <= off {
		ch := c.queue[n]
		ch.acked = true
		c.sndBytes -= len(ch.data)
		if ch.writers == 0 {
			c.freeChunk(ch)
		}
		if ch.fin {
			c.finAcked = true
		}
		n++
	}
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	c.nextNew = max(0, c.nextNew-n)
	now := time.Now()
	for _, sf := range c.subflows {
		sf.lastProgress = now
	}
	signal(c.writeWake)
	c.wakeData()
	c.checkDone()
	return nil
}

// reinjectFrom queues again every unacknowledged chunk that went out on
// sf and on no other usable subflow. Called with the lock held.
func (c *Conn) reinjectFrom(sf *subflow) int {
	bit := uint64(1) << sf.slot
	var others uint64
	for _, o := range c.subflows {
		if o != sf && o.usable() {
			others |= 1 << o.slot
		}
	}
	n := 0
	for _, ch := range c.queue[:c.nextNew] {
		if ch.acked || ch.reinjected || ch.sent&bit == 0 || ch.sent&others != 0 {
			continue
		}
		ch.reinjected = true
		// Let the chunk go out again on a subflow it went out on before.
		ch.sent &^= bit
		c.reinject = append(c.reinject, ch)
		n++
	}
	if n > 0 {
		c.wakeData()
	}
	return n
}

// armTick makes sure the periodic check runs within d.
func (c *Conn) armTick(d time.Duration) {
	if c.err == nil && (c.nextTick.IsZero() || time.Until(c.nextTick) > d) {
		c.nextTick = time.Now().Add(d)
		c.tick.Reset(d)
	}
}

// outstanding says whether the session has data not yet acknowledged.
func (c *Conn) hasOutstanding() bool {
	return c.nextNew > 0 || c.nextNew < len(c.queue)
}
