package userspace_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

const sides = fastRetry + `
[[userspace.rule]]
name = "servers"
side = "server"
strategy = "none"

[[userspace.rule]]
name = "clients"
side = "client"
strategy = "fullmesh"
`

// listed returns a listed connection with established subflows, each
// "local>remote" with optional IDs "local#id>remote#id".
func listed(token uint32, local, remote string, subflows ...string) diag.Connection {
	c := diag.Connection{Family: diag.IPv4, Token: token, State: diag.StateEstablished, Local: addrPort(local), Remote: addrPort(remote)}
	for _, s := range subflows {
		l, r, _ := strings.Cut(s, ">")
		var lid, rid uint8
		if a, id, ok := strings.Cut(l, "#"); ok {
			l = a
			fmt.Sscan(id, &lid)
		}
		if a, id, ok := strings.Cut(r, "#"); ok {
			r = a
			fmt.Sscan(id, &rid)
		}
		c.Subflows = append(c.Subflows, diag.Subflow{
			Family: diag.IPv4, State: diag.StateEstablished, LocalToken: token,
			Local: addrPort(l), Remote: addrPort(r), LocalID: lid, RemoteID: rid,
		})
	}
	return c
}

// Resync adopts the listed connections with their subflows, asks only for
// the subflows missing, forgets connections not listed, and tells server
// connections by the listeners.
func TestResync(t *testing.T) {
	const (
		known    = 12 // known from events, some of its events lost
		adopted  = 11 // not known before
		server   = 14 // not known before, accepted by a listener
		vanished = 13 // known, not listed
	)
	h := start(t, setup{toml: sides, locals: []userspace.Local{eth0, wlan0, wwan0}})
	ctx := context.Background()

	h.m.Handle(open(known, false, "10.0.1.1:40012", "192.0.2.1:443", 0))
	h.m.Handle(open(vanished, false, "10.0.1.1:40013", "192.0.2.1:443", 0))
	h.waitCalls(known, 2)
	h.m.Handle([]genl.Event{subEstablished(known, 2, "10.0.2.1:50012", "192.0.2.1:443", false)})
	// The SUB_ESTABLISHED of 10.0.3.1 is lost; the listing has it.
	h.settle()

	h.lister.set(
		diag.Connection{Family: diag.IPv6, State: diag.StateListen, Local: addrPort("[::]:443")},
		listed(adopted, "10.0.1.1:40011", "192.0.2.1:443",
			"10.0.1.1:40011>192.0.2.1:443",
			"10.0.2.1:50011#2>192.0.2.1:443",
			"10.0.1.1:50111#1>198.51.100.1:443#5"),
		listed(known, "10.0.1.1:40012", "192.0.2.1:443",
			"10.0.1.1:40012>192.0.2.1:443",
			"10.0.2.1:50012#2>192.0.2.1:443",
			"10.0.3.1:50112#3>192.0.2.1:443"),
		listed(server, "[::ffff:10.0.1.1]:443", "[::ffff:198.51.100.7]:50014",
			"10.0.1.1:443>198.51.100.7:50014"),
	)
	if err := h.m.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if diff := cmp.Diff([]string{
		"create 11 id 3 10.0.3.1 dev 3 -> 192.0.2.1:443 backup",
		"create 11 id 2 10.0.2.1 dev 2 -> 198.51.100.1:443",
		"create 11 id 3 10.0.3.1 dev 3 -> 198.51.100.1:443 backup",
	}, h.calls(adopted)); diff != "" {
		t.Errorf("adopted connection: commands (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{
		"create 12 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443",
		"create 12 id 3 10.0.3.1 dev 3 -> 192.0.2.1:443 backup",
	}, h.calls(known)); diff != "" {
		t.Errorf("known connection: commands (-want +got):\n%s", diff)
	}
	if got := h.calls(server); len(got) != 0 {
		t.Errorf("server connection: commands %q, want none", got)
	}
	if _, ok := h.m.Info(vanished); ok {
		t.Errorf("connection %d, not listed, is still tracked", vanished)
	}
	for _, tt := range []struct {
		token uint32
		want  userspace.ConnInfo
	}{
		{adopted, userspace.ConnInfo{Token: adopted, Rule: "clients", Strategy: "fullmesh", Wanted: 6, Present: 3, Accepted: 1}},
		{known, userspace.ConnInfo{Token: known, Rule: "clients", Strategy: "fullmesh", Wanted: 3, Present: 3}},
		{server, userspace.ConnInfo{Token: server, Server: true, Rule: "servers", Strategy: "none", Wanted: 1, Present: 1}},
	} {
		if diff := cmp.Diff(tt.want, h.info(tt.token)); diff != "" {
			t.Errorf("Info(%d) (-want +got):\n%s", tt.token, diff)
		}
	}
	if got := h.m.Connections(); got != 3 {
		t.Errorf("Connections() = %d, want 3", got)
	}
	for _, tok := range []uint32{adopted, server} {
		if d := h.dec.of(tok, userspace.ActionAdopt); len(d) != 1 || d[0].Reason == "" {
			t.Errorf("adopt decisions of %d: %+v, want one with a reason", tok, d)
		}
	}
	if d := h.dec.of(known, userspace.ActionAdopt); len(d) != 0 {
		t.Errorf("a connection already known was adopted: %+v", d)
	}

	// Once the subflows asked for are up, a second resync changes nothing.
	h.lister.set(
		diag.Connection{Family: diag.IPv6, State: diag.StateListen, Local: addrPort("[::]:443")},
		listed(adopted, "10.0.1.1:40011", "192.0.2.1:443",
			"10.0.1.1:40011>192.0.2.1:443",
			"10.0.2.1:50011#2>192.0.2.1:443",
			"10.0.1.1:50111#1>198.51.100.1:443#5",
			"10.0.3.1:50211#3>192.0.2.1:443",
			"10.0.2.1:50311#2>198.51.100.1:443#5",
			"10.0.3.1:50411#3>198.51.100.1:443#5"),
		listed(known, "10.0.1.1:40012", "192.0.2.1:443",
			"10.0.1.1:40012>192.0.2.1:443",
			"10.0.2.1:50012#2>192.0.2.1:443",
			"10.0.3.1:50112#3>192.0.2.1:443"),
		listed(server, "10.0.1.1:443", "198.51.100.7:50014", "10.0.1.1:443>198.51.100.7:50014"),
	)
	if err := h.m.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if got := h.calls(adopted); len(got) != 3 {
		t.Errorf("adopted connection after a second resync: %q, want the 3 creates only", got)
	}
	if got := h.calls(known); len(got) != 2 {
		t.Errorf("known connection after a second resync: %q, want the 2 creates only", got)
	}
	if ci := h.info(adopted); ci.Present != 6 || ci.Accepted != 1 {
		t.Errorf("Info(%d) = %+v, want 6 present, 1 accepted", adopted, ci)
	}

	// A listing that fails leaves everything as it is.
	h.lister.mu.Lock()
	h.lister.err = diag.ErrUnavailable
	h.lister.mu.Unlock()
	if err := h.m.Resync(ctx); !errors.Is(err, diag.ErrUnavailable) {
		t.Errorf("Resync with a failing listing = %v, want it to wrap diag.ErrUnavailable", err)
	}
	if got := h.m.Connections(); got != 3 {
		t.Errorf("Connections() = %d after a failed listing, want 3", got)
	}
}

// Each connection's events go to the worker of its token (token modulo
// the number of workers), whose kernel socket makes its commands.
func TestWorkersByToken(t *testing.T) {
	const workers = 4
	h := start(t, setup{toml: rule(`strategy = "per-interface"`), locals: []userspace.Local{eth0, wlan0}, workers: workers})
	var evs []genl.Event
	for tok := uint32(100); tok < 108; tok++ {
		evs = append(evs, open(tok, false, fmt.Sprintf("10.0.1.1:%d", 40000+tok), "192.0.2.1:443", 0)...)
	}
	h.m.Handle(evs)
	for tok := uint32(100); tok < 108; tok++ {
		h.waitCalls(tok, 1)
	}
	h.settle()
	for i, k := range h.kernels {
		var want []string
		for tok := uint32(100); tok < 108; tok++ {
			if int(tok%workers) == i {
				want = append(want, fmt.Sprintf("create %d id 2 10.0.2.1 dev 2 -> 192.0.2.1:443", tok))
			}
		}
		if diff := cmp.Diff(want, k.lines()); diff != "" {
			t.Errorf("kernel %d (-want +got):\n%s", i, diff)
		}
	}
	for tok := uint32(100); tok < 108; tok++ {
		want := userspace.ConnInfo{Token: tok, Rule: "r", Strategy: "per-interface", Wanted: 2, Present: 1}
		if diff := cmp.Diff(want, h.info(tok)); diff != "" {
			t.Errorf("Info(%d) (-want +got):\n%s", tok, diff)
		}
		h.m.Handle([]genl.Event{subEstablished(tok, 2, fmt.Sprintf("10.0.2.1:%d", 50000+tok), "192.0.2.1:443", false)})
	}
	h.settle()
	for tok := uint32(100); tok < 108; tok++ {
		if ci := h.info(tok); ci.Present != 2 {
			t.Errorf("Info(%d) = %+v, want 2 present", tok, ci)
		}
	}
	if got := h.m.Connections(); got != 8 {
		t.Errorf("Connections() = %d, want 8", got)
	}
	h.m.Handle([]genl.Event{closed(100), closed(105), closed(999)})
	h.settle()
	if got := h.m.Connections(); got != 6 {
		t.Errorf("Connections() = %d after two closed, want 6", got)
	}
	if _, ok := h.m.Info(100); ok {
		t.Errorf("closed connection 100 is still tracked")
	}
	if _, ok := h.m.Info(12345); ok {
		t.Errorf("Info of an unknown token reports a connection")
	}
	// Events with token 0 (listeners) concern no connection.
	h.m.Handle([]genl.Event{{Type: genl.EventListenerCreated, Local: addrPort("10.0.1.1:443")}})
	h.settle()
	if got := h.m.Connections(); got != 6 {
		t.Errorf("Connections() = %d after a listener event, want 6", got)
	}
}

// Every decision names its connection, its rule and a reason.
func TestDecisionsHaveReasons(t *testing.T) {
	const tok = 71
	h := start(t, setup{toml: fastRetry + `
[userspace.peer]
max_accepted = 1
rate = 1

[[userspace.rule]]
name = "phone"
strategy = "backup"
`, locals: []userspace.Local{eth0, wwan0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	h.waitCalls(tok, 1)
	h.m.Handle([]genl.Event{
		subEstablished(tok, 2, "10.0.3.1:50000", "192.0.2.1:443", true),
		subClosed(tok, "10.0.1.1:40000", "192.0.2.1:443", 0),
		announced(tok, 1, "198.51.100.1"),
		announced(tok, 2, "198.51.100.2"),
	})
	h.waitDecision(tok, 1, userspace.ActionPromote)
	h.waitDecision(tok, 1, userspace.ActionRetry)
	h.settle()
	seen := map[userspace.Action]bool{}
	for _, d := range h.dec.of(tok) {
		seen[d.Action] = true
		if d.Rule != "phone" || d.Reason == "" {
			t.Errorf("decision %+v: want rule phone and a reason", d)
		}
	}
	seen[userspace.ActionRefuse] = seen[userspace.ActionRefuse] || seen[userspace.ActionRateLimited]
	for _, a := range []userspace.Action{userspace.ActionCreate, userspace.ActionRetry, userspace.ActionPromote, userspace.ActionAccept, userspace.ActionRefuse} {
		if !seen[a] {
			t.Errorf("no %s decision", a)
		}
	}
}

// The Manager says which rule a new connection got (match-rule), and
// reports a refusal for the rate as rate-limited: both are among the
// decisions types.go declares, and mptcpctl monitor --kind decision is the
// only place a user sees them.
func TestDecisionsMatchAndRateLimited(t *testing.T) {
	const tok = 72
	h := start(t, setup{toml: fastRetry + `
[userspace.peer]
max_accepted = 1
rate = 1

[[userspace.rule]]
name = "none"
strategy = "none"
`, locals: []userspace.Local{eth0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	// The rate bites on announcements that would change something: here
	// the accepted ID 1 moved to another address at once.
	h.m.Handle([]genl.Event{announced(tok, 1, "198.51.100.1"), announced(tok, 1, "198.51.100.2")})
	h.settle()
	if d := h.dec.of(tok, userspace.Action("match-rule")); len(d) != 1 || d[0].Rule != "none" || d[0].Reason == "" {
		t.Errorf("match-rule decisions %+v, want one naming rule none, with a reason", d)
	}
	if d := h.dec.of(tok, userspace.Action("rate-limited")); len(d) != 1 {
		t.Errorf("rate-limited decisions %+v, want one (refusals for the rate are reported as %+v)", d, h.dec.of(tok, userspace.ActionRefuse))
	}
}
