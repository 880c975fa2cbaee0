package tests

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestEndpointLifecycle drives the in-kernel path manager's endpoints and
// limits through the client and checks every step against what
// `ip mptcp` reads back from the kernel.
func TestEndpointLifecycle(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	path := bed.Connect(a, b)
	c := newClient(t, a)

	// A namespace starts with no endpoints.
	if eps, err := c.Endpoints(); err != nil || len(eps) != 0 {
		t.Fatalf("Endpoints() on a new namespace = %v, %v; want none", eps, err)
	}

	// Add without ID or flags: the kernel picks ID 1.
	plain, err := c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.100")})
	if err != nil {
		t.Fatalf("AddEndpoint(plain): %v", err)
	}
	if plain.ID != 1 || plain.Flags != 0 || plain.Port != 0 {
		t.Errorf("AddEndpoint(plain) = %v, want id 1 without flags or port", plain)
	}
	// With ID, flags, port and device.
	full, err := c.AddEndpoint(genl.Endpoint{
		ID: 10, Addr: path.A4, Port: 8080, Flags: genl.FlagSignal | genl.FlagBackup, IfIndex: int32(path.AIndex),
	})
	if err != nil {
		t.Fatalf("AddEndpoint(full): %v", err)
	}
	wantFull := genl.Endpoint{ID: 10, Addr: path.A4, Port: 8080, Flags: genl.FlagSignal | genl.FlagBackup, IfIndex: int32(path.AIndex)}
	if full != wantFull {
		t.Errorf("AddEndpoint(full) = %v, want %v", full, wantFull)
	}
	// IPv6, subflow + fullmesh, auto ID: next after the highest in use.
	v6, err := c.AddEndpoint(genl.Endpoint{Addr: path.A6, Flags: genl.FlagSubflow | genl.FlagFullmesh})
	if err != nil {
		t.Fatalf("AddEndpoint(v6): %v", err)
	}
	if v6.ID != 11 {
		t.Errorf("AddEndpoint(v6) got ID %d, want 11 (the next after the highest used)", v6.ID)
	}

	checkAgainstIP := func(step string) {
		t.Helper()
		got, err := c.Endpoints()
		if err != nil {
			t.Fatalf("%s: Endpoints(): %v", step, err)
		}
		var fromClient []ipEndpoint
		for _, ep := range got {
			dev := ""
			if ep.IfIndex == int32(path.AIndex) {
				dev = path.AIf
			} else if ep.IfIndex != 0 {
				dev = fmt.Sprint("ifindex ", ep.IfIndex)
			}
			fromClient = append(fromClient, ipEndpoint{ID: ep.ID, Addr: ep.Addr, Port: ep.Port, Flags: ep.Flags, Dev: dev})
		}
		slices.SortFunc(fromClient, func(a, b ipEndpoint) int { return int(a.ID) - int(b.ID) })
		if diff := cmp.Diff(ipEndpoints(t, a), fromClient, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Fatalf("%s: client and `ip mptcp endpoint show` disagree (-ip +client):\n%s", step, diff)
		}
	}
	checkAgainstIP("after add")

	// Get one.
	if got, err := c.Endpoint(10); err != nil || got != wantFull {
		t.Errorf("Endpoint(10) = %v, %v; want %v", got, err, wantFull)
	}

	// Change flags by ID, then by address.
	if err := c.SetEndpointFlags(11, genl.FlagBackup); err != nil {
		t.Fatalf("SetEndpointFlags(11, backup): %v", err)
	}
	if got, _ := c.Endpoint(11); got.Flags != genl.FlagSubflow|genl.FlagBackup {
		t.Errorf("after SetEndpointFlags(11, backup) flags = %v, want subflow,backup (fullmesh cleared)", got.Flags)
	}
	if err := c.SetEndpointFlagsByAddr(netip.AddrPortFrom(path.A4, 8080), 0); err != nil {
		t.Fatalf("SetEndpointFlagsByAddr(%s:8080, none): %v", path.A4, err)
	}
	if got, _ := c.Endpoint(10); got.Flags != genl.FlagSignal {
		t.Errorf("after clearing backup by address, flags = %v, want signal", got.Flags)
	}
	checkAgainstIP("after set flags")

	// Duplicates and conflicts.
	_, err = c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.100")})
	wantErr(t, "adding an existing address", err, genl.ErrExists)
	_, err = c.AddEndpoint(genl.Endpoint{ID: 10, Addr: netip.MustParseAddr("192.0.2.101")})
	wantErr(t, "adding with an ID in use", err, genl.ErrIDInUse)
	_, err = c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.102"), Port: 9000, Flags: genl.FlagSubflow})
	wantErr(t, "port without signal", err, genl.ErrInvalid)
	_, err = c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.103"), Flags: genl.FlagSignal | genl.FlagFullmesh})
	wantErr(t, "signal with fullmesh", err, genl.ErrInvalid)
	checkAgainstIP("after refused adds")

	// Missing IDs.
	_, err = c.Endpoint(99)
	wantErr(t, "get missing", err, genl.ErrNotFound)
	wantErr(t, "delete missing", c.DeleteEndpoint(99), genl.ErrNotFound)
	wantErr(t, "set flags on missing", c.SetEndpointFlags(99, genl.FlagBackup), genl.ErrNotFound)

	// Delete one.
	if err := c.DeleteEndpoint(1); err != nil {
		t.Fatalf("DeleteEndpoint(1): %v", err)
	}
	_, err = c.Endpoint(1)
	wantErr(t, "get deleted", err, genl.ErrNotFound)
	checkAgainstIP("after delete")

	// The 8-endpoint limit: fill up, the 9th is refused.
	eps, _ := c.Endpoints()
	for i := len(eps); i < 8; i++ {
		if _, err := c.AddEndpoint(genl.Endpoint{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}), Flags: genl.FlagSubflow}); err != nil {
			t.Fatalf("adding endpoint %d of 8: %v", i+1, err)
		}
	}
	_, err = c.AddEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("198.51.100.99")})
	wantErr(t, "9th endpoint", err, genl.ErrLimit)
	if n := len(ipEndpoints(t, a)); n != 8 {
		t.Errorf("ip mptcp endpoint show lists %d endpoints after the refused 9th, want 8", n)
	}

	// Flush.
	if err := c.FlushEndpoints(); err != nil {
		t.Fatalf("FlushEndpoints: %v", err)
	}
	if n := len(ipEndpoints(t, a)); n != 0 {
		t.Errorf("ip mptcp endpoint show lists %d endpoints after flush, want 0", n)
	}

	// Limits and their bounds.
	if got, err := c.Limits(); err != nil || got != ipLimits(t, a) {
		t.Errorf("Limits() = %v, %v; ip mptcp limits show says %v", got, err, ipLimits(t, a))
	}
	for _, l := range []genl.Limits{{AddAddrAccepted: 0, Subflows: 0}, {AddAddrAccepted: 8, Subflows: 8}, {AddAddrAccepted: 2, Subflows: 5}} {
		if err := c.SetLimits(l); err != nil {
			t.Fatalf("SetLimits(%v): %v", l, err)
		}
		if got := ipLimits(t, a); got != l {
			t.Errorf("after SetLimits(%v), ip mptcp limits show says %v", l, got)
		}
	}
	for _, l := range []genl.Limits{{AddAddrAccepted: 9, Subflows: 1}, {AddAddrAccepted: 1, Subflows: 9}, {AddAddrAccepted: 1 << 31}} {
		wantErr(t, fmt.Sprintf("SetLimits(%v)", l), c.SetLimits(l), genl.ErrLimit, genl.ErrInvalid)
		if got := ipLimits(t, a); got != (genl.Limits{AddAddrAccepted: 2, Subflows: 5}) {
			t.Errorf("refused SetLimits(%v) changed the limits to %v", l, got)
		}
	}
}

// TestSetLimitsAndCreateEndpoint: the limits and the endpoint, sent back to
// back, both reach the kernel, in order; each refusal is reported, and the
// other request still takes effect.
func TestSetLimitsAndCreateEndpoint(t *testing.T) {
	t.Parallel()
	forEachRequestPath(t, testSetLimitsAndCreateEndpoint)
}

func testSetLimitsAndCreateEndpoint(t *testing.T, opts ...genl.Option) {
	bed := testbed.New(t)
	a := bed.Host("a")
	c := newClient(t, a, opts...)

	ep := genl.Endpoint{ID: 7, Addr: netip.MustParseAddr("192.0.2.70"), Flags: genl.FlagSubflow}
	if limitsErr, createErr := c.SetLimitsAndCreateEndpoint(genl.Limits{AddAddrAccepted: 1, Subflows: 5}, ep); limitsErr != nil || createErr != nil {
		t.Fatalf("SetLimitsAndCreateEndpoint: %v, %v", limitsErr, createErr)
	}
	if got := ipLimits(t, a); got != (genl.Limits{AddAddrAccepted: 1, Subflows: 5}) {
		t.Errorf("limits = %v, want add_addr_accepted 1 subflows 5", got)
	}
	if got, err := c.Endpoint(7); err != nil || got != ep {
		t.Errorf("Endpoint(7) = %v, %v; want %v", got, err, ep)
	}

	// The ID is taken: the add is refused, the limits still set.
	limitsErr, createErr := c.SetLimitsAndCreateEndpoint(genl.Limits{AddAddrAccepted: 2, Subflows: 6},
		genl.Endpoint{ID: 7, Addr: netip.MustParseAddr("192.0.2.71"), Flags: genl.FlagSubflow})
	if limitsErr != nil {
		t.Errorf("limits refused: %v", limitsErr)
	}
	wantErr(t, "create with an ID in use", createErr, genl.ErrIDInUse)
	if got := ipLimits(t, a); got != (genl.Limits{AddAddrAccepted: 2, Subflows: 6}) {
		t.Errorf("limits = %v after a refused add, want add_addr_accepted 2 subflows 6", got)
	}
	// Limits out of bounds: refused, the endpoint added all the same.
	limitsErr, createErr = c.SetLimitsAndCreateEndpoint(genl.Limits{Subflows: 9},
		genl.Endpoint{ID: 8, Addr: netip.MustParseAddr("192.0.2.72"), Flags: genl.FlagSubflow})
	wantErr(t, "limits above the maximum", limitsErr, genl.ErrLimit, genl.ErrInvalid)
	if limitsErr != nil && !strings.Contains(limitsErr.Error(), "(kernel: ") {
		t.Errorf("limits refused with %q, want the kernel's own words (its extended acknowledgement) in it", limitsErr)
	}
	if createErr != nil {
		t.Errorf("create refused: %v", createErr)
	}
	if _, err := c.Endpoint(8); err != nil {
		t.Errorf("Endpoint(8) after refused limits: %v, want the endpoint added", err)
	}
	// The client still pairs requests and answers.
	if eps, err := c.Endpoints(); err != nil || len(eps) != 2 {
		t.Errorf("Endpoints() = %v, %v; want two", eps, err)
	}
}

// TestCreateEndpoint: an endpoint created with the ID the caller chose is in
// the kernel as given; an ID in use and an address already an endpoint are
// refused with their errors and change nothing; ID 0 is refused before
// anything is sent; the client still pairs requests and answers after.
func TestCreateEndpoint(t *testing.T) {
	t.Parallel()
	forEachRequestPath(t, testCreateEndpoint)
}

func testCreateEndpoint(t *testing.T, opts ...genl.Option) {
	bed := testbed.New(t)
	a := bed.Host("a")
	c := newClient(t, a, opts...)

	ep := genl.Endpoint{ID: 9, Addr: netip.MustParseAddr("2001:db8::90"), Flags: genl.FlagSignal | genl.FlagBackup}
	if err := c.CreateEndpoint(ep); err != nil {
		t.Fatalf("CreateEndpoint(%v): %v", ep, err)
	}
	if got, err := c.Endpoint(9); err != nil || got != ep {
		t.Errorf("Endpoint(9) = %v, %v; want %v", got, err, ep)
	}
	wantErr(t, "create with an ID in use", c.CreateEndpoint(genl.Endpoint{ID: 9, Addr: netip.MustParseAddr("192.0.2.91"), Flags: genl.FlagSubflow}), genl.ErrIDInUse)
	wantErr(t, "create of an address already an endpoint", c.CreateEndpoint(genl.Endpoint{ID: 10, Addr: ep.Addr, Flags: genl.FlagSubflow}), genl.ErrExists)
	wantErr(t, "create with ID 0", c.CreateEndpoint(genl.Endpoint{Addr: netip.MustParseAddr("192.0.2.92"), Flags: genl.FlagSubflow}), genl.ErrInvalid)
	if got := ipEndpoints(t, a); len(got) != 1 || got[0].ID != 9 {
		t.Errorf("after the refused creates, ip mptcp endpoint show: %v, want only id 9", got)
	}
	if eps, err := c.Endpoints(); err != nil || len(eps) != 1 || eps[0] != ep {
		t.Errorf("Endpoints() = %v, %v; want [%v]", eps, err, ep)
	}
}
