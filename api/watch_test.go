package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
	"github.com/mptcpd/mptcpd/pm"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// subflowEvent is a kernel SUB_ESTABLISHED event of connection token, its
// n-th subflow.
func subflowEvent(token uint32, n int) events.Event {
	return events.Event{
		Kind:  events.KindSubflowEstablished,
		Token: token,
		Kernel: &genl.Event{
			Type: genl.EventSubEstablished, Token: token, Family: 2,
			LocalID: 1, RemoteID: uint8(n % 256),
			Local:   netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(40000+n%20000)),
			Remote:  netip.MustParseAddrPort("198.51.100.1:443"),
			IfIndex: 3,
		},
	}
}

// snapshotEvents are the state a watcher gets first: an endpoint, an
// interface and a connection.
func snapshotEvents() []events.Event {
	return []events.Event{
		{Kind: events.KindEndpointAdded, Endpoint: &pm.EndpointInfo{
			Endpoint: genl.Endpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.10"), Flags: genl.FlagSubflow, IfIndex: 3}, Owner: pm.OwnerPolicy, Rule: "wifi"}},
		{Kind: events.KindLinkUp, Link: &netmon.Link{Index: 3, Name: "wlan0", Kind: netmon.KindPhysical, Up: true, Running: true}},
		{Kind: events.KindConnectionEstablished, Token: 7, Connection: &diag.Connection{
			Token: 7, State: diag.StateEstablished,
			Local:  netip.MustParseAddrPort("192.0.2.10:40000"),
			Remote: netip.MustParseAddrPort("198.51.100.1:443"),
		}},
	}
}

// waitSubscribers waits until the broker has n subscribers.
func waitSubscribers(t testing.TB, b *events.Broker, n int) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for b.Subscribers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("broker has %d subscribers, want %d", b.Subscribers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// recvUntilSnapshotEnd reads a stream up to SNAPSHOT_END and returns what
// came before it.
func recvUntilSnapshotEnd(t testing.TB, s grpc.ServerStreamingClient[pb.WatchResponse]) []*pb.WatchResponse {
	t.Helper()
	var got []*pb.WatchResponse
	for range 1000 {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv before SNAPSHOT_END: %v", err)
		}
		if r.GetKind() == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
			if r.GetSnapshot() {
				t.Errorf("SNAPSHOT_END has snapshot set")
			}
			return got
		}
		got = append(got, r)
	}
	t.Fatal("no SNAPSHOT_END in 1000 messages")
	return nil
}

// TestWatchSnapshotThenLive: the snapshot comes first, marked snapshot,
// then one SNAPSHOT_END, then the events published after it, in order.
func TestWatchSnapshotThenLive(t *testing.T) {
	backend := newFakeBackend()
	backend.snapshot = snapshotEvents()
	_, client := startUnix(t, backend)

	s, err := client.Watch(callCtx(t), &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	snap := recvUntilSnapshotEnd(t, s)
	wantKinds := []pb.EventKind{pb.EventKind_EVENT_KIND_ENDPOINT_ADDED, pb.EventKind_EVENT_KIND_LINK_UP, pb.EventKind_EVENT_KIND_CONNECTION_ESTABLISHED}
	if len(snap) != len(wantKinds) {
		t.Fatalf("snapshot of %d events, want %d: %v", len(snap), len(wantKinds), snap)
	}
	for i, r := range snap {
		if r.GetKind() != wantKinds[i] || !r.GetSnapshot() {
			t.Errorf("snapshot[%d] = %v snapshot=%v, want %v with snapshot set", i, r.GetKind(), r.GetSnapshot(), wantKinds[i])
		}
	}
	if ep := snap[0].GetEndpoint(); ep.GetAddress() != "192.0.2.10" || ep.GetInterfaceName() != "wlan0" || ep.GetOwner() != pb.Owner_OWNER_POLICY || ep.GetRule() != "wifi" {
		t.Errorf("snapshot endpoint %v", ep)
	}
	if c := snap[2].GetConnection(); c.GetToken() != 7 || snap[2].GetToken() != 7 || c.GetRemotePort() != 443 {
		t.Errorf("snapshot connection %v", snap[2])
	}

	const live = 100
	for i := range live {
		backend.broker.Publish(subflowEvent(uint32(1000+i), i))
	}
	backend.broker.Publish(events.Event{Kind: events.KindLimitsChanged, Limits: &genl.Limits{Subflows: 4, AddAddrAccepted: 2}})
	for i := range live {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("live event %d: %v", i, err)
		}
		sf := r.GetSubflow()
		if r.GetKind() != pb.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED || r.GetSnapshot() || r.GetToken() != uint32(1000+i) ||
			sf.GetLocalAddress() != "192.0.2.10" || sf.GetLocalPort() != uint32(40000+i) || sf.GetRemoteAddress() != "198.51.100.1" ||
			sf.GetRemoteId() != uint32(i) || sf.GetInterfaceName() != "wlan0" || r.GetTime() == nil {
			t.Fatalf("live event %d = %v, want subflow %d of token %d", i, r, i, 1000+i)
		}
	}
	r, err := s.Recv()
	if err != nil || r.GetKind() != pb.EventKind_EVENT_KIND_LIMITS_CHANGED || r.GetLimits().GetSubflows() != 4 {
		t.Fatalf("last event %v, %v; want LIMITS_CHANGED", r, err)
	}
}

// TestWatchFilters: kinds and tokens select the events, in the snapshot
// and live; SNAPSHOT_END comes all the same.
func TestWatchFilters(t *testing.T) {
	backend := newFakeBackend()
	backend.snapshot = append(snapshotEvents(), subflowEvent(7, 1), subflowEvent(8, 1))
	_, client := startUnix(t, backend)

	liveEvents := []events.Event{
		subflowEvent(7, 2),
		{Kind: events.KindLinkDown, Link: &netmon.Link{Index: 3, Name: "wlan0"}},
		subflowEvent(9, 1),
		{Kind: events.KindConnectionClosed, Token: 7, Kernel: &genl.Event{Type: genl.EventClosed, Token: 7}},
		{Kind: events.KindConnectionClosed, Token: 9, Kernel: &genl.Event{Type: genl.EventClosed, Token: 9}},
	}
	// end is published last. It passes every filter below (they all take
	// EVENTS_LOST and token 7): when it arrives, nothing else is coming.
	end := events.Event{Kind: events.KindEventsLost, Token: 7, Reason: "end of test"}
	lost := pb.EventKind_EVENT_KIND_EVENTS_LOST

	cases := []struct {
		name string
		req  *pb.WatchRequest
		// want are the events received, snapshot first, before end.
		want []string
	}{
		{"all", &pb.WatchRequest{}, []string{
			"snap ENDPOINT_ADDED 0", "snap LINK_UP 0", "snap CONNECTION_ESTABLISHED 7", "snap SUBFLOW_ESTABLISHED 7", "snap SUBFLOW_ESTABLISHED 8",
			"SUBFLOW_ESTABLISHED 7", "LINK_DOWN 0", "SUBFLOW_ESTABLISHED 9", "CONNECTION_CLOSED 7", "CONNECTION_CLOSED 9"}},
		{"kind", &pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED, lost}}, []string{
			"snap SUBFLOW_ESTABLISHED 7", "snap SUBFLOW_ESTABLISHED 8", "SUBFLOW_ESTABLISHED 7", "SUBFLOW_ESTABLISHED 9"}},
		{"two kinds", &pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_ENDPOINT_ADDED, pb.EventKind_EVENT_KIND_LINK_DOWN, lost}}, []string{
			"snap ENDPOINT_ADDED 0", "LINK_DOWN 0"}},
		{"token", &pb.WatchRequest{Tokens: []uint32{7}}, []string{
			"snap CONNECTION_ESTABLISHED 7", "snap SUBFLOW_ESTABLISHED 7", "SUBFLOW_ESTABLISHED 7", "CONNECTION_CLOSED 7"}},
		{"kind and token", &pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_CONNECTION_CLOSED, pb.EventKind_EVENT_KIND_ENDPOINT_ADDED, lost}, Tokens: []uint32{9, 7}}, []string{
			"CONNECTION_CLOSED 7", "CONNECTION_CLOSED 9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := client.Watch(callCtx(t), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recvUntilSnapshotEnd(t, s) {
				got = append(got, fmt.Sprintf("snap %s %d", kindName(r.GetKind()), r.GetToken()))
			}
			for _, e := range liveEvents {
				backend.broker.Publish(e)
			}
			backend.broker.Publish(end)
			for range len(liveEvents) + 1 {
				r, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if r.GetKind() == lost {
					break
				}
				got = append(got, fmt.Sprintf("%s %d", kindName(r.GetKind()), r.GetToken()))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("received %q, want %q", got, tc.want)
			}
		})
	}

	// Only SNAPSHOT_END: no snapshot, and none of the live events.
	ctx, cancel := context.WithCancel(callCtx(t))
	s, err := client.Watch(ctx, &pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_SNAPSHOT_END}})
	if err != nil {
		t.Fatal(err)
	}
	if snap := recvUntilSnapshotEnd(t, s); len(snap) != 0 {
		t.Errorf("snapshot %v, want none", snap)
	}
	for _, e := range append(liveEvents, end) {
		backend.broker.Publish(e)
	}
	cancel()
	if r, err := s.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("after the live events: %v, %v; want nothing but the end of the call", r, err)
	}
}

func kindName(k pb.EventKind) string {
	const prefix = len("EVENT_KIND_")
	return k.String()[prefix:]
}

// TestWatchTooSlow: a watcher that stops reading while more than
// api.WatchBuffer events are published is dropped with RESOURCE_EXHAUSTED,
// after every event that fitted.
func TestWatchTooSlow(t *testing.T) {
	backend := newFakeBackend()
	socket := socketPath(t)
	serve(t, listen(t, backend, api.Options{Socket: socket, SocketGID: -1}))
	// Fixed flow-control windows (no BDP estimation, which could grow them
	// to 16 MiB) keep what the connection holds small.
	_, client := dial(t, socket, nil, false, grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	s, err := client.Watch(callCtx(t), &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvUntilSnapshotEnd(t, s)
	waitSubscribers(t, &backend.broker, 1)

	// Publish without reading until the broker drops the watcher: the
	// buffer, plus whatever the gRPC flow-control windows and the socket
	// hold.
	published := 0
	for ; published < 1_000_000 && backend.broker.Subscribers() > 0; published++ {
		backend.broker.Publish(subflowEvent(uint32(published+1), published))
	}
	if backend.broker.Subscribers() != 0 {
		t.Fatalf("watcher still subscribed after %d events", published)
	}
	t.Logf("watcher dropped at event %d", published)
	if published <= api.WatchBuffer {
		t.Errorf("dropped after %d events, within the buffer of %d", published, api.WatchBuffer)
	}
	received := 0
	for ; received <= published; received++ {
		r, err := s.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, events.ErrTooSlow) || errors.Is(err, genl.ErrLimit) {
				t.Errorf("stream ended with %v, want RESOURCE_EXHAUSTED matching events.ErrTooSlow", err)
			}
			break
		}
		if r.GetToken() != uint32(received+1) {
			t.Fatalf("event %d has token %d, want the events in order", received, r.GetToken())
		}
	}
	// Every event before the one that overflowed the buffer arrives.
	if received != published-1 {
		t.Errorf("received %d of %d events before the end, want all but the last", received, published)
	}
}

// TestWatchEndsOnStop: when the service stops (Serve's context ends), the
// watch ends with UNAVAILABLE, the subscription is closed, Serve returns
// and the socket is gone.
func TestWatchEndsOnStop(t *testing.T) {
	backend := newFakeBackend()
	socket := socketPath(t)
	svc := listen(t, backend, api.Options{Socket: socket, SocketGID: -1})
	stop := serve(t, svc)
	_, client := dial(t, socket, nil, false)
	s, err := client.Watch(callCtx(t), &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvUntilSnapshotEnd(t, s)
	waitSubscribers(t, &backend.broker, 1)

	errc := make(chan error, 1)
	go func() { errc <- stop() }()
	_, err = s.Recv()
	if status.Code(err) != codes.Unavailable || !errors.Is(err, genl.ErrUnavailable) {
		t.Errorf("Recv after stop: %v, want UNAVAILABLE", err)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := backend.broker.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left after stop", n)
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v, want it removed", err)
	}
}

// TestWatchClientGoesAway: a watcher that cancels its call ends the
// server's stream and its subscription.
func TestWatchClientGoesAway(t *testing.T) {
	backend := newFakeBackend()
	_, client := startUnix(t, backend)
	ctx, cancel := context.WithCancel(callCtx(t))
	s, err := client.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvUntilSnapshotEnd(t, s)
	waitSubscribers(t, &backend.broker, 1)
	cancel()
	waitSubscribers(t, &backend.broker, 0)
}
