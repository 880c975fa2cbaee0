package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Userspace is the policy of the userspace path manager (mode
// "userspace"): per connection, which subflows the daemon opens, what it
// announces, and which of the peer's announcements it joins. The usable
// local addresses, and which of them are backup addresses, come from the
// kernel-mode tables: an address that Addresses and Rules would make an
// endpoint is usable, and one whose rule has the backup flag is a backup
// address.
type Userspace struct {
	// Peer says which of the peer's announcements (ADD_ADDR) are joined.
	Peer UserspacePeer `toml:"peer"`
	// Retry says how subflows that closed with an error are re-created.
	Retry UserspaceRetry `toml:"retry"`
	// Rules give each connection its strategy: the first rule that matches
	// a connection wins (see Match), and a connection that no rule matches
	// is left alone. In the file each rule is a [[userspace.rule]] table;
	// rules in a file replace the default rules as a whole.
	Rules []UserspaceRule `toml:"rule"`
}

// UserspacePeer says which of the peer's announcements (ADD_ADDR) the
// daemon joins; see Allows.
type UserspacePeer struct {
	// Accept joins the peer's announced addresses at all.
	Accept bool `toml:"accept"`
	// AllowPrefixes, when not empty, limits the announced addresses joined
	// to those inside one of its prefixes.
	AllowPrefixes []netip.Prefix `toml:"allow_prefixes"`
	// DenyPrefixes are never joined, whatever AllowPrefixes says.
	DenyPrefixes []netip.Prefix `toml:"deny_prefixes"`
	// MaxAccepted is the most announcements accepted per connection,
	// 0..255.
	MaxAccepted int `toml:"max_accepted"`
	// Rate is the most announcements considered per connection per second,
	// 1..1000000, with a burst of max(MaxAccepted, 1); announcements beyond
	// it are ignored.
	Rate int `toml:"rate"`
}

// UserspaceRetry says how subflows that closed with an error are
// re-created: after Initial, then after a delay that doubles each time up
// to Max, at most Attempts times per subflow.
type UserspaceRetry struct {
	// Initial is the first delay, 1ms..1h.
	Initial Duration `toml:"initial"`
	// Max is the longest delay, Initial..24h.
	Max Duration `toml:"max"`
	// Attempts is the most re-creations per subflow before giving up,
	// 0..1000; 0 never re-creates.
	Attempts int `toml:"attempts"`
}

// UserspaceRule gives the connections it matches their strategy.
type UserspaceRule struct {
	// Name names the rule in logs. Parse sets it to "userspace.rule N" (N
	// counting [[userspace.rule]] tables from 1) when the file gives none.
	// Names given must be unique.
	Name string `toml:"name"`
	// Side is the side of the connections the rule matches: SideClient
	// (this host opened the connection), SideServer or SideAny. A rule of
	// the file that leaves it out gets SideAny.
	Side Side `toml:"side"`
	// RemotePrefixes, when not empty, limit the rule to connections whose
	// remote address is inside one of them.
	RemotePrefixes []netip.Prefix `toml:"remote_prefixes"`
	// RemotePorts, when not empty, limit the rule to connections whose
	// remote port is one of them (1..65535).
	RemotePorts []uint16 `toml:"remote_ports"`
	// LocalPorts, when not empty, limit the rule to connections whose local
	// port is one of them (1..65535); a server connection's local port is
	// its listener's.
	LocalPorts []uint16 `toml:"local_ports"`
	// Strategy is which subflows the daemon opens. A rule of the file must
	// give it.
	Strategy Strategy `toml:"strategy"`
	// MaxSubflows caps the subflows of a connection, the initial one
	// included, 1..64. A rule of the file that leaves it out gets 8.
	MaxSubflows int `toml:"max_subflows"`
	// Subflows is, for StrategyNDiffPorts, the number of subflows over the
	// initial path, the initial one included, 2..64 and at most
	// MaxSubflows. A rule of the file that leaves it out gets 2.
	Subflows int `toml:"subflows"`
	// Announce announces the usable local addresses (ADD_ADDR) on each new
	// server-side connection. It needs Side SideServer or SideAny.
	Announce bool `toml:"announce"`
	// AnnouncePort, if not 0, is announced with the addresses instead of
	// the connection's own port; the daemon then listens on it. It needs
	// Announce.
	AnnouncePort uint16 `toml:"announce_port"`
}

// Side is which end of a connection this host is.
type Side string

const (
	// SideClient is a connection this host opened.
	SideClient Side = "client"
	// SideServer is a connection this host accepted.
	SideServer Side = "server"
	// SideAny, in a rule, matches both sides.
	SideAny Side = "any"
)

// Sides returns every side, in the order the documentation lists them.
func Sides() []Side { return []Side{SideClient, SideServer, SideAny} }

// Strategy is which subflows the daemon opens on a connection, at most the
// rule's MaxSubflows of them, the initial one included. Subflows from
// backup addresses are marked backup.
type Strategy string

const (
	// StrategyFullmesh opens a subflow from every usable local address to
	// every address of the peer: the connection's remote address and the
	// announcements accepted.
	StrategyFullmesh Strategy = "fullmesh"
	// StrategyPerInterface opens one subflow from each interface with a
	// usable address (the initial subflow's interface has its one).
	StrategyPerInterface Strategy = "per-interface"
	// StrategyNDiffPorts opens Subflows subflows over the initial path:
	// the same addresses, other source ports (for ECMP fabrics).
	StrategyNDiffPorts Strategy = "ndiffports"
	// StrategyBackup opens the subflows StrategyPerInterface does and,
	// while no subflow from an address that is not a backup address is
	// left, promotes the backup subflows to regular ones: a phone on Wi-Fi
	// with cellular in reserve.
	StrategyBackup Strategy = "backup"
	// StrategyNone opens no subflow: the peer may, and an announcing rule
	// tells it where.
	StrategyNone Strategy = "none"
)

// Strategies returns every strategy, in the order the documentation lists
// them.
func Strategies() []Strategy {
	return []Strategy{StrategyFullmesh, StrategyPerInterface, StrategyNDiffPorts, StrategyBackup, StrategyNone}
}

// Duration is a time.Duration that the file writes as a Go duration
// string, e.g. "500ms" or "1m30s".
type Duration struct{ time.Duration }

// UnmarshalText decodes a duration string, as time.ParseDuration reads it.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText encodes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String returns the duration as time.Duration.String does, without its
// zero minutes and seconds: "1h", "1m30s", "500ms".
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

const wantDuration = `a string such as "500ms", "30s" or "1m30s" (units ns, us, ms, s, m, h)`

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil {
		return d, nil
	}
	if _, ferr := strconv.ParseFloat(s, 64); ferr == nil {
		return 0, fmt.Errorf("duration %q has no unit (want %s)", s, wantDuration)
	}
	return 0, fmt.Errorf("invalid duration %q (want %s)", s, wantDuration)
}

// Match returns the rule that governs a new connection, and its index in
// u.Rules: the first rule whose side, remote prefixes, remote ports and
// local ports all match (an empty list matches anything, SideAny either
// side). It returns nil and -1 when no rule matches. side is the
// connection's, SideClient or SideServer; local and remote are its initial
// subflow's ends. IPv4-mapped IPv6 addresses match as IPv4, and zones are
// ignored. The rule points into u.Rules. Match does not allocate.
func (u *Userspace) Match(side Side, local, remote netip.AddrPort) (rule *UserspaceRule, index int) {
	raddr := remote.Addr().Unmap().WithZone("")
	for i := range u.Rules {
		r := &u.Rules[i]
		if (r.Side == SideAny || r.Side == side) &&
			(len(r.RemotePrefixes) == 0 || inPrefixes(r.RemotePrefixes, raddr).IsValid()) &&
			(len(r.RemotePorts) == 0 || slices.Contains(r.RemotePorts, remote.Port())) &&
			(len(r.LocalPorts) == 0 || slices.Contains(r.LocalPorts, local.Port())) {
			return r, i
		}
	}
	return nil, -1
}

// Allows reports whether the daemon may join an address the peer
// announced and, when it may not, a short reason such as "link-local" or
// "denied by userspace.peer.deny_prefixes 10.0.0.0/8". It refuses every
// address when Accept is false, and always unspecified, loopback,
// link-local, multicast and broadcast addresses; an IPv4-mapped IPv6
// address is taken as IPv4. The host's own addresses are not its business.
// Allows allocates only for a reason that names a prefix.
func (p *UserspacePeer) Allows(addr netip.Addr) (ok bool, reason string) {
	why, pfx := p.check(addr)
	switch why {
	case "":
		return true, ""
	case "deny":
		return false, "denied by userspace.peer.deny_prefixes " + pfx.String()
	}
	return false, why
}

// Admits reports what Allows does, without the reason, and never
// allocates: the check for each announcement of a flood.
func (p *UserspacePeer) Admits(addr netip.Addr) bool {
	why, _ := p.check(addr)
	return why == ""
}

// check returns why addr is refused ("" if it is not; "deny" with the
// prefix for the deny list).
func (p *UserspacePeer) check(addr netip.Addr) (why string, pfx netip.Prefix) {
	a := addr.Unmap().WithZone("")
	switch {
	case !p.Accept:
		return "userspace.peer.accept is false", pfx
	case !a.IsValid():
		return "no address", pfx
	case a.IsUnspecified():
		return "unspecified", pfx
	case a.IsLoopback():
		return "loopback", pfx
	case a.IsLinkLocalUnicast():
		return "link-local", pfx
	case a.IsMulticast():
		return "multicast", pfx
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast", pfx
	}
	if pfx := inPrefixes(p.DenyPrefixes, a); pfx.IsValid() {
		return "deny", pfx
	}
	if len(p.AllowPrefixes) > 0 && !inPrefixes(p.AllowPrefixes, a).IsValid() {
		return "outside userspace.peer.allow_prefixes", pfx
	}
	return "", pfx
}

// inPrefixes returns the first prefix of list that contains addr (which
// must have no zone), or the zero Prefix.
func inPrefixes(list []netip.Prefix, addr netip.Addr) netip.Prefix {
	for _, pfx := range list {
		if pfx.Contains(addr) {
			return pfx
		}
	}
	return netip.Prefix{}
}

// The bounds of the [userspace] numbers.
const (
	maxAcceptedMax = 255
	rateMax        = 1_000_000
	attemptsMax    = 1000
	subflowsMax    = 64
	initialMin     = time.Millisecond
	initialMax     = time.Hour
	retryMaxMax    = 24 * time.Hour
)

// defaultUserspace is the [userspace] table of an empty file.
func defaultUserspace() Userspace {
	return Userspace{
		Peer:  UserspacePeer{Accept: true, MaxAccepted: 8, Rate: 10},
		Retry: UserspaceRetry{Initial: Duration{500 * time.Millisecond}, Max: Duration{30 * time.Second}, Attempts: 6},
		Rules: []UserspaceRule{
			{Name: "clients", Side: SideClient, Strategy: StrategyFullmesh, MaxSubflows: 8, Subflows: 2},
			{Name: "servers", Side: SideServer, Strategy: StrategyNone, MaxSubflows: 8, Subflows: 2, Announce: true},
		},
	}
}

// ruleKeyDefaults are the values of the keys a [[userspace.rule]] table of
// the file may leave out whose default is not the zero value.
var ruleKeyDefaults = []struct {
	key string
	set func(r *UserspaceRule)
}{
	{"side", func(r *UserspaceRule) { r.Side = SideAny }},
	{"max_subflows", func(r *UserspaceRule) { r.MaxSubflows = 8 }},
	{"subflows", func(r *UserspaceRule) { r.Subflows = 2 }},
}

// fillRuleDefaults gives the keys that the [[userspace.rule]] tables of the
// document leave out their defaults. The default rules are left alone.
func (u *Userspace) fillRuleDefaults(d *document) {
	if !d.has("userspace.rule") && !d.has("userspace.rule[1]") {
		return
	}
	for i := range u.Rules {
		for _, k := range ruleKeyDefaults {
			if !d.has(fmt.Sprintf("userspace.rule[%d].%s", i+1, k.key)) {
				k.set(&u.Rules[i])
			}
		}
	}
}

func (u *Userspace) normalize() {
	nilIfEmpty(&u.Peer.AllowPrefixes)
	nilIfEmpty(&u.Peer.DenyPrefixes)
	nilIfEmpty(&u.Rules)
	for i := range u.Rules {
		r := &u.Rules[i]
		nilIfEmpty(&r.RemotePrefixes)
		nilIfEmpty(&r.RemotePorts)
		nilIfEmpty(&r.LocalPorts)
		if r.Name == "" {
			r.Name = fmt.Sprintf("userspace.rule %d", i+1)
		}
	}
}

// validate checks the [userspace] table.
func (u *Userspace) validate(p *problems) {
	checkPrefixes(p, "userspace.peer.allow_prefixes", u.Peer.AllowPrefixes)
	checkPrefixes(p, "userspace.peer.deny_prefixes", u.Peer.DenyPrefixes)
	checkRange(p, "userspace.peer.max_accepted", u.Peer.MaxAccepted, 0, maxAcceptedMax)
	checkRange(p, "userspace.peer.rate", u.Peer.Rate, 1, rateMax)

	rt := u.Retry
	initialOK := rt.Initial.Duration >= initialMin && rt.Initial.Duration <= initialMax
	if !initialOK {
		p.add("userspace.retry.initial", 0, "%s is out of range (want %s)", rt.Initial, want("userspace.retry.initial"))
	}
	switch {
	case rt.Max.Duration > retryMaxMax || rt.Max.Duration < initialMin:
		p.add("userspace.retry.max", 0, "%s is out of range (want %s)", rt.Max, want("userspace.retry.max"))
	case initialOK && rt.Max.Duration < rt.Initial.Duration:
		p.add("userspace.retry.max", 0, "%s is less than initial (%s), so the delay could not double up to it (raise max to at least %s, or lower initial)", rt.Max, rt.Initial, rt.Initial)
	}
	checkRange(p, "userspace.retry.attempts", rt.Attempts, 0, attemptsMax)

	if len(u.Rules) == 0 {
		p.add("userspace.rule", 0, `no rules, so the daemon would leave every connection alone (add at least one [[userspace.rule]] table; side = "any" with strategy = "none" for one that does nothing)`)
	}
	checkNames(p, "userspace.rule", u.Rules, func(r *UserspaceRule) string { return r.Name })
	for i := range u.Rules {
		u.Rules[i].validate(p, fmt.Sprintf("userspace.rule[%d]", i+1))
	}
}

func (r *UserspaceRule) validate(p *problems, key string) {
	switch {
	case r.Side == "":
		p.add(key+".side", 0, "empty (want %s)", join(Sides()))
	case !slices.Contains(Sides(), r.Side):
		p.add(key+".side", 0, "unknown side %q (want %s)", r.Side, join(Sides()))
	}
	checkPrefixes(p, key+".remote_prefixes", r.RemotePrefixes)
	checkPorts(p, key+".remote_ports", r.RemotePorts)
	checkPorts(p, key+".local_ports", r.LocalPorts)
	switch {
	case r.Strategy == "":
		p.add(key+".strategy", 0, "no strategy (set strategy to one of %s)", join(Strategies()))
	case !slices.Contains(Strategies(), r.Strategy):
		p.add(key+".strategy", 0, "unknown strategy %q (want %s)", r.Strategy, join(Strategies()))
	}
	maxOK := checkRange(p, key+".max_subflows", r.MaxSubflows, 1, subflowsMax)
	if checkRange(p, key+".subflows", r.Subflows, 2, subflowsMax) && maxOK &&
		r.Strategy == StrategyNDiffPorts && r.Subflows > r.MaxSubflows {
		p.add(key+".subflows", 0, "%d is more than max_subflows (%d) allows (raise max_subflows to at least %d, or lower subflows)", r.Subflows, r.MaxSubflows, r.Subflows)
	}
	if r.Announce && r.Side == SideClient {
		p.add(key+".announce", 0, `the daemon announces on server-side connections only, and this rule matches client-side ones (set side = "server" or "any", or announce = false)`)
	}
	if r.AnnouncePort != 0 && !r.Announce {
		p.add(key+".announce_port", 0, "announce_port needs announce = true (set announce = true, or announce_port = 0)")
	}
}

// checkRange reports n outside min..max, and returns whether it is inside.
func checkRange(p *problems, key string, n, min, max int) bool {
	if n < min || n > max {
		p.add(key, 0, "%d is out of range (want %s)", n, want(key))
		return false
	}
	return true
}

// checkPorts reports the elements of a list of ports that are 0 or listed
// twice.
func checkPorts(p *problems, key string, ports []uint16) {
	for i, port := range ports {
		switch {
		case port == 0:
			p.add(key, i+1, "0 is not a port (want %s)", want(key+"[1]"))
		case slices.Contains(ports[:i], port):
			p.add(key, i+1, "port %d is listed twice (list each port once)", port)
		}
	}
}
