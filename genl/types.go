package genl

import (
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// EndpointFlags are the flags of an endpoint (MPTCP_PM_ADDR_FLAG_*).
type EndpointFlags uint32

const (
	// FlagSignal announces the address to peers with ADD_ADDR.
	FlagSignal EndpointFlags = 1 << 0
	// FlagSubflow opens a subflow from the address to the peer's initial address.
	FlagSubflow EndpointFlags = 1 << 1
	// FlagBackup marks subflows from the address as backup.
	FlagBackup EndpointFlags = 1 << 2
	// FlagFullmesh opens a subflow from the address to every known peer address.
	FlagFullmesh EndpointFlags = 1 << 3
	// FlagImplicit is set by the kernel on endpoints it created on its own.
	// It cannot be set by a request.
	FlagImplicit EndpointFlags = 1 << 4
	// FlagLaminar uses the address, once per connection, as the source of
	// subflows towards addresses the peer announced (Linux 6.18).
	FlagLaminar EndpointFlags = 1 << 5
)

// flagNames are the words ip-mptcp(8) uses for the flags, in bit order.
var flagNames = [...]string{"signal", "subflow", "backup", "fullmesh", "implicit", "laminar"}

// String returns the flags as comma-separated words, e.g. "signal,backup".
// Bits without a name are written in hexadecimal.
func (f EndpointFlags) String() string {
	if f == 0 {
		return ""
	}
	var b strings.Builder
	for i, name := range flagNames {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
	}
	if rest := f &^ (1<<len(flagNames) - 1); rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%#x", uint32(rest))
	}
	return b.String()
}

// ParseEndpointFlags parses flag words separated by commas or spaces, as
// String writes them: signal, subflow, backup, fullmesh, implicit, laminar.
func ParseEndpointFlags(s string) (EndpointFlags, error) {
	var f EndpointFlags
	// Without allocating: the policy parses its rules' flags on every
	// reconcile.
	for word := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		i := indexOf(flagNames[:], strings.ToLower(word))
		if i < 0 {
			return 0, fmt.Errorf("%w: unknown endpoint flag %q (want %s)", ErrInvalid, word, strings.Join(flagNames[:], ", "))
		}
		f |= 1 << i
	}
	return f, nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// Count returns the number of flags set.
func (f EndpointFlags) Count() int { return bits.OnesCount32(uint32(f)) }

// Endpoint is a local address known to the path manager: an endpoint of the
// in-kernel path manager, or a local address of a connection managed by a
// userspace path manager.
type Endpoint struct {
	// ID identifies the endpoint (1..255). On add, 0 lets the kernel choose.
	ID uint8
	// Addr is the local IPv4 or IPv6 address.
	Addr netip.Addr
	// Port is an optional port: announced with the address, or, for a
	// signal endpoint, the port of a listener the kernel creates. 0 for none.
	Port uint16
	// Flags are the endpoint's flags.
	Flags EndpointFlags
	// IfIndex is the index of the interface the endpoint is bound to, 0 for none.
	IfIndex int32
}

// AddrPort returns the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

func (e Endpoint) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "id %d %s", e.ID, e.Addr)
	if e.Port != 0 {
		fmt.Fprintf(&b, " port %d", e.Port)
	}
	if e.Flags != 0 {
		fmt.Fprintf(&b, " flags %s", e.Flags)
	}
	if e.IfIndex != 0 {
		fmt.Fprintf(&b, " ifindex %d", e.IfIndex)
	}
	return b.String()
}

// Limits are the in-kernel path manager's per-connection limits of a
// network namespace.
type Limits struct {
	// AddAddrAccepted is the most ADD_ADDR announcements accepted from a
	// peer per connection (MPTCP_PM_ATTR_RCV_ADD_ADDRS, "add_addr_accepted").
	AddAddrAccepted uint32
	// Subflows is the most additional subflows per connection.
	Subflows uint32
}
