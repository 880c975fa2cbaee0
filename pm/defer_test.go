package pm

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// lockedBuffer is a log destination safe for the reconciler's writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReconcileDeferInterfaces: interfaces another manager says it takes
// get none of our endpoints, even with no foreign endpoint on them yet;
// ours already there are removed with a reason naming the manager; the
// set is logged when it changes; a foreign endpoint is never touched; and
// the interfaces come back to the policy once the manager lets them go.
func TestReconcileDeferInterfaces(t *testing.T) {
	k := newFakeKernel()
	r, _ := newTestReconciler(t, k)
	logs := &lockedBuffer{}
	r.log = slog.New(slog.NewTextHandler(logs, nil))
	cfg := parseConfig(t, twoRules)
	h := newHost().
		link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24").
		link(3, "wlan1", netmon.KindPhysical, "198.51.100.10/24", "2001:db8::10/64").
		link(4, "wwan0", netmon.KindWWAN, "203.0.113.4/24")
	foreign := genl.Endpoint{ID: 100, Addr: netip.MustParseAddr("203.0.113.99"), Flags: genl.FlagSignal}
	k.eps = append(k.eps, foreign)
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	all := []string{"192.0.2.10 subflow", "198.51.100.10 subflow", "2001:db8::10 subflow", "203.0.113.4 subflow,backup", "203.0.113.99 signal"}
	if got := k.addrs(); !slices.Equal(got, all) {
		t.Fatalf("endpoints before deferring = %v, want %v", got, all)
	}

	var mu sync.Mutex
	taken := map[string]string{"wlan1": "mptcp-flags subflow", "eth9": "not an interface here"}
	r.DeferInterfaces("NetworkManager", func(st netmon.State) map[string]string {
		if st.Links == nil {
			t.Error("which called without the interfaces")
		}
		mu.Lock()
		defer mu.Unlock()
		return taken
	})

	// Plan shows it first, and changes nothing.
	plan, err := r.Plan(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Removed) != 2 || !slices.Equal(k.addrs(), all) {
		t.Errorf("Plan removes %v and leaves %v; want wlan1's two endpoints planned for removal and nothing done", plan.Removed, k.addrs())
	}

	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.10 subflow", "203.0.113.4 subflow,backup", "203.0.113.99 signal"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Errorf("endpoints with wlan1 left to NetworkManager = %v, want %v", got, want)
	}
	if len(res.Removed) != 2 {
		t.Errorf("removed %v, want wlan1's two endpoints", res.Removed)
	}
	for _, c := range res.Made {
		if c.Action == ActionRemove && !strings.Contains(c.Reason, "NetworkManager manages MPTCP endpoints on interface wlan1 (mptcp-flags subflow)") {
			t.Errorf("removal %v gives the reason %q; want it to name NetworkManager and why", c.Endpoint, c.Reason)
		}
	}
	if !strings.Contains(logs.String(), `msg="interfaces left to NetworkManager" manager=NetworkManager interfaces=wlan1`+"\n") {
		t.Errorf("the log does not say wlan1 (only: eth9 is not here) is left to NetworkManager:\n%s", logs.String())
	}

	// A reconcile with the same set logs it no more, and changes nothing.
	before := strings.Count(logs.String(), "interfaces left to")
	if res, err := r.Reconcile(cfg, h.st); err != nil || res.Changes() != 0 {
		t.Errorf("second reconcile: %d changes, %v; want none", res.Changes(), err)
	}
	if n := strings.Count(logs.String(), "interfaces left to"); n != before {
		t.Errorf("the unchanged set was logged again:\n%s", logs.String())
	}

	// A new address on any interface waits for the full reconcile.
	a := newAddr(2, "192.0.2.11/24")
	h.st.Addrs = append(h.st.Addrs, a)
	k.writes = nil
	if res, err := r.AddNew(h.news(a)); err != nil || len(k.writes) != 0 ||
		!slices.ContainsFunc(res.Skipped, func(s Skip) bool { return strings.Contains(s.Reason, "NetworkManager may manage") }) {
		t.Errorf("AddNew with interfaces deferred: %+v, %v, kernel requests %v; want it left to the full reconcile", res, err, k.writes)
	}
	h.drop("192.0.2.11")

	// The manager lets wlan1 go: our endpoints come back.
	mu.Lock()
	taken = map[string]string{}
	mu.Unlock()
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	if got := k.addrs(); !slices.Equal(got, all) {
		t.Errorf("endpoints once NetworkManager let wlan1 go = %v, want %v", got, all)
	}
	if !strings.Contains(logs.String(), `msg="no interfaces left to NetworkManager"`) {
		t.Errorf("the log does not say no interface is left to NetworkManager any more:\n%s", logs.String())
	}

	// Turned off, with DeferTo still on: the foreign-endpoint rule alone.
	r.DeferInterfaces("NetworkManager", nil)
	r.DeferTo("NetworkManager")
	k.eps = append(k.eps, genl.Endpoint{ID: 101, Addr: netip.MustParseAddr("2001:db8::99"), Flags: genl.FlagSubflow, IfIndex: 2})
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	want = []string{"198.51.100.10 subflow", "2001:db8::10 subflow", "2001:db8::99 subflow", "203.0.113.4 subflow,backup", "203.0.113.99 signal"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Errorf("endpoints with the foreign-endpoint rule alone = %v, want %v", got, want)
	}
}
