package pm

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// MaxEndpoints is the most endpoints the kernel holds in one namespace
// (MPTCP_PM_ADDR_MAX on current kernels).
const MaxEndpoints = 8

// MaxLimit is the largest value the kernel accepts for either limit.
const MaxLimit = 8

// Want is an endpoint the policy wants in the kernel.
type Want struct {
	Addr    netip.Addr
	Port    uint16
	Flags   genl.EndpointFlags
	IfIndex int32
	// Interface and Rule say where the endpoint comes from, for logs.
	Interface  string
	Rule       string
	Preference int
}

// Endpoint returns the endpoint to add for the want.
func (w Want) Endpoint() genl.Endpoint {
	return genl.Endpoint{Addr: w.Addr, Port: w.Port, Flags: w.Flags, IfIndex: w.IfIndex}
}

func (w Want) key() addrKey { return addrKey{w.Addr, w.Port} }

// Skip is an address the policy did not turn into an endpoint, and why.
type Skip struct {
	Addr      netip.Addr
	Interface string
	Reason    string
}

type addrKey struct {
	addr netip.Addr
	port uint16
}

func keyOf(ep genl.Endpoint) addrKey { return addrKey{ep.Addr, ep.Port} }

// Desired computes the endpoints the policy wants from the interfaces and
// addresses in st, best first. Interfaces that are down or have lost
// their carrier contribute nothing. It does not apply the kernel's limit on
// the number of endpoints; see Reconcile.
func Desired(cfg *config.Config, st netmon.State) (wants []Want, skipped []Skip) {
	for _, a := range st.Addrs {
		link, ok := st.Links[a.Index]
		if !ok {
			continue
		}
		addr := a.Prefix.Addr()
		skip := func(reason string) { skipped = append(skipped, Skip{Addr: addr, Interface: link.Name, Reason: reason}) }
		if !link.Up {
			skip("interface is down")
			continue
		}
		if !link.Running {
			skip("interface has no carrier")
			continue
		}
		rule, ok := cfg.Match(link.Name, config.Kind(link.Kind))
		if !ok {
			skip(fmt.Sprintf("no rule matches interface %s (kind %s)", link.Name, link.Kind))
			continue
		}
		if ok, why := cfg.Addresses.Allows(config.AddrInfo{
			Addr:       addr,
			Temporary:  a.Temporary,
			Tentative:  a.Tentative,
			Deprecated: a.Deprecated,
			HasRoute:   st.HasRoute(a.Index),
		}); !ok {
			skip(why)
			continue
		}
		wants = append(wants, Want{
			Addr:       addr,
			Port:       uint16(rule.Port),
			Flags:      rule.EndpointFlags(),
			IfIndex:    int32(link.Index),
			Interface:  link.Name,
			Rule:       rule.Name,
			Preference: rule.Preference,
		})
	}
	slices.SortStableFunc(wants, func(x, y Want) int {
		if c := cmp.Compare(y.Preference, x.Preference); c != 0 {
			return c
		}
		if c := cmp.Compare(x.IfIndex, y.IfIndex); c != 0 {
			return c
		}
		// IPv4 before IPv6, then by address.
		return x.Addr.Compare(y.Addr)
	})
	// One endpoint per address and port, the best rule's.
	seen := make(map[addrKey]bool, len(wants))
	wants = slices.DeleteFunc(wants, func(w Want) bool {
		dup := seen[w.key()]
		seen[w.key()] = true
		return dup
	})
	return wants, skipped
}

// DesiredLimits returns the limits the policy asks for: the configured
// values, or, for "auto", values derived from the endpoints: room for a
// subflow per endpoint (at least the kernel's default of 2), and, when
// the host opens subflows itself, for as many peer announcements as it
// has subflow endpoints.
func DesiredLimits(cfg *config.Config, wants []Want) genl.Limits {
	var joiners int
	for _, w := range wants {
		if w.Flags&(genl.FlagSubflow|genl.FlagFullmesh) != 0 {
			joiners++
		}
	}
	auto := genl.Limits{
		Subflows:        uint32(min(MaxLimit, max(2, len(wants)))),
		AddAddrAccepted: uint32(min(MaxLimit, joiners)),
	}
	l := auto
	if !cfg.Limits.Subflows.Auto {
		l.Subflows = cfg.Limits.Subflows.Value
	}
	if !cfg.Limits.AddAddrAccepted.Auto {
		l.AddAddrAccepted = cfg.Limits.AddAddrAccepted.Value
	}
	return l
}
