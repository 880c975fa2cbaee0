package tests

import (
	"context"
	"net/netip"
	"syscall"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestUserspacePM drives a live MPTCP connection between two hosts whose
// namespaces use the userspace path manager: announce and remove an
// address, create, re-prioritise and destroy a subflow, and refuse bad
// tokens — checking what each host's kernel reports.
func TestUserspacePM(t *testing.T) {
	t.Parallel()
	forEachFamily(t, testUserspacePM)
}

func testUserspacePM(t *testing.T, family int) {
	bed := testbed.New(t)
	cli, srv := bed.Host("cli"), bed.Host("srv")
	paths := bed.Paths(cli, srv, 2)
	for _, h := range []*testbed.Host{cli, srv} {
		if err := genl.SetPathManager(genl.PathManagerUserspace, genl.WithNetNS(h.FD())); err != nil {
			t.Fatalf("host %s: selecting the userspace path manager: %v", h.Name, err)
		}
		if pm, err := genl.PathManager(genl.WithNetNS(h.FD())); err != nil || pm != genl.PathManagerUserspace {
			t.Fatalf("host %s: path manager = %q, %v; want userspace", h.Name, pm, err)
		}
	}
	// The client's commands go through the netlink package for IPv4 and
	// through a socket of their own (genl.WithRawRequests) for IPv6.
	var opts []genl.Option
	if family == 6 {
		opts = append(opts, genl.WithRawRequests())
	}
	cc, sc := newClient(t, cli, opts...), newClient(t, srv)
	cev, sev := collect(t, cli, cc), collect(t, srv, sc)

	ln, port := echoListener(t, srv, family)
	var ci, si int
	if lc := sev.wait(t, &si, "listener_created", func(ev genl.Event) bool { return ev.Type == genl.EventListenerCreated }); lc.Local.Port() != port {
		t.Errorf("listener_created = %v, want port %d", lc, port)
	}

	server := netip.AddrPortFrom(paths[0].Addr(srv, family), port)
	conn, err := cli.Dial(context.Background(), netip.AddrPortFrom(paths[0].Addr(cli, family), 0), server)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn, 16<<10)
	ctok := cev.wait(t, &ci, "established", func(ev genl.Event) bool { return ev.Type == genl.EventEstablished }).Token
	stok := sev.wait(t, &si, "established", func(ev genl.Event) bool { return ev.Type == genl.EventEstablished }).Token

	// The server announces its end of path 1 with ID 5.
	announced := genl.Endpoint{ID: 5, Addr: paths[1].Addr(srv, family)}
	if err := sc.Announce(stok, announced); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	if ann := cev.wait(t, &ci, "announced", is(genl.EventAnnounced, ctok)); ann.RemoteID != 5 || ann.Remote.Addr() != announced.Addr {
		t.Errorf("client announced = %v, want remid 5 address %s", ann, announced.Addr)
	}
	// The server's kernel lists it among the connection's local addresses.
	locals, err := sc.LocalAddresses(stok)
	if err != nil {
		t.Fatalf("LocalAddresses: %v", err)
	}
	found := false
	for _, l := range locals {
		found = found || (l.ID == 5 && l.Addr == announced.Addr && l.Flags&genl.FlagSignal != 0)
	}
	if !found {
		t.Errorf("LocalAddresses(server) = %v, want id 5 %s signal among them", locals, announced.Addr)
	}
	if got, err := sc.LocalAddress(stok, 5); err != nil || got.Addr != announced.Addr {
		t.Errorf("LocalAddress(server, 5) = %v, %v; want %s", got, err, announced.Addr)
	}
	// Re-using ID 5 for another address on the same connection is refused.
	wantErr(t, "announce another address with ID 5",
		sc.Announce(stok, genl.Endpoint{ID: 5, Addr: paths[0].Addr(srv, family)}), genl.ErrIDInUse)

	// The client joins the announced address from its end of path 1, ID 3.
	clientLocal := genl.Endpoint{ID: 3, Addr: paths[1].Addr(cli, family)}
	remote := netip.AddrPortFrom(announced.Addr, port)
	if err := cc.CreateSubflow(ctok, clientLocal, remote); err != nil {
		t.Fatalf("CreateSubflow: %v", err)
	}
	sub := cev.wait(t, &ci, "sf_established", is(genl.EventSubEstablished, ctok))
	if sub.LocalID != 3 || sub.RemoteID != 5 || sub.Local.Addr() != clientLocal.Addr || sub.Remote != remote || sub.Backup {
		t.Errorf("client sf_established = %v, want locid 3 %s → remid 5 %s, not backup", sub, clientLocal.Addr, remote)
	}
	ssub := sev.wait(t, &si, "sf_established", is(genl.EventSubEstablished, stok))
	if ssub.LocalID != 5 || ssub.RemoteID != 3 || ssub.Local != sub.Remote || ssub.Remote != sub.Local {
		t.Errorf("server sf_established = %v, want the mirror of %v", ssub, sub)
	}
	roundTrip(t, conn, 64<<10)

	// Backup: the client marks the subflow backup; its kernel sends MP_PRIO
	// and the server sees the subflow's priority change.
	before, err := cli.Counter("MPTcpExtMPPrioTx")
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.SetSubflowBackup(ctok, sub.Local, sub.Remote, true); err != nil {
		t.Fatalf("SetSubflowBackup: %v", err)
	}
	if err := testbed.WaitFor(defaultWait, func() (bool, error) {
		n, err := cli.Counter("MPTcpExtMPPrioTx")
		return n > before, err
	}); err != nil {
		t.Errorf("MPTcpExtMPPrioTx did not move after SetSubflowBackup: %v", err)
	}
	if prio := sev.wait(t, &si, "sf_priority", is(genl.EventSubPriority, stok)); !prio.Backup || prio.Local != ssub.Local {
		t.Errorf("server sf_priority = %v, want backup=1 on %s", prio, ssub.Local)
	}
	wantErr(t, "SetSubflowBackup of a subflow that does not exist",
		cc.SetSubflowBackup(ctok, sub.Local, netip.AddrPortFrom(announced.Addr, port+1), true), genl.ErrNotFound)

	// Destroy the subflow; both ends see it closed. A second time: not found.
	if err := cc.DestroySubflow(ctok, sub.Local, sub.Remote); err != nil {
		t.Fatalf("DestroySubflow: %v", err)
	}
	if cl := cev.wait(t, &ci, "sf_closed", is(genl.EventSubClosed, ctok)); cl.Local != sub.Local || cl.Remote != sub.Remote || cl.LocalID != 3 || cl.RemoteID != 5 {
		t.Errorf("client sf_closed = %v, want the subflow %v", cl, sub)
	}
	if cl := sev.wait(t, &si, "sf_closed", is(genl.EventSubClosed, stok)); cl.Local != ssub.Local || cl.Remote != ssub.Remote {
		t.Errorf("server sf_closed = %v, want the subflow %v", cl, ssub)
	}
	wantErr(t, "destroying the destroyed subflow", cc.DestroySubflow(ctok, sub.Local, sub.Remote), genl.ErrNotFound)
	roundTrip(t, conn, 16<<10)

	// Remove the announcement; the client sees RM_ADDR for ID 5.
	if err := sc.Remove(stok, 5); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if rm := cev.wait(t, &ci, "removed", is(genl.EventRemoved, ctok)); rm.RemoteID != 5 {
		t.Errorf("client removed = %v, want remid 5", rm)
	}
	wantErr(t, "removing an ID the connection does not have", sc.Remove(stok, 77), genl.ErrNotFound)

	// A join to a port nobody listens on: the kernel reports the subflow
	// closed with the connection's refusal as its error.
	refused := netip.AddrPortFrom(paths[1].Addr(srv, family), port+1)
	if err := cc.CreateSubflow(ctok, genl.Endpoint{ID: 4, Addr: paths[1].Addr(cli, family)}, refused); err != nil {
		t.Fatalf("CreateSubflow to %s: %v", refused, err)
	}
	if cl := cev.wait(t, &ci, "sf_closed", is(genl.EventSubClosed, ctok)); cl.Remote != refused || cl.SubflowErr != syscall.ECONNREFUSED {
		t.Errorf("client sf_closed = %v, want the subflow to %s closed with ECONNREFUSED", cl, refused)
	}

	// Unknown tokens are refused with the token sentinel by every command.
	bad := ctok ^ 0xffffffff
	wantErr(t, "announce, bad token", cc.Announce(bad, clientLocal), genl.ErrUnknownToken, genl.ErrNotFound)
	wantErr(t, "remove, bad token", cc.Remove(bad, 3), genl.ErrUnknownToken)
	wantErr(t, "create subflow, bad token", cc.CreateSubflow(bad, clientLocal, remote), genl.ErrUnknownToken)
	wantErr(t, "destroy subflow, bad token", cc.DestroySubflow(bad, sub.Local, sub.Remote), genl.ErrUnknownToken)
	_, err = cc.LocalAddresses(bad)
	wantErr(t, "local addresses, bad token", err, genl.ErrUnknownToken)

	roundTrip(t, conn, 16<<10)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	cev.wait(t, &ci, "closed", is(genl.EventClosed, ctok))
	sev.wait(t, &si, "closed", is(genl.EventClosed, stok))
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if cl := sev.wait(t, &si, "listener_closed", func(ev genl.Event) bool { return ev.Type == genl.EventListenerClosed }); cl.Local.Port() != port {
		t.Errorf("listener_closed = %v, want port %d", cl, port)
	}
}
