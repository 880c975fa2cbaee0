// Package capture brings applications' TCP connections into mptcpd's
// userspace datapath without changing the applications: it installs
// nftables rules that divert new TCP connections to a local listener, and
// tells that listener where each connection was going.
//
// Two ways in are offered, each optional:
//
//   - REDIRECT, for connections made by programs on this host. A nat rule in
//     the output hook rewrites their destination to a local port; the
//     listener there reads the original destination with SO_ORIGINAL_DST
//     (see OriginalDst).
//   - TPROXY, for connections routed through this host (a gateway). A rule
//     in the prerouting hook hands their packets to a transparent listener
//     without rewriting them, so the accepted socket's local address is the
//     original destination (see ListenTransparent). A firewall mark, a
//     policy-routing rule and a local default route make the kernel deliver
//     those packets locally instead of forwarding them.
//
// The daemon's own outgoing sockets carry a firewall mark (see MarkDialer)
// and are never diverted, so the connections it makes to a converter or to a
// real destination cannot loop back into it.
//
// Install creates the rules in one nftables table and Rules.Remove deletes
// them; Rules.Script prints the equivalent nft and ip commands. Listen
// returns a listener that yields each diverted connection with its
// original destination.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Defaults for the zero fields of a Config. The marks spell "MP" (0x4d50)
// and the next number; the routing table shares the TPROXY mark's number so
// that `ip rule` output reads "fwmark 0x4d51 lookup 19793" with one
// recognisable value.
const (
	DefaultTable      = "mptcpd"
	DefaultMark       = 0x4d50
	DefaultTProxyMark = 0x4d51
	DefaultRouteTable = 0x4d51
)

// Limits on the lists in a Config. Every excluded prefix and port is a set
// element, so the limits bound the size of one netlink transaction, not the
// per-packet cost (set lookups do not get slower with more elements).
const (
	MaxExclude    = 1024
	MaxPorts      = 1024
	MaxInterfaces = 256
)

// Config says what to capture. The zero value of a field means its default;
// at least one of RedirectPort and TProxyPort must be set.
type Config struct {
	// Table is the name of the nftables table (family inet) that holds
	// every rule. Default "mptcpd". Install replaces a table of this name,
	// so it must not be shared with anything else.
	Table string

	// RedirectPort is the local port that TCP connections made by programs
	// on this host are redirected to (0: no REDIRECT). The listener must
	// accept on 127.0.0.1 and, for IPv6, on ::1 (or on the wildcard
	// address): the kernel rewrites redirected connections' destinations
	// to the loopback address.
	RedirectPort uint16

	// TProxyPort is the port of the transparent listener that receives TCP
	// connections routed through this host (0: no TPROXY). The listener
	// must be bound to the wildcard address (see ListenTransparent).
	TProxyPort uint16

	// TProxyInterfaces are the interfaces whose incoming TCP is captured
	// for TPROXY; empty means every interface but lo. Names are matched
	// when packets arrive, so an interface may appear after Install.
	TProxyInterfaces []string

	// Mark is the firewall mark (SO_MARK) the daemon's own sockets carry;
	// packets with exactly this mark are never redirected. Default 0x4d50.
	Mark uint32

	// TProxyMark marks captured packets so that a policy-routing rule
	// (`ip rule add fwmark TProxyMark lookup RouteTable`) delivers them
	// locally. Default 0x4d51. It must differ from Mark, or the daemon's
	// own outgoing packets would be delivered back to this host.
	TProxyMark uint32

	// RouteTable is the routing table that holds the local default routes
	// for TPROXY (`ip route add local 0.0.0.0/0 dev lo table RouteTable`
	// and the IPv6 equivalent). Default 19793 (0x4d51). The kernel's own
	// tables (252 to 255) are refused.
	RouteTable uint32

	// Exclude lists destinations that are never captured, typically the
	// converter's addresses. Loopback (127.0.0.0/8, ::1), link-local
	// (169.254.0.0/16, fe80::/10) and this host's own addresses are always
	// excluded. Prefixes may overlap; host bits are ignored.
	Exclude []netip.Prefix

	// Ports, if not empty, limits capture to these destination ports;
	// empty captures every TCP port.
	Ports []uint16
}

// alwaysExcluded returns the destinations no rule ever captures, whatever
// the Config says: loopback and link-local. (The host's own addresses are
// excluded by a `fib daddr type local` rule, which follows address changes.)
func alwaysExcluded() []netip.Prefix {
	return []netip.Prefix{
		netip.PrefixFrom(netip.AddrFrom4([4]byte{127}), 8),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254}), 16),
		netip.PrefixFrom(netip.IPv6Loopback(), 128),
		netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfe, 0x80}), 10),
	}
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Mark == 0 {
		c.Mark = DefaultMark
	}
	if c.TProxyMark == 0 {
		c.TProxyMark = DefaultTProxyMark
	}
	if c.RouteTable == 0 {
		c.RouteTable = DefaultRouteTable
	}
	return c
}

// Validate checks c (with its defaults applied) and returns an error that
// names the first bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := validTableName(c.Table); err != nil {
		return fmt.Errorf("capture config: Table: %w", err)
	}
	if c.RedirectPort == 0 && c.TProxyPort == 0 {
		return errors.New("capture config: RedirectPort and TProxyPort are both 0: nothing to capture; set at least one")
	}
	if c.RedirectPort != 0 && c.RedirectPort == c.TProxyPort {
		return fmt.Errorf("capture config: RedirectPort and TProxyPort are both %d; REDIRECT and TPROXY need separate listeners", c.RedirectPort)
	}
	if c.TProxyPort == 0 && len(c.TProxyInterfaces) > 0 {
		return fmt.Errorf("capture config: TProxyInterfaces %q given but TProxyPort is 0; set TProxyPort to capture routed traffic", c.TProxyInterfaces)
	}
	if len(c.TProxyInterfaces) > MaxInterfaces {
		return fmt.Errorf("capture config: TProxyInterfaces has %d names, at most %d allowed", len(c.TProxyInterfaces), MaxInterfaces)
	}
	for i, name := range c.TProxyInterfaces {
		if err := validInterfaceName(name); err != nil {
			return fmt.Errorf("capture config: TProxyInterfaces[%d]: %w", i, err)
		}
		if slices.Contains(c.TProxyInterfaces[:i], name) {
			return fmt.Errorf("capture config: TProxyInterfaces[%d]: %q is listed twice", i, name)
		}
	}
	if c.Mark == c.TProxyMark {
		return fmt.Errorf("capture config: Mark and TProxyMark are both %#x; they must differ, or the daemon's own packets would be delivered locally", c.Mark)
	}
	switch c.RouteTable {
	case 252, 253, 254, 255:
		return fmt.Errorf("capture config: RouteTable %d is one of the kernel's own tables (compat, default, main, local); choose another", c.RouteTable)
	}
	if len(c.Exclude) > MaxExclude {
		return fmt.Errorf("capture config: Exclude has %d prefixes, at most %d allowed", len(c.Exclude), MaxExclude)
	}
	for i, p := range c.Exclude {
		switch {
		case !p.IsValid():
			return fmt.Errorf("capture config: Exclude[%d]: invalid prefix", i)
		case p.Addr().Is4In6():
			return fmt.Errorf("capture config: Exclude[%d]: %s is an IPv4-mapped IPv6 prefix; write it as IPv4", i, p)
		}
	}
	if len(c.Ports) > MaxPorts {
		return fmt.Errorf("capture config: Ports has %d ports, at most %d allowed", len(c.Ports), MaxPorts)
	}
	for i, port := range c.Ports {
		if port == 0 {
			return fmt.Errorf("capture config: Ports[%d]: port 0 is not a TCP destination port", i)
		}
		if slices.Contains(c.Ports[:i], port) {
			return fmt.Errorf("capture config: Ports[%d]: port %d is listed twice", i, port)
		}
	}
	return nil
}

// validTableName accepts what nft accepts as a plain identifier: a letter,
// then letters, digits, '_', '-' and '.', at most 255 bytes (the kernel's
// NFT_NAME_MAXLEN less the terminating NUL).
func validTableName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("name is %d bytes long, at most 255 allowed", len(name))
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'):
		default:
			return fmt.Errorf("invalid name %q: use a letter, then letters, digits, '_', '-' or '.'", name)
		}
	}
	return nil
}

// validInterfaceName accepts what the kernel accepts as an interface name
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':', NUL or
// white space. lo is refused: its traffic is this host's own, which
// REDIRECT captures.
func validInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is %d bytes long, at most 15 allowed", name, len(name))
	case name == "." || name == ".." || strings.ContainsAny(name, "/:\x00 \t\n\v\f\r"):
		return fmt.Errorf("invalid interface name %q", name)
	case name == "lo":
		return errors.New(`"lo" cannot be a TPROXY interface: traffic on lo is this host's own; capture it with RedirectPort`)
	}
	return nil
}
