package userspace_test

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

const announcingServers = fastRetry + `
[[userspace.rule]]
name = "servers"
side = "server"
strategy = "none"
announce = true

[[userspace.rule]]
name = "clients"
side = "client"
strategy = "none"
`

// A server-side connection whose rule announces gets an ADD_ADDR for each
// usable local address but its own, once; addresses that go are
// withdrawn and addresses that come are announced.
func TestServerAnnounces(t *testing.T) {
	const srv, cli = 21, 22
	h := start(t, setup{toml: announcingServers, locals: []userspace.Local{eth0, wlan0, eth0v6}})
	h.m.Handle(open(srv, true, "10.0.1.1:443", "198.51.100.7:50000", 0))
	h.m.Handle(open(cli, false, "10.0.1.1:40000", "198.51.100.7:443", 0))
	want := []string{
		"announce 21 id 2 10.0.2.1",
		"announce 21 id 3 2001:db8:1::1",
	}
	h.waitCalls(srv, len(want))
	// The kernel reports the connection established once, but the
	// announcements must not be repeated for any other reason either.
	h.m.Handle(open(srv, true, "10.0.1.1:443", "198.51.100.7:50000", 0))
	h.settle()
	if diff := cmp.Diff(want, h.calls(srv)); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	if got := h.calls(cli); len(got) != 0 {
		t.Errorf("client-side connection: %q, want nothing", got)
	}
	for _, d := range h.dec.of(srv, userspace.ActionAnnounce) {
		if d.Rule != "servers" || d.Reason == "" || d.Err != nil {
			t.Errorf("announce decision %+v: want rule servers, a reason, no error", d)
		}
	}

	// wlan0 goes: its announcement is withdrawn.
	h.setLocals(eth0, eth0v6)
	want = append(want, "remove 21 id 2")
	h.waitCalls(srv, len(want))
	h.settle()
	if diff := cmp.Diff(want, h.calls(srv)); diff != "" {
		t.Errorf("after wlan0 went (-want +got):\n%s", diff)
	}
	if d := h.waitDecision(srv, 1, userspace.ActionWithdraw); d[0].LocalID != 2 || d[0].Reason == "" {
		t.Errorf("withdraw decision %+v: want local ID 2 and a reason", d[0])
	}

	// wwan0 comes: it is announced (with the ID wlan0 had, now free).
	p := h.setLocals(eth0, eth0v6, wwan0)
	id := p.Locals()[2].ID
	want = append(want, fmt.Sprintf("announce 21 id %d 10.0.3.1", id))
	h.waitCalls(srv, len(want))
	h.settle()
	if diff := cmp.Diff(want, h.calls(srv)); diff != "" {
		t.Errorf("after wwan0 came (-want +got):\n%s", diff)
	}
	if got := h.calls(cli); len(got) != 0 {
		t.Errorf("client-side connection: %q, want nothing", got)
	}
}

// An address replaced by another in one change of the policy: the old one
// must be withdrawn and the new one announced, whatever IDs NewPolicy
// gives them.
func TestServerAnnounceAddressReplaced(t *testing.T) {
	const srv = 23
	h := start(t, setup{toml: announcingServers, locals: []userspace.Local{eth0, wlan0}})
	h.m.Handle(open(srv, true, "10.0.1.1:443", "198.51.100.7:50000", 0))
	h.waitCalls(srv, 1)

	p := h.setLocals(eth0, wwan0) // wlan0 (ID 2) gone, wwan0 new
	h.settle()
	got := h.calls(srv)
	if !slices.Contains(got, "remove 23 id 2") {
		t.Errorf("wlan0's announcement (ID 2) was not withdrawn: commands %q", got)
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "announce 23 ") && strings.HasSuffix(l, " 10.0.3.1") }) {
		t.Errorf("wwan0 (10.0.3.1, given ID %d) was not announced: commands %q", p.Locals()[1].ID, got)
	}
}

// announce_port is announced with the addresses, and the Manager listens
// on it unless an application does.
func TestAnnouncePortListeners(t *testing.T) {
	const srv = 24
	var mu sync.Mutex
	var opened, closedL []string
	listen := func(a netip.AddrPort) (io.Closer, error) {
		mu.Lock()
		defer mu.Unlock()
		opened = append(opened, a.String())
		if a.Addr() == wlan0.Addr {
			return nil, syscall.EADDRINUSE // the application listens there
		}
		return closeFunc(func() error {
			mu.Lock()
			defer mu.Unlock()
			closedL = append(closedL, a.String())
			return nil
		}), nil
	}
	t.Cleanup(func() { // runs after the Manager stopped
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]string{"10.0.1.1:8443", "10.0.3.1:8443"}, closedL); diff != "" {
			t.Errorf("listeners closed (-want +got):\n%s", diff)
		}
	})
	h := start(t, setup{
		toml:   fastRetry + "[[userspace.rule]]\nname = \"s\"\nside = \"server\"\nstrategy = \"none\"\nannounce = true\nannounce_port = 8443\n",
		locals: []userspace.Local{eth0, wlan0},
		listen: listen,
	})
	// The Manager listens once it runs, before any policy change.
	h.waitFor("the first listener", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(opened, "10.0.1.1:8443")
	})
	h.m.Handle(open(srv, true, "10.0.1.1:443", "198.51.100.7:50000", 0))
	h.waitCalls(srv, 1)
	h.settle()
	if diff := cmp.Diff([]string{"announce 24 id 2 10.0.2.1 port 8443"}, h.calls(srv)); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	h.setLocals(eth0, wlan0, wwan0)
	h.setLocals(wlan0, wwan0)
	h.waitCalls(srv, 2)
	h.settle()
	if diff := cmp.Diff([]string{"announce 24 id 2 10.0.2.1 port 8443", "announce 24 id 3 10.0.3.1 port 8443"}, h.calls(srv)); diff != "" {
		t.Errorf("announcements after wwan0 came (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(opened)
	if diff := cmp.Diff([]string{"10.0.1.1:8443", "10.0.2.1:8443", "10.0.3.1:8443"}, opened); diff != "" {
		t.Errorf("listeners opened (-want +got):\n%s", diff)
	}
	var listens []string
	for _, d := range h.dec.all() {
		if d.Action == userspace.ActionListen || d.Action == userspace.ActionStopListen {
			listens = append(listens, string(d.Action)+" "+d.Local.String())
		}
	}
	if diff := cmp.Diff([]string{"listen 10.0.1.1:8443", "listen 10.0.3.1:8443", "stop-listening 10.0.1.1:8443"}, listens); diff != "" {
		t.Errorf("listen decisions (-want +got):\n%s", diff)
	}
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }

const peerPolicy = fastRetry + `
[userspace.peer]
accept = true
deny_prefixes = ["203.0.113.0/24"]
max_accepted = 2
rate = 1000

[[userspace.rule]]
name = "mesh"
strategy = "fullmesh"
`

// The peer's announcements are joined or refused by userspace.peer, the
// host's own addresses and the per-connection cap. Each refusal is tried
// on a connection of its own: the rate's bucket holds max_accepted
// announcements, and announcements refused for other reasons use it up too.
func TestPeerAnnouncements(t *testing.T) {
	own := netip.MustParseAddr("10.9.9.9") // an address of this host that is not usable
	h := start(t, setup{toml: peerPolicy, locals: []userspace.Local{eth0}, own: []netip.Addr{own}})
	refusals := []struct {
		id     uint8
		addr   string
		reason string // part of the refusal's reason
	}{
		{1, "203.0.113.5", "deny_prefixes 203.0.113.0/24"},
		{2, "127.0.0.1", "loopback"},
		{3, "169.254.1.1", "link-local"},
		{4, "fe80::1", "link-local"},
		{5, "224.0.0.5", "multicast"},
		{6, "ff02::1", "multicast"},
		{7, "255.255.255.255", "broadcast"},
		{8, "0.0.0.0", "unspecified"},
		{9, "10.9.9.9", "this host"},
		{10, "[::ffff:10.0.1.1]:443", "this host"},
		{0, "198.51.100.9", "ID 0"},
	}
	for i, tt := range refusals {
		tok := uint32(100 + i)
		h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
		h.m.Handle([]genl.Event{announced(tok, tt.id, tt.addr)})
	}
	h.settle()
	for i, tt := range refusals {
		tok := uint32(100 + i)
		d := h.dec.of(tok, userspace.ActionAccept, userspace.ActionRefuse)
		if len(d) != 1 || d[0].Action != userspace.ActionRefuse || !strings.Contains(d[0].Reason, tt.reason) || d[0].RemoteID != tt.id {
			t.Errorf("announcement of %s (ID %d): decisions %+v, want one refusal with ID %d and a reason with %q", tt.addr, tt.id, d, tt.id, tt.reason)
		}
		if got := h.calls(tok); len(got) != 0 {
			t.Errorf("announcement of %s (ID %d) refused, but commands %q", tt.addr, tt.id, got)
		}
		if ci := h.info(tok); ci.Accepted != 0 || ci.Refused != 1 {
			t.Errorf("announcement of %s: Info = %+v, want 0 accepted, 1 refused", tt.addr, ci)
		}
	}

	// Two are accepted (one has no local of its family to join it from),
	// and the third is one too many.
	const tok = 31
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	h.m.Handle([]genl.Event{announced(tok, 1, "198.51.100.1:8080"), announced(tok, 2, "2001:db8:9::1")})
	h.waitDecision(tok, 2, userspace.ActionAccept)
	time.Sleep(3 * time.Millisecond) // not synchronisation: the bucket refills (rate 1000/s)
	h.m.Handle([]genl.Event{announced(tok, 3, "198.51.100.3")})
	if d := h.waitDecision(tok, 1, userspace.ActionRefuse); !strings.Contains(d[0].Reason, "max_accepted") {
		t.Errorf("third announcement refused for %q, want max_accepted", d[0].Reason)
	}
	// A re-announcement of an accepted ID is not one more.
	time.Sleep(3 * time.Millisecond)
	h.m.Handle([]genl.Event{announced(tok, 1, "198.51.100.1:8080")})
	h.waitDecision(tok, 3, userspace.ActionAccept)
	h.settle()
	if diff := cmp.Diff([]string{"create 31 id 1 10.0.1.1 dev 1 -> 198.51.100.1:8080"}, h.calls(tok)); diff != "" {
		t.Errorf("kernel commands (-want +got):\n%s", diff)
	}
	if ci := h.info(tok); ci.Accepted != 2 || ci.Refused != 1 {
		t.Errorf("Info = %+v, want 2 accepted, 1 refused", ci)
	}

	// The peer withdraws an address: it is no longer a target.
	h.m.Handle([]genl.Event{{Type: genl.EventRemoved, Token: tok, RemoteID: 1}})
	h.setLocals(eth0, wlan0) // a new local is joined to the remaining targets only
	h.waitCalls(tok, 2)
	h.settle()
	if diff := cmp.Diff([]string{
		"create 31 id 1 10.0.1.1 dev 1 -> 198.51.100.1:8080",
		"create 31 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443",
	}, h.calls(tok)); diff != "" {
		t.Errorf("kernel commands (-want +got):\n%s", diff)
	}
}

func TestPeerAnnouncementsNotAccepted(t *testing.T) {
	const tok = 32
	h := start(t, setup{toml: fastRetry + `
[userspace.peer]
accept = false

[[userspace.rule]]
name = "mesh"
strategy = "fullmesh"
`, locals: []userspace.Local{eth0, wlan0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	h.m.Handle([]genl.Event{announced(tok, 1, "198.51.100.1")})
	d := h.waitDecision(tok, 1, userspace.ActionRefuse)
	if !strings.Contains(d[0].Reason, "accept") {
		t.Errorf("refusal reason %q does not name userspace.peer.accept", d[0].Reason)
	}
	h.settle()
	if diff := cmp.Diff([]string{"create 32 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443"}, h.calls(tok)); diff != "" {
		t.Errorf("kernel commands (-want +got):\n%s", diff)
	}
}

const floodPolicy = fastRetry + `
[userspace.peer]
accept = true
max_accepted = 4
rate = 10

[[userspace.rule]]
name = "mesh"
strategy = "fullmesh"
max_subflows = 64
`

// floodEvent returns the i-th of a flood of announcements: distinct
// addresses, IDs 1..255 in turn.
func floodEvent(token uint32, i int) genl.Event {
	a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	return genl.Event{Type: genl.EventAnnounced, Token: token, RemoteID: uint8(i%255 + 1), Remote: netip.AddrPortFrom(a, 0)}
}

// floodEvents returns n announcements of a flood.
func floodEvents(token uint32, n int) []genl.Event {
	evs := make([]genl.Event, n)
	for i := range evs {
		evs[i] = floodEvent(token, i)
	}
	return evs
}

// A flood of announcements is cut by the rate (a token bucket with a
// burst of max(max_accepted, 1)) and the cap: a few are considered, at
// most max_accepted joined.
func TestAnnouncementFlood(t *testing.T) {
	const tok = 33
	const n = 10000
	h := start(t, setup{toml: floodPolicy, locals: []userspace.Local{eth0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	h.settle()
	evs := floodEvents(tok, n)
	begin := time.Now()
	h.m.Handle(evs)
	h.settle()
	elapsed := time.Since(begin)

	peer := h.cfg.Userspace.Peer
	accepts := len(h.dec.of(tok, userspace.ActionAccept))
	limit := float64(max(peer.MaxAccepted, 1)) + float64(peer.Rate)*elapsed.Seconds()
	t.Logf("%d announcements in %s: %d accept decisions (bucket allows %.1f)", n, elapsed, accepts, limit)
	if float64(accepts) > math.Floor(limit) {
		t.Errorf("%d announcements accepted in %s, want at most %.0f (burst %d + rate %d/s)", accepts, elapsed, math.Floor(limit), max(peer.MaxAccepted, 1), peer.Rate)
	}
	ci := h.info(tok)
	if ci.Accepted > peer.MaxAccepted || ci.Accepted+ci.Refused+(accepts-ci.Accepted) != n {
		t.Errorf("Info = %+v: want at most %d accepted and the rest of the %d refused", ci, peer.MaxAccepted, n)
	}
	if got := h.calls(tok, "create"); len(got) > peer.MaxAccepted {
		t.Errorf("%d subflows asked for, want at most max_accepted = %d: %q", len(got), peer.MaxAccepted, got)
	}
	// A flood is counted, not reported line by line.
	if refusals := h.dec.of(tok, userspace.ActionRefuse); len(refusals) > 16 {
		t.Errorf("%d refusals reported, want a few", len(refusals))
	}
}

// Refusing an announcement costs no allocation beyond the event's copy
// into the worker's queue (which allocates nothing either). Beyond the
// rate is measured on one connection with its bucket drained; the other
// refusals on a connection each, so that their buckets are full (the rate
// is at most 1,000,000/s, and a worker handles an event in less than a
// microsecond).
func TestRefusedAnnouncementAllocs(t *testing.T) {
	const n = 10000
	tests := []struct {
		name  string
		toml  string
		conns int
		event func(tok uint32, i int) genl.Event
	}{{
		name:  "beyond the rate",
		toml:  floodPolicy,
		conns: 1,
		event: floodEvent,
	}, {
		name:  "beyond max_accepted",
		toml:  fastRetry + "[userspace.peer]\nmax_accepted = 0\n[[userspace.rule]]\nstrategy = \"fullmesh\"\n",
		conns: n,
		event: func(tok uint32, i int) genl.Event { return announced(tok, 1, "198.51.100.1") },
	}, {
		name:  "loopback",
		toml:  fastRetry + "[[userspace.rule]]\nstrategy = \"fullmesh\"\n",
		conns: n,
		event: func(tok uint32, i int) genl.Event { return announced(tok, 1, "127.0.0.1") },
	}, {
		name:  "own address",
		toml:  fastRetry + "[[userspace.rule]]\nstrategy = \"fullmesh\"\n",
		conns: n,
		event: func(tok uint32, i int) genl.Event { return announced(tok, 1, "10.0.1.1") },
	}, {
		name:  "denied prefix",
		toml:  fastRetry + "[userspace.peer]\ndeny_prefixes = [\"198.51.100.0/24\"]\n[[userspace.rule]]\nstrategy = \"fullmesh\"\n",
		conns: n,
		event: func(tok uint32, i int) genl.Event { return announced(tok, 1, "198.51.100.1") },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, setup{toml: tt.toml, locals: []userspace.Local{eth0}, noDecisions: true})
			for c := range tt.conns {
				h.m.Handle(open(uint32(c+1), false, "10.0.1.1:40000", "192.0.2.1:443", 0))
			}
			evs := make([]genl.Event, 2*n)
			for i := range evs {
				evs[i] = tt.event(uint32(i%tt.conns+1), i)
			}
			if tt.conns == 1 {
				h.m.Handle(evs[:n]) // drain the bucket, use up the reports of refusals
			} else {
				// The first refusals of each connection are reported (and
				// their reasons formatted); a flood is what comes after.
				var first []genl.Event
				for c := range tt.conns {
					for range 8 {
						first = append(first, tt.event(uint32(c+1), 0))
					}
				}
				h.m.Handle(first)
			}
			h.settle()
			perEvent := refusalAllocs(h, evs[n:])
			t.Logf("%.3f allocations per refused announcement", perEvent)
			if perEvent > 0.1 {
				t.Errorf("%.2f allocations per refused announcement (%s), want none", perEvent, tt.name)
			}
			if ci := h.info(1); ci.Refused < n/tt.conns {
				t.Errorf("Info = %+v, want the announcements measured refused", ci)
			}
		})
	}
}

// refusalAllocs hands evs to the Manager and returns the heap allocations
// made per event until they are handled (settle's few amortised).
func refusalAllocs(h *harness, evs []genl.Event) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h.m.Handle(evs)
	h.settle()
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(len(evs))
}

// A peer that refuses joins to its initial address (deny-join-id0) gets
// no subflow to it, whatever the strategy; its announced addresses are
// joined.
func TestDenyJoinID0(t *testing.T) {
	tests := []struct {
		strategy string
		// flagOn is the event that carries the flag.
		flagOn genl.EventType
		// want are the commands after the peer announced 198.51.100.1.
		want []string
	}{
		{"fullmesh", genl.EventCreated, []string{"create 1 id 1 10.0.1.1 dev 1 -> 198.51.100.1:443", "create 1 id 2 10.0.2.1 dev 2 -> 198.51.100.1:443"}},
		{"fullmesh", genl.EventEstablished, []string{"create 1 id 1 10.0.1.1 dev 1 -> 198.51.100.1:443", "create 1 id 2 10.0.2.1 dev 2 -> 198.51.100.1:443"}},
		{"per-interface", genl.EventCreated, []string{"create 1 id 2 10.0.2.1 dev 2 -> 198.51.100.1:443"}},
		{"backup", genl.EventEstablished, []string{"create 1 id 2 10.0.2.1 dev 2 -> 198.51.100.1:443"}},
		{"ndiffports", genl.EventCreated, nil},
		{"ndiffports", genl.EventEstablished, nil},
	}
	for _, tt := range tests {
		t.Run(tt.strategy+"/"+tt.flagOn.String(), func(t *testing.T) {
			const tok = 1
			h := start(t, setup{toml: rule(fmt.Sprintf("strategy = %q", tt.strategy)), locals: []userspace.Local{eth0, wlan0}})
			evs := open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0)
			for i := range evs {
				if evs[i].Type == tt.flagOn {
					evs[i].Flags |= genl.EventFlagDenyJoinID0
				}
			}
			h.m.Handle(evs)
			h.settle()
			if got := h.calls(tok); len(got) != 0 {
				t.Errorf("commands before any announcement: %q, want none (the peer refuses joins to 192.0.2.1:443)", got)
			}
			h.m.Handle([]genl.Event{announced(tok, 1, "198.51.100.1")})
			h.waitCalls(tok, len(tt.want))
			h.settle()
			if diff := cmp.Diff(tt.want, h.calls(tok)); diff != "" {
				t.Errorf("commands after an announcement (-want +got):\n%s", diff)
			}
		})
	}
}
