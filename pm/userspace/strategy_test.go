package userspace_test

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// The local addresses of the tests: three interfaces, one of them a
// backup (a phone's cellular), and a second address and an IPv6 address
// on eth0.
var (
	eth0   = local("10.0.1.1", 1, "eth0", false)
	eth0b  = local("10.0.1.2", 1, "eth0", false)
	eth0v6 = local("2001:db8:1::1", 1, "eth0", false)
	wlan0  = local("10.0.2.1", 2, "wlan0", false)
	wwan0  = local("10.0.3.1", 3, "wwan0", true)
	eth5v6 = local("2001:db8:5::1", 5, "eth5", false)
)

// rule returns a configuration of fastRetry and one rule for every
// connection.
func rule(body string) string {
	return fastRetry + "\n[[userspace.rule]]\nname = \"r\"\n" + body + "\n"
}

func TestStrategyWantedSubflows(t *testing.T) {
	const tok = 7
	tests := []struct {
		name   string
		rule   string
		locals []userspace.Local
		// local is the initial subflow's local address (the remote is
		// 192.0.2.1:443).
		local string
		// then are events after the connection is established.
		then   []genl.Event
		want   []string
		wanted int
	}{{
		name:   "fullmesh: every local to every peer address of its family, the initial pair excluded",
		rule:   `strategy = "fullmesh"`,
		locals: []userspace.Local{eth0, eth0v6, wlan0},
		local:  "10.0.1.1:40000",
		then:   []genl.Event{announced(tok, 1, "198.51.100.1"), announced(tok, 2, "[2001:db8:2::1]:8443")},
		want: []string{
			"create 7 id 3 10.0.2.1 dev 2 -> 192.0.2.1:443",
			"create 7 id 1 10.0.1.1 dev 1 -> 198.51.100.1:443",
			"create 7 id 3 10.0.2.1 dev 2 -> 198.51.100.1:443",
			"create 7 id 2 2001:db8:1::1 dev 1 -> [2001:db8:2::1]:8443",
		},
		wanted: 5,
	}, {
		name:   "fullmesh: capped by max_subflows, the initial subflow included",
		rule:   "strategy = \"fullmesh\"\nmax_subflows = 3",
		locals: []userspace.Local{eth0, eth0v6, wlan0},
		local:  "10.0.1.1:40000",
		then:   []genl.Event{announced(tok, 1, "198.51.100.1"), announced(tok, 2, "[2001:db8:2::1]:8443")},
		want: []string{
			"create 7 id 3 10.0.2.1 dev 2 -> 192.0.2.1:443",
			"create 7 id 1 10.0.1.1 dev 1 -> 198.51.100.1:443",
		},
		wanted: 3,
	}, {
		name:   "fullmesh: initial address not usable",
		rule:   `strategy = "fullmesh"`,
		locals: []userspace.Local{eth0, wlan0},
		local:  "10.0.9.9:40000",
		want: []string{
			"create 7 id 1 10.0.1.1 dev 1 -> 192.0.2.1:443",
			"create 7 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443",
		},
		wanted: 3,
	}, {
		name:   "per-interface: one per other interface with an address of the family, backups marked",
		rule:   `strategy = "per-interface"`,
		locals: []userspace.Local{eth0, eth0b, wlan0, wwan0, eth5v6},
		local:  "10.0.1.1:40000",
		want: []string{
			"create 7 id 3 10.0.2.1 dev 2 -> 192.0.2.1:443",
			"create 7 id 4 10.0.3.1 dev 3 -> 192.0.2.1:443 backup",
		},
		wanted: 3,
	}, {
		name:   "per-interface: the initial interface counts whichever of its addresses is the initial one",
		rule:   `strategy = "per-interface"`,
		locals: []userspace.Local{eth0, eth0b, wlan0},
		local:  "10.0.1.2:40000",
		want:   []string{"create 7 id 3 10.0.2.1 dev 2 -> 192.0.2.1:443"},
		wanted: 2,
	}, {
		name:   "per-interface: capped by max_subflows",
		rule:   "strategy = \"per-interface\"\nmax_subflows = 2",
		locals: []userspace.Local{eth0, wlan0, wwan0},
		local:  "10.0.1.1:40000",
		want:   []string{"create 7 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443"},
		wanted: 2,
	}, {
		name:   "ndiffports: subflows-1 more over the initial path, with the local's ID",
		rule:   "strategy = \"ndiffports\"\nsubflows = 3",
		locals: []userspace.Local{eth0, wlan0},
		local:  "10.0.1.1:40000",
		want: []string{
			"create 7 id 1 10.0.1.1 dev 1 -> 192.0.2.1:443",
			"create 7 id 1 10.0.1.1 dev 1 -> 192.0.2.1:443",
		},
		wanted: 3,
	}, {
		name:   "ndiffports: ID 255 when the initial address is not usable",
		rule:   `strategy = "ndiffports"`,
		locals: []userspace.Local{wlan0},
		local:  "10.0.1.1:40000",
		want:   []string{"create 7 id 255 10.0.1.1 -> 192.0.2.1:443"},
		wanted: 2,
	}, {
		name:   "ndiffports: capped by max_subflows",
		rule:   "strategy = \"ndiffports\"\nsubflows = 4\nmax_subflows = 4",
		locals: []userspace.Local{eth0},
		local:  "10.0.1.1:40000",
		want: []string{
			"create 7 id 1 10.0.1.1 dev 1 -> 192.0.2.1:443",
			"create 7 id 1 10.0.1.1 dev 1 -> 192.0.2.1:443",
			"create 7 id 1 10.0.1.1 dev 1 -> 192.0.2.1:443",
		},
		wanted: 4,
	}, {
		name:   "backup: one per other interface, only backup addresses marked",
		rule:   `strategy = "backup"`,
		locals: []userspace.Local{eth0, wlan0, wwan0},
		local:  "10.0.1.1:40000",
		want: []string{
			"create 7 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443",
			"create 7 id 3 10.0.3.1 dev 3 -> 192.0.2.1:443 backup",
		},
		wanted: 3,
	}, {
		name:   "none",
		rule:   `strategy = "none"`,
		locals: []userspace.Local{eth0, eth0v6, wlan0, wwan0},
		local:  "10.0.1.1:40000",
		then:   []genl.Event{announced(tok, 1, "198.51.100.1")},
		wanted: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, setup{toml: rule(tt.rule), locals: tt.locals})
			h.m.Handle(open(tok, false, tt.local, "192.0.2.1:443", 0))
			h.m.Handle(tt.then)
			h.waitCalls(tok, len(tt.want))
			h.settle()
			if diff := cmp.Diff(tt.want, h.calls(tok)); diff != "" {
				t.Errorf("kernel commands (-want +got):\n%s", diff)
			}
			ci := h.info(tok)
			strategy := string(h.cfg.Userspace.Rules[0].Strategy)
			want := userspace.ConnInfo{Token: tok, Rule: "r", Strategy: strategy, Wanted: tt.wanted, Present: 1, Accepted: len(tt.then)}
			if diff := cmp.Diff(want, ci); diff != "" {
				t.Errorf("Info (-want +got):\n%s", diff)
			}
		})
	}
}

// The subflows a strategy asks for are its reason, and Info counts those
// established.
func TestStrategyPresentAfterSubflowsEstablish(t *testing.T) {
	const tok = 9
	h := start(t, setup{toml: rule(`strategy = "per-interface"`), locals: []userspace.Local{eth0, wlan0, wwan0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
	h.waitCalls(tok, 2)
	h.m.Handle([]genl.Event{
		subEstablished(tok, 2, "10.0.2.1:50000", "192.0.2.1:443", false),
		subEstablished(tok, 3, "10.0.3.1:50001", "192.0.2.1:443", true),
	})
	h.settle()
	if ci := h.info(tok); ci.Strategy != "per-interface" || ci.Wanted != 3 || ci.Present != 3 {
		t.Errorf("Info = %+v, want strategy per-interface, 3 wanted, 3 present", ci)
	}
	for _, d := range h.dec.of(tok, userspace.ActionCreate) {
		if d.Rule != "r" || d.Reason != "strategy per-interface wants it" {
			t.Errorf("create decision %+v: want rule r and reason %q", d, "strategy per-interface wants it")
		}
	}
	// An established subflow reported twice is one subflow.
	h.m.Handle([]genl.Event{subEstablished(tok, 2, "10.0.2.1:50000", "192.0.2.1:443", false)})
	h.settle()
	if ci := h.info(tok); ci.Present != 3 {
		t.Errorf("Present = %d after a duplicate SUB_ESTABLISHED, want 3", ci.Present)
	}
	if got := h.calls(tok); len(got) != 2 {
		t.Errorf("kernel commands = %q, want the 2 creates only", got)
	}
}

// With the backup strategy, the backup subflows are promoted when the
// last primary subflow closes and demoted when a primary is back.
func TestBackupPromotionAndDemotion(t *testing.T) {
	const tok = 11
	const remote = "192.0.2.1:443"
	h := start(t, setup{toml: rule(`strategy = "backup"`), locals: []userspace.Local{eth0, wlan0, wwan0}})
	h.m.Handle(open(tok, false, "10.0.1.1:40000", remote, 0))
	h.waitCalls(tok, 2)
	h.m.Handle([]genl.Event{
		subEstablished(tok, 2, "10.0.2.1:50000", remote, false),
		subEstablished(tok, 3, "10.0.3.1:50001", remote, true),
	})
	h.settle()
	if got := h.calls(tok, "backup"); len(got) != 0 {
		t.Fatalf("backup changes with two primaries up: %q", got)
	}

	// One primary goes: the other is left, nothing is promoted.
	h.m.Handle([]genl.Event{subClosed(tok, "10.0.1.1:40000", remote, syscall.ETIMEDOUT)})
	h.settle()
	if got := h.calls(tok, "backup"); len(got) != 0 {
		t.Fatalf("backup changes with a primary still up: %q", got)
	}
	// The last primary goes: the backup is promoted.
	h.m.Handle([]genl.Event{subClosed(tok, "10.0.2.1:50000", remote, syscall.ETIMEDOUT)})
	got := h.waitCalls(tok, 1, "backup")
	if diff := cmp.Diff([]string{"backup 11 10.0.3.1:50001 -> 192.0.2.1:443 off"}, got); diff != "" {
		t.Errorf("promotion (-want +got):\n%s", diff)
	}
	if d := h.waitDecision(tok, 1, userspace.ActionPromote); d[0].Reason == "" || d[0].Backup {
		t.Errorf("promote decision %+v: want a reason and Backup false", d[0])
	}

	// The primaries are asked for again after their backoff; one comes up
	// and the backup is demoted.
	h.waitCalls(tok, 4, "create")
	h.m.Handle([]genl.Event{subEstablished(tok, 2, "10.0.2.1:50002", remote, false)})
	got = h.waitCalls(tok, 2, "backup")
	if diff := cmp.Diff([]string{
		"backup 11 10.0.3.1:50001 -> 192.0.2.1:443 off",
		"backup 11 10.0.3.1:50001 -> 192.0.2.1:443 on",
	}, got); diff != "" {
		t.Errorf("promotion then demotion (-want +got):\n%s", diff)
	}
	if d := h.waitDecision(tok, 1, userspace.ActionDemote); !d[0].Backup {
		t.Errorf("demote decision %+v: want Backup true", d[0])
	}
	// A second primary coming back changes nothing more.
	h.m.Handle([]genl.Event{subEstablished(tok, 1, "10.0.1.1:50003", remote, false)})
	h.settle()
	if got := h.calls(tok, "backup"); len(got) != 2 {
		t.Errorf("backup changes = %q, want the promotion and the demotion only", got)
	}
}

// Rules match by side, remote port, remote prefix and local port; the
// first that matches wins, and a connection no rule matches gets nothing.
func TestRuleMatching(t *testing.T) {
	const rules = fastRetry + `
[[userspace.rule]]
name = "ssh"
side = "client"
remote_ports = [22]
strategy = "none"

[[userspace.rule]]
name = "storage"
side = "client"
remote_prefixes = ["10.20.0.0/16", "2001:db8:20::/48"]
strategy = "ndiffports"

[[userspace.rule]]
name = "web"
side = "server"
local_ports = [443]
strategy = "per-interface"

[[userspace.rule]]
name = "clients"
side = "client"
strategy = "fullmesh"
`
	tests := []struct {
		token         uint32
		server        bool
		local, remote string
		rule          string
		want          []string
	}{
		{1, false, "10.0.1.1:40000", "10.20.0.5:22", "ssh", nil},
		{2, false, "10.0.1.1:40001", "10.20.0.5:873", "storage", []string{"create 2 id 1 10.0.1.1 dev 1 -> 10.20.0.5:873"}},
		{3, false, "[::ffff:10.0.1.1]:40002", "[::ffff:10.20.9.9]:873", "storage", []string{"create 3 id 1 10.0.1.1 dev 1 -> 10.20.9.9:873"}},
		{4, true, "10.0.1.1:443", "198.51.100.7:50000", "web", []string{"create 4 id 2 10.0.2.1 dev 2 -> 198.51.100.7:50000"}},
		{5, true, "10.0.1.1:80", "198.51.100.7:50001", "", nil},
		{6, false, "10.0.1.1:40003", "192.0.2.1:443", "clients", []string{"create 6 id 2 10.0.2.1 dev 2 -> 192.0.2.1:443"}},
		{7, true, "10.0.1.1:22", "10.20.0.5:50002", "", nil}, // ssh and storage are client rules
	}
	h := start(t, setup{toml: rules, locals: []userspace.Local{eth0, wlan0}})
	for _, tt := range tests {
		h.m.Handle(open(tt.token, tt.server, tt.local, tt.remote, 0))
		// No rule, no strategy: the peer's announcements are not joined
		// either.
		h.m.Handle([]genl.Event{announced(tt.token, 1, "198.51.100.99")})
	}
	for _, tt := range tests {
		h.waitCalls(tt.token, len(tt.want))
	}
	h.settle()
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.token), func(t *testing.T) {
			ci := h.info(tt.token)
			if ci.Rule != tt.rule || ci.Server != tt.server {
				t.Errorf("Info = %+v, want rule %q, server %t", ci, tt.rule, tt.server)
			}
			got := h.calls(tt.token)
			if tt.rule == "clients" {
				// fullmesh also joins the announcement
				tt.want = append(tt.want, "create 6 id 1 10.0.1.1 dev 1 -> 198.51.100.99:443", "create 6 id 2 10.0.2.1 dev 2 -> 198.51.100.99:443")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("kernel commands (-want +got):\n%s", diff)
			}
			if tt.rule == "" && (ci.Wanted != 0 || ci.Strategy != "") {
				t.Errorf("Info = %+v for a connection no rule matches, want nothing wanted", ci)
			}
			for _, d := range h.dec.of(tt.token) {
				if tt.rule == "" && d.Action != userspace.ActionAccept && d.Action != userspace.ActionRefuse && d.Action != "match-rule" {
					t.Errorf("decision %+v on a connection no rule matches", d)
				}
				if d.Rule != tt.rule {
					t.Errorf("decision %+v: rule %q, want %q", d, d.Rule, tt.rule)
				}
			}
		})
	}
}
