package mpx

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Scheduler names how a session spreads its data over its subflows.
type Scheduler string

// Schedulers.
const (
	// MinRTT sends on the usable non-backup subflow with the lowest
	// round-trip time that can take data now; the others take data when it
	// cannot (the kernel's default scheduler behaves the same way).
	MinRTT Scheduler = "minrtt"
	// RoundRobin takes turns among the subflows that can take data.
	RoundRobin Scheduler = "roundrobin"
	// Redundant sends every byte on every usable subflow.
	Redundant Scheduler = "redundant"
)

// Config tunes a session's engine. The zero value is usable: every field
// has a default.
type Config struct {
	// Scheduler defaults to MinRTT.
	Scheduler Scheduler
	// StaleLossCnt is the kernel's net.mptcp.stale_loss_cnt: a subflow
	// with data in flight that has heard no TCP acknowledgement for this
	// many retransmission timeouts (at least 200 ms in all) is stale; its
	// unacknowledged data is sent again on the others. Default 4.
	StaleLossCnt int
	// ReceiveWindow is the most a session buffers for its reader, in
	// order or not. Default 4 MiB; at least 64 KiB.
	ReceiveWindow int
	// SendBuffer is the most a session holds of its writer's data until
	// it is acknowledged. Default 4 MiB; at least 64 KiB.
	SendBuffer int
	// NotSentLowat is each subflow's TCP_NOTSENT_LOWAT: how much unsent
	// data its kernel socket may hold, which is what lets the scheduler
	// bind data to a path late. Default 128 KiB.
	NotSentLowat int
	// KeepAlive is how often an idle subflow is probed with PING; backup
	// subflows are probed every second whatever it says. Default 15 s.
	KeepAlive time.Duration
	// UserTimeout closes a subflow that stayed stale this long (and is
	// its TCP_USER_TIMEOUT). Default 10 s.
	UserTimeout time.Duration
	// OrphanTimeout ends a session that has had no subflow this long.
	// Default 30 s.
	OrphanTimeout time.Duration
	// Mark is set as SO_MARK on every subflow socket, so that transparent
	// capture rules can tell them apart; 0 sets none.
	Mark uint32
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Events, when set, is called for every session and subflow event,
	// without the session's lock held. It must not block.
	Events func(Event)
}

// Validate checks the fields that have no default meaning.
func (c *Config) Validate() error {
	switch c.Scheduler {
	case "", MinRTT, RoundRobin, Redundant:
	default:
		return fmt.Errorf("scheduler %q: use minrtt, roundrobin or redundant", c.Scheduler)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"receive window", c.ReceiveWindow}, {"send buffer", c.SendBuffer}} {
		if f.v != 0 && f.v < 64<<10 {
			return fmt.Errorf("%s of %d bytes: it must be at least 64 KiB", f.name, f.v)
		}
		if f.v > 1<<30 {
			return fmt.Errorf("%s of %d bytes: it must be at most 1 GiB", f.name, f.v)
		}
	}
	if c.StaleLossCnt < 0 || c.StaleLossCnt > 100 {
		return fmt.Errorf("stale_loss_cnt %d: use 1 to 100", c.StaleLossCnt)
	}
	if c.NotSentLowat < 0 {
		return fmt.Errorf("not-sent low-water mark %d is negative", c.NotSentLowat)
	}
	return nil
}

// withDefaults returns a copy with every zero field set.
func (c Config) withDefaults() Config {
	if c.Scheduler == "" {
		c.Scheduler = MinRTT
	}
	if c.StaleLossCnt == 0 {
		c.StaleLossCnt = 4
	}
	if c.ReceiveWindow == 0 {
		c.ReceiveWindow = 4 << 20
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = 4 << 20
	}
	if c.NotSentLowat == 0 {
		c.NotSentLowat = 128 << 10
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.UserTimeout == 0 {
		c.UserTimeout = 10 * time.Second
	}
	if c.OrphanTimeout == 0 {
		c.OrphanTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// EventKind names what happened, with the words of the kernel's MPTCP
// events.
type EventKind int

// Event kinds.
const (
	EventCreated EventKind = iota + 1
	EventEstablished
	EventClosed
	EventSubEstablished
	EventSubClosed
	EventSubPriority
	EventAnnounced
	EventRemoved
	EventSubStale
)

var eventNames = map[EventKind]string{
	EventCreated: "created", EventEstablished: "established", EventClosed: "closed",
	EventSubEstablished: "sub_established", EventSubClosed: "sub_closed",
	EventSubPriority: "sub_priority", EventAnnounced: "announced", EventRemoved: "removed",
	EventSubStale: "sub_stale",
}

func (k EventKind) String() string { return eventNames[k] }

// Event is something that happened to a session or one of its subflows.
type Event struct {
	Kind  EventKind
	Token uint64
	// Subflow is set for subflow events.
	Subflow SubflowInfo
	// Addr is the address of an ANNOUNCED or REMOVED event, with its ID.
	Addr   netip.AddrPort
	AddrID uint8
	// Err is why a subflow or session closed, if it was not a clean end.
	Err error
}

// pool holds payload buffers of MaxPayload bytes, shared by the sessions
// of one client or server.
type pool struct{ p sync.Pool }

func newPool() *pool {
	return &pool{p: sync.Pool{New: func() any {
		b := make([]byte, MaxPayload)
		return &b
	}}}
}

func (p *pool) get() *[]byte  { return p.p.Get().(*[]byte) }
func (p *pool) put(b *[]byte) { p.p.Put(b) }
