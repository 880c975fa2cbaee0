// Package events carries what happens in the namespace mptcpd manages —
// kernel MPTCP events, interface changes and the daemon's own changes — to
// everyone watching, through a Broker that never blocks its publishers.
package events

import (
	"errors"
	"sync"
	"time"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/pm"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// Kind says what happened.
type Kind int

// The kinds of event. Kernel events come first, in the order of
// genl.EventType; then interface changes, then the daemon's changes.
const (
	KindConnectionCreated Kind = iota + 1
	KindConnectionEstablished
	KindConnectionClosed
	KindAnnounced
	KindRemoved
	KindSubflowEstablished
	KindSubflowClosed
	KindSubflowPriority
	KindListenerCreated
	KindListenerClosed
	KindLinkUp
	KindLinkDown
	KindAddressAdded
	KindAddressRemoved
	KindEndpointAdded
	KindEndpointRemoved
	KindEndpointChanged
	KindLimitsChanged
	KindPolicyApplied
	KindReconciled
	KindEventsLost
	KindDecision
)

// KernelKind returns the Kind of a kernel event type, and false for a type
// this version does not know.
func KernelKind(t genl.EventType) (Kind, bool) {
	switch t {
	case genl.EventCreated:
		return KindConnectionCreated, true
	case genl.EventEstablished:
		return KindConnectionEstablished, true
	case genl.EventClosed:
		return KindConnectionClosed, true
	case genl.EventAnnounced:
		return KindAnnounced, true
	case genl.EventRemoved:
		return KindRemoved, true
	case genl.EventSubEstablished:
		return KindSubflowEstablished, true
	case genl.EventSubClosed:
		return KindSubflowClosed, true
	case genl.EventSubPriority:
		return KindSubflowPriority, true
	case genl.EventListenerCreated:
		return KindListenerCreated, true
	case genl.EventListenerClosed:
		return KindListenerClosed, true
	}
	return 0, false
}

// Reconcile describes one reconcile run.
type Reconcile struct {
	Time    time.Time
	Trigger string
	Err     error
	Changes int
	Took    time.Duration
}

// Event is one thing that happened. Kind says which of the pointers is set.
type Event struct {
	Kind Kind
	Time time.Time
	// Token is the connection the event belongs to, 0 for none.
	Token uint32
	// Reason says why the daemon made a change, or what the kernel reported.
	Reason string

	Kernel    *genl.Event      // connection, subflow, announcement, listener kinds
	Link      *netmon.Link     // LinkUp, LinkDown
	Addr      *netmon.Addr     // AddressAdded, AddressRemoved (Link set too, if known)
	Endpoint  *pm.EndpointInfo // EndpointAdded, EndpointRemoved, EndpointChanged
	Limits    *genl.Limits     // LimitsChanged
	Reconcile *Reconcile       // Reconciled, PolicyApplied
	// Connection is a connection with its subflows, in a snapshot.
	Connection *diag.Connection
	// Decision is a decision of the userspace path manager (Decision).
	Decision *userspace.Decision
}

// ErrTooSlow ends a subscription whose reader fell behind by more than its
// buffer; the reader should subscribe again (and read a new snapshot).
var ErrTooSlow = errors.New("watcher fell behind and missed events; watch again")

// Broker hands every published event to every subscriber. Publish never
// blocks: a subscriber whose buffer is full is dropped with ErrTooSlow.
// The zero Broker is ready to use.
type Broker struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription is one subscriber's stream of events.
type Subscription struct {
	b   *Broker
	c   chan Event
	err error // set (under b.mu) before c is closed
}

// Subscribe returns a subscription that buffers up to size events.
func (b *Broker) Subscribe(size int) *Subscription {
	s := &Subscription{b: b, c: make(chan Event, max(size, 1))}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = make(map[*Subscription]struct{})
	}
	b.subs[s] = struct{}{}
	return s
}

// Subscribers returns the number of subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish sends e to every subscriber, stamping it with the time if it has
// none.
func (b *Broker) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.err = ErrTooSlow
			delete(b.subs, s)
			close(s.c)
		}
	}
}

// C delivers the events; it is closed when the subscription ends, after
// which Err says why.
func (s *Subscription) C() <-chan Event { return s.c }

// Err is ErrTooSlow when the broker dropped the subscription, nil
// otherwise.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if _, ok := s.b.subs[s]; ok {
		delete(s.b.subs, s)
		close(s.c)
	}
}
