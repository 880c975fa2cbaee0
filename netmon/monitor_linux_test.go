package netmon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestConstants checks this package's copies of the kernel's numbers,
// which it keeps so that it builds on every OS.
func TestConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"AF_INET", afInet, unix.AF_INET},
		{"AF_INET6", afInet6, unix.AF_INET6},
		{"ARPHRD_ETHER", arphrdEther, unix.ARPHRD_ETHER},
		{"ARPHRD_EETHER", arphrdEEther, unix.ARPHRD_EETHER},
		{"ARPHRD_IEEE802", arphrdIEEE802, unix.ARPHRD_IEEE802},
		{"ARPHRD_INFINIBAND", arphrdInfiniband, unix.ARPHRD_INFINIBAND},
		{"ARPHRD_RAWIP", arphrdRawIP, 519}, // not in x/sys/unix
		{"ARPHRD_LOOPBACK", arphrdLoopback, unix.ARPHRD_LOOPBACK},
		{"ARPHRD_IEEE80211", arphrdIEEE80211, unix.ARPHRD_IEEE80211},
		{"ARPHRD_IEEE80211_PRISM", arphrdIEEE80211Prism, unix.ARPHRD_IEEE80211_PRISM},
		{"ARPHRD_IEEE80211_RADIOTAP", arphrdIEEE80211Radiotap, unix.ARPHRD_IEEE80211_RADIOTAP},
		{"ARPHRD_NONE", arphrdNone, unix.ARPHRD_NONE},
		{"IFF_UP", iffUp, unix.IFF_UP},
		{"IFF_RUNNING", iffRunning, unix.IFF_RUNNING},
		{"IFF_LOWER_UP", iffLowerUp, unix.IFF_LOWER_UP},
		{"IFA_F_TEMPORARY", ifaFTemporary, unix.IFA_F_TEMPORARY},
		{"IFA_F_DEPRECATED", ifaFDeprecated, unix.IFA_F_DEPRECATED},
		{"IFA_F_TENTATIVE", ifaFTentative, unix.IFA_F_TENTATIVE},
		{"IFA_F_PERMANENT", ifaFPermanent, unix.IFA_F_PERMANENT},
		{"RTM_NEWLINK", rtmNewLink, unix.RTM_NEWLINK},
		{"RTM_DELLINK", rtmDelLink, unix.RTM_DELLINK},
		{"RTM_NEWADDR", rtmNewAddr, unix.RTM_NEWADDR},
		{"RTM_DELADDR", rtmDelAddr, unix.RTM_DELADDR},
		{"RTM_NEWROUTE", rtmNewRoute, unix.RTM_NEWROUTE},
		{"RTM_DELROUTE", rtmDelRoute, unix.RTM_DELROUTE},
		{"RTN_UNICAST", rtnUnicast, unix.RTN_UNICAST},
		{"RTM_F_CLONED", rtmFCloned, unix.RTM_F_CLONED},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// watch opens a Monitor on the host and runs it until the test ends.
func watch(t *testing.T, h *testbed.Host, opts ...Option) *Monitor {
	t.Helper()
	m, err := New(append([]Option{WithNetNS(h.FD())}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runc := make(chan error, 1)
	go func() { runc <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of its context ending")
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// settle drains Changes until none has come for quiet, so that the next
// wake-up is caused by what the test does next.
func settle(t *testing.T, m *Monitor, quiet time.Duration) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-m.Changes():
		case <-time.After(quiet):
			return
		case <-deadline:
			t.Fatal("changes kept coming for 10s")
		}
	}
}

// changed waits for a wake-up and returns the State read after it.
func changed(t *testing.T, m *Monitor) State {
	t.Helper()
	select {
	case <-m.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled within 5s")
	}
	s, err := m.State()
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	return s
}

// until reads State after each wake-up until cond holds, for at most
// timeout, and returns the State that satisfied it.
func until(t *testing.T, m *Monitor, timeout time.Duration, what string, cond func(State) bool) State {
	t.Helper()
	s, err := m.State()
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	deadline := time.After(timeout)
	for !cond(s) {
		select {
		case <-m.Changes():
		case <-deadline:
			t.Fatalf("%s: not seen within %s; last state %+v", what, timeout, s)
		}
		if s, err = m.State(); err != nil {
			t.Fatalf("State: %v", err)
		}
	}
	return s
}

func findAddr(s State, index int, prefix netip.Prefix) (Addr, bool) {
	for _, a := range s.Addrs {
		if a.Index == index && a.Prefix == prefix {
			return a, true
		}
	}
	return Addr{}, false
}

func TestStateVeth(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	m, err := New(WithNetNS(a.FD()))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer m.Close()

	// Both ends are up; the kernel reports carrier a little later.
	s := until(t, m, 5*time.Second, "veth running", func(s State) bool { return s.Links[p.AIndex].Running })
	want := Link{Index: p.AIndex, Name: p.AIf, Kind: KindVeth, Up: true, Running: true}
	if got := s.Links[p.AIndex]; got != want {
		t.Errorf("State().Links[%d] = %+v, want %+v", p.AIndex, got, want)
	}
	lo := s.Links[1]
	if lo.Name != "lo" || lo.Kind != KindLoopback || !lo.Up {
		t.Errorf("State().Links[1] = %+v, want lo, loopback, up", lo)
	}
	if len(s.Links) != 2 {
		t.Errorf("State().Links = %+v, want lo and %s only", s.Links, p.AIf)
	}
	for _, prefix := range []netip.Prefix{netip.PrefixFrom(p.A4, 28), netip.PrefixFrom(p.A6, 64)} {
		got, ok := findAddr(s, p.AIndex, prefix)
		if !ok {
			t.Errorf("State().Addrs = %+v, want %s on %s", s.Addrs, prefix, p.AIf)
			continue
		}
		if !got.Permanent || got.Tentative || got.Temporary || got.Deprecated || got.Scope != 0 {
			t.Errorf("address %+v: want permanent, global, not tentative", got)
		}
	}
	if _, ok := findAddr(s, 1, netip.MustParsePrefix("127.0.0.1/8")); !ok {
		t.Errorf("State().Addrs = %+v, want 127.0.0.1/8 on lo", s.Addrs)
	}
	if s.HasRoute(p.AIndex) {
		t.Errorf("HasRoute(%s) = true with only connected routes: %+v", p.AIf, s.Routes)
	}
	connected := Route{Dst: netip.PrefixFrom(p.A4, 28).Masked(), Index: p.AIndex, Table: unix.RT_TABLE_MAIN}
	found := false
	for _, r := range s.Routes {
		found = found || r == connected
	}
	if !found {
		t.Errorf("State().Routes = %+v, want %+v", s.Routes, connected)
	}
}

func TestChanges(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	m := watch(t, a)
	until(t, m, 5*time.Second, "veth running", func(s State) bool { return s.Links[p.AIndex].Running })
	settle(t, m, 300*time.Millisecond)

	added := netip.MustParsePrefix("203.0.113.5/24")
	t.Run("address added", func(t *testing.T) {
		a.MustIP("addr", "add", added.String(), "dev", p.AIf)
		s := changed(t, m)
		got, ok := findAddr(s, p.AIndex, added)
		if !ok {
			t.Fatalf("State after adding %s: %+v", added, s.Addrs)
		}
		if !got.Permanent || got.Tentative {
			t.Errorf("added address %+v: want permanent, not tentative", got)
		}
	})
	settle(t, m, 200*time.Millisecond)

	t.Run("address deleted", func(t *testing.T) {
		a.MustIP("addr", "del", added.String(), "dev", p.AIf)
		s := changed(t, m)
		if _, ok := findAddr(s, p.AIndex, added); ok {
			t.Errorf("State after deleting %s still has it: %+v", added, s.Addrs)
		}
	})
	settle(t, m, 200*time.Millisecond)

	t.Run("default route", func(t *testing.T) {
		a.MustIP("route", "add", "default", "via", p.B4.String(), "dev", p.AIf)
		s := changed(t, m)
		if !s.HasRoute(p.AIndex) {
			t.Errorf("HasRoute(%s) = false after adding a default route: %+v", p.AIf, s.Routes)
		}
		a.MustIP("route", "del", "default")
		s = changed(t, m)
		if s.HasRoute(p.AIndex) {
			t.Errorf("HasRoute(%s) = true after deleting the default route: %+v", p.AIf, s.Routes)
		}
		// IPv6, in another table.
		a.MustIP("-6", "route", "add", "default", "via", p.B6.String(), "dev", p.AIf, "table", "100")
		s = changed(t, m)
		if !s.HasRoute(p.AIndex) {
			t.Errorf("HasRoute(%s) = false after adding an IPv6 default route in table 100: %+v", p.AIf, s.Routes)
		}
		want := Route{Dst: netip.MustParsePrefix("::/0"), Index: p.AIndex, Table: 100}
		found := false
		for _, r := range s.Routes {
			found = found || r == want
		}
		if !found {
			t.Errorf("State().Routes = %+v, want %+v", s.Routes, want)
		}
	})
	settle(t, m, 200*time.Millisecond)

	t.Run("link down and up", func(t *testing.T) {
		a.MustIP("link", "set", p.AIf, "down")
		s := changed(t, m)
		if l := s.Links[p.AIndex]; l.Up || l.Running {
			t.Errorf("after `ip link set %s down`: %+v, want neither up nor running", p.AIf, l)
		}
		a.MustIP("link", "set", p.AIf, "up")
		until(t, m, 5*time.Second, "veth running again", func(s State) bool {
			l := s.Links[p.AIndex]
			return l.Up && l.Running
		})
	})
	settle(t, m, 200*time.Millisecond)

	t.Run("peer down clears carrier", func(t *testing.T) {
		b.MustIP("link", "set", p.BIf, "down")
		s := until(t, m, 5*time.Second, "carrier lost", func(s State) bool { return !s.Links[p.AIndex].Running })
		if !s.Links[p.AIndex].Up {
			t.Errorf("after the peer went down: %+v, want still administratively up", s.Links[p.AIndex])
		}
	})
}

// TestTentative adds an IPv6 address with duplicate-address detection on
// (three probes a second apart) and sees it tentative, then usable.
func TestTentative(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	for key, value := range map[string]string{"accept_dad": "1", "dad_transmits": "3"} {
		if err := a.WriteSysctl(filepath.Join("net/ipv6/conf", p.AIf, key), value); err != nil {
			t.Fatal(err)
		}
	}
	m := watch(t, a)
	settle(t, m, 200*time.Millisecond)

	prefix := netip.MustParsePrefix("2001:db8:0:ff::5/64")
	start := time.Now()
	a.MustIP("addr", "add", prefix.String(), "dev", p.AIf)
	s := changed(t, m)
	got, ok := findAddr(s, p.AIndex, prefix)
	if !ok {
		t.Fatalf("State after adding %s: %+v", prefix, s.Addrs)
	}
	if !got.Tentative {
		t.Errorf("%s read %s after it was added: %+v, want tentative (DAD takes 3s)", prefix, time.Since(start), got)
	}
	s = until(t, m, 10*time.Second, "DAD done", func(s State) bool {
		a, ok := findAddr(s, p.AIndex, prefix)
		return ok && !a.Tentative
	})
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("DAD finished after %s, want about 3s", d)
	}
}

func TestBurst(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	const debounce = 50 * time.Millisecond
	m := watch(t, a, WithDebounce(debounce))
	until(t, m, 5*time.Second, "veth running", func(s State) bool { return s.Links[p.AIndex].Running })
	settle(t, m, 300*time.Millisecond)

	var batch strings.Builder
	var want []netip.Prefix
	for i := range 50 {
		prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)}), 24)
		want = append(want, prefix)
		fmt.Fprintf(&batch, "addr add %s dev %s\n", prefix, p.AIf)
	}
	file := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a.MustIP("-batch", file)
	took := time.Since(start)

	// Count the wake-ups until none has come for half a second, taking
	// each at once (reading State in between would coalesce them too).
	var wakeups int
	for quiet := false; !quiet; {
		select {
		case <-m.Changes():
			wakeups++
		case <-time.After(500 * time.Millisecond):
			quiet = true
		}
	}
	s, err := m.State()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("50 addresses added in %s: %d wake-ups", took, wakeups)
	if wakeups == 0 || wakeups > 10 {
		t.Errorf("50 address adds gave %d wake-ups, want 1 to 10", wakeups)
	}
	// The notifications came while `ip` ran (and the pump may lag a
	// little): one wake-up per debounce interval of that, and no more.
	if limit := 2 + int((took+100*time.Millisecond)/debounce); wakeups > limit {
		t.Errorf("50 address adds in %s gave %d wake-ups, want at most %d with a %s debounce", took, wakeups, limit, debounce)
	}
	for _, prefix := range want {
		got, ok := findAddr(s, p.AIndex, prefix)
		if !ok {
			t.Errorf("final State lacks %s", prefix)
		} else if got.Temporary {
			t.Errorf("%+v: an IPv4 secondary address reported temporary", got)
		}
	}
}

// TestStateUnderChurn reads State while a thousand addresses are added:
// every read is whole or fails with ErrDumpInterrupted, never torn.
func TestStateUnderChurn(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	m, err := New(WithNetNS(a.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 1000
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "addr add 2001:db8:0:dd::%x/64 dev %s nodad\n", i+1, p.AIf)
	}
	file := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.IP("-batch", file)
		done <- err
	}()
	var reads, interrupted int
	for churning := true; churning; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			churning = false
		default:
		}
		s, err := m.State()
		reads++
		switch {
		case errors.Is(err, ErrDumpInterrupted):
			interrupted++
			continue
		case err != nil:
			t.Fatalf("State while addresses were added: %v", err)
		}
		// Whatever else is being added, what was there stays there.
		if _, ok := s.Links[p.AIndex]; !ok {
			t.Fatalf("State while addresses were added lacks %s", p.AIf)
		}
		if _, ok := findAddr(s, p.AIndex, netip.PrefixFrom(p.A4, 28)); !ok {
			t.Fatalf("State while addresses were added lacks %s", p.A4)
		}
	}
	t.Logf("%d reads during the churn, %d gave ErrDumpInterrupted", reads, interrupted)
	s, err := m.State()
	if err != nil {
		t.Fatal(err)
	}
	var added int
	for _, a := range s.Addrs {
		if a.Index == p.AIndex && strings.HasPrefix(a.Prefix.String(), "2001:db8:0:dd::") {
			added++
		}
	}
	if added != n {
		t.Errorf("State after the churn has %d of the %d addresses added", added, n)
	}
}

// TestEventsLost overflows the notification socket's buffer before Run
// reads it: Run must signal a change and go on.
func TestEventsLost(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	m, err := New(WithNetNS(a.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The kernel's minimum.
	if err := unix.SetsockoptInt(m.src.(*events).r.FD(), unix.SOL_SOCKET, unix.SO_RCVBUF, 0); err != nil {
		t.Fatal(err)
	}
	rec := &lossRecorder{eventSource: m.src}
	m.src = rec
	var batch strings.Builder
	for i := range 200 {
		fmt.Fprintf(&batch, "addr add 2001:db8:0:ee::%x/64 dev %s nodad\n", i+1, p.AIf)
	}
	file := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	a.MustIP("-batch", file)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runc := make(chan error, 1)
	go func() { runc <- m.Run(ctx) }()
	s := changed(t, m)
	if _, ok := findAddr(s, p.AIndex, netip.MustParsePrefix("2001:db8:0:ee::c8/64")); !ok {
		t.Errorf("State after the overflow lacks the last address added")
	}
	settle(t, m, 200*time.Millisecond)
	// Still watching.
	a.MustIP("addr", "add", "198.51.100.77/24", "dev", p.AIf)
	s = changed(t, m)
	if _, ok := findAddr(s, p.AIndex, netip.MustParsePrefix("198.51.100.77/24")); !ok {
		t.Errorf("State after the overflow and another add lacks it: %+v", s.Addrs)
	}
	select {
	case err := <-runc:
		t.Fatalf("Run returned %v after losing notifications, want it to go on", err)
	default:
	}
	if !rec.lost.Load() {
		t.Error("the kernel reported no lost notifications (ENOBUFS): the test did not test it")
	}
}

// lossRecorder notes whether its source reported lost notifications.
type lossRecorder struct {
	eventSource
	lost atomic.Bool
}

func (r *lossRecorder) next() (batch, error) {
	b, err := r.eventSource.next()
	if errors.Is(err, errEventsLost) && errors.Is(err, unix.ENOBUFS) {
		r.lost.Store(true)
	}
	return b, err
}

func TestKinds(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	want := map[string]Kind{"lo": KindLoopback, p.AIf: KindVeth}
	parents := map[string]string{}
	for _, c := range []struct {
		name   string
		kind   Kind
		parent string
		args   []string
	}{
		{"br0", KindBridge, "", []string{"link", "add", "br0", "type", "bridge"}},
		{"mv0", KindMACVLAN, p.AIf, []string{"link", "add", "link", p.AIf, "name", "mv0", "type", "macvlan"}},
		{"iv0", KindIPVLAN, p.AIf, []string{"link", "add", "link", p.AIf, "name", "iv0", "type", "ipvlan"}},
		{"vl5", KindVLAN, p.AIf, []string{"link", "add", "link", p.AIf, "name", "vl5", "type", "vlan", "id", "5"}},
		{"vx0", KindVXLAN, "", []string{"link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", p.A4.String()}},
		{"dm0", KindDummy, "", []string{"link", "add", "dm0", "type", "dummy"}},
		{"bond0", KindBond, "", []string{"link", "add", "bond0", "type", "bond"}},
		{"wg0", KindWireGuard, "", []string{"link", "add", "wg0", "type", "wireguard"}},
		{"tun0", KindTun, "", []string{"tuntap", "add", "mode", "tun", "name", "tun0"}},
		{"tap0", KindTun, "", []string{"tuntap", "add", "mode", "tap", "name", "tap0"}},
		{"ifb0", KindOther, "", []string{"link", "add", "ifb0", "type", "ifb"}},
	} {
		if _, err := a.IP(c.args...); err != nil {
			t.Logf("skipping %s: %v", c.kind, err) // the kernel lacks the driver
			continue
		}
		want[c.name] = c.kind
		if c.parent != "" {
			parents[c.name] = c.parent
		}
	}
	m, err := New(WithNetNS(a.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.State()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Link{}
	for _, l := range s.Links {
		byName[l.Name] = l
	}
	for name, kind := range want {
		l, ok := byName[name]
		if !ok {
			t.Errorf("State().Links lacks %s: %+v", name, s.Links)
			continue
		}
		if l.Kind != kind {
			t.Errorf("%s: kind %q, want %q", name, l.Kind, kind)
		}
		wantParent := 0
		if parent, ok := parents[name]; ok {
			wantParent = byName[parent].Index
		}
		if l.ParentIndex != wantParent {
			t.Errorf("%s: parent index %d, want %d", name, l.ParentIndex, wantParent)
		}
	}
}

func TestRunStops(t *testing.T) {
	bed := testbed.New(t)
	a := bed.Host("a")
	m, err := New(WithNetNS(a.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	runc := make(chan error, 1)
	go func() { runc <- m.Run(ctx) }()
	// Wait for the pump to block in its read.
	if err := testbed.WaitFor(5*time.Second, func() (bool, error) { return pumpRunning(), nil }); err != nil {
		t.Fatalf("the pump did not start: %v", err)
	}
	a.MustIP("addr", "add", "192.0.2.200/24", "dev", "lo")
	time.Sleep(10 * time.Millisecond) // a debounce is pending
	start := time.Now()
	cancel()
	wantRunStopped(t, start, runc)
	if err := m.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := m.State(); !errors.Is(err, ErrClosed) {
		t.Errorf("State after Close = %v, want ErrClosed", err)
	}
}

// TestCloseStopsRun closes a running Monitor: Run returns nil and Close
// returns only after it.
func TestCloseStopsRun(t *testing.T) {
	bed := testbed.New(t)
	a := bed.Host("a")
	m, err := New(WithNetNS(a.FD()))
	if err != nil {
		t.Fatal(err)
	}
	runc := make(chan error, 1)
	go func() { runc <- m.Run(context.Background()) }()
	if err := testbed.WaitFor(5*time.Second, func() (bool, error) { return pumpRunning(), nil }); err != nil {
		t.Fatalf("the pump did not start: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	select {
	case err := <-runc:
		if err != nil {
			t.Errorf("Run = %v after Close, want nil", err)
		}
	default:
		t.Fatal("Close returned before Run did")
	}
	if pumpRunning() {
		t.Error("the pump goroutine outlived Close")
	}
}

func TestNewBadNamespace(t *testing.T) {
	testbed.Require(t)
	f, err := os.Open("/proc/self/stat") // not a namespace
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m, err := New(WithNetNS(int(f.Fd()))); err == nil {
		_ = m.Close()
		t.Fatal("New(WithNetNS(non-namespace fd)) succeeded")
	}
}

// TestWithoutRoutes: a Monitor told not to mind routes reads none and is
// not woken by a route change, but still by an address change.
func TestWithoutRoutes(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	m := watch(t, a, WithoutRoutes())
	until(t, m, 5*time.Second, "veth running", func(s State) bool { return s.Links[p.AIndex].Running })
	settle(t, m, 300*time.Millisecond)

	s, err := m.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Routes) != 0 {
		t.Errorf("State().Routes = %+v, want none", s.Routes)
	}
	a.MustIP("route", "add", "198.51.100.0/24", "via", p.B4.String())
	select {
	case <-m.Changes():
		t.Error("a route change woke a Monitor that does not watch routes")
	case <-time.After(300 * time.Millisecond):
	}
	a.MustIP("addr", "add", "203.0.113.9/24", "dev", p.AIf)
	if s := changed(t, m); len(s.Routes) != 0 {
		t.Errorf("State().Routes after an address change = %+v, want none", s.Routes)
	}
}

// TestStateKeptFromNotifications: with WithoutRoutes, State after each
// change comes from the notifications; after every step it must equal a
// full read of the kernel.
func TestStateKeptFromNotifications(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	m := watch(t, a, WithoutRoutes())
	fresh, err := New(WithNetNS(a.FD()), WithoutRoutes())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	full := func() State {
		t.Helper()
		fresh.Refresh()
		s, err := fresh.State()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := m.State(); err != nil { // the first, full read
		t.Fatal(err)
	}
	steps := [][]string{
		{"addr", "add", "203.0.113.1/24", "dev", p.AIf},
		{"addr", "add", "2001:db8:5::1/64", "dev", p.AIf, "nodad"},
		{"link", "set", p.AIf, "down"},
		{"link", "set", p.AIf, "up"},
		{"addr", "del", "203.0.113.1/24", "dev", p.AIf},
		{"link", "add", "x0", "type", "veth", "peer", "name", "x1"},
		{"addr", "add", "198.51.100.77/24", "dev", "x0"},
		{"link", "set", "x0", "up"},
		{"link", "set", "x1", "up"},
		{"link", "del", "x0"},
		{"addr", "flush", "dev", p.AIf},
	}
	for _, step := range steps {
		a.MustIP(step...)
		want := full()
		got := until(t, m, 5*time.Second, strings.Join(step, " "), func(s State) bool {
			return reflect.DeepEqual(s.Links, want.Links) && slices.Equal(s.Addrs, want.Addrs)
		})
		if len(got.Routes) != 0 {
			t.Errorf("after %q: routes %v, want none", step, got.Routes)
		}
	}
	rd := m.rd.(*reader)
	rd.mu.Lock()
	fullReads := rd.full
	rd.mu.Unlock()
	if fullReads != 1 {
		t.Errorf("%d full reads, want only the first: the rest must come from notifications", fullReads)
	}
	// Refresh: the next State reads everything again.
	m.Refresh()
	if _, err := m.State(); err != nil {
		t.Fatal(err)
	}
	rd.mu.Lock()
	fullReads = rd.full
	rd.mu.Unlock()
	if fullReads != 2 {
		t.Errorf("%d full reads after Refresh, want 2", fullReads)
	}
}

// TestNewAddrs: with WithoutRoutes, each new address reaches the
// WithNewAddrs callback with its interface, an IPv6 address once tentative
// and once more when duplicate-address detection is done, and the Changes
// signal follows.
func TestNewAddrs(t *testing.T) {
	bed := testbed.New(t)
	a, b := bed.Host("a"), bed.Host("b")
	p := bed.Connect(a, b)
	for key, value := range map[string]string{"accept_dad": "1", "dad_transmits": "1"} {
		if err := a.WriteSysctl(filepath.Join("net/ipv6/conf", p.AIf, key), value); err != nil {
			t.Fatal(err)
		}
	}
	calls := make(chan []NewAddr, 16)
	m := watch(t, a, WithoutRoutes(), WithNewAddrs(func(added []NewAddr) { calls <- added }))
	// The first State reads everything: from then on the state is kept.
	s := until(t, m, 5*time.Second, "veth running", func(s State) bool { return s.Links[p.AIndex].Running })
	settle(t, m, 300*time.Millisecond)
	for len(calls) > 0 {
		<-calls
	}

	next := func(prefix netip.Prefix) NewAddr {
		t.Helper()
		for {
			select {
			case added := <-calls:
				i := slices.IndexFunc(added, func(a NewAddr) bool { return a.Addr.Prefix == prefix })
				if i < 0 {
					continue
				}
				if want := s.Links[p.AIndex]; added[i].Link != want {
					t.Errorf("callback's link %+v, want %+v", added[i].Link, want)
				}
				return added[i]
			case <-time.After(5 * time.Second):
				t.Fatalf("no callback for %s within 5s", prefix)
			}
		}
	}

	v4 := netip.MustParsePrefix("203.0.113.9/24")
	a.MustIP("addr", "add", v4.String(), "dev", p.AIf)
	if got := next(v4); got.Addr.Tentative || got.Addr.Index != p.AIndex {
		t.Errorf("callback got %+v, want %s on %s, not tentative", got, v4, p.AIf)
	}
	if _, ok := findAddr(changed(t, m), p.AIndex, v4); !ok {
		t.Errorf("State after the callback lacks %s", v4)
	}

	v6 := netip.MustParsePrefix("2001:db8:0:ff::5/64")
	a.MustIP("addr", "add", v6.String(), "dev", p.AIf)
	if got := next(v6); !got.Addr.Tentative {
		t.Errorf("callback got %+v first, want it tentative", got)
	}
	if got := next(v6); got.Addr.Tentative {
		t.Errorf("callback got %+v after DAD, want it not tentative", got)
	}
}
