//go:build linux

package genl

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A Subscription cannot run over genltest: its connections support neither
// multicast groups nor deadlines, so JoinGroup fails. These tests use
// eventSocket instead, under the real netlink.Conn and genetlink.Conn.

// newEventClient returns a Client of a fake kernel whose subscriptions read
// from sock.
func newEventClient(t *testing.T, family genetlink.Family, sock *eventSocket, opts ...Option) *Client {
	t.Helper()
	dials := 0
	dial := func() (*genetlink.Conn, error) {
		dials++
		if dials > 1 {
			t.Errorf("dialled %d event connections, want 1", dials)
		}
		return genetlink.NewConn(netlink.NewConn(sock, 1)), nil
	}
	c, err := initClient(dialFakeKernel(t, family, nil), dial, buildOptions(opts))
	if err != nil {
		t.Fatalf("initClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// receive calls s.Receive, failing the test if it does not return within a
// few seconds.
func receive(t *testing.T, s *Subscription) ([]Event, error) {
	t.Helper()
	type result struct {
		evs []Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		evs, err := s.Receive()
		done <- result{evs, err}
	}()
	select {
	case r := <-done:
		return r.evs, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not return within 5s")
		return nil, nil
	}
}

func TestSubscriptionReceive(t *testing.T) {
	sock := newEventSocket(t)
	c := newEventClient(t, testFamily(), sock, WithEventBuffer(4096))
	s, err := c.Subscribe(t.Context())
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer s.Close()

	groups, readBuf, _ := sock.state()
	if !slices.Equal(groups, []uint32{9}) {
		t.Errorf("groups joined = %v, want [9] (%s)", groups, EventsGroupName)
	}
	if readBuf != 4096 {
		t.Errorf("receive buffer = %d, want 4096 from WithEventBuffer", readBuf)
	}

	var (
		l4 = netip.MustParseAddrPort("192.0.2.1:40000")
		r4 = netip.MustParseAddrPort("198.51.100.2:443")
		l6 = netip.MustParseAddrPort("[2001:db8::1]:40001")
		r6 = netip.MustParseAddrPort("[2001:db8:1::2]:8443")
	)
	// One batch: a known event of each family, an unknown type and a
	// malformed event, which must not spoil the others.
	sock.push(testFamily().ID,
		eventMessage(t, EventSubEstablished, subEstablishedAttrs(0x1234, 1, 2, l4, r4, false, 0)...),
		eventMessage(t, EventSubPriority, subEstablishedAttrs(0x1234, 3, 4, l6, r6, true, 5)...),
		eventMessage(t, 12, attrU32(wireToken, 0x1234)),
		eventMessage(t, EventCreated, attr{wireSAddr4, []byte{192, 0, 2}}),
	)
	evs, err := receive(t, s)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	want := []Event{
		{Type: EventSubEstablished, Token: 0x1234, Family: 2, LocalID: 1, RemoteID: 2, Local: l4, Remote: r4},
		{Type: EventSubPriority, Token: 0x1234, Family: 10, LocalID: 3, RemoteID: 4, Local: l6, Remote: r6, Backup: true, IfIndex: 5},
		{Type: 12, Raw: encodeAttrs(t, attrU32(wireToken, 0x1234))},
		{Type: EventCreated, Raw: encodeAttrs(t, attr{wireSAddr4, []byte{192, 0, 2}})},
	}
	if len(evs) == 4 {
		// The decode error is checked apart: its text is not part of the contract.
		if evs[3].DecodeErr == nil {
			t.Errorf("malformed event has no DecodeErr")
		}
		evs[3].DecodeErr = nil
	}
	if diff := cmp.Diff(want, evs, cmpOpts()...); diff != "" {
		t.Errorf("events differ (-want +got):\n%s", diff)
	}

	// A second batch arrives on the next call.
	sock.push(testFamily().ID, eventMessage(t, EventClosed, attrU32(wireToken, 0x1234)))
	evs, err = receive(t, s)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if diff := cmp.Diff([]Event{{Type: EventClosed, Token: 0x1234}}, evs, cmpOpts()...); diff != "" {
		t.Errorf("events differ (-want +got):\n%s", diff)
	}
}

func TestSubscriptionEventsLost(t *testing.T) {
	sock := newEventSocket(t)
	c := newEventClient(t, testFamily(), sock)
	s, err := c.Subscribe(t.Context())
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer s.Close()
	if _, readBuf, _ := sock.state(); readBuf != 1<<20 {
		t.Errorf("receive buffer = %d, want the default 1 MiB", readBuf)
	}

	// What the netlink socket returns when the kernel dropped messages.
	sock.pushErr(os.NewSyscallError("recvmsg", unix.ENOBUFS))
	evs, err := receive(t, s)
	if err == nil {
		t.Fatalf("Receive = %v, want ErrEventsLost", evs)
	}
	checkSentinels(t, err, "ErrEventsLost")
	if !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("errors.Is(%v, ENOBUFS) = false", err)
	}
	if evs != nil {
		t.Errorf("Receive returned events with its error: %v", evs)
	}

	// The subscription stays usable.
	sock.push(testFamily().ID, eventMessage(t, EventClosed, attrU32(wireToken, 9)))
	evs, err = receive(t, s)
	if err != nil {
		t.Fatalf("Receive after ENOBUFS: %v", err)
	}
	if len(evs) != 1 || evs[0].Type != EventClosed || evs[0].Token != 9 {
		t.Errorf("Receive after ENOBUFS = %v, want one closed event", evs)
	}

	// Other receive errors are reported, not taken for lost events.
	sock.pushErr(os.NewSyscallError("recvmsg", unix.EIO))
	_, err = receive(t, s)
	if !errors.Is(err, unix.EIO) || errors.Is(err, ErrEventsLost) {
		t.Errorf("Receive error %v, want EIO and not ErrEventsLost", err)
	}
}

func TestSubscriptionCancel(t *testing.T) {
	sock := newEventSocket(t)
	c := newEventClient(t, testFamily(), sock)
	ctx, cancel := context.WithCancel(t.Context())
	s, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer s.Close()

	// Receive blocks with nothing to read; cancelling unblocks it through
	// the read deadline and the context's error is returned.
	time.AfterFunc(20*time.Millisecond, cancel)
	evs, err := receive(t, s)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive after cancel = %v, %v; want context.Canceled", evs, err)
	}
	if _, _, closed := sock.state(); closed {
		t.Error("cancelling closed the socket; only Close should")
	}

	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, _, closed := sock.state(); !closed {
		t.Error("Close did not close the socket")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSubscriptionClose(t *testing.T) {
	sock := newEventSocket(t)
	c := newEventClient(t, testFamily(), sock)
	s, err := c.Subscribe(t.Context())
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, closed := sock.state(); !closed {
		t.Error("Close did not close the socket")
	}
	// Closing the client leaves nothing open either, and closing twice is
	// harmless.
	if err := c.Close(); err != nil {
		t.Errorf("Client.Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Client.Close: %v", err)
	}
}

func TestSubscribeUnavailable(t *testing.T) {
	f := testFamily()
	f.Groups = []genetlink.MulticastGroup{{ID: 8, Name: CommandsGroupName}} // a kernel before 5.12
	sock := newEventSocket(t)
	c := newEventClient(t, f, sock)
	// The dial function must not be used: no socket should be opened.
	c.dial = noDial(t)
	s, err := c.Subscribe(t.Context())
	if err == nil {
		_ = s.Close()
		t.Fatal("Subscribe succeeded without an events group")
	}
	checkSentinels(t, err, "ErrUnavailable")
}

func TestSubscribeJoinRefused(t *testing.T) {
	sock := &refusingSocket{eventSocket: newEventSocket(t)}
	c := newEventClient(t, testFamily(), sock.eventSocket)
	c.dial = func() (*genetlink.Conn, error) { return genetlink.NewConn(netlink.NewConn(sock, 1)), nil }
	s, err := c.Subscribe(t.Context())
	if err == nil {
		_ = s.Close()
		t.Fatal("Subscribe succeeded although joining the group was refused")
	}
	checkSentinels(t, err, "ErrPermission", "os.ErrPermission")
	if _, _, closed := sock.state(); !closed {
		t.Error("the connection of a failed Subscribe was left open")
	}
}

// refusingSocket refuses to join groups, as the kernel does for a process
// without CAP_NET_ADMIN.
type refusingSocket struct{ *eventSocket }

func (s *refusingSocket) JoinGroup(uint32) error {
	return os.NewSyscallError("setsockopt", unix.EPERM)
}
