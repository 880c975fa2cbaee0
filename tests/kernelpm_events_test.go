package tests

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestKernelPMEventSequence runs a real MPTCP connection between two hosts
// under the in-kernel path manager, the server announcing a second address
// with a signal endpoint, and checks the events both hosts report.
func TestKernelPMEventSequence(t *testing.T) {
	t.Parallel()
	forEachFamily(t, testKernelPMEventSequence)
}

func testKernelPMEventSequence(t *testing.T, family int) {
	bed := testbed.New(t)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	paths := bed.Paths(cli, srv, 2)
	cc, sc := newClient(t, cli), newClient(t, srv)
	for _, c := range []*genl.Client{cc, sc} {
		if err := c.SetLimits(genl.Limits{AddAddrAccepted: 2, Subflows: 2}); err != nil {
			t.Fatal(err)
		}
	}
	signal, err := sc.AddEndpoint(genl.Endpoint{Addr: paths[1].Addr(srv, family), Flags: genl.FlagSignal})
	if err != nil {
		t.Fatalf("adding the server's signal endpoint: %v", err)
	}
	cev, sev := collect(t, cli, cc), collect(t, srv, sc)

	ln, port := echoListener(t, srv, family)

	var si int
	lc := sev.wait(t, &si, "listener_created", func(ev genl.Event) bool { return ev.Type == genl.EventListenerCreated })
	if lc.Local.Port() != port || lc.Local.Addr().Is4() != (family == 4) {
		t.Errorf("listener_created = %v, want the wildcard address with port %d", lc, port)
	}

	server := netip.AddrPortFrom(paths[0].Addr(srv, family), port)
	conn, err := cli.Dial(context.Background(), netip.AddrPortFrom(paths[0].Addr(cli, family), 0), server)
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	roundTrip(t, conn, 64<<10)

	// Client: CREATED → ESTABLISHED → ANNOUNCED → SUB_ESTABLISHED.
	var ci int
	created := cev.wait(t, &ci, "created", func(ev genl.Event) bool { return ev.Type == genl.EventCreated })
	tok := created.Token
	if created.Local != local || created.Remote != server || created.ServerSide {
		t.Errorf("client created = %v, want %s → %s on the client side", created, local, server)
	}
	est := cev.wait(t, &ci, "established", is(genl.EventEstablished, tok))
	if est.Local != local || est.Remote != server {
		t.Errorf("client established = %v, want %s → %s", est, local, server)
	}
	ann := cev.wait(t, &ci, "announced", is(genl.EventAnnounced, tok))
	if ann.RemoteID != signal.ID || ann.Remote.Addr() != signal.Addr {
		t.Errorf("client announced = %v, want remid %d address %s", ann, signal.ID, signal.Addr)
	}
	// The client has no endpoints, so its in-kernel PM joins from the address
	// its routes pick towards the announced one (the client's end of path 1)
	// and records that address as an implicit endpoint.
	sub := cev.wait(t, &ci, "sf_established", is(genl.EventSubEstablished, tok))
	if sub.RemoteID != signal.ID || sub.Remote != netip.AddrPortFrom(signal.Addr, port) ||
		sub.Local.Addr() != paths[1].Addr(cli, family) || sub.Backup || sub.SubflowErr != 0 {
		t.Errorf("client sf_established = %v, want from %s to %s:%d (id %d), not backup", sub, paths[1].Addr(cli, family), signal.Addr, port, signal.ID)
	}
	implicit, err := cc.Endpoint(sub.LocalID)
	if err != nil || implicit.Addr != sub.Local.Addr() || implicit.Flags&genl.FlagImplicit == 0 {
		t.Errorf("client endpoint %d = %v, %v; want the implicit endpoint %s", sub.LocalID, implicit, err, sub.Local.Addr())
	}

	// Server: CREATED and ESTABLISHED flagged server side, then the join.
	screated := sev.wait(t, &si, "created", func(ev genl.Event) bool { return ev.Type == genl.EventCreated })
	stok := screated.Token
	if !screated.ServerSide || screated.Local != server || screated.Remote != local {
		t.Errorf("server created = %v, want server side %s → %s", screated, server, local)
	}
	if sest := sev.wait(t, &si, "established", is(genl.EventEstablished, stok)); !sest.ServerSide {
		t.Errorf("server established = %v, want server side", sest)
	}
	ssub := sev.wait(t, &si, "sf_established", is(genl.EventSubEstablished, stok))
	if ssub.Local != sub.Remote || ssub.Remote != sub.Local || ssub.LocalID != signal.ID {
		t.Errorf("server sf_established = %v, want the mirror of the client's %v", ssub, sub)
	}

	// Userspace-PM commands are refused on a connection of the in-kernel PM.
	wrong := genl.Endpoint{ID: 9, Addr: paths[1].Addr(cli, family)}
	wantErr(t, "announce on an in-kernel PM connection", cc.Announce(tok, wrong), genl.ErrWrongPathManager)
	wantErr(t, "create subflow on an in-kernel PM connection",
		cc.CreateSubflow(tok, wrong, netip.AddrPortFrom(paths[1].Addr(srv, family), port)), genl.ErrWrongPathManager)
	wantErr(t, "remove on an in-kernel PM connection", cc.Remove(tok, 9), genl.ErrWrongPathManager)

	// Withdrawing the server's initial address (ID 0): the client sees it
	// removed, and the connection carries on over the announced path.
	if err := sc.DeleteAddressID0(server.Addr()); err != nil {
		t.Fatalf("DeleteAddressID0(%s): %v", server.Addr(), err)
	}
	if rm := cev.wait(t, &ci, "removed", is(genl.EventRemoved, tok)); rm.RemoteID != 0 {
		t.Errorf("client removed = %v, want remid 0", rm)
	}
	roundTrip(t, conn, 64<<10)

	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	cev.wait(t, &ci, "closed", is(genl.EventClosed, tok))
	sev.wait(t, &si, "closed", is(genl.EventClosed, stok))
	want := []genl.EventType{genl.EventCreated, genl.EventEstablished, genl.EventAnnounced, genl.EventSubEstablished}
	if got := cev.ofToken(tok); len(got) < len(want) || !slices.Equal(got[:len(want)], want) || got[len(got)-1] != genl.EventClosed {
		t.Errorf("client events = %v, want %v ... closed", got, want)
	}

	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if cl := sev.wait(t, &si, "listener_closed", func(ev genl.Event) bool { return ev.Type == genl.EventListenerClosed }); cl.Local.Port() != port {
		t.Errorf("listener_closed = %v, want port %d", cl, port)
	}
}
