package capture

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of the chains and sets in the table.
const (
	chainOutput     = "output"
	chainPrerouting = "prerouting"
	setExclude4     = "exclude4"
	setExclude6     = "exclude6"
	setPorts        = "ports"
	setInterfaces   = "tproxy_ifaces"
)

// ruleset is the table Install creates, both as nftables objects and as the
// nft(8) script that creates the same kernel objects. Every expression
// sequence below is the one nft compiles its rule text into, so the two
// forms describe one table (an integration test loads both and compares).
type ruleset struct {
	table  *nftables.Table
	sets   []nftSet
	chains []nftChain
}

type nftSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
	decl  []string // the lines inside `set NAME { ... }`
}

type nftChain struct {
	chain *nftables.Chain
	decl  string // the chain's first line: type, hook, priority, policy
	rules []nftRule
}

type nftRule struct {
	text  string
	exprs []expr.Any
}

// build returns the ruleset for cfg, which must be valid and have its
// defaults applied. All expressions use register 1 (NFT_REG_1, a 16-byte
// register, the one nft uses), so no register is ever read across rules.
func build(cfg Config) ruleset {
	rs := ruleset{table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}}
	var nextID uint32
	addSet := func(s *nftables.Set, elems []nftables.SetElement, decl ...string) *nftables.Set {
		// Set IDs name sets within one transaction; they are chosen here
		// rather than left to the library, which would draw them from a
		// process-wide counter.
		nextID++
		s.ID, s.Table = nextID, rs.table
		rs.sets = append(rs.sets, nftSet{set: s, elems: elems, decl: decl})
		return s
	}

	v4, v6 := splitFamilies(append(alwaysExcluded(), cfg.Exclude...))
	exclude4 := addSet(&nftables.Set{Name: setExclude4, KeyType: nftables.TypeIPAddr, Interval: true},
		intervalElements(v4), "type ipv4_addr", "flags interval", "elements = { "+rangesText(v4)+" }")
	exclude6 := addSet(&nftables.Set{Name: setExclude6, KeyType: nftables.TypeIP6Addr, Interval: true},
		intervalElements(v6), "type ipv6_addr", "flags interval", "elements = { "+rangesText(v6)+" }")
	var ports *nftables.Set
	if len(cfg.Ports) > 0 {
		sorted := slices.Sorted(slices.Values(cfg.Ports))
		elems := make([]nftables.SetElement, len(sorted))
		texts := make([]string, len(sorted))
		for i, p := range sorted {
			elems[i] = nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p)}
			texts[i] = strconv.Itoa(int(p))
		}
		ports = addSet(&nftables.Set{Name: setPorts, KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian},
			elems, "type inet_service", "elements = { "+strings.Join(texts, ", ")+" }")
	}
	var ifaces *nftables.Set
	if cfg.TProxyPort != 0 && len(cfg.TProxyInterfaces) > 0 {
		sorted := slices.Sorted(slices.Values(cfg.TProxyInterfaces))
		elems := make([]nftables.SetElement, len(sorted))
		texts := make([]string, len(sorted))
		for i, name := range sorted {
			elems[i] = nftables.SetElement{Key: ifname(name)}
			texts[i] = strconv.Quote(name)
		}
		// The byte order, kept in the set's user data, tells nft how to
		// print the keys; nft marks interface names host-endian.
		ifaces = addSet(&nftables.Set{Name: setInterfaces, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian},
			elems, "type ifname", "elements = { "+strings.Join(texts, ", ")+" }")
	}

	// The rules both chains share, after their own first rules: leave
	// alone what is local or excluded, and what is not for a chosen port.
	common := []nftRule{
		{"fib daddr type local return", []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			cmpEq(binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)),
			verdict(expr.VerdictReturn),
		}},
		{"ip daddr @" + setExclude4 + " return", []expr.Any{
			metaLoad(expr.MetaKeyNFPROTO), cmpEq([]byte{unix.NFPROTO_IPV4}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			lookup(exclude4, false),
			verdict(expr.VerdictReturn),
		}},
		{"ip6 daddr @" + setExclude6 + " return", []expr.Any{
			metaLoad(expr.MetaKeyNFPROTO), cmpEq([]byte{unix.NFPROTO_IPV6}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			lookup(exclude6, false),
			verdict(expr.VerdictReturn),
		}},
	}
	if ports != nil {
		common = append(common, nftRule{"tcp dport != @" + setPorts + " return", []expr.Any{
			metaLoad(expr.MetaKeyL4PROTO), cmpEq([]byte{unix.IPPROTO_TCP}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			lookup(ports, true),
			verdict(expr.VerdictReturn),
		}})
	}
	notTCP := nftRule{"meta l4proto != tcp return", []expr.Any{
		metaLoad(expr.MetaKeyL4PROTO), cmpNeq([]byte{unix.IPPROTO_TCP}),
		verdict(expr.VerdictReturn),
	}}
	isTCP := []expr.Any{metaLoad(expr.MetaKeyL4PROTO), cmpEq([]byte{unix.IPPROTO_TCP})}

	if cfg.RedirectPort != 0 {
		c := nftChain{
			chain: &nftables.Chain{Name: chainOutput, Table: rs.table, Type: nftables.ChainTypeNAT,
				Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest},
			decl: "type nat hook output priority -100; policy accept;",
		}
		c.rules = append(c.rules,
			nftRule{fmt.Sprintf("meta mark %#x return", cfg.Mark), []expr.Any{
				metaLoad(expr.MetaKeyMARK), cmpEq(binary.NativeEndian.AppendUint32(nil, cfg.Mark)),
				verdict(expr.VerdictReturn),
			}},
			notTCP)
		c.rules = append(c.rules, common...)
		c.rules = append(c.rules, nftRule{fmt.Sprintf("meta l4proto tcp redirect to :%d", cfg.RedirectPort), append(slices.Clone(isTCP),
			&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, cfg.RedirectPort)},
			&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
		)})
		rs.chains = append(rs.chains, c)
	}

	if cfg.TProxyPort != 0 {
		c := nftChain{
			chain: &nftables.Chain{Name: chainPrerouting, Table: rs.table, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle},
			decl: "type filter hook prerouting priority mangle; policy accept;",
		}
		c.rules = append(c.rules, notTCP)
		if ifaces != nil {
			c.rules = append(c.rules, nftRule{"iifname != @" + setInterfaces + " return", []expr.Any{
				metaLoad(expr.MetaKeyIIFNAME), lookup(ifaces, true), verdict(expr.VerdictReturn),
			}})
		} else {
			c.rules = append(c.rules, nftRule{`iifname "lo" return`, []expr.Any{
				metaLoad(expr.MetaKeyIIFNAME), cmpEq(ifname("lo")), verdict(expr.VerdictReturn),
			}})
		}
		c.rules = append(c.rules, common...)
		markSet := []expr.Any{
			&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, cfg.TProxyMark)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
			verdict(expr.VerdictAccept),
		}
		c.rules = append(c.rules,
			// Packets of connections already handed to a transparent
			// socket: mark them for local delivery without the listener
			// lookup the tproxy expression would do.
			nftRule{fmt.Sprintf("socket transparent 1 meta mark set %#x accept", cfg.TProxyMark), append([]expr.Any{
				&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
				cmpEq([]byte{1}),
			}, markSet...)},
			nftRule{fmt.Sprintf("meta l4proto tcp tproxy to :%d meta mark set %#x accept", cfg.TProxyPort, cfg.TProxyMark), append(append(slices.Clone(isTCP),
				&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, cfg.TProxyPort)},
				// Family NFPROTO_UNSPEC with no address: both IPv4
				// and IPv6, delivered to the listener on the port.
				&expr.TProxy{Family: unix.NFPROTO_UNSPEC, RegPort: 1},
			), markSet...)},
		)
		rs.chains = append(rs.chains, c)
	}

	return rs
}

// script returns the nft(8) input that replaces the table with the one rs
// describes, as Install does in one transaction.
func (rs ruleset) script() string {
	var b strings.Builder
	name := "inet " + rs.table.Name
	fmt.Fprintf(&b, "table %s\ndelete table %s\ntable %s {\n", name, name, name)
	for i, s := range rs.sets {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tset %s {\n", s.set.Name)
		for _, line := range s.decl {
			fmt.Fprintf(&b, "\t\t%s\n", line)
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.chains {
		fmt.Fprintf(&b, "\n\tchain %s {\n\t\t%s\n", c.chain.Name, c.decl)
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.text)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func metaLoad(key expr.MetaKey) *expr.Meta { return &expr.Meta{Key: key, Register: 1} }

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func cmpNeq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: data} }

func verdict(kind expr.VerdictKind) *expr.Verdict { return &expr.Verdict{Kind: kind} }

func lookup(s *nftables.Set, invert bool) *expr.Lookup {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert}
}

// ifname returns an interface name as nftables compares it: the name padded
// with NULs to IFNAMSIZ (16) bytes.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// addrRange is the closed range of addresses [first, last], both of one
// family.
type addrRange struct{ first, last netip.Addr }

// splitFamilies turns prefixes into two lists of disjoint, non-adjacent
// ranges, IPv4 and IPv6, each sorted: overlapping and touching prefixes are
// merged, because an interval set refuses overlapping elements.
func splitFamilies(prefixes []netip.Prefix) (v4, v6 []addrRange) {
	for _, p := range prefixes {
		p = p.Masked()
		r := addrRange{p.Addr(), lastAddr(p)}
		if r.first.Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return mergeRanges(v4), mergeRanges(v6)
}

func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(a, b addrRange) int {
		return cmp.Or(a.first.Compare(b.first), a.last.Compare(b.last))
	})
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			// next is invalid when prev reaches the family's last
			// address; then every later range lies inside prev.
			next := prev.last.Next()
			if !next.IsValid() || r.first.Compare(next) <= 0 {
				if r.last.Compare(prev.last) > 0 {
					prev.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// lastAddr returns the last address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		if bit := p.Bits() - 8*i; bit <= 0 {
			b[i] = 0xff
		} else if bit < 8 {
			b[i] |= 0xff >> bit
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// intervalElements encodes sorted, disjoint ranges the way nft hands them to
// the kernel's interval sets: a range [first, last] is a start element keyed
// first and an end element (NFT_SET_ELEM_INTERVAL_END) keyed last+1; a range
// that reaches the family's last address has no end element; and when the
// first range does not start at the zero address, the set begins with an
// end element keyed zero. Keys are addresses in network byte order. (For a
// range that reaches the last address nft also marks the start element
// "interval open" in its user data, which only changes how nft prints the
// set; the library cannot set it, and the kernel does not read it.)
func intervalElements(rs []addrRange) []nftables.SetElement {
	var elems []nftables.SetElement
	if len(rs) > 0 && !rs[0].first.IsUnspecified() {
		elems = append(elems, nftables.SetElement{Key: make([]byte, rs[0].first.BitLen()/8), IntervalEnd: true})
	}
	for _, r := range rs {
		elems = append(elems, nftables.SetElement{Key: r.first.AsSlice()})
		if next := r.last.Next(); next.IsValid() {
			elems = append(elems, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return elems
}

// rangesText writes ranges as nft set elements: an address, a prefix when
// the range is exactly one, or first-last.
func rangesText(rs []addrRange) string {
	texts := make([]string, len(rs))
	for i, r := range rs {
		texts[i] = r.first.String() + "-" + r.last.String()
		for bits := r.first.BitLen(); bits >= 0; bits-- {
			p := netip.PrefixFrom(r.first, bits)
			if p.Masked().Addr() != r.first {
				break
			}
			if lastAddr(p) == r.last {
				texts[i] = p.String()
				if bits == r.first.BitLen() {
					texts[i] = r.first.String()
				}
				break
			}
		}
	}
	return strings.Join(texts, ", ")
}
