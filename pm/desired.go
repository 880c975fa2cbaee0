package pm

import (
	"cmp"
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
		hasRoute := cfg.Addresses.RequireRoute && st.HasRoute(a.Index)
		w, skip, ok := DesiredAddr(cfg, link, a, hasRoute)
		if !ok {
			skipped = append(skipped, skip)
			continue
		}
		wants = append(wants, w)
	}
	slices.SortStableFunc(wants, better)
	// One endpoint per address and port, the best rule's.
	seen := make(map[addrKey]bool, len(wants))
	wants = slices.DeleteFunc(wants, func(w Want) bool {
		dup := seen[w.key()]
		seen[w.key()] = true
		return dup
	})
	return wants, skipped
}

// DesiredAddr is Desired for one address a on its interface link: the
// endpoint the policy wants for it or, if none, why. hasRoute says whether
// the interface carries a route beyond its own subnets (State.HasRoute);
// it matters only with require_route. What Desired adds across addresses
// (the order, one endpoint per address and port) is the caller's to do.
func DesiredAddr(cfg *config.Config, link netmon.Link, a netmon.Addr, hasRoute bool) (Want, Skip, bool) {
	return decideLink(cfg, link).want(cfg, a, hasRoute)
}

// linkDecision is what the policy says of an interface, whatever its
// addresses: the half of DesiredAddr that a caller may keep for the next
// address on the same interface.
type linkDecision struct {
	link  netmon.Link
	rule  *config.Rule // nil when the interface is not used, for why
	why   string
	flags genl.EndpointFlags
}

// decideLink is the part of DesiredAddr that depends on the interface only.
func decideLink(cfg *config.Config, link netmon.Link) linkDecision {
	d := linkDecision{link: link}
	switch {
	case !link.Up:
		d.why = "interface is down"
	case !link.Running:
		d.why = "interface has no carrier"
	default:
		rule, ok := cfg.Match(link.Name, config.Kind(link.Kind))
		if !ok {
			d.why = "no rule matches interface " + link.Name + " (kind " + string(link.Kind) + ")"
			break
		}
		d.rule, d.flags = rule, rule.EndpointFlags()
	}
	return d
}

// want is the rest of DesiredAddr: the address's part.
func (d linkDecision) want(cfg *config.Config, a netmon.Addr, hasRoute bool) (Want, Skip, bool) {
	addr := a.Prefix.Addr()
	skip := func(reason string) (Want, Skip, bool) {
		return Want{}, Skip{Addr: addr, Interface: d.link.Name, Reason: reason}, false
	}
	if d.rule == nil {
		return skip(d.why)
	}
	if ok, why := cfg.Addresses.Allows(config.AddrInfo{
		Addr:       addr,
		Temporary:  a.Temporary,
		Tentative:  a.Tentative,
		Deprecated: a.Deprecated,
		HasRoute:   hasRoute,
	}); !ok {
		return skip(why)
	}
	return Want{
		Addr:       addr,
		Port:       uint16(d.rule.Port),
		Flags:      d.flags,
		IfIndex:    int32(d.link.Index),
		Interface:  d.link.Name,
		Rule:       d.rule.Name,
		Preference: d.rule.Preference,
	}, Skip{}, true
}

// better orders wants best first: by preference, then interface index,
// then address (IPv4 before IPv6).
func better(x, y Want) int {
	if c := cmp.Compare(y.Preference, x.Preference); c != 0 {
		return c
	}
	if c := cmp.Compare(x.IfIndex, y.IfIndex); c != 0 {
		return c
	}
	return x.Addr.Compare(y.Addr)
}

// DesiredLimits returns the limits the policy asks for: the configured
// values, or, for "auto", values derived from the endpoints: room for a
// subflow per endpoint (at least the kernel's default of 2), and, when
// the host opens subflows itself, for as many peer announcements as it
// has subflow endpoints.
func DesiredLimits(cfg *config.Config, wants []Want) genl.Limits {
	return desiredLimits(cfg, wants)
}

// desiredLimits is DesiredLimits for the wants of all the lists given.
func desiredLimits(cfg *config.Config, lists ...[]Want) genl.Limits {
	var n, joiners int
	for _, wants := range lists {
		n += len(wants)
		for _, w := range wants {
			if w.Flags&(genl.FlagSubflow|genl.FlagFullmesh) != 0 {
				joiners++
			}
		}
	}
	auto := genl.Limits{
		Subflows:        uint32(min(MaxLimit, max(2, n))),
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
