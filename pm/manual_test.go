package pm

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

var addr = netip.MustParseAddr

// owners returns the kernel's endpoints as the reconciler reports them:
// "address owner" by ID.
func owners(t *testing.T, r *Reconciler) []string {
	t.Helper()
	infos, err := r.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, info := range infos {
		out = append(out, info.Addr.String()+" "+info.Owner.String())
	}
	return out
}

// records returns the ownership records in the store as "address
// manual|rule".
func records(t *testing.T, store *FileStore) []string {
	t.Helper()
	own, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range own.Endpoints {
		what := "rule=" + o.Rule
		if o.Manual {
			what = "manual"
		}
		out = append(out, o.Addr.String()+" "+what)
	}
	slices.Sort(out)
	return out
}

func mustAdd(t *testing.T, r *Reconciler, ep genl.Endpoint) genl.Endpoint {
	t.Helper()
	got, err := r.AddManual(ep)
	if err != nil {
		t.Fatalf("AddManual(%v): %v", ep, err)
	}
	return got
}

func TestAddManualPicksID(t *testing.T) {
	k := newFakeKernel()
	k.eps = []genl.Endpoint{{ID: 1, Addr: addr("203.0.113.1")}, {ID: 5, Addr: addr("203.0.113.5")}}
	r, store := newTestReconciler(t, k)

	got := mustAdd(t, r, genl.Endpoint{Addr: addr("192.0.2.1"), Flags: genl.FlagSubflow, IfIndex: 2})
	if got.ID != 6 || got.Addr != addr("192.0.2.1") || got.Flags != genl.FlagSubflow || got.IfIndex != 2 {
		t.Errorf("added %+v, want ID 6 (after the highest in use) with the address, flags and interface asked for", got)
	}
	if i := slices.IndexFunc(k.eps, func(e genl.Endpoint) bool { return e.ID == 6 }); i < 0 || k.eps[i] != got {
		t.Errorf("kernel endpoints %v, want %+v among them", k.eps, got)
	}
	// An ID asked for is used.
	if got := mustAdd(t, r, genl.Endpoint{ID: 3, Addr: addr("2001:db8::1"), Port: 8080, Flags: genl.FlagSignal}); got.ID != 3 {
		t.Errorf("asked for ID 3, got %d", got.ID)
	}
	// After 255, the lowest free ID.
	k.eps = append(k.eps, genl.Endpoint{ID: 255, Addr: addr("203.0.113.255")})
	if got := mustAdd(t, r, genl.Endpoint{Addr: addr("192.0.2.2"), Flags: genl.FlagSubflow}); got.ID != 2 {
		t.Errorf("with 255 in use, got ID %d, want 2, the lowest free", got.ID)
	}

	if got, want := records(t, store), []string{"192.0.2.1 manual", "192.0.2.2 manual", "2001:db8::1 manual"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	want := []string{"203.0.113.1 foreign", "192.0.2.2 api", "2001:db8::1 api", "203.0.113.5 foreign", "192.0.2.1 api", "203.0.113.255 foreign"}
	if got := owners(t, r); !slices.Equal(got, want) {
		t.Errorf("Endpoints() = %v, want %v", got, want)
	}
	info, err := r.Endpoint(3)
	if err != nil || info.Owner != OwnerManual || info.Port != 8080 {
		t.Errorf("Endpoint(3) = %+v, %v; want the manual signal endpoint", info, err)
	}
	if _, err := r.Endpoint(4); !errors.Is(err, genl.ErrNotFound) {
		t.Errorf("Endpoint(4) error %v, want genl.ErrNotFound", err)
	}
}

// TestAddManualRefuses: bad or clashing requests are refused with their
// sentinel before anything is sent to the kernel or recorded.
func TestAddManualRefuses(t *testing.T) {
	full := make([]genl.Endpoint, MaxEndpoints)
	for i := range full {
		full[i] = genl.Endpoint{ID: uint8(i + 1), Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})}
	}
	some := []genl.Endpoint{{ID: 4, Addr: addr("192.0.2.1"), Flags: genl.FlagSubflow}}
	cases := []struct {
		name   string
		kernel []genl.Endpoint
		ep     genl.Endpoint
		want   error
	}{
		{"address exists", some, genl.Endpoint{Addr: addr("192.0.2.1"), Flags: genl.FlagSignal}, genl.ErrExists},
		{"address exists, ID free", some, genl.Endpoint{ID: 9, Addr: addr("192.0.2.1")}, genl.ErrExists},
		{"ID in use", some, genl.Endpoint{ID: 4, Addr: addr("192.0.2.2")}, genl.ErrIDInUse},
		{"kernel full", full, genl.Endpoint{Addr: addr("192.0.2.2"), Flags: genl.FlagSubflow}, genl.ErrLimit},
		{"no address", nil, genl.Endpoint{Flags: genl.FlagSubflow}, genl.ErrInvalid},
		{"unspecified", nil, genl.Endpoint{Addr: addr("0.0.0.0")}, genl.ErrInvalid},
		{"unspecified v6", nil, genl.Endpoint{Addr: addr("::")}, genl.ErrInvalid},
		{"multicast", nil, genl.Endpoint{Addr: addr("ff02::1")}, genl.ErrInvalid},
		{"zone", nil, genl.Endpoint{Addr: addr("fe80::1%eth0")}, genl.ErrInvalid},
		{"implicit", nil, genl.Endpoint{Addr: addr("192.0.2.2"), Flags: genl.FlagSubflow | genl.FlagImplicit}, genl.ErrInvalid},
		{"unknown flag", nil, genl.Endpoint{Addr: addr("192.0.2.2"), Flags: genl.FlagSubflow | 1<<7}, genl.ErrInvalid},
		{"signal and fullmesh", nil, genl.Endpoint{Addr: addr("192.0.2.2"), Flags: genl.FlagSignal | genl.FlagFullmesh}, genl.ErrInvalid},
		{"port without signal", nil, genl.Endpoint{Addr: addr("192.0.2.2"), Port: 8080, Flags: genl.FlagSubflow}, genl.ErrInvalid},
		// Invalid input is refused even when the kernel is full: the
		// request is checked first.
		{"invalid and full", full, genl.Endpoint{Addr: addr("224.0.0.1")}, genl.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel()
			k.eps = slices.Clone(tc.kernel)
			r, store := newTestReconciler(t, k)
			got, err := r.AddManual(tc.ep)
			if !errors.Is(err, tc.want) {
				t.Fatalf("AddManual(%+v) = %+v, %v; want %v", tc.ep, got, err, tc.want)
			}
			if got != (genl.Endpoint{}) {
				t.Errorf("refused add returned %+v", got)
			}
			if len(k.writes) != 0 || !slices.Equal(k.eps, tc.kernel) {
				t.Errorf("kernel written %v, now %v", k.writes, k.eps)
			}
			if _, err := os.Stat(store.Path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("records written for a refused add: %v", records(t, store))
			}
			if err := CheckManual(tc.ep); (err != nil) != errors.Is(tc.want, genl.ErrInvalid) {
				t.Errorf("CheckManual = %v, want an error only for invalid input", err)
			}
		})
	}
}

// TestAddManualKernelRefuses: when the kernel refuses the add, the record
// made before it is dropped again.
func TestAddManualKernelRefuses(t *testing.T) {
	k := newFakeKernel()
	k.failAdd = map[netip.Addr]error{addr("192.0.2.1"): genl.ErrPermission}
	r, store := newTestReconciler(t, k)
	_, err := r.AddManual(genl.Endpoint{Addr: addr("192.0.2.1"), Flags: genl.FlagSubflow})
	if !errors.Is(err, genl.ErrPermission) || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Fatalf("AddManual error %v, want the kernel's, naming the address", err)
	}
	if got := records(t, store); len(got) != 0 {
		t.Errorf("records after a refused add: %v", got)
	}
	if got := mustAdd(t, r, genl.Endpoint{Addr: addr("192.0.2.2"), Flags: genl.FlagSubflow}); got.ID != 1 {
		t.Errorf("next add got ID %d, want 1", got.ID)
	}
}

// TestReconcileLeavesManual: the policy neither changes nor removes an
// endpoint added on request, and adds no second endpoint for its address.
func TestReconcileLeavesManual(t *testing.T) {
	k := newFakeKernel()
	r, store := newTestReconciler(t, k)
	cfg := parseConfig(t, twoRules)
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24", "192.0.2.11/24")

	onWlan := mustAdd(t, r, genl.Endpoint{Addr: addr("192.0.2.10"), Flags: genl.FlagSignal})
	elsewhere := mustAdd(t, r, genl.Endpoint{Addr: addr("203.0.113.7"), Flags: genl.FlagSubflow | genl.FlagBackup})

	res, err := r.Reconcile(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.10 signal", "192.0.2.11 subflow", "203.0.113.7 subflow,backup"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Fatalf("endpoints = %v, want %v: the manual ones as they were, one policy endpoint", got, want)
	}
	if len(res.Added) != 1 || res.Added[0].Addr != addr("192.0.2.11") || len(res.Removed) != 0 || len(res.Changed) != 0 {
		t.Errorf("result added %v removed %v changed %v, want only 192.0.2.11 added", res.Added, res.Removed, res.Changed)
	}
	if !slices.Equal(res.Manual, []genl.Endpoint{onWlan, elsewhere}) || len(res.Foreign) != 0 {
		t.Errorf("result manual %v foreign %v, want the two manual endpoints and no foreign one", res.Manual, res.Foreign)
	}
	if !slices.ContainsFunc(res.Skipped, func(s Skip) bool {
		return s.Addr == addr("192.0.2.10") && strings.Contains(s.Reason, "an API request")
	}) {
		t.Errorf("192.0.2.10 not reported as left to the API request: %+v", res.Skipped)
	}
	if got, want := owners(t, r), []string{"192.0.2.10 api", "203.0.113.7 api", "192.0.2.11 policy"}; !slices.Equal(got, want) {
		t.Errorf("owners %v, want %v", got, want)
	}

	// Again: nothing to do.
	k.writes = nil
	if res, err := r.Reconcile(cfg, h.st); err != nil || res.Changes() != 0 || len(k.writes) != 0 {
		t.Errorf("second reconcile: %d changes, %v, writes %v; want none", res.Changes(), err, k.writes)
	}
	// The host loses its addresses: only the policy's endpoint goes.
	if _, err := r.Reconcile(cfg, newHost().st); err != nil {
		t.Fatal(err)
	}
	if got, want := k.addrs(), []string{"192.0.2.10 signal", "203.0.113.7 subflow,backup"}; !slices.Equal(got, want) {
		t.Errorf("after the addresses left: %v, want the manual endpoints only", got)
	}
	if got, want := records(t, store), []string{"192.0.2.10 manual", "203.0.113.7 manual"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
}

// TestManualCountsAgainstLimit: endpoints added on request take room from
// the policy like foreign ones.
func TestManualCountsAgainstLimit(t *testing.T) {
	k := newFakeKernel()
	r, _ := newTestReconciler(t, k)
	for i := range 6 {
		mustAdd(t, r, genl.Endpoint{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), Flags: genl.FlagSubflow})
	}
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.1/24", "192.0.2.2/24", "192.0.2.3/24")
	res, err := r.Reconcile(parseConfig(t, twoRules), h.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.eps) != MaxEndpoints || len(res.Added) != 2 || len(res.Manual) != 6 {
		t.Errorf("kernel %d endpoints, added %v, manual %d; want %d, 2 added, 6 manual", len(k.eps), res.Added, len(res.Manual), MaxEndpoints)
	}
	if !slices.ContainsFunc(res.Skipped, func(s Skip) bool { return s.Addr == addr("192.0.2.3") && strings.Contains(s.Reason, "limit") }) {
		t.Errorf("192.0.2.3 not reported over the limit: %+v", res.Skipped)
	}
	if _, err := r.AddManual(genl.Endpoint{Addr: addr("198.51.100.1"), Flags: genl.FlagSubflow}); !errors.Is(err, genl.ErrLimit) {
		t.Errorf("ninth endpoint: %v, want genl.ErrLimit", err)
	}
}

// threeOwners sets up a kernel with a policy endpoint (192.0.2.10 on
// wlan0), one added on request (198.51.100.5) and a foreign one
// (203.0.113.1, ID 100), and returns their IDs.
func threeOwners(t *testing.T) (k *fakeKernel, r *Reconciler, store *FileStore, h *host, policy, manual, foreign uint8) {
	t.Helper()
	k = newFakeKernel()
	k.eps = []genl.Endpoint{{ID: 100, Addr: addr("203.0.113.1"), Flags: genl.FlagSubflow}}
	r, store = newTestReconciler(t, k)
	h = newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	res, err := r.Reconcile(parseConfig(t, twoRules), h.st)
	if err != nil || len(res.Added) != 1 {
		t.Fatalf("reconcile: %+v, %v", res, err)
	}
	m := mustAdd(t, r, genl.Endpoint{Addr: addr("198.51.100.5"), Flags: genl.FlagSubflow})
	k.writes = nil
	return k, r, store, h, res.Added[0].ID, m.ID, 100
}

func TestDeleteManual(t *testing.T) {
	k, r, store, h, policy, manual, foreign := threeOwners(t)

	before := slices.Clone(k.eps)
	_, err := r.DeleteManual(policy)
	if !errors.Is(err, ErrOwnedByPolicy) || !strings.Contains(err.Error(), "192.0.2.10") {
		t.Errorf("DeleteManual(policy's) = %v, want ErrOwnedByPolicy naming the address", err)
	}
	if !slices.Equal(k.eps, before) || len(k.writes) != 0 {
		t.Errorf("kernel changed by a refused delete: writes %v", k.writes)
	}

	got, err := r.DeleteManual(manual)
	if err != nil || got.Addr != addr("198.51.100.5") {
		t.Errorf("DeleteManual(manual) = %+v, %v", got, err)
	}
	got, err = r.DeleteManual(foreign)
	if err != nil || got.Addr != addr("203.0.113.1") {
		t.Errorf("DeleteManual(foreign) = %+v, %v", got, err)
	}
	if _, err := r.DeleteManual(foreign); !errors.Is(err, genl.ErrNotFound) {
		t.Errorf("DeleteManual of a gone endpoint: %v, want genl.ErrNotFound", err)
	}
	if got, want := k.addrs(), []string{"192.0.2.10 subflow"}; !slices.Equal(got, want) {
		t.Errorf("kernel %v, want only the policy's endpoint", got)
	}
	if got, want := records(t, store), []string{"192.0.2.10 rule=wifi"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	// The policy does not bring back what was deleted.
	k.writes = nil
	if res, err := r.Reconcile(parseConfig(t, twoRules), h.st); err != nil || res.Changes() != 0 {
		t.Errorf("reconcile after the deletes: %d changes (%v), %v", res.Changes(), k.writes, err)
	}
}

func TestSetManualFlags(t *testing.T) {
	k, r, _, h, policy, manual, foreign := threeOwners(t)
	yes, no := true, false

	got, err := r.SetManualFlags(manual, &yes, nil)
	if err != nil || got.Flags != genl.FlagSubflow|genl.FlagBackup {
		t.Errorf("backup on: %+v, %v", got, err)
	}
	if i := slices.IndexFunc(k.eps, func(e genl.Endpoint) bool { return e.ID == manual }); k.eps[i].Flags != genl.FlagSubflow|genl.FlagBackup {
		t.Errorf("kernel flags %v, want subflow,backup", k.eps[i].Flags)
	}
	// No change, or nothing asked: nothing sent.
	k.writes = nil
	for _, f := range [][2]*bool{{&yes, nil}, {nil, nil}, {&yes, &no}} {
		if got, err := r.SetManualFlags(manual, f[0], f[1]); err != nil || got.Flags != genl.FlagSubflow|genl.FlagBackup {
			t.Errorf("SetManualFlags(%v, %v) = %+v, %v", f[0], f[1], got, err)
		}
	}
	if len(k.writes) != 0 {
		t.Errorf("writes for no change: %v", k.writes)
	}
	if got, err := r.SetManualFlags(manual, &no, &yes); err != nil || got.Flags != genl.FlagSubflow|genl.FlagFullmesh {
		t.Errorf("backup off, fullmesh on: %+v, %v", got, err)
	}
	// The foreign endpoint may be changed on request too.
	if got, err := r.SetManualFlags(foreign, &yes, nil); err != nil || got.Flags != genl.FlagSubflow|genl.FlagBackup {
		t.Errorf("foreign backup on: %+v, %v", got, err)
	}

	k.writes = nil
	if _, err := r.SetManualFlags(policy, &yes, nil); !errors.Is(err, ErrOwnedByPolicy) {
		t.Errorf("policy's endpoint: %v, want ErrOwnedByPolicy", err)
	}
	if _, err := r.SetManualFlags(77, &yes, nil); !errors.Is(err, genl.ErrNotFound) {
		t.Errorf("missing endpoint: %v, want genl.ErrNotFound", err)
	}
	signal := mustAdd(t, r, genl.Endpoint{Addr: addr("198.51.100.6"), Flags: genl.FlagSignal})
	k.writes = nil
	if _, err := r.SetManualFlags(signal.ID, nil, &yes); !errors.Is(err, genl.ErrInvalid) {
		t.Errorf("fullmesh on a signal endpoint: %v, want genl.ErrInvalid", err)
	}
	if len(k.writes) != 0 {
		t.Errorf("refused changes were sent: %v", k.writes)
	}

	// The policy leaves the flags set on request alone.
	if res, err := r.Reconcile(parseConfig(t, twoRules), h.st); err != nil || res.Changes() != 0 {
		t.Errorf("reconcile: %d changes, %v", res.Changes(), err)
	}
	want := []string{"192.0.2.10 subflow", "198.51.100.5 subflow,fullmesh", "198.51.100.6 signal", "203.0.113.1 subflow,backup"}
	if got := k.addrs(); !slices.Equal(got, want) {
		t.Errorf("kernel %v, want %v", got, want)
	}
}

func TestFlushManual(t *testing.T) {
	k, r, store, h, policy, manual, foreign := threeOwners(t)
	second := mustAdd(t, r, genl.Endpoint{Addr: addr("2001:db8::5"), Flags: genl.FlagSubflow})

	removed, err := r.FlushManual()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint8
	for _, ep := range removed {
		ids = append(ids, ep.ID)
	}
	slices.Sort(ids)
	want := []uint8{manual, second.ID, foreign}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("removed IDs %v, want %v", ids, want)
	}
	if len(k.eps) != 1 || k.eps[0].ID != policy {
		t.Errorf("kernel %v, want only the policy's endpoint %d", k.eps, policy)
	}
	if got, want := records(t, store), []string{"192.0.2.10 rule=wifi"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	if removed, err := r.FlushManual(); err != nil || len(removed) != 0 {
		t.Errorf("second flush: %v, %v; want nothing removed", removed, err)
	}
	if res, err := r.Reconcile(parseConfig(t, twoRules), h.st); err != nil || res.Changes() != 0 {
		t.Errorf("reconcile after flush: %d changes, %v", res.Changes(), err)
	}
}

func TestReleaseRemovesManual(t *testing.T) {
	k, r, store, _, _, _, foreign := threeOwners(t)
	if err := r.Release(false, false); err != nil {
		t.Fatal(err)
	}
	if len(k.eps) != 1 || k.eps[0].ID != foreign {
		t.Errorf("kernel after release: %v, want only the foreign endpoint", k.eps)
	}
	if got := records(t, store); len(got) != 0 {
		t.Errorf("records after release: %v", got)
	}
}

// TestManualSurvivesRestart: a new reconciler over the same records knows
// the endpoint was added on request.
func TestManualSurvivesRestart(t *testing.T) {
	k := newFakeKernel()
	r, store := newTestReconciler(t, k)
	m := mustAdd(t, r, genl.Endpoint{Addr: addr("192.0.2.10"), Flags: genl.FlagSignal})

	r2 := NewReconciler(k, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got, want := owners(t, r2), []string{"192.0.2.10 api"}; !slices.Equal(got, want) {
		t.Errorf("after restart: %v, want %v", got, want)
	}
	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24")
	res, err := r2.Reconcile(parseConfig(t, twoRules), h.st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 0 || !slices.Equal(res.Manual, []genl.Endpoint{m}) || len(k.eps) != 1 {
		t.Errorf("after restart: %d changes, manual %v, kernel %v; want the manual endpoint alone", res.Changes(), res.Manual, k.eps)
	}
	if _, err := r2.DeleteManual(m.ID); err != nil {
		t.Errorf("DeleteManual after restart: %v", err)
	}
}

// TestOnChangeReports: every change, by the policy or on request, is
// reported once with its reason; refused requests and no-ops report
// nothing.
func TestOnChangeReports(t *testing.T) {
	k := newFakeKernel()
	k.eps = []genl.Endpoint{{ID: 50, Addr: addr("203.0.113.1"), Flags: genl.FlagSubflow}}
	r, _ := newTestReconciler(t, k)
	var got []Change
	r.OnChange(func(c Change) { got = append(got, c) })
	take := func() []Change {
		c := got
		got = nil
		return c
	}

	h := newHost().link(2, "wlan0", netmon.KindPhysical, "192.0.2.10/24").link(3, "wwan0", netmon.KindWWAN, "198.51.100.7/24")
	res, err := r.Reconcile(parseConfig(t, twoRules), h.st)
	if err != nil {
		t.Fatal(err)
	}
	changes := take()
	if !slices.Equal(changes, res.Made) || len(changes) != 3 {
		t.Errorf("reported %+v, want the run's 3 changes %+v", changes, res.Made)
	}
	for _, c := range changes {
		if c.Reason == "" || c.Manual {
			t.Errorf("policy change %+v has no reason or is marked manual", c)
		}
		if c.Action == ActionAdd && (c.Rule == "" || c.Interface == "") {
			t.Errorf("add %+v does not say its rule and interface", c)
		}
	}

	yes := true
	m := mustAdd(t, r, genl.Endpoint{Addr: addr("192.0.2.99"), Flags: genl.FlagSubflow})
	if _, err := r.SetManualFlags(m.ID, &yes, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetManualFlags(m.ID, &yes, nil); err != nil { // no change
		t.Fatal(err)
	}
	if _, err := r.DeleteManual(res.Added[0].ID); !errors.Is(err, ErrOwnedByPolicy) {
		t.Fatal(err)
	}
	if _, err := r.DeleteManual(50); err != nil {
		t.Fatal(err)
	}
	if _, err := r.FlushManual(); err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Action: ActionAdd, Endpoint: m, Manual: true, Reason: "API request"},
		{Action: ActionUpdate, Endpoint: genl.Endpoint{ID: m.ID, Addr: m.Addr, Flags: genl.FlagSubflow | genl.FlagBackup}, From: genl.FlagSubflow, Manual: true, Reason: "API request"},
		{Action: ActionRemove, Endpoint: genl.Endpoint{ID: 50, Addr: addr("203.0.113.1"), Flags: genl.FlagSubflow}, Manual: true, Reason: "API request (an endpoint mptcpd did not add)"},
		{Action: ActionRemove, Endpoint: genl.Endpoint{ID: m.ID, Addr: m.Addr, Flags: genl.FlagSubflow | genl.FlagBackup}, Manual: true, Reason: "API request: flush"},
	}
	if changes := take(); !slices.Equal(changes, want) {
		t.Errorf("reported %+v,\nwant %+v", changes, want)
	}
}
