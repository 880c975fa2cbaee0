package userspace_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

const mesh = fastRetry + `
[[userspace.rule]]
name = "mesh"
strategy = "fullmesh"
`

// A subflow that closes with an error is asked for again after a backoff
// that doubles (1, 2, 4 ms ±20 %), userspace.retry.attempts times, and
// then given up on.
func TestRetryAfterSubflowError(t *testing.T) {
	const tok = 51
	const remote = "192.0.2.1:443"
	const create = "create 51 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443"
	h := start(t, setup{toml: mesh, locals: []userspace.Local{eth0, wlan0}})
	attempts := h.cfg.Userspace.Retry.Attempts
	h.m.Handle(open(tok, false, "10.0.1.1:40000", remote, 0))
	h.waitCalls(tok, 1)
	var begin time.Time
	for i := 1; i <= attempts+1; i++ {
		h.waitCalls(tok, i)
		if i == 1 {
			begin = time.Now()
		}
		// The join fails: the kernel reports the subflow closed, with the
		// port it had.
		h.m.Handle([]genl.Event{subClosed(tok, fmt.Sprintf("10.0.2.1:%d", 50000+i), remote, syscall.ECONNREFUSED)})
	}
	give := h.waitDecision(tok, 1, userspace.ActionGiveUp)
	elapsed := time.Since(begin)
	h.settle()
	want := make([]string, attempts+1)
	for i := range want {
		want[i] = create
	}
	if diff := cmp.Diff(want, h.calls(tok)); diff != "" {
		t.Errorf("kernel commands (-want +got):\n%s", diff)
	}
	if !strings.Contains(give[0].Reason, "connection refused") || !strings.Contains(give[0].Reason, fmt.Sprintf("%d attempts", attempts)) {
		t.Errorf("give-up reason %q: want the error and the number of attempts", give[0].Reason)
	}
	retries := h.dec.of(tok, userspace.ActionRetry)
	if len(retries) != attempts {
		t.Fatalf("%d retry decisions, want %d", len(retries), attempts)
	}
	for i, d := range retries {
		if !strings.Contains(d.Reason, fmt.Sprintf("attempt %d in", i+1)) || d.Remote.String() != remote || d.Local.Addr() != wlan0.Addr {
			t.Errorf("retry decision %d: %+v", i+1, d)
		}
	}
	// The backoffs were waited: 1 + 2 + 4 ms less the jitter, at least.
	if minimum := 5600 * time.Microsecond; elapsed < minimum {
		t.Errorf("%d attempts in %s, want at least %s of backoff", attempts, elapsed, minimum)
	}
}

// A re-created subflow that establishes starts the count of attempts
// again.
func TestRetryCountResetsOnSuccess(t *testing.T) {
	const tok = 52
	const remote = "192.0.2.1:443"
	h := start(t, setup{toml: mesh, locals: []userspace.Local{eth0, wlan0}})
	attempts := h.cfg.Userspace.Retry.Attempts
	h.m.Handle(open(tok, false, "10.0.1.1:40000", remote, 0))
	port := 50000
	for round := range 3 {
		// attempts-1 failures, then a success, then a close (one more
		// failure): never given up.
		for range attempts - 1 {
			n := len(h.calls(tok))
			port++
			h.m.Handle([]genl.Event{subClosed(tok, fmt.Sprintf("10.0.2.1:%d", port), remote, syscall.ETIMEDOUT)})
			h.waitCalls(tok, n+1)
		}
		port++
		h.m.Handle([]genl.Event{subEstablished(tok, 2, fmt.Sprintf("10.0.2.1:%d", port), remote, false)})
		h.settle()
		if ci := h.info(tok); ci.Present != 2 {
			t.Fatalf("round %d: Info = %+v, want 2 present", round, ci)
		}
		n := len(h.calls(tok))
		h.m.Handle([]genl.Event{subClosed(tok, fmt.Sprintf("10.0.2.1:%d", port), remote, syscall.ECONNRESET)})
		h.waitCalls(tok, n+1)
	}
	h.settle()
	if d := h.dec.of(tok, userspace.ActionGiveUp); len(d) != 0 {
		t.Errorf("given up: %+v", d)
	}
}

// A subflow the kernel refuses to create for want of a route is given up
// at once (retrying would not help), until the interfaces change; other
// refusals are retried.
func TestCreateSubflowFails(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		giveUpAt int // creates made before giving up
	}{
		{"ENETUNREACH", syscall.ENETUNREACH, 1},
		{"EHOSTUNREACH", syscall.EHOSTUNREACH, 1},
		{"genl error ENETUNREACH", &genl.Error{Op: "create subflow", Err: syscall.ENETUNREACH}, 1},
		{"genl error EINVAL", &genl.Error{Op: "create subflow", Message: "invalid addr", Err: syscall.EINVAL}, 4},
		{"EADDRNOTAVAIL", syscall.EADDRNOTAVAIL, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const tok = 53
			h := start(t, setup{toml: mesh, locals: []userspace.Local{eth0, wlan0}})
			h.kernel(tok).setFail(func(c call) error {
				if c.op == "create" && c.ep.Addr == wlan0.Addr {
					return tt.err
				}
				return nil
			})
			h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
			give := h.waitDecision(tok, 1, userspace.ActionGiveUp)
			h.settle()
			if got := h.calls(tok); len(got) != tt.giveUpAt {
				t.Errorf("commands before giving up: %q, want %d", got, tt.giveUpAt)
			}
			failed := h.dec.of(tok, userspace.ActionFailed)
			if len(failed) != tt.giveUpAt || !errors.Is(failed[0].Err, tt.err) {
				t.Errorf("command-failed decisions %+v, want %d with error %v", failed, tt.giveUpAt, tt.err)
			}
			if tt.giveUpAt == 1 && !strings.Contains(give[0].Reason, "route") {
				t.Errorf("give-up reason %q, want it to name the route", give[0].Reason)
			}
			if ci := h.info(tok); ci.Present != 1 || ci.Wanted != 2 {
				t.Errorf("Info = %+v, want 2 wanted, 1 present", ci)
			}

			// The interfaces change (the route may be back): it is asked
			// for again, and this time the kernel agrees.
			h.kernel(tok).setFail(nil)
			h.setLocals(eth0, wlan0)
			got := h.waitCalls(tok, tt.giveUpAt+1)
			h.settle()
			if len(got) != tt.giveUpAt+1 {
				t.Errorf("commands after the interfaces changed: %q, want one more create", got)
			}
		})
	}
}

// A subflow asked for that the kernel never reports counts as failed
// after PendingTimeout.
func TestPendingTimeout(t *testing.T) {
	const tok = 54
	h := start(t, setup{toml: mesh, locals: []userspace.Local{eth0, wlan0}, pendingTimeout: 5 * time.Millisecond})
	attempts := h.cfg.Userspace.Retry.Attempts
	begin := time.Now()
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	give := h.waitDecision(tok, 1, userspace.ActionGiveUp)
	elapsed := time.Since(begin)
	h.settle()
	if got := h.calls(tok); len(got) != attempts+1 {
		t.Errorf("commands: %q, want %d creates", got, attempts+1)
	}
	if !strings.Contains(give[0].Reason, "no answer") {
		t.Errorf("give-up reason %q, want it to say the kernel did not answer", give[0].Reason)
	}
	if minimum := time.Duration(attempts+1) * 5 * time.Millisecond; elapsed < minimum {
		t.Errorf("given up after %s, want at least %d pending timeouts (%s)", elapsed, attempts+1, minimum)
	}
	// A subflow that is reported in time does not time out.
	const tok2 = 55
	h.m.Handle(open(tok2, false, "10.0.1.1:40001", "192.0.2.1:443", 0))
	h.waitCalls(tok2, 1)
	h.m.Handle([]genl.Event{subEstablished(tok2, 2, "10.0.2.1:50000", "192.0.2.1:443", false)})
	time.Sleep(20 * time.Millisecond) // not synchronisation: four pending timeouts pass
	h.settle()
	if got := h.calls(tok2); len(got) != 1 {
		t.Errorf("commands for an established subflow: %q, want the one create", got)
	}
	if d := h.dec.of(tok2, userspace.ActionRetry, userspace.ActionGiveUp); len(d) != 0 {
		t.Errorf("decisions about an established subflow: %+v", d)
	}
}

// When a local address goes, its subflows are closed; when one comes, the
// connections get subflows from it.
func TestLocalAddressesChange(t *testing.T) {
	const remote = "192.0.2.1:443"
	h := start(t, setup{toml: mesh, locals: []userspace.Local{eth0, wlan0}})
	for tok := uint32(61); tok <= 62; tok++ {
		h.m.Handle(open(tok, false, fmt.Sprintf("10.0.1.1:%d", 40000+tok), remote, 0))
		h.waitCalls(tok, 1)
		h.m.Handle([]genl.Event{subEstablished(tok, 2, fmt.Sprintf("10.0.2.1:%d", 50000+tok), remote, false)})
	}
	h.settle()

	h.setLocals(eth0)
	for tok := uint32(61); tok <= 62; tok++ {
		got := h.waitCalls(tok, 2)
		if want := fmt.Sprintf("destroy %d 10.0.2.1:%d -> %s", tok, 50000+tok, remote); got[1] != want {
			t.Errorf("token %d: %q, want %q", tok, got[1], want)
		}
		if d := h.waitDecision(tok, 1, userspace.ActionDestroy); !strings.Contains(d[0].Reason, "no longer usable") || d[0].LocalID != 2 {
			t.Errorf("destroy decision %+v", d[0])
		}
	}
	h.settle()
	if ci := h.info(61); ci.Present != 1 || ci.Wanted != 1 {
		t.Errorf("Info = %+v after wlan0 went, want 1 wanted, 1 present", ci)
	}
	// The kernel's SUB_CLOSED for the subflow destroyed is no failure.
	h.m.Handle([]genl.Event{subClosed(61, "10.0.2.1:50061", remote, 0)})

	p := h.setLocals(eth0, wwan0)
	id := p.Locals()[1].ID
	for tok := uint32(61); tok <= 62; tok++ {
		got := h.waitCalls(tok, 3)
		if want := fmt.Sprintf("create %d id %d 10.0.3.1 dev 3 -> %s backup", tok, id, remote); got[2] != want {
			t.Errorf("token %d: %q, want %q", tok, got[2], want)
		}
	}
	h.settle()
	for tok := uint32(61); tok <= 62; tok++ {
		if got := h.calls(tok); len(got) != 3 {
			t.Errorf("token %d: commands %q, want 3", tok, got)
		}
		if d := h.dec.of(tok, userspace.ActionRetry, userspace.ActionGiveUp); len(d) != 0 {
			t.Errorf("token %d: decisions %+v", tok, d)
		}
	}
}

// Only subflows the strategy wants are asked for again: one the peer
// opened, one to an address the peer withdrew, and one from an initial
// address that is not usable close without a retry (a retry decision
// would tell the user something that never happens).
func TestNoRetryForSubflowsNotWanted(t *testing.T) {
	tests := []struct {
		name   string
		toml   string
		locals []userspace.Local
		conn   []genl.Event
		// then closes (or opens and closes) a subflow the strategy does
		// not want.
		then []genl.Event
	}{{
		name:   "opened by the peer",
		toml:   announcingServers,
		locals: []userspace.Local{eth0, wlan0},
		conn:   open(81, true, "10.0.1.1:443", "198.51.100.7:50000", 0),
		then: []genl.Event{
			subEstablished(81, 2, "10.0.2.1:443", "198.51.100.7:50001", false),
			subClosed(81, "10.0.2.1:443", "198.51.100.7:50001", syscall.ECONNRESET),
		},
	}, {
		name:   "to an address the peer withdrew",
		toml:   mesh,
		locals: []userspace.Local{eth0},
		conn: append(open(81, false, "10.0.1.1:40000", "192.0.2.1:443", 0),
			announced(81, 1, "198.51.100.1"),
			subEstablished(81, 1, "10.0.1.1:50000", "198.51.100.1:443", false)),
		then: []genl.Event{
			{Type: genl.EventRemoved, Token: 81, RemoteID: 1},
			subClosed(81, "10.0.1.1:50000", "198.51.100.1:443", syscall.ECONNRESET),
		},
	}, {
		name:   "the initial subflow, its address not usable",
		toml:   mesh,
		locals: []userspace.Local{wlan0},
		conn:   open(81, false, "10.0.1.1:40000", "192.0.2.1:443", 0),
		then:   []genl.Event{subClosed(81, "10.0.1.1:40000", "192.0.2.1:443", syscall.ETIMEDOUT)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const tok = 81
			h := start(t, setup{toml: tt.toml, locals: tt.locals})
			h.m.Handle(tt.conn)
			h.settle()
			before := h.calls(tok)
			h.m.Handle(tt.then)
			time.Sleep(10 * time.Millisecond) // not synchronisation: the backoff (1 ms) passes
			h.settle()
			if got := h.calls(tok); len(got) != len(before) {
				t.Errorf("commands %q, want none after %q", got[len(before):], before)
			}
			if d := h.dec.of(tok, userspace.ActionRetry, userspace.ActionGiveUp); len(d) != 0 {
				t.Errorf("retry decisions for a subflow that will not be asked for again: %+v", d)
			}
		})
	}
}

// A new configuration (a reload) matches the connections again: a rule
// that now wants subflows gets them.
func TestNewRulesMatchConnectionsAgain(t *testing.T) {
	const tok = 82
	h := start(t, setup{toml: rule(`strategy = "none"`), locals: []userspace.Local{eth0, wlan0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	h.settle()
	if got := h.calls(tok); len(got) != 0 {
		t.Fatalf("strategy none: commands %q", got)
	}
	cfg := parseConfig(t, fastRetry+"[[userspace.rule]]\nname = \"reloaded\"\nstrategy = \"fullmesh\"\n")
	h.m.SetPolicy(userspace.NewPolicy(&cfg.Userspace, []userspace.Local{eth0, wlan0}, nil, h.m.Policy()))
	got := h.waitCalls(tok, 1)
	if want := "create 82 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443"; got[0] != want {
		t.Errorf("after the reload: %q, want %q", got[0], want)
	}
	if ci := h.info(tok); ci.Rule != "reloaded" || ci.Strategy != "fullmesh" {
		t.Errorf("Info = %+v, want rule reloaded, strategy fullmesh", ci)
	}
}
