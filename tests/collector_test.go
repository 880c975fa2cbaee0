package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// collector gathers the MPTCP events of one host from a subscription, on a
// goroutine that ends with the test.
type collector struct {
	host string

	mu     sync.Mutex
	events []genl.Event
	err    error
	notify chan struct{} // closed and replaced on every change
}

func collect(t *testing.T, h *testbed.Host, c *genl.Client) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := c.Subscribe(ctx)
	if err != nil {
		cancel()
		t.Fatalf("subscribing to events in host %s: %v", h.Name, err)
	}
	col := &collector{host: h.Name, notify: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, err := sub.Receive()
			col.mu.Lock()
			col.events = append(col.events, evs...)
			if err != nil && !errors.Is(err, context.Canceled) {
				col.err = err
			}
			close(col.notify)
			col.notify = make(chan struct{})
			col.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = sub.Close()
	})
	return col
}

// wait returns the first event at or after index *from that matches, and
// moves *from past it; it fails the test after the timeout.
func (c *collector) wait(t *testing.T, from *int, what string, match func(genl.Event) bool) genl.Event {
	t.Helper()
	deadline := time.After(defaultWait)
	for {
		c.mu.Lock()
		for i := *from; i < len(c.events); i++ {
			if match(c.events[i]) {
				*from = i + 1
				ev := c.events[i]
				c.mu.Unlock()
				return ev
			}
		}
		err, notify := c.err, c.notify
		c.mu.Unlock()
		if err != nil {
			t.Fatalf("host %s: waiting for %s: subscription failed: %v", c.host, what, err)
		}
		select {
		case <-notify:
		case <-deadline:
			t.Fatalf("host %s: no %s event within %s; events so far:\n%s", c.host, what, defaultWait, c.dump())
		}
	}
}

// ofToken returns the types of the events of one connection, in order.
func (c *collector) ofToken(token uint32) []genl.EventType {
	c.mu.Lock()
	defer c.mu.Unlock()
	var types []genl.EventType
	for _, ev := range c.events {
		if ev.Token == token && ev.Type != genl.EventListenerCreated && ev.Type != genl.EventListenerClosed {
			types = append(types, ev.Type)
		}
	}
	return types
}

func (c *collector) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for i, ev := range c.events {
		fmt.Fprintf(&b, "  %d: %s\n", i, ev)
	}
	return b.String()
}

// is returns a matcher of events of a type and token.
func is(typ genl.EventType, token uint32) func(genl.Event) bool {
	return func(ev genl.Event) bool { return ev.Type == typ && ev.Token == token }
}

// defaultWait bounds every wait for the kernel in these tests.
const defaultWait = 5 * time.Second
