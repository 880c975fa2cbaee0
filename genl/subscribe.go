package genl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
)

// Subscription receives the events of the mptcp_pm_events multicast group on
// a connection of its own. It ends when its context ends or it is closed.
type Subscription struct {
	c        *genetlink.Conn // nil when raw reads
	raw      *rawEvents      // nil: read through c
	ctx      context.Context
	stopFunc func() bool

	closeOnce sync.Once
	closeErr  error
}

// Subscribe joins the events group on a new connection in the client's
// namespace. The subscription ends when ctx ends; Close it when done.
// Errors: ErrUnavailable (the kernel has no events group, Linux < 5.12),
// ErrPermission (joining needs CAP_NET_ADMIN).
func (c *Client) Subscribe(ctx context.Context) (*Subscription, error) {
	const op = "subscribe to events"
	if c.events == 0 {
		return nil, &Error{Op: op, Err: errors.New("the kernel has no " + EventsGroupName + " group"), kinds: []error{ErrUnavailable}}
	}
	conn, err := c.dial()
	if err != nil {
		return nil, wrapNetlink(op, err)
	}
	if c.opts.eventBuffer > 0 {
		setReadBuffer(conn, c.opts.eventBuffer)
	}
	if err := conn.JoinGroup(c.events); err != nil {
		_ = conn.Close()
		return nil, wrapNetlink(op, err)
	}
	s := &Subscription{c: conn, ctx: ctx}
	if c.opts.directReads {
		if raw, err := newRawEvents(conn); err == nil {
			// The reader has a descriptor of its own (and the group with
			// it); the connection's would only be a second registration in
			// the runtime's poller, woken by every event for nothing.
			_ = conn.Close()
			s.c, s.raw = nil, raw
			s.stopFunc = context.AfterFunc(ctx, raw.stop)
			return s, nil
		}
	}
	// Unblock Receive when the context ends; closing the socket under a
	// blocked read would return an error no sentinel matches.
	s.stopFunc = context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	return s, nil
}

// Receive blocks until events arrive and returns them in the order the
// kernel sent them. An event that cannot be decoded is returned with Raw
// and DecodeErr set rather than failing the batch.
//
// Errors: the context's error once it has ended; ErrEventsLost when the
// kernel dropped events (the subscription stays usable, but the caller must
// resynchronise its view from the kernel).
func (s *Subscription) Receive() ([]Event, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	var (
		msgs []genetlink.Message
		err  error
	)
	if s.raw != nil {
		msgs, err = s.raw.receive()
	} else {
		msgs, _, err = s.c.Receive()
	}
	if err != nil {
		if ctxErr := s.ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		// ENOBUFS (the buffer overflowed) is classified as ErrEventsLost.
		return nil, wrapNetlink("receive events", err)
	}
	events := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := DecodeEvent(m)
		if err != nil {
			ev = Event{Type: EventType(m.Header.Command), Raw: append([]byte{}, m.Data...), DecodeErr: err}
		}
		events = append(events, ev)
	}
	return events, nil
}

// Close leaves the group and closes the subscription's connection.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		s.stopFunc()
		if s.raw != nil {
			s.raw.close()
			return
		}
		if err := s.c.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing event subscription: %w", err)
		}
	})
	return s.closeErr
}
