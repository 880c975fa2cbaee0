package tests

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// newClient opens a genl client in the host's namespace, with opts, closed
// at the end of the test.
func newClient(t *testing.T, h *testbed.Host, opts ...genl.Option) *genl.Client {
	t.Helper()
	c, err := genl.New(append([]genl.Option{genl.WithNetNS(h.FD())}, opts...)...)
	if err != nil {
		t.Fatalf("genl.New in host %s: %v", h.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ipEndpoint is one line of `ip mptcp endpoint show`.
type ipEndpoint struct {
	ID    uint8
	Addr  netip.Addr
	Port  uint16
	Flags genl.EndpointFlags
	Dev   string
}

// ipEndpoints runs `ip mptcp endpoint show` in the host and parses it, so
// what our client did is checked by another implementation.
func ipEndpoints(t *testing.T, h *testbed.Host) []ipEndpoint {
	t.Helper()
	out := h.MustIP("mptcp", "endpoint", "show")
	var eps []ipEndpoint
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ep := ipEndpoint{Addr: netip.MustParseAddr(f[0])}
		for i := 1; i < len(f); i++ {
			switch f[i] {
			case "id", "port", "dev":
				if i+1 >= len(f) {
					t.Fatalf("ip mptcp endpoint show: %q: %s without value", line, f[i])
				}
				v := f[i+1]
				switch f[i] {
				case "id":
					n, err := strconv.ParseUint(v, 10, 8)
					if err != nil {
						t.Fatalf("ip mptcp endpoint show: %q: %v", line, err)
					}
					ep.ID = uint8(n)
				case "port":
					n, err := strconv.ParseUint(v, 10, 16)
					if err != nil {
						t.Fatalf("ip mptcp endpoint show: %q: %v", line, err)
					}
					ep.Port = uint16(n)
				case "dev":
					ep.Dev = v
				}
				i++
			default:
				fl, err := genl.ParseEndpointFlags(f[i])
				if err != nil {
					t.Fatalf("ip mptcp endpoint show: %q: %v", line, err)
				}
				ep.Flags |= fl
			}
		}
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b ipEndpoint) int { return int(a.ID) - int(b.ID) })
	return eps
}

// ipLimits runs `ip mptcp limits show` in the host and parses it.
func ipLimits(t *testing.T, h *testbed.Host) genl.Limits {
	t.Helper()
	f := strings.Fields(h.MustIP("mptcp", "limits", "show"))
	var l genl.Limits
	for i := 0; i+1 < len(f); i += 2 {
		n, err := strconv.ParseUint(f[i+1], 10, 32)
		if err != nil {
			t.Fatalf("ip mptcp limits show: %q: %v", f, err)
		}
		switch f[i] {
		case "add_addr_accepted":
			l.AddAddrAccepted = uint32(n)
		case "subflows":
			l.Subflows = uint32(n)
		}
	}
	return l
}

// wantErr fails the test unless err matches every one of the sentinels.
func wantErr(t *testing.T, what string, err error, sentinels ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want an error matching %v", what, sentinels)
	}
	for _, s := range sentinels {
		if !errors.Is(err, s) {
			t.Fatalf("%s: error %q does not match %q", what, err, s)
		}
	}
}

// forEachFamily runs fn as parallel subtests, once for IPv4 and once for IPv6.
func forEachFamily(t *testing.T, fn func(t *testing.T, family int)) {
	t.Helper()
	for _, family := range []int{4, 6} {
		t.Run(map[int]string{4: "ipv4", 6: "ipv6"}[family], func(t *testing.T) {
			t.Parallel()
			fn(t, family)
		})
	}
}

// echoListener opens an MPTCP echo server on the wildcard address of the
// family (4 or 6) in host h and returns it with its port; it is closed at
// the end of the test.
func echoListener(t *testing.T, h *testbed.Host, family int) (net.Listener, uint16) {
	t.Helper()
	network := map[int]string{4: "tcp4", 6: "tcp6"}[family]
	wildcard := map[int]string{4: "0.0.0.0:0", 6: "[::]:0"}[family]
	ln, err := h.Listen(network, wildcard)
	if err != nil {
		t.Fatalf("listening in host %s: %v", h.Name, err)
	}
	echoServer(t, ln)
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// terminate asks a process to stop with SIGTERM and waits, for grace at
// most, for done (which receives its end) before it kills it.
func terminate(p *os.Process, done <-chan error, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}

// forEachRequestPath runs fn as a subtest for each way a client sends
// acknowledged requests: through the netlink package's socket, and through
// a socket of its own (genl.WithRawRequests).
func forEachRequestPath(t *testing.T, fn func(t *testing.T, opts ...genl.Option)) {
	t.Helper()
	t.Run("poller", func(t *testing.T) { t.Parallel(); fn(t) })
	t.Run("raw", func(t *testing.T) { t.Parallel(); fn(t, genl.WithRawRequests()) })
}
