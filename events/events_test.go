package events

import (
	"errors"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
)

func TestBrokerDeliversInOrder(t *testing.T) {
	var b Broker
	s1, s2 := b.Subscribe(10), b.Subscribe(10)
	for i := range 5 {
		b.Publish(Event{Kind: KindLinkUp, Token: uint32(i)})
	}
	for _, s := range []*Subscription{s1, s2} {
		for i := range 5 {
			e := <-s.C()
			if e.Token != uint32(i) || e.Time.IsZero() {
				t.Fatalf("event %d: got token %d time %v", i, e.Token, e.Time)
			}
		}
	}
	s1.Close()
	s1.Close() // twice is harmless
	if _, open := <-s1.C(); open {
		t.Fatal("closed subscription still delivers")
	}
	if b.Subscribers() != 1 {
		t.Fatalf("subscribers = %d, want 1", b.Subscribers())
	}
}

func TestBrokerDropsSlowSubscriber(t *testing.T) {
	var b Broker
	slow, fast := b.Subscribe(2), b.Subscribe(100)
	for range 3 {
		b.Publish(Event{Kind: KindReconciled})
	}
	n := 0
	for range slow.C() {
		n++
	}
	if n != 2 || !errors.Is(slow.Err(), ErrTooSlow) {
		t.Fatalf("slow subscriber got %d events, err %v; want 2 and ErrTooSlow", n, slow.Err())
	}
	if len(fast.C()) != 3 || fast.Err() != nil {
		t.Fatalf("fast subscriber has %d events, err %v", len(fast.C()), fast.Err())
	}
	slow.Close() // after the broker dropped it: harmless
}

func TestKernelKind(t *testing.T) {
	seen := map[Kind]bool{}
	for _, typ := range []genl.EventType{genl.EventCreated, genl.EventEstablished, genl.EventClosed, genl.EventAnnounced,
		genl.EventRemoved, genl.EventSubEstablished, genl.EventSubClosed, genl.EventSubPriority,
		genl.EventListenerCreated, genl.EventListenerClosed} {
		k, ok := KernelKind(typ)
		if !ok || seen[k] {
			t.Fatalf("KernelKind(%v) = %v, %v", typ, k, ok)
		}
		seen[k] = true
	}
	if _, ok := KernelKind(200); ok {
		t.Fatal("unknown type has a kind")
	}
}
