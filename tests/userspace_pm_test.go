package tests

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// userspaceConfig is a daemon configuration in userspace mode: the test
// paths' interfaces are usable (those matching backupIf, if any, as
// backup), and rules is the [[userspace.rule]] tables.
func userspaceConfig(dir, backupIf, rules string) string {
	conf := strings.Replace(apiConfig(dir, ""), `state_dir =`, "mode = \"userspace\"\nstate_dir =", 1)
	if backupIf != "" {
		conf = strings.Replace(conf, "[[rule]]\n", fmt.Sprintf("[[rule]]\nname = \"backup paths\"\ninterfaces = [%q]\nkinds = [\"veth\"]\nflags = [\"subflow\", \"backup\"]\n\n[[rule]]\n", backupIf), 1)
	}
	return conf + "\n" + rules
}

// subflowSet returns the established subflows of the connection from
// local in h's namespace, as "local>remote" with the local port left out,
// sorted, and whether they are backup.
func subflowSet(t *testing.T, dc *diag.Client, local netip.AddrPort) (pairs []string, backup map[string]bool) {
	t.Helper()
	list, err := dc.Connections(context.Background(), diag.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	backup = map[string]bool{}
	for _, c := range list {
		if netip.AddrPortFrom(c.Local.Addr().Unmap(), c.Local.Port()) != local {
			continue
		}
		for _, s := range c.Subflows {
			if s.State != diag.StateEstablished {
				continue
			}
			k := s.Local.Addr().Unmap().String() + ">" + netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port()).String()
			pairs = append(pairs, k)
			backup[k] = s.BackupLocal
		}
	}
	slices.Sort(pairs)
	return pairs, backup
}

// waitSubflows waits until the connection from local has exactly want.
func waitSubflows(t *testing.T, dc *diag.Client, local netip.AddrPort, what string, want []string) map[string]bool {
	t.Helper()
	slices.Sort(want)
	var got []string
	var backup map[string]bool
	if err := testbed.WaitFor(10*time.Second, func() (bool, error) {
		got, backup = subflowSet(t, dc, local)
		return slices.Equal(got, want), nil
	}); err != nil {
		t.Fatalf("%s: subflows %q, want %q", what, got, want)
	}
	return backup
}

func pair(local netip.Addr, remote netip.AddrPort) string {
	return local.String() + ">" + remote.String()
}

// userspaceBed is a client h running mptcpd in userspace mode and a
// server srv (the kernel's in-kernel path manager, accepting joins),
// joined by n paths, with an echo server on srv.
type userspaceBed struct {
	h, srv *testbed.Host
	paths  []testbed.Path
	dc     *diag.Client
	port   uint16
}

func newUserspaceBed(t *testing.T, n int, conf func(dir string) string) (*userspaceBed, *apiDaemon) {
	t.Helper()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	b := &userspaceBed{h: bed.Host("h"), srv: bed.Host("srv")}
	b.paths = bed.Paths(b.h, b.srv, n)
	if err := newClient(t, b.srv).SetLimits(genl.Limits{Subflows: 8, AddAddrAccepted: 8}); err != nil {
		t.Fatal(err)
	}
	d := startAPIDaemon(t, bin, b.h, conf(t.TempDir()))
	dc, err := diag.New(diag.WithNetNS(b.h.FD()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	b.dc = dc
	return b, d
}

// dial opens an MPTCP connection from h's first path to srv's, and
// returns it with its local and remote address.
func (b *userspaceBed) dial(t *testing.T, family int, port uint16) (net.Conn, netip.AddrPort, netip.AddrPort) {
	t.Helper()
	remote := netip.AddrPortFrom(b.paths[0].Addr(b.srv, family), port)
	c, err := b.h.Dial(ctxT(t), netip.AddrPortFrom(b.paths[0].Addr(b.h, family), 0), remote)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return c, netip.AddrPortFrom(l.Addr().Unmap(), l.Port()), remote
}

// crossRoutes gives each of h's paths a route to every subnet of srv, as
// a multi-homed host has a way out of each interface: a subflow bound to
// path i's interface can then reach srv's address on path j.
func (b *userspaceBed) crossRoutes(t *testing.T) {
	t.Helper()
	for i, pi := range b.paths {
		for j, pj := range b.paths {
			if i == j {
				continue
			}
			b.h.MustIP("route", "add", netip.PrefixFrom(pj.B4, 28).Masked().String(), "via", pi.B4.String(), "dev", pi.AIf, "metric", "1000")
			b.h.MustIP("-6", "route", "add", netip.PrefixFrom(pj.B6, 64).Masked().String(), "via", pi.B6.String(), "dev", pi.AIf, "metric", "1000")
		}
	}
}

// TestUserspaceFullmesh: every usable local address to every known peer
// address — the initial one, then the one the peer announces — for IPv4
// and IPv6, with data flowing.
func TestUserspaceFullmesh(t *testing.T) {
	forEachFamily(t, func(t *testing.T, family int) {
		b, _ := newUserspaceBed(t, 2, func(dir string) string {
			return userspaceConfig(dir, "", "[[userspace.rule]]\nname = \"mesh\"\nside = \"client\"\nstrategy = \"fullmesh\"\n")
		})
		b.crossRoutes(t)
		_, port := echoListener(t, b.srv, family)
		c, local, remote := b.dial(t, family, port)
		roundTrip(t, c, 20_000)
		a0, a1 := b.paths[0].Addr(b.h, family), b.paths[1].Addr(b.h, family)
		waitSubflows(t, b.dc, local, "fullmesh to the initial address", []string{pair(a0, remote), pair(a1, remote)})

		// The server announces its second address: two more subflows.
		if _, err := newClient(t, b.srv).AddEndpoint(genl.Endpoint{Addr: b.paths[1].Addr(b.srv, family), Flags: genl.FlagSignal}); err != nil {
			t.Fatal(err)
		}
		c2, local2, remote2 := b.dial(t, family, port)
		roundTrip(t, c2, 20_000)
		second := netip.AddrPortFrom(b.paths[1].Addr(b.srv, family), port)
		waitSubflows(t, b.dc, local2, "fullmesh with an announced address",
			[]string{pair(a0, remote2), pair(a1, remote2), pair(a0, second), pair(a1, second)})
		roundTrip(t, c2, 200_000)
	})
}
