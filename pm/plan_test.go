package pm

import (
	"bytes"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// kernelState is everything the fake kernel holds.
type kernelState struct {
	eps    []genl.Endpoint
	limits genl.Limits
	pm     string
}

func stateOf(k *fakeKernel) kernelState {
	return kernelState{slices.Clone(k.eps), k.limits, k.pm}
}

// fileBytes returns the store file's content, nil if there is none.
func fileBytes(t *testing.T, store *FileStore) []byte {
	t.Helper()
	b, err := os.ReadFile(store.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var cmpAddrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// TestPlanIsTheNextReconcile walks through a series of policy and
// interface changes. At each step Plan reports exactly what the Reconcile
// that follows does, and changes neither the kernel nor the records nor
// tells OnChange anything.
func TestPlanIsTheNextReconcile(t *testing.T) {
	k := newFakeKernel()
	k.eps = []genl.Endpoint{{ID: 100, Addr: netip.MustParseAddr("203.0.113.1"), Flags: genl.FlagSubflow, IfIndex: 4}}
	r, store := newTestReconciler(t, k)
	var reported []Change
	r.OnChange(func(c Change) { reported = append(reported, c) })

	h := newHost().
		link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24", "192.0.2.11/24").
		link(3, "wwan0", netmon.KindWWAN, "198.51.100.7/24").
		link(4, "wlan1", netmon.KindPhysical, "192.0.2.200/24")
	rules := parseConfig(t, twoRules)
	changed := parseConfig(t, `
[[rule]]
name = "wifi"
interfaces = ["wlan*"]
flags = ["subflow", "backup"]
preference = 10

[[rule]]
name = "cell"
interfaces = ["wwan*"]
flags = ["signal"]
port = 8080

[limits]
subflows = 5
add_addr_accepted = 1
`)

	steps := []struct {
		name string
		// before changes the world before the step's plan.
		before func()
		cfg    *config.Config
		// changes is how many changes the step makes (a check that the
		// steps do something).
		changes int
	}{
		{"first run", func() {}, rules, 5}, // 4 adds and limits
		{"nothing to do", func() {}, rules, 0},
		{"address gone, address new", func() {
			h.drop("192.0.2.11")
			h.link(2, "wlan0", netmon.KindPhysical, "192.0.2.12/24")
		}, rules, 2},
		{"rules changed", func() {}, changed, 6}, // 3 in place, remove and add of the signal one, limits
		{"endpoint deleted behind our back", func() {
			k.eps = slices.DeleteFunc(k.eps, func(e genl.Endpoint) bool { return e.Addr == netip.MustParseAddr("192.0.2.10") })
		}, changed, 1}, // it comes back; its stale record goes
		{"manual endpoint for a policy address", func() {
			k.eps = slices.DeleteFunc(k.eps, func(e genl.Endpoint) bool { return e.Addr == netip.MustParseAddr("192.0.2.12") })
			mustAdd(t, r, genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.12"), Flags: genl.FlagSignal})
			reported = nil
		}, changed, 0}, // the policy leaves 192.0.2.12 to it
		{"deferring to NetworkManager", func() { r.DeferTo("NetworkManager") }, changed, 1}, // wlan1 has the foreign endpoint
		{"carrier lost", func() { h.carrier(3, false) }, changed, 1},
		{"back to the first rules", func() { h.carrier(3, true); r.DeferTo("") }, rules, 4}, // 192.0.2.10 in place, wlan1 and wwan0 back, limits
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.before()
			k.writes = nil
			kernelBefore := stateOf(k)
			fileBefore := fileBytes(t, store)

			plan, err := r.Plan(step.cfg, h.st)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if len(k.writes) != 0 {
				t.Errorf("Plan wrote to the kernel: %v", k.writes)
			}
			if diff := cmp.Diff(kernelBefore, stateOf(k), cmp.AllowUnexported(kernelState{}), cmpAddrs); diff != "" {
				t.Errorf("Plan changed the kernel (-before +after):\n%s", diff)
			}
			if !bytes.Equal(fileBefore, fileBytes(t, store)) {
				t.Errorf("Plan changed the records:\n%s\nnow\n%s", fileBefore, fileBytes(t, store))
			}
			if len(reported) != 0 {
				t.Errorf("Plan reported changes to OnChange: %+v", reported)
			}

			res, err := r.Reconcile(step.cfg, h.st)
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if diff := cmp.Diff(plan.Made, res.Made, cmpAddrs); diff != "" {
				t.Errorf("Plan's changes differ from Reconcile's (-plan +reconcile):\n%s", diff)
			}
			if diff := cmp.Diff(plan, res, cmpAddrs); diff != "" {
				t.Errorf("Plan's result differs from Reconcile's (-plan +reconcile):\n%s", diff)
			}
			if len(res.Made) != step.changes {
				t.Errorf("the step made %d changes, want %d: %+v", len(res.Made), step.changes, res.Made)
			}
			if !slices.Equal(reported, res.Made) {
				t.Errorf("OnChange got %+v, want the run's changes %+v", reported, res.Made)
			}
			reported = nil
		})
	}
}

// TestPlanFirstRunWritesNothing: a plan before the daemon ever ran
// creates no records file.
func TestPlanFirstRunWritesNothing(t *testing.T) {
	k := newFakeKernel()
	r, store := newTestReconciler(t, k)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	plan, err := r.Plan(parseConfig(t, twoRules), h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Added) != 1 || len(plan.Made) != 2 || plan.Made[0].Action != ActionLimits { // the limits first
		t.Errorf("plan %+v, want one endpoint added and the limits set", plan)
	}
	if _, err := os.Stat(store.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Plan created the records file: %v", err)
	}
	if len(k.eps) != 0 || len(k.writes) != 0 {
		t.Errorf("Plan changed the kernel: %v, writes %v", k.eps, k.writes)
	}
}
