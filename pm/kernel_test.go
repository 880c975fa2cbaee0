package pm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// fakeKernel keeps endpoints and limits with the kernel's rules: IDs
// chosen after the highest in use, at most 8 endpoints, no duplicate
// address and port, and the same errors.
type fakeKernel struct {
	eps     []genl.Endpoint
	limits  genl.Limits
	pm      string
	failAdd map[netip.Addr]error
	writes  []string
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{limits: genl.Limits{Subflows: 2}, pm: genl.PathManagerKernel}
}

func (k *fakeKernel) Endpoints() ([]genl.Endpoint, error) { return slices.Clone(k.eps), nil }

func (k *fakeKernel) AddEndpoint(ep genl.Endpoint) (genl.Endpoint, error) {
	k.writes = append(k.writes, "add "+ep.Addr.String())
	if err := k.failAdd[ep.Addr]; err != nil {
		return genl.Endpoint{}, err
	}
	for _, e := range k.eps {
		if e.Addr == ep.Addr && e.Port == ep.Port {
			return genl.Endpoint{}, genl.ErrExists
		}
	}
	if len(k.eps) >= MaxEndpoints {
		return genl.Endpoint{}, genl.ErrLimit
	}
	if ep.ID != 0 && slices.ContainsFunc(k.eps, func(e genl.Endpoint) bool { return e.ID == ep.ID }) {
		return genl.Endpoint{}, genl.ErrIDInUse
	}
	if ep.ID == 0 {
		for _, e := range k.eps {
			ep.ID = max(ep.ID, e.ID)
		}
		ep.ID++
	}
	k.eps = append(k.eps, ep)
	return ep, nil
}

func (k *fakeKernel) CreateEndpoint(ep genl.Endpoint) error {
	if ep.ID == 0 {
		return genl.ErrInvalid
	}
	_, err := k.AddEndpoint(ep)
	return err
}

func (k *fakeKernel) SetLimitsAndCreateEndpoint(l genl.Limits, ep genl.Endpoint) (error, error) {
	return k.SetLimits(l), k.CreateEndpoint(ep)
}

func (k *fakeKernel) DeleteEndpoint(id uint8) error {
	k.writes = append(k.writes, fmt.Sprint("delete ", id))
	i := slices.IndexFunc(k.eps, func(e genl.Endpoint) bool { return e.ID == id })
	if i < 0 {
		return genl.ErrNotFound
	}
	k.eps = slices.Delete(k.eps, i, i+1)
	return nil
}

func (k *fakeKernel) SetEndpointFlags(id uint8, flags genl.EndpointFlags) error {
	k.writes = append(k.writes, fmt.Sprint("flags ", id))
	i := slices.IndexFunc(k.eps, func(e genl.Endpoint) bool { return e.ID == id })
	if i < 0 {
		return genl.ErrNotFound
	}
	k.eps[i].Flags = k.eps[i].Flags&^changeableFlags | flags&changeableFlags
	return nil
}

func (k *fakeKernel) Limits() (genl.Limits, error) { return k.limits, nil }
func (k *fakeKernel) SetLimits(l genl.Limits) error {
	k.writes = append(k.writes, "limits")
	k.limits = l
	return nil
}
func (k *fakeKernel) PathManager() (string, error) { return k.pm, nil }
func (k *fakeKernel) SetPathManager(pm string) error {
	k.writes = append(k.writes, "pm "+pm)
	k.pm = pm
	return nil
}

func (k *fakeKernel) addrs() []string {
	var out []string
	for _, e := range k.eps {
		out = append(out, fmt.Sprintf("%s %s", e.Addr, e.Flags))
	}
	slices.Sort(out)
	return out
}

func parseConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

const twoRules = `
[[rule]]
name = "wifi"
interfaces = ["wlan*"]
flags = ["subflow"]
preference = 10

[[rule]]
name = "cell"
interfaces = ["wwan*"]
flags = ["subflow", "backup"]
`

// host builds a netmon state: interfaces by name with their addresses.
type host struct {
	st netmon.State
}

func newHost() *host { return &host{st: netmon.State{Links: map[int]netmon.Link{}}} }

func (h *host) link(index int, name string, kind netmon.Kind, addrs ...string) *host {
	h.st.Links[index] = netmon.Link{Index: index, Name: name, Kind: kind, Up: true, Running: true}
	for _, a := range addrs {
		h.st.Addrs = append(h.st.Addrs, netmon.Addr{Index: index, Prefix: netip.MustParsePrefix(a), Permanent: true})
	}
	return h
}

func (h *host) carrier(index int, on bool) *host {
	l := h.st.Links[index]
	l.Running = on
	h.st.Links[index] = l
	return h
}

func (h *host) drop(addr string) *host {
	h.st.Addrs = slices.DeleteFunc(slices.Clone(h.st.Addrs), func(a netmon.Addr) bool { return a.Prefix.Addr().String() == addr })
	return h
}

func newTestReconciler(t testing.TB, k Kernel) (*Reconciler, *FileStore) {
	t.Helper()
	store := &FileStore{Path: filepath.Join(t.TempDir(), "owned.json")}
	t.Cleanup(func() { _ = store.Close() })
	return NewReconciler(k, store, slog.New(slog.NewTextHandler(io.Discard, nil))), store
}

func TestReconcileFollowsInterfaces(t *testing.T) {
	k := newFakeKernel()
	r, _ := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().
		link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24", "2001:db8::10/64").
		link(3, "wwan0", netmon.KindWWAN, "198.51.100.7/24").
		link(4, "eth9", netmon.KindPhysical, "203.0.113.9/24")

	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.10 subflow", "198.51.100.7 subflow,backup", "2001:db8::10 subflow"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	if len(res.Added) != 3 || res.Changes() != 3 {
		t.Errorf("result %+v, want 3 added", res)
	}
	if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return s.Interface == "eth9" && strings.Contains(s.Reason, "no rule") }) {
		t.Errorf("eth9 not reported as skipped for lack of a rule: %+v", res.Skipped)
	}
	if k.limits != (genl.Limits{Subflows: 3, AddAddrAccepted: 3}) {
		t.Errorf("auto limits = %+v, want subflows 3 add_addr_accepted 3", k.limits)
	}

	// Nothing changed: nothing written.
	k.writes = nil
	if res, err := r.Reconcile(cfg, h.st); err != nil || res.Changes() != 0 || len(k.writes) != 0 {
		t.Fatalf("second reconcile: %+v, %v, writes %v; want no change", res, err, k.writes)
	}

	// The address goes: its endpoint goes.
	h.drop("2001:db8::10")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	if got := k.addrs(); slices.Contains(got, "2001:db8::10 subflow") {
		t.Errorf("endpoint of a removed address still there: %v", got)
	}

	// Carrier lost: the interface's endpoints go, and come back with it.
	h.carrier(3, false)
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	if got := k.addrs(); !slices.Equal(got, []string{"192.0.2.10 subflow"}) {
		t.Errorf("after carrier loss on wwan0: %v", got)
	}
	h.carrier(3, true)
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	if got := k.addrs(); !slices.Equal(got, []string{"192.0.2.10 subflow", "198.51.100.7 subflow,backup"}) {
		t.Errorf("after carrier back on wwan0: %v", got)
	}
}

func TestReconcileLeavesForeignEndpoints(t *testing.T) {
	k := newFakeKernel()
	k.eps = []genl.Endpoint{
		{ID: 1, Addr: netip.MustParseAddr("192.0.2.10"), Flags: genl.FlagSignal}, // same address as ours would be
		{ID: 2, Addr: netip.MustParseAddr("203.0.113.1"), Flags: genl.FlagSubflow},
	}
	r, _ := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24", "192.0.2.11/24")
	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.10 signal", "192.0.2.11 subflow", "203.0.113.1 subflow"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Fatalf("endpoints = %v, want %v (foreign ones untouched)", got, want)
	}
	if len(res.Foreign) != 2 || len(res.Owned) != 1 {
		t.Errorf("foreign %v owned %v, want 2 foreign and 1 owned", res.Foreign, res.Owned)
	}
	if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return strings.Contains(s.Reason, "someone else") }) {
		t.Errorf("the clash with a foreign endpoint is not reported: %+v", res.Skipped)
	}
	// Nothing on the host any more: only ours goes.
	if _, err := r.Reconcile(cfg, newHost().st); err != nil {
		t.Fatal(err)
	}
	if got := k.addrs(); !slices.Equal(got, []string{"192.0.2.10 signal", "203.0.113.1 subflow"}) {
		t.Errorf("after our addresses left: %v, want only the foreign endpoints", got)
	}
}

// TestReconcileAfterRestart: a new reconciler over the same records (a
// restart, or a kill -9) recognises its endpoints, including one whose add
// was recorded but not confirmed.
func TestReconcileAfterRestart(t *testing.T) {
	k := newFakeKernel()
	r, store := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	// A crash between recording the intent and confirming the add.
	own, _ := store.Load()
	own.Endpoints = append(own.Endpoints, OwnedEndpoint{Addr: netip.MustParseAddr("192.0.2.11")})
	if err := store.Save(own); err != nil {
		t.Fatal(err)
	}
	k.eps = append(k.eps, genl.Endpoint{ID: 7, Addr: netip.MustParseAddr("192.0.2.11"), Flags: genl.FlagSubflow, IfIndex: 2})
	// And a foreign one added meanwhile.
	k.eps = append(k.eps, genl.Endpoint{ID: 8, Addr: netip.MustParseAddr("198.51.100.1")})

	r2 := NewReconciler(k, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	k.writes = nil
	h.link(2, "wlan0", netmon.KindPhysical, "192.0.2.11/24")
	res, err := r2.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 0 || len(res.Owned) != 2 || len(res.Foreign) != 1 {
		t.Errorf("after restart: %d changes (%v), owned %v, foreign %v; want no change, 2 owned, 1 foreign", res.Changes(), k.writes, res.Owned, res.Foreign)
	}
}

func TestReconcileRuleChanges(t *testing.T) {
	k := newFakeKernel()
	r, _ := newTestReconciler(t, k)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	if _, err := r.Reconcile(parseConfig(t, twoRules), h.st); err != nil {
		t.Fatal(err)
	}
	id := k.eps[0].ID
	// backup added: changed in place.
	k.writes = nil
	res, err := r.Reconcile(parseConfig(t, `[[rule]]
interfaces = ["wlan*"]
flags = ["subflow", "backup"]`), h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 1 || k.eps[0].ID != id || k.eps[0].Flags != genl.FlagSubflow|genl.FlagBackup {
		t.Errorf("backup change: %+v, kernel %v; want the endpoint changed in place", res, k.eps)
	}
	// subflow → signal: replaced.
	res, err = r.Reconcile(parseConfig(t, `[[rule]]
interfaces = ["wlan*"]
flags = ["signal"]`), h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || len(res.Added) != 1 || k.addrs()[0] != "192.0.2.10 signal" {
		t.Errorf("signal change: %+v, kernel %v; want the endpoint replaced", res, k.addrs())
	}
}

func TestReconcileEndpointLimit(t *testing.T) {
	k := newFakeKernel()
	k.eps = []genl.Endpoint{{ID: 1, Addr: netip.MustParseAddr("203.0.113.1")}, {ID: 2, Addr: netip.MustParseAddr("203.0.113.2")}}
	r, _ := newTestReconciler(t, k)
	h := newHost()
	for i := range 5 {
		h.link(10+i, fmt.Sprintf("wwan%d", i), netmon.KindWWAN, fmt.Sprintf("198.51.100.%d/24", i+1))
	}
	h.link(20, "wlan0", netmon.KindPhysical, "192.0.2.1/24", "192.0.2.2/24")
	res, err := r.Reconcile(parseConfig(t, twoRules), h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.eps) != MaxEndpoints || len(res.Owned) != MaxEndpoints-2 {
		t.Fatalf("kernel has %d endpoints, we own %d; want %d and %d", len(k.eps), len(res.Owned), MaxEndpoints, MaxEndpoints-2)
	}
	// The preferred rule's addresses are all in.
	for _, a := range []string{"192.0.2.1 subflow", "192.0.2.2 subflow"} {
		if !slices.Contains(k.addrs(), a) {
			t.Errorf("preferred address %s left out: %v", a, k.addrs())
		}
	}
	if n := len(slices.DeleteFunc(slices.Clone(res.Skipped), func(s Skip) bool { return !strings.Contains(s.Reason, "limit of 8") })); n != 1 {
		t.Errorf("%d addresses reported over the limit, want 1: %+v", n, res.Skipped)
	}
}

func TestReconcileCollectsErrors(t *testing.T) {
	k := newFakeKernel()
	k.failAdd = map[netip.Addr]error{netip.MustParseAddr("192.0.2.1"): genl.ErrPermission}
	r, store := newTestReconciler(t, k)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.1/24", "192.0.2.2/24")
	_, err := r.Reconcile(parseConfig(t, twoRules), h.st)
	if !errors.Is(err, genl.ErrPermission) || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("Reconcile error = %v, want the failed add of 192.0.2.1", err)
	}
	if got := k.addrs(); !slices.Equal(got, []string{"192.0.2.2 subflow"}) {
		t.Errorf("endpoints = %v, want the other address added all the same", got)
	}
	own, _ := store.Load()
	if len(own.Endpoints) != 1 || own.Endpoints[0].ID == 0 {
		t.Errorf("ownership records %+v, want only the added endpoint, with its ID", own.Endpoints)
	}
}

func TestRelease(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			k := newFakeKernel()
			k.eps = []genl.Endpoint{{ID: 9, Addr: netip.MustParseAddr("203.0.113.1")}}
			r, store := newTestReconciler(t, k)
			if err := r.SelectPathManager(genl.PathManagerUserspace); err != nil {
				t.Fatal(err)
			}
			h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.1/24")
			if _, err := r.Reconcile(parseConfig(t, twoRules+"\n[limits]\nsubflows = 5\n"), h.st); err != nil {
				t.Fatal(err)
			}
			if err := r.Release(keep, keep); err != nil {
				t.Fatal(err)
			}
			own, _ := store.Load()
			if len(own.Endpoints) != 0 || own.LimitsBefore != nil {
				t.Errorf("records after release: %+v, want none", own)
			}
			if keep {
				if len(k.eps) != 2 || k.limits.Subflows != 5 || k.pm != genl.PathManagerUserspace {
					t.Errorf("kept: endpoints %v limits %v pm %s; want everything left in place", k.eps, k.limits, k.pm)
				}
				return
			}
			if got := k.addrs(); !slices.Equal(got, []string{"203.0.113.1 "}) {
				t.Errorf("after release: %v, want only the foreign endpoint", got)
			}
			if k.limits != (genl.Limits{Subflows: 2}) || k.pm != genl.PathManagerKernel {
				t.Errorf("after release: limits %v pm %s, want the originals back", k.limits, k.pm)
			}
		})
	}
}

// TestReconcileDefersToNetworkManager: with DeferTo set, an interface that
// carries a foreign endpoint (bound to it, or holding its address) gets
// none of ours, and ours already there are withdrawn from it.
func TestReconcileDefersToNetworkManager(t *testing.T) {
	k := newFakeKernel()
	r, _ := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().
		link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24", "192.0.2.11/24").
		link(3, "wlan1", netmon.KindPhysical, "198.51.100.10/24").
		link(4, "wwan0", netmon.KindWWAN, "203.0.113.4/24")
	if _, err := r.Reconcile(cfg, h.st); err != nil {
		t.Fatal(err)
	}
	// NetworkManager puts its endpoints on wlan0 (by address) and wlan1
	// (bound to the device).
	k.eps = slices.DeleteFunc(k.eps, func(e genl.Endpoint) bool { return e.Addr == netip.MustParseAddr("192.0.2.10") })
	k.eps = append(k.eps,
		genl.Endpoint{ID: 100, Addr: netip.MustParseAddr("192.0.2.10"), Flags: genl.FlagSubflow},
		genl.Endpoint{ID: 101, Addr: netip.MustParseAddr("2001:db8::1"), Flags: genl.FlagSubflow, IfIndex: 3})
	r.DeferTo("NetworkManager")
	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.10 subflow", "2001:db8::1 subflow", "203.0.113.4 subflow,backup"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v: NetworkManager's, and ours only on wwan0", got, want)
	}
	if !slices.ContainsFunc(res.Skipped, func(s Skip) bool {
		return s.Interface == "wlan1" && strings.Contains(s.Reason, "NetworkManager manages")
	}) {
		t.Errorf("wlan1 not reported as left to NetworkManager: %+v", res.Skipped)
	}
}

// TestDesiredFilters: the address filters and route requirement of the
// configuration decide which addresses of a matching interface are used.
func TestDesiredFilters(t *testing.T) {
	h := newHost().link(2, "wlan0", netmon.KindPhysical,
		"192.0.2.10/24", "169.254.1.1/16", "fe80::1/64", "2001:db8::10/64", "fd00::1/64", "10.1.2.3/8")
	h.st.Addrs = append(h.st.Addrs,
		netmon.Addr{Index: 2, Prefix: netip.MustParsePrefix("2001:db8::99/64"), Temporary: true},
		netmon.Addr{Index: 2, Prefix: netip.MustParsePrefix("2001:db8::98/64"), Tentative: true},
		netmon.Addr{Index: 2, Prefix: netip.MustParsePrefix("2001:db8::97/64"), Deprecated: true})
	addrsOf := func(ws []Want) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Addr.String())
		}
		slices.Sort(out)
		return out
	}
	wants, skipped := Desired(parseConfig(t, twoRules+"\n[addresses]\nula = false\ndeny_prefixes = [\"10.0.0.0/8\"]\n"), h.st)
	if got, want := addrsOf(wants), []string{"192.0.2.10", "2001:db8::10"}; !slices.Equal(got, want) {
		t.Errorf("Desired = %v, want %v", got, want)
	}
	if len(skipped) != 7 {
		t.Errorf("skipped %d addresses, want 7: %+v", len(skipped), skipped)
	}
	// require_route: nothing until the interface carries a route beyond its
	// own subnets.
	cfg := parseConfig(t, twoRules+"\n[addresses]\nrequire_route = true\n")
	if wants, _ := Desired(cfg, h.st); len(wants) != 0 {
		t.Errorf("with require_route and no route, Desired = %v, want nothing", addrsOf(wants))
	}
	h.st.Routes = append(h.st.Routes, netmon.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Index: 2})
	if wants, _ := Desired(cfg, h.st); !slices.Contains(addrsOf(wants), "192.0.2.10") {
		t.Errorf("with a default route, Desired = %v, want 192.0.2.10 among them", addrsOf(wants))
	}
}
