package config

import (
	"net/netip"
	"path"
	"slices"
)

// Match returns the rule that governs the interface with the given name and
// kind, if it is used at all: its name must match a pattern of
// interfaces.allow and none of interfaces.deny, its kind must not be in
// interfaces.deny_kinds, and the first rule whose interfaces and kinds both
// match it (an empty list matches anything) wins. The rule points into
// c.Rules.
func (c *Config) Match(name string, kind Kind) (rule *Rule, ok bool) {
	in := c.Interfaces
	if !matchAny(in.Allow, name) || matchAny(in.Deny, name) || slices.Contains(in.DenyKinds, kind) {
		return nil, false
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if (len(r.Interfaces) == 0 || matchAny(r.Interfaces, name)) &&
			(len(r.Kinds) == 0 || slices.Contains(r.Kinds, kind)) {
			return r, true
		}
	}
	return nil, false
}

// matchAny reports whether name matches one of the patterns. Patterns that
// are not valid (Validate reports them) match nothing.
func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, name); err == nil && ok {
			return true
		}
	}
	return false
}

// AddrInfo is what the filters need to know of an interface address.
type AddrInfo struct {
	// Addr is the address, with or without an IPv6 zone.
	Addr netip.Addr
	// Temporary is set for an IPv6 temporary (privacy) address
	// (IFA_F_TEMPORARY).
	Temporary bool
	// Tentative is set while duplicate address detection has not finished
	// (IFA_F_TENTATIVE), or has failed (IFA_F_DADFAILED).
	Tentative bool
	// Deprecated is set for an address whose preferred lifetime has run
	// out (IFA_F_DEPRECATED).
	Deprecated bool
	// HasRoute is set when the address's interface has a route other than
	// the one to the address's own subnet, e.g. a default route.
	HasRoute bool
}

// Allows reports whether the address may become an endpoint and, when it
// may not, a short reason such as "link-local" or "denied by
// deny_prefixes 10.0.0.0/8". Tentative and deprecated addresses, and
// addresses that are not unicast, are never allowed.
func (a Addresses) Allows(p AddrInfo) (bool, string) {
	addr := p.Addr.WithZone("") // netip.Prefix.Contains is false for zoned addresses
	switch {
	case !addr.IsValid():
		return false, "no address"
	case addr.Is4In6():
		return false, "IPv4-mapped IPv6 address"
	case addr.IsUnspecified() || addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false, "not a unicast address"
	case p.Tentative:
		return false, "tentative"
	case p.Deprecated:
		return false, "deprecated"
	case addr.Is4() && !a.IPv4:
		return false, "IPv4 disabled"
	case addr.Is6() && !a.IPv6:
		return false, "IPv6 disabled"
	case addr.IsLoopback() && !a.Loopback:
		return false, "loopback"
	case addr.IsLinkLocalUnicast() && !a.LinkLocal:
		return false, "link-local"
	case addr.Is6() && addr.IsPrivate() && !a.ULA:
		return false, "unique local (ULA)"
	case p.Temporary && !a.Temporary:
		return false, "temporary"
	case a.RequireRoute && !p.HasRoute:
		return false, "no route beyond its own subnet (require_route)"
	}
	for _, pfx := range a.DenyPrefixes {
		if pfx.Contains(addr) {
			return false, "denied by deny_prefixes " + pfx.String()
		}
	}
	if len(a.AllowPrefixes) > 0 && !slices.ContainsFunc(a.AllowPrefixes, func(pfx netip.Prefix) bool { return pfx.Contains(addr) }) {
		return false, "outside allow_prefixes"
	}
	return true, ""
}
