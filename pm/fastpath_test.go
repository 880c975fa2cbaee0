package pm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// newAddr is a new address on the interface with the given index.
func newAddr(index int, prefix string) netmon.Addr {
	return netmon.Addr{Index: index, Prefix: netip.MustParsePrefix(prefix), Permanent: true}
}

// news gives addrs as netmon announces them to AddNew: each with its
// interface.
func (h *host) news(addrs ...netmon.Addr) []netmon.NewAddr {
	out := make([]netmon.NewAddr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netmon.NewAddr{Addr: a, Link: h.st.Links[a.Index]})
	}
	return out
}

// TestAddNewAddsEndpoint: a new address on an interface the policy selects
// becomes an endpoint at once, from what the last reconcile learnt, with
// the limits raised first; the reconcile that follows finds nothing to do,
// and a restarted daemon recognises the endpoint as its own.
func TestAddNewAddsEndpoint(t *testing.T) {
	k := newFakeKernel()
	r, store := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}

	k.writes = nil
	h.link(2, "wlan0", netmon.KindPhysical, "2001:db8::10/64")
	res, err := r.AddNew(h.news(newAddr(2, "2001:db8::10/64")))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.addrs(), []string{"192.0.2.10 subflow", "2001:db8::10 subflow"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	if len(res.Added) != 1 || res.Added[0].Addr != netip.MustParseAddr("2001:db8::10") || res.Added[0].IfIndex != 2 {
		t.Errorf("Added = %+v, want the new address's endpoint on wlan0", res.Added)
	}
	// Limits first, then the endpoint: the kernel weighs the limits when
	// the endpoint is added. And no read of the kernel.
	if want := []string{"limits", "add 2001:db8::10"}; !slices.Equal(k.writes, want) {
		t.Errorf("kernel requests %v, want %v", k.writes, want)
	}
	if k.limits != (genl.Limits{Subflows: 2, AddAddrAccepted: 2}) {
		t.Errorf("limits = %+v, want subflows 2 add_addr_accepted 2", k.limits)
	}

	// The full reconcile after it: nothing to change, no duplicate.
	k.writes = nil
	res, err = r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 0 || len(k.writes) != 0 || len(res.Owned) != 2 {
		t.Errorf("reconcile after the fast path: %d changes, writes %v, owned %v; want none, none, 2", res.Changes(), k.writes, res.Owned)
	}

	// The record of the new endpoint is in the store: a restarted daemon
	// (or one killed with -9) owns it.
	r2 := NewReconciler(k, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	res, err = r2.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 0 || len(res.Owned) != 2 || len(res.Foreign) != 0 {
		t.Errorf("after a restart: %d changes, owned %v, foreign %v; want no change and both owned", res.Changes(), res.Owned, res.Foreign)
	}
}

// TestAddNewRefuses: the fast path adds only what the policy would, and
// nothing before the first reconcile.
func TestAddNewRefuses(t *testing.T) {
	cfg := parseConfig(t, twoRules+"\n[addresses]\ndeny_prefixes = [\"10.0.0.0/8\"]\n")
	base := func() *host {
		return newHost().
			link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24").
			link(3, "eth9", netmon.KindPhysical).
			link(4, "wwan0", netmon.KindWWAN).carrier(4, false)
	}
	for _, tc := range []struct {
		name   string
		addr   netmon.Addr
		reason string
	}{
		{"no rule for the interface", newAddr(3, "198.51.100.1/24"), "no rule"},
		{"interface without carrier", newAddr(4, "198.51.100.2/24"), "no carrier"},
		{"tentative (DAD running)", netmon.Addr{Index: 2, Prefix: netip.MustParsePrefix("2001:db8::11/64"), Tentative: true}, "tentative"},
		{"link-local", newAddr(2, "fe80::1/64"), "link-local"},
		{"denied prefix", newAddr(2, "10.1.2.3/8"), "deny_prefixes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel()
			r, _ := newTestReconciler(t, k)
			h := base()
			if _, err := r.Reconcile(cfg, h.st); err != nil {
				t.Fatal(err)
			}
			k.writes = nil
			h.st.Addrs = append(h.st.Addrs, tc.addr)
			res, err := r.AddNew(h.news(tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			if len(k.writes) != 0 || len(res.Added) != 0 {
				t.Errorf("kernel requests %v, added %v; want none", k.writes, res.Added)
			}
			if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return strings.Contains(s.Reason, tc.reason) }) {
				t.Errorf("Skipped = %+v, want a reason with %q", res.Skipped, tc.reason)
			}
		})
	}

	t.Run("before the first reconcile", func(t *testing.T) {
		k := newFakeKernel()
		r, _ := newTestReconciler(t, k)
		h := base()
		if res, err := r.AddNew(h.news(newAddr(2, "192.0.2.10/24"))); err != nil || len(k.writes) != 0 || len(res.Added) != 0 {
			t.Errorf("AddNew before any reconcile: %+v, %v, kernel requests %v; want nothing done", res, err, k.writes)
		}
	})

	t.Run("another manager to defer to", func(t *testing.T) {
		k := newFakeKernel()
		r, _ := newTestReconciler(t, k)
		r.DeferTo("NetworkManager")
		h := base()
		if _, err := r.Reconcile(cfg, h.st); err != nil {
			t.Fatal(err)
		}
		k.writes = nil
		a := newAddr(2, "192.0.2.11/24")
		h.st.Addrs = append(h.st.Addrs, a)
		res, err := r.AddNew(h.news(a))
		if err != nil || len(k.writes) != 0 {
			t.Errorf("AddNew with NetworkManager around: %v, kernel requests %v; want it left to the full reconcile", err, k.writes)
		}
		if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return strings.Contains(s.Reason, "NetworkManager") }) {
			t.Errorf("Skipped = %+v, want NetworkManager named", res.Skipped)
		}
	})

	t.Run("already an endpoint", func(t *testing.T) {
		k := newFakeKernel()
		r, _ := newTestReconciler(t, k)
		h := base()
		if _, err := r.Reconcile(cfg, h.st); err != nil {
			t.Fatal(err)
		}
		k.writes = nil
		// A notification of a change to an address that is an endpoint
		// already (its lifetime, say).
		if res, err := r.AddNew(h.news(newAddr(2, "192.0.2.10/24"))); err != nil || len(k.writes) != 0 || len(res.Added) != 0 {
			t.Errorf("AddNew of an endpoint's address: %+v, %v, kernel requests %v; want nothing done", res, err, k.writes)
		}
	})
}

// TestAddNewForeign: an address another program made an endpoint is left
// to it, as the full reconcile leaves it.
func TestAddNewForeign(t *testing.T) {
	k := newFakeKernel()
	k.eps = []genl.Endpoint{{ID: 1, Addr: netip.MustParseAddr("192.0.2.11"), Flags: genl.FlagSignal}}
	r, _ := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	k.writes = nil
	a := newAddr(2, "192.0.2.11/24")
	h.st.Addrs = append(h.st.Addrs, a)
	res, err := r.AddNew(h.news(a))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.writes) != 0 {
		t.Errorf("kernel requests %v, want none", k.writes)
	}
	if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return strings.Contains(s.Reason, "someone else") }) {
		t.Errorf("Skipped = %+v, want the foreign endpoint named", res.Skipped)
	}
}

// TestAddNewEndpointLimit: the fast path never goes past the kernel's 8
// endpoints, nor takes a place the policy gives a preferred address.
func TestAddNewEndpointLimit(t *testing.T) {
	t.Run("kernel full", func(t *testing.T) {
		k := newFakeKernel()
		for i := range 6 {
			k.eps = append(k.eps, genl.Endpoint{ID: uint8(10 + i), Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})})
		}
		r, _ := newTestReconciler(t, k)
		cfg := parseConfig(t, twoRules)
		h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.1/24", "192.0.2.2/24")
		if _, err := r.Reconcile(cfg, h.st); err != nil {
			t.Fatal(err)
		}
		if len(k.eps) != MaxEndpoints {
			t.Fatalf("kernel has %d endpoints, want %d", len(k.eps), MaxEndpoints)
		}
		k.writes = nil
		a := newAddr(2, "192.0.2.3/24")
		h.st.Addrs = append(h.st.Addrs, a)
		res, err := r.AddNew(h.news(a))
		if err != nil {
			t.Fatal(err)
		}
		if len(k.writes) != 0 || len(k.eps) != MaxEndpoints {
			t.Errorf("kernel requests %v, %d endpoints; want none, %d", k.writes, len(k.eps), MaxEndpoints)
		}
		if len(res.Skipped) == 0 {
			t.Error("the address left out is not reported")
		}
	})

	t.Run("last place to the preferred address", func(t *testing.T) {
		k := newFakeKernel()
		for i := range 6 {
			k.eps = append(k.eps, genl.Endpoint{ID: uint8(10 + i), Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})})
		}
		r, _ := newTestReconciler(t, k)
		cfg := parseConfig(t, twoRules)
		// Room for two: wlan0's second address takes the last place; a
		// new address on wwan0 then is left to the full reconcile, which
		// weighs the rules' preferences (wlan0's is higher).
		h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.1/24").link(3, "wwan0", netmon.KindWWAN)
		if _, err := r.Reconcile(cfg, h.st); err != nil {
			t.Fatal(err)
		}
		a := newAddr(2, "192.0.2.2/24")
		h.st.Addrs = append(h.st.Addrs, a)
		if res, err := r.AddNew(h.news(a)); err != nil || len(res.Added) != 1 {
			t.Fatalf("AddNew of wlan0's second address: %+v, %v; want it added", res, err)
		}
		k.writes = nil
		b := newAddr(3, "198.51.100.1/24")
		h.st.Addrs = append(h.st.Addrs, b)
		res, err := r.AddNew(h.news(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(k.writes) != 0 {
			t.Errorf("kernel requests %v, want none: the last place is taken", k.writes)
		}
		if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return strings.Contains(s.Reason, "preferences") }) {
			t.Errorf("Skipped = %+v, want the places named", res.Skipped)
		}
		if res, err := r.Reconcile(cfg, h.st); err != nil || res.Changes() != 0 {
			t.Errorf("reconcile after: %d changes (%v), %v; want none", res.Changes(), k.writes, err)
		}
	})

	t.Run("two new addresses, room for one", func(t *testing.T) {
		k := newFakeKernel()
		for i := range 6 {
			k.eps = append(k.eps, genl.Endpoint{ID: uint8(10 + i), Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})})
		}
		r, _ := newTestReconciler(t, k)
		cfg := parseConfig(t, twoRules)
		h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.1/24").link(3, "wwan0", netmon.KindWWAN)
		if _, err := r.Reconcile(cfg, h.st); err != nil {
			t.Fatal(err)
		}
		added := []netmon.Addr{newAddr(3, "198.51.100.1/24"), newAddr(3, "198.51.100.2/24")}
		h.st.Addrs = append(h.st.Addrs, added...)
		res, err := r.AddNew(h.news(added...))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Added) != 1 || len(k.eps) != MaxEndpoints {
			t.Errorf("added %v, kernel has %d endpoints; want one added and %d", res.Added, len(k.eps), MaxEndpoints)
		}
		// The full reconcile agrees.
		k.writes = nil
		if res, err := r.Reconcile(cfg, h.st); err != nil || res.Changes() != 0 {
			t.Errorf("reconcile after: %d changes (%v), %v; want none", res.Changes(), k.writes, err)
		}
	})
}

// TestAddNewFailedAdd: when the kernel refuses the add (here an ID taken
// meanwhile by another program), the record of the intent goes, and the
// full reconcile that follows adds the endpoint under another ID, once.
func TestAddNewFailedAdd(t *testing.T) {
	k := newFakeKernel()
	r, store := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	// Someone takes the ID the fast path will pick, unseen by it.
	k.eps = append(k.eps, genl.Endpoint{ID: 2, Addr: netip.MustParseAddr("203.0.113.1")})

	a := newAddr(2, "192.0.2.11/24")
	h.st.Addrs = append(h.st.Addrs, a)
	_, err := r.AddNew(h.news(a))
	if !errors.Is(err, genl.ErrIDInUse) || !strings.Contains(err.Error(), "192.0.2.11") {
		t.Fatalf("AddNew = %v, want the refused add of 192.0.2.11", err)
	}
	own, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(own.Endpoints, func(o OwnedEndpoint) bool { return o.Addr == a.Prefix.Addr() }) {
		t.Errorf("records %+v still claim the endpoint that was not added", own.Endpoints)
	}

	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || res.Added[0].ID == 2 {
		t.Errorf("reconcile added %v, want 192.0.2.11 under a free ID", res.Added)
	}
	if got, want := k.addrs(), []string{"192.0.2.10 subflow", "192.0.2.11 subflow", "203.0.113.1 "}; !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
}

// TestAddNewCrash: a daemon killed after it recorded the endpoint it was
// adding, before or after the kernel added it, recognises it, or forgets
// the record, when it starts again.
func TestAddNewCrash(t *testing.T) {
	for _, added := range []bool{false, true} {
		t.Run(fmt.Sprint("kernel added it: ", added), func(t *testing.T) {
			k := newFakeKernel()
			r, store := newTestReconciler(t, k)
			cfg := parseConfig(t, twoRules)
			h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
			if _, err := r.Reconcile(cfg, h.st); err != nil {
				t.Fatal(err)
			}
			// The fast path's record, as it is written before the add.
			rec := OwnedEndpoint{ID: 2, Addr: netip.MustParseAddr("192.0.2.11")}
			if err := store.Add(rec); err != nil {
				t.Fatal(err)
			}
			if added {
				k.eps = append(k.eps, genl.Endpoint{ID: 2, Addr: rec.Addr, Flags: genl.FlagSubflow, IfIndex: 2})
			}
			// The restart, with the address still there.
			h.link(2, "wlan0", netmon.KindPhysical, "192.0.2.11/24")
			r2 := NewReconciler(k, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
			k.writes = nil
			res, err := r2.Reconcile(cfg, h.st)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Foreign) != 0 || len(res.Owned) != 2 {
				t.Errorf("after the restart: owned %v, foreign %v; want both owned", res.Owned, res.Foreign)
			}
			if got, want := k.addrs(), []string{"192.0.2.10 subflow", "192.0.2.11 subflow"}; !slices.Equal(got, want) {
				t.Errorf("endpoints = %v, want %v", got, want)
			}
			if added && res.Changes() != 0 {
				t.Errorf("%d changes (kernel requests %v), want none: the endpoint is there", res.Changes(), k.writes)
			}
		})
	}
}

// TestAddNewSameAddressTwice: one endpoint per address, the best rule's,
// as Desired has it.
func TestAddNewSameAddressTwice(t *testing.T) {
	k := newFakeKernel()
	r, _ := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24").link(3, "wwan0", netmon.KindWWAN).link(4, "wlan1", netmon.KindPhysical)
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	// The same new address on wwan0 and wlan1 at once: wlan1's rule is
	// preferred.
	added := []netmon.Addr{newAddr(3, "198.51.100.1/24"), newAddr(4, "198.51.100.1/24")}
	h.st.Addrs = append(h.st.Addrs, added...)
	res, err := r.AddNew(h.news(added...))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || res.Added[0].IfIndex != 4 {
		t.Errorf("added %+v, want one endpoint, on wlan1", res.Added)
	}
	// An endpoint's address appearing on another interface as well.
	k.writes = nil
	again := newAddr(3, "192.0.2.10/24")
	h.st.Addrs = append(h.st.Addrs, again)
	if res, err := r.AddNew(h.news(again)); err != nil || len(k.writes) != 0 || len(res.Added) != 0 {
		t.Errorf("AddNew of an endpoint's address on another interface: %+v, %v, kernel requests %v; want nothing done", res, err, k.writes)
	}
	// The full reconcile agrees.
	if res, err := r.Reconcile(cfg, h.st); err != nil || res.Changes() != 0 {
		t.Errorf("reconcile after: %d changes (%v), %v; want none", res.Changes(), k.writes, err)
	}
	if got, want := k.addrs(), []string{"192.0.2.10 subflow", "198.51.100.1 subflow"}; !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
}

// slowDelete is a fake kernel, safe for concurrent use, whose endpoint
// deletions wait until release is closed, as DEL_ADDR waits for an RCU
// grace period; deleting says when one has begun.
type slowDelete struct {
	mu       sync.Mutex
	k        *fakeKernel
	deleting chan struct{}
	release  chan struct{}
}

func (s *slowDelete) do(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

func (s *slowDelete) Endpoints() (eps []genl.Endpoint, err error) {
	s.do(func() { eps, err = s.k.Endpoints() })
	return
}

func (s *slowDelete) AddEndpoint(ep genl.Endpoint) (got genl.Endpoint, err error) {
	s.do(func() { got, err = s.k.AddEndpoint(ep) })
	return
}

func (s *slowDelete) CreateEndpoint(ep genl.Endpoint) (err error) {
	s.do(func() { err = s.k.CreateEndpoint(ep) })
	return
}

func (s *slowDelete) SetLimitsAndCreateEndpoint(l genl.Limits, ep genl.Endpoint) (lerr, cerr error) {
	s.do(func() { lerr, cerr = s.k.SetLimitsAndCreateEndpoint(l, ep) })
	return
}

func (s *slowDelete) DeleteEndpoint(id uint8) (err error) {
	s.deleting <- struct{}{}
	<-s.release
	s.do(func() { err = s.k.DeleteEndpoint(id) })
	return
}

func (s *slowDelete) SetEndpointFlags(id uint8, f genl.EndpointFlags) (err error) {
	s.do(func() { err = s.k.SetEndpointFlags(id, f) })
	return
}

func (s *slowDelete) Limits() (l genl.Limits, err error) {
	s.do(func() { l, err = s.k.Limits() })
	return
}

func (s *slowDelete) SetLimits(l genl.Limits) (err error) {
	s.do(func() { err = s.k.SetLimits(l) })
	return
}

func (s *slowDelete) PathManager() (pm string, err error) {
	s.do(func() { pm, err = s.k.PathManager() })
	return
}

func (s *slowDelete) SetPathManager(pm string) (err error) {
	s.do(func() { err = s.k.SetPathManager(pm) })
	return
}

// TestAddNewDuringSlowRemoval: an address replaces another (a roam, a
// renumbering). While the kernel takes its time deleting the old one's
// endpoint, the new one's is added at once rather than after it; the
// reconcile still removes the old one, and the records hold the new one,
// which the next reconcile and a restarted daemon own without duplicate.
func TestAddNewDuringSlowRemoval(t *testing.T) {
	k := &slowDelete{k: newFakeKernel(), deleting: make(chan struct{}, 1), release: make(chan struct{})}
	r, store := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}

	h.drop("192.0.2.10")
	done := make(chan error, 1)
	var removed Result
	go func() {
		var err error
		removed, err = r.Reconcile(cfg, h.st)
		done <- err
	}()
	select {
	case <-k.deleting:
	case <-time.After(5 * time.Second):
		t.Fatal("the reconcile did not delete the old endpoint")
	}

	h.link(2, "wlan0", netmon.KindPhysical, "192.0.2.20/24")
	added := make(chan error, 1)
	go func() {
		res, err := r.AddNew(h.news(newAddr(2, "192.0.2.20/24")))
		if err == nil && len(res.Added) != 1 {
			err = fmt.Errorf("added %v, want the new address's endpoint", res.Added)
		}
		added <- err
	}()
	select {
	case err := <-added:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(k.release)
		t.Fatal("the new address's endpoint waited for the old one's deletion")
	}
	close(k.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(removed.Removed) != 1 || removed.Removed[0].Addr != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("the reconcile removed %v, want the old address's endpoint", removed.Removed)
	}
	var got []string
	k.do(func() { got = k.k.addrs() })
	if want := []string{"192.0.2.20 subflow"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}

	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 0 || len(res.Owned) != 1 || len(res.Foreign) != 0 {
		t.Errorf("the next reconcile: %d changes, owned %v, foreign %v; want none, the new one, none", res.Changes(), res.Owned, res.Foreign)
	}
	r2 := NewReconciler(k, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	res, err = r2.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 0 || len(res.Owned) != 1 || len(res.Foreign) != 0 {
		t.Errorf("after a restart: %d changes, owned %v, foreign %v; want none, the new one, none", res.Changes(), res.Owned, res.Foreign)
	}
}
