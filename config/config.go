// Package config reads and checks mptcpd's configuration file, a TOML
// document (systemd/mptcpd.toml is the commented default), and answers the
// questions the path manager asks of it: which rule, if any, governs an
// interface (Config.Match), and whether an address may become an endpoint
// (Addresses.Allows); in userspace mode, which rule governs a connection
// (Userspace.Match), and whether a peer's announced address may be joined
// (UserspacePeer.Allows).
//
// Every problem is reported with the file, the line and the key, what is
// wrong and what is allowed, e.g.
//
//	mptcpd.toml:12: rule[1].flags: unknown flag "sigal" (want signal, subflow, backup, fullmesh, laminar)
//
// Keys count the elements of a list from 1: rule[1] is the first [[rule]]
// table of the file, and its default name is "rule 1".
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netns"
)

// DefaultPath is where the daemon looks for its configuration file unless
// told otherwise.
const DefaultPath = "/etc/mptcpd/mptcpd.toml"

// MaxLimit is the highest value the kernel accepts for either limit of the
// in-kernel path manager.
const MaxLimit = 8

// Config is the daemon's configuration. Parse and Load return one that has
// passed Validate; Default returns the configuration of an empty file.
type Config struct {
	// Mode is how the daemon drives MPTCP: ModeKernel, ModeUserspace,
	// ModeFallback or ModeAuto.
	Mode Mode `toml:"mode"`
	// NetNS is the named network namespace to manage, as `ip netns` names
	// it (a file under /run/netns); "" is the daemon's own namespace.
	NetNS string `toml:"netns"`
	// KeepOnExit leaves the daemon's endpoints and limits in the kernel
	// when it stops. When false the daemon removes what it added.
	KeepOnExit bool `toml:"keep_on_exit"`
	// KeepPathManager leaves net.mptcp.path_manager as the daemon set it
	// when it stops. When false the daemon restores the value it found.
	KeepPathManager bool `toml:"keep_path_manager"`
	// StateDir is the absolute path of the directory where the daemon
	// records what it owns, so that a restarted daemon can tell its
	// endpoints from anybody else's.
	StateDir string `toml:"state_dir"`
	// Log is the daemon's logging.
	Log Log `toml:"log"`
	// Limits are the in-kernel path manager's per-connection limits.
	Limits Limits `toml:"limits"`
	// Addresses filter the addresses of the interfaces in use.
	Addresses Addresses `toml:"addresses"`
	// Interfaces select the interfaces considered at all.
	Interfaces Interfaces `toml:"interfaces"`
	// Rules give each interface its endpoint flags: the first rule that
	// matches an interface wins, and an interface that no rule matches is
	// not used. In the file each rule is a [[rule]] table; rules in a file
	// replace the default rules as a whole.
	Rules []Rule `toml:"rule"`
	// Userspace is the policy of the userspace path manager (mode
	// "userspace").
	Userspace Userspace `toml:"userspace"`
	// Fallback is the client side of the userspace fallback datapath
	// (mode "fallback").
	Fallback Fallback `toml:"fallback"`
	// Converter is the converter role of the fallback datapath.
	Converter Converter `toml:"converter"`
	// API is where the control API listens and who may use it.
	API API `toml:"api"`
	// Metrics is the optional Prometheus endpoint.
	Metrics Metrics `toml:"metrics"`
}

// API is where the control API (gRPC) listens and who may use it.
type API struct {
	// Socket is the absolute path of the API's unix socket. "" derives it
	// from state_dir: mptcpd.sock, or mptcpd-NETNS.sock for a named
	// namespace (see SocketPath).
	Socket string `toml:"socket"`
	// Group owns the socket (mode 0660): its members may connect and read.
	// "" leaves the socket to the daemon's group.
	Group string `toml:"group"`
	// AdminGroup's members may also change things. Root and the daemon's
	// own user always may.
	AdminGroup string `toml:"admin_group"`
	// TCP is an optional TCP listener.
	TCP TCP `toml:"tcp"`
}

// TCP is the API's optional TCP listener. It needs mutual TLS, unless it is
// bound to a loopback address and marked insecure.
type TCP struct {
	// Listen is host:port; "" for no TCP listener.
	Listen string `toml:"listen"`
	// Cert and Key are the server's certificate and key (PEM files).
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// ClientCA is the CA bundle (PEM) that client certificates must chain
	// to. A client with a valid certificate may change things.
	ClientCA string `toml:"client_ca"`
	// Insecure allows a listener without TLS, open to anyone who can reach
	// it; only on a loopback address.
	Insecure bool `toml:"insecure"`
}

// Metrics is the optional Prometheus endpoint.
type Metrics struct {
	// Listen is host:port of an HTTP listener serving /metrics; "" for none.
	Listen string `toml:"listen"`
}

// SocketPath returns the API socket's path: API.Socket, or the one derived
// from StateDir and NetNS.
func (c *Config) SocketPath() string {
	if c.API.Socket != "" {
		return c.API.Socket
	}
	return filepath.Join(c.StateDir, SocketName(c.NetNS))
}

// SocketName is the file name of the API socket of a daemon managing the
// named namespace ("" for its own) under the state directory.
func SocketName(netns string) string {
	if netns == "" {
		return "mptcpd.sock"
	}
	return "mptcpd-" + netns + ".sock"
}

// Mode is how the daemon drives MPTCP.
type Mode string

const (
	// ModeKernel lets the kernel's in-kernel path manager decide per
	// connection; the daemon owns the endpoints and the limits.
	ModeKernel Mode = "kernel"
	// ModeUserspace makes the daemon the namespace's path manager, deciding
	// per connection.
	ModeUserspace Mode = "userspace"
	// ModeFallback carries multipath traffic in userspace, for kernels
	// without usable MPTCP.
	ModeFallback Mode = "fallback"
	// ModeAuto picks the strongest mode the host supports.
	ModeAuto Mode = "auto"
)

// Modes returns every mode, in the order the documentation lists them.
func Modes() []Mode { return []Mode{ModeKernel, ModeUserspace, ModeFallback, ModeAuto} }

// Log is the daemon's logging.
type Log struct {
	// Level is the least severe level logged: "debug", "info", "warn" or
	// "error".
	Level string `toml:"level"`
	// Format is the log line format: "text" (logfmt-style key=value) or
	// "json".
	Format string `toml:"format"`
}

// SlogLevel returns Level as a slog.Level; a level Validate refuses
// returns slog.LevelInfo.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Limits are the in-kernel path manager's per-connection limits (see
// genl.Limits). Each is at most MaxLimit.
type Limits struct {
	// Subflows is the most additional subflows per connection.
	Subflows Limit `toml:"subflows"`
	// AddAddrAccepted is the most ADD_ADDR announcements accepted from a
	// peer per connection.
	AddAddrAccepted Limit `toml:"add_addr_accepted"`
}

// Limit is one of the kernel's limits: a number, or "auto" for a value the
// daemon derives from the rules and the addresses in use. In the file it is
// the string "auto" or an integer.
type Limit struct {
	// Auto lets the daemon choose the value; Value is then ignored.
	Auto bool
	// Value is the limit when Auto is false, 0..MaxLimit.
	Value uint32
}

// String returns "auto" or the value in decimal, as the file writes it.
func (l Limit) String() string {
	if l.Auto {
		return "auto"
	}
	return strconv.FormatUint(uint64(l.Value), 10)
}

// UnmarshalTOML decodes a limit from the raw TOML value, the string "auto"
// or an integer. It implements go-toml's unstable.Unmarshaler, which the
// decoder calls when EnableUnmarshalerInterface is set. It does not check
// the upper bound; Validate does.
func (l *Limit) UnmarshalTOML(data []byte) error {
	var v struct {
		V any `toml:"v"`
	}
	doc := append([]byte("v = "), data...)
	if err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(&v); err != nil {
		return fmt.Errorf("invalid limit %s (want %s)", bytes.TrimSpace(data), wantLimit)
	}
	var err error
	switch x := v.V.(type) {
	case string:
		*l, err = parseLimitString(x)
	case int64:
		*l, err = parseLimitInt(x)
	default:
		err = fmt.Errorf("invalid limit %s (want %s)", bytes.TrimSpace(data), wantLimit)
	}
	return err
}

// MarshalTOML encodes the limit as the file writes it. It implements
// go-toml's unstable.Marshaler, which the encoder calls when
// EnableMarshalerInterface is set.
func (l Limit) MarshalTOML() ([]byte, error) {
	if l.Auto {
		return []byte(`"auto"`), nil
	}
	return strconv.AppendUint(nil, uint64(l.Value), 10), nil
}

// wantLimit says what a limit may be; 8 is MaxLimit.
const wantLimit = `"auto" or an integer 0..8`

func parseLimitString(s string) (Limit, error) {
	if s != "auto" {
		return Limit{}, fmt.Errorf("invalid limit %q (want %s, without quotes for a number)", s, wantLimit)
	}
	return Limit{Auto: true}, nil
}

func parseLimitInt(n int64) (Limit, error) {
	if n < 0 || n > 1<<32-1 {
		return Limit{}, fmt.Errorf("%d is out of range (want %s)", n, wantLimit)
	}
	return Limit{Value: uint32(n)}, nil
}

// Addresses filter the addresses of the interfaces in use; see
// Addresses.Allows. Tentative and deprecated addresses are never used.
type Addresses struct {
	// IPv4 uses IPv4 addresses.
	IPv4 bool `toml:"ipv4"`
	// IPv6 uses IPv6 addresses.
	IPv6 bool `toml:"ipv6"`
	// Loopback uses loopback addresses (127.0.0.0/8, ::1).
	Loopback bool `toml:"loopback"`
	// LinkLocal uses link-local addresses (169.254.0.0/16, fe80::/10).
	LinkLocal bool `toml:"link_local"`
	// ULA uses IPv6 unique local addresses (fc00::/7).
	ULA bool `toml:"ula"`
	// Temporary uses IPv6 temporary (privacy) addresses.
	Temporary bool `toml:"temporary"`
	// RequireRoute uses only addresses whose interface has a route other
	// than the one to its own subnet, e.g. a default route.
	RequireRoute bool `toml:"require_route"`
	// AllowPrefixes, when not empty, limits the addresses used to those
	// inside one of its prefixes.
	AllowPrefixes []netip.Prefix `toml:"allow_prefixes"`
	// DenyPrefixes are never used, whatever AllowPrefixes says.
	DenyPrefixes []netip.Prefix `toml:"deny_prefixes"`
}

// Interfaces select the interfaces considered at all; see Config.Match.
// Patterns are shell-style, in path.Match syntax ("eth*", "wlan?",
// "en[ops]*").
type Interfaces struct {
	// Allow are the patterns of the names of interfaces considered.
	Allow []string `toml:"allow"`
	// Deny are the patterns of names never used; deny wins over allow.
	Deny []string `toml:"deny"`
	// DenyKinds are the kinds of interface never used.
	DenyKinds []Kind `toml:"deny_kinds"`
}

// Kind is what an interface is, as the daemon classifies it from its link
// attributes.
type Kind string

const (
	// KindPhysical is a hardware network device: Ethernet, Wi-Fi.
	KindPhysical Kind = "physical"
	// KindVeth is one end of a virtual Ethernet pair.
	KindVeth Kind = "veth"
	// KindBridge is a software bridge.
	KindBridge Kind = "bridge"
	// KindVLAN is an 802.1Q VLAN device.
	KindVLAN Kind = "vlan"
	// KindBond is a bonding (link aggregation) device.
	KindBond Kind = "bond"
	// KindWireGuard is a WireGuard tunnel.
	KindWireGuard Kind = "wireguard"
	// KindTun is a TUN or TAP device, as VPN clients use.
	KindTun Kind = "tun"
	// KindWWAN is a cellular (mobile broadband) modem.
	KindWWAN Kind = "wwan"
	// KindLoopback is the loopback device.
	KindLoopback Kind = "loopback"
	// KindDummy is a dummy device.
	KindDummy Kind = "dummy"
	// KindMacvlan is a macvlan or macvtap device.
	KindMacvlan Kind = "macvlan"
	// KindIPvlan is an ipvlan device.
	KindIPvlan Kind = "ipvlan"
	// KindVXLAN is a VXLAN tunnel.
	KindVXLAN Kind = "vxlan"
	// KindOther is any other interface.
	KindOther Kind = "other"
)

// Kinds returns every kind, in the order the documentation lists them.
func Kinds() []Kind {
	return []Kind{
		KindPhysical, KindVeth, KindBridge, KindVLAN, KindBond, KindWireGuard, KindTun,
		KindWWAN, KindLoopback, KindDummy, KindMacvlan, KindIPvlan, KindVXLAN, KindOther,
	}
}

// Known reports whether k is one of the kinds Kinds returns.
func (k Kind) Known() bool { return slices.Contains(Kinds(), k) }

// Rule gives the interfaces it matches their endpoint flags.
type Rule struct {
	// Name names the rule in logs. Parse sets it to "rule N" (N counting
	// [[rule]] tables from 1) when the file gives none. Names given must
	// be unique.
	Name string `toml:"name"`
	// Interfaces are the patterns of the names of interfaces the rule
	// matches (path.Match syntax); empty matches any name.
	Interfaces []string `toml:"interfaces"`
	// Kinds are the kinds of interface the rule matches; empty matches any.
	Kinds []Kind `toml:"kinds"`
	// Flags are the endpoint flags of the rule's addresses: "signal",
	// "subflow", "backup", "fullmesh", "laminar". Empty makes endpoints
	// without flags, which the kernel uses only for the subflows the peer
	// opens towards them. See EndpointFlags.
	Flags []string `toml:"flags"`
	// Port, if not 0, is announced with a signal endpoint's address, and
	// the kernel listens on it. It requires the signal flag.
	Port uint16 `toml:"port"`
	// Preference orders addresses when more qualify than the kernel's 8
	// endpoints: higher wins.
	Preference int `toml:"preference"`
}

// EndpointFlags returns Flags as genl.EndpointFlags. Words that are not
// flags are ignored; Validate reports them.
func (r Rule) EndpointFlags() genl.EndpointFlags {
	var f genl.EndpointFlags
	for _, word := range r.Flags {
		if b, err := genl.ParseEndpointFlags(word); err == nil {
			f |= b
		}
	}
	return f
}

// Default returns the configuration an empty file gives: kernel mode, both
// limits "auto", global unicast IPv4 and IPv6 addresses (including ULAs) of
// any interface but loopback, and one rule, "default", that gives the
// addresses of physical, wwan, vlan and bond interfaces the subflow flag;
// in userspace mode, a full mesh on client-side connections and
// announcements on server-side ones.
func Default() *Config {
	return &Config{
		Mode:     ModeKernel,
		StateDir: "/run/mptcpd",
		Log:      Log{Level: "info", Format: "text"},
		Limits: Limits{
			Subflows:        Limit{Auto: true},
			AddAddrAccepted: Limit{Auto: true},
		},
		Addresses: Addresses{IPv4: true, IPv6: true, ULA: true},
		Interfaces: Interfaces{
			Allow:     []string{"*"},
			DenyKinds: []Kind{KindLoopback},
		},
		Rules: []Rule{{
			Name:  "default",
			Kinds: []Kind{KindPhysical, KindWWAN, KindVLAN, KindBond},
			Flags: []string{"subflow"},
		}},
		Userspace: defaultUserspace(),
		Fallback:  defaultFallback(),
		Converter: defaultConverter(),
	}
}

// Load reads the configuration file at path and parses it with Parse. A
// missing file is an error that wraps fs.ErrNotExist.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("configuration file %s does not exist: create it from the commented default, e.g. `install -D -m 0644 systemd/mptcpd.toml %s` in the mptcpd sources (an empty file means all defaults): %w", path, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading configuration file: %w", err)
	}
	return Parse(data, path)
}

// Parse parses a configuration file: the defaults, overlaid with the keys
// the file sets, then validated. A [[rule]] list in the file replaces the
// default rules. filename only labels errors.
//
// The error, if any, is an *Error or, for several problems, an error that
// joins them (errors.As finds the first); each names the line and the key.
func Parse(data []byte, filename string) (*Config, error) {
	d := newDocument(data, filename)
	if err := d.index(); err != nil {
		return nil, d.syntaxError(err)
	}
	if len(d.errs) > 0 {
		return nil, joinErrors(d.errs)
	}
	c := Default()
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().EnableUnmarshalerInterface()
	if err := dec.Decode(c); err != nil {
		return nil, d.decodeError(err)
	}
	c.Userspace.fillRuleDefaults(d)
	c.normalize()
	if errs := c.validate(d); len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return c, nil
}

// normalize makes empty lists nil, so that a file that spells out a default
// empty list gives the same Config as one that leaves it out, and names
// unnamed rules.
func (c *Config) normalize() {
	c.Userspace.normalize()
	c.Fallback.normalize()
	c.Converter.normalize()
	nilIfEmpty(&c.Addresses.AllowPrefixes)
	nilIfEmpty(&c.Addresses.DenyPrefixes)
	nilIfEmpty(&c.Interfaces.Allow)
	nilIfEmpty(&c.Interfaces.Deny)
	nilIfEmpty(&c.Interfaces.DenyKinds)
	nilIfEmpty(&c.Rules)
	for i := range c.Rules {
		r := &c.Rules[i]
		nilIfEmpty(&r.Interfaces)
		nilIfEmpty(&r.Kinds)
		nilIfEmpty(&r.Flags)
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule %d", i+1)
		}
	}
}

func nilIfEmpty[S ~[]E, E any](s *S) {
	if len(*s) == 0 {
		*s = nil
	}
}

// Error is one problem with a configuration.
type Error struct {
	// File is the file name given to Parse; "" from Validate.
	File string
	// Line is the line of the key in the file, counted from 1; 0 when
	// unknown, as from Validate.
	Line int
	// Key is the key at fault, e.g. "rule[2].flags"; "" for a syntax error.
	Key string
	// Msg says what is wrong and what is allowed.
	Msg string
}

// Error returns "file:line: key: message", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// joinErrors returns the problems in the order of their lines.
func joinErrors(errs []*Error) error {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// Validate checks the configuration as Parse does, reporting every problem
// by its key (with no file or line). See Parse for the form of the error.
func (c *Config) Validate() error {
	if errs := c.validate(nil); len(errs) > 0 {
		return joinErrors(errs)
	}
	return nil
}

// problems collects validation errors, placing them in the document d when
// there is one.
type problems struct {
	d    *document
	errs []*Error
}

// add reports a problem with key; elem, if not 0, is the element of the
// list at key (counted from 1) that is at fault, whose line is used.
func (p *problems) add(key string, elem int, format string, args ...any) {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if p.d != nil {
		e.File = p.d.file
		lineKey := key
		if elem > 0 {
			lineKey = fmt.Sprintf("%s[%d]", key, elem)
		}
		e.Line = p.d.line(lineKey)
	}
	p.errs = append(p.errs, e)
}

func (c *Config) validate(d *document) []*Error {
	p := &problems{d: d}

	if !slices.Contains(Modes(), c.Mode) {
		p.add("mode", 0, "unknown mode %q (want %s)", c.Mode, join(Modes()))
	}
	if c.NetNS != "" {
		if err := netns.ValidName(c.NetNS); err != nil {
			p.add("netns", 0, "%v (want a namespace name as `ip netns list` shows it, or \"\" for the daemon's own namespace)", err)
		}
	}
	switch {
	case c.StateDir == "":
		p.add("state_dir", 0, `empty (want an absolute path, e.g. "/run/mptcpd")`)
	case strings.ContainsRune(c.StateDir, 0):
		p.add("state_dir", 0, `contains a NUL byte (want an absolute path, e.g. "/run/mptcpd")`)
	case !filepath.IsAbs(c.StateDir):
		p.add("state_dir", 0, `%q is not an absolute path (want one starting with "/", e.g. "/run/mptcpd")`, c.StateDir)
	}

	if !slices.Contains(logLevels(), c.Log.Level) {
		p.add("log.level", 0, "unknown log level %q (want %s)", c.Log.Level, join(logLevels()))
	}
	if !slices.Contains(logFormats(), c.Log.Format) {
		p.add("log.format", 0, "unknown log format %q (want %s)", c.Log.Format, join(logFormats()))
	}

	for _, l := range []struct {
		key   string
		limit Limit
	}{
		{"limits.subflows", c.Limits.Subflows},
		{"limits.add_addr_accepted", c.Limits.AddAddrAccepted},
	} {
		if !l.limit.Auto && l.limit.Value > MaxLimit {
			p.add(l.key, 0, "%d is above the kernel's maximum of %d (want %s)", l.limit.Value, MaxLimit, wantLimit)
		}
	}

	a := c.Addresses
	if !a.IPv4 && !a.IPv6 {
		p.add("addresses.ipv4", 0, "ipv4 and ipv6 are both false, so no address could be used (set at least one of them to true)")
	}
	checkPrefixes(p, "addresses.allow_prefixes", a.AllowPrefixes)
	checkPrefixes(p, "addresses.deny_prefixes", a.DenyPrefixes)

	in := c.Interfaces
	if len(in.Allow) == 0 {
		p.add("interfaces.allow", 0, `empty, so no interface would be used (want at least one pattern, e.g. ["*"] for all)`)
	}
	checkPatterns(p, "interfaces.allow", in.Allow)
	checkPatterns(p, "interfaces.deny", in.Deny)
	checkKinds(p, "interfaces.deny_kinds", in.DenyKinds)

	if len(c.Rules) == 0 {
		p.add("rule", 0, "no rules, so no interface would be used (add at least one [[rule]] table)")
	}
	checkNames(p, "rule", c.Rules, func(r *Rule) string { return r.Name })
	for i, r := range c.Rules {
		key := fmt.Sprintf("rule[%d]", i+1)
		checkPatterns(p, key+".interfaces", r.Interfaces)
		checkKinds(p, key+".kinds", r.Kinds)
		f := checkFlags(p, key+".flags", r.Flags)
		if r.Port != 0 && f&genl.FlagSignal == 0 {
			p.add(key+".port", 0, `a port needs the signal flag (add "signal" to flags, or set port = 0)`)
		}
	}
	c.Userspace.validate(p)
	c.Fallback.validate(p, c.Mode)
	c.Converter.validate(p)
	c.validateAPI(p)
	return p.errs
}

// validateAPI checks the [api] and [metrics] tables. Groups must exist on
// this host.
func (c *Config) validateAPI(p *problems) {
	a := c.API
	if a.Socket != "" && (!filepath.IsAbs(a.Socket) || strings.ContainsRune(a.Socket, 0)) {
		p.add("api.socket", 0, `%q is not an absolute path (want one starting with "/", or "" for one under state_dir)`, a.Socket)
	}
	for _, g := range []struct{ key, name string }{{"api.group", a.Group}, {"api.admin_group", a.AdminGroup}} {
		if g.name == "" {
			continue
		}
		if _, err := user.LookupGroup(g.name); err != nil {
			p.add(g.key, 0, "no group %q on this host (create it with `groupadd %s`, or set \"\")", g.name, g.name)
		}
	}
	checkHostPort(p, "metrics.listen", c.Metrics.Listen)
	t := a.TCP
	if t.Listen == "" {
		return
	}
	host, ok := checkHostPort(p, "api.tcp.listen", t.Listen)
	if !ok {
		return
	}
	if t.Insecure {
		if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
			p.add("api.tcp.insecure", 0, "a listener without TLS must be bound to a loopback address, not %q (bind it to 127.0.0.1 or ::1, or set cert, key and client_ca)", host)
		}
		return
	}
	var missing []string
	for _, f := range []struct{ key, path string }{{"api.tcp.cert", t.Cert}, {"api.tcp.key", t.Key}, {"api.tcp.client_ca", t.ClientCA}} {
		switch {
		case f.path == "":
			missing = append(missing, strings.TrimPrefix(f.key, "api.tcp."))
		case !filepath.IsAbs(f.path):
			p.add(f.key, 0, "%q is not an absolute path", f.path)
		}
	}
	if len(missing) > 0 {
		p.add("api.tcp.listen", 0, "a TCP listener needs mutual TLS, but %s not set (set cert, key and client_ca in [api.tcp]; or bind to 127.0.0.1 or ::1 with insecure = true)", strings.Join(missing, ", "))
	}
}

// checkHostPort checks a "host:port" listen address; "" is none.
func checkHostPort(p *problems, key, hp string) (host string, ok bool) {
	if hp == "" {
		return "", false
	}
	host, port, err := net.SplitHostPort(hp)
	if err == nil {
		var n uint64
		n, err = strconv.ParseUint(port, 10, 16)
		if err == nil && n == 0 {
			err = errors.New("port 0")
		}
	}
	if err != nil {
		p.add(key, 0, "%q is not host:port (%v; want e.g. \"127.0.0.1:9184\" or \"[::1]:9184\")", hp, err)
		return "", false
	}
	return host, true
}

func logLevels() []string  { return []string{"debug", "info", "warn", "error"} }
func logFormats() []string { return []string{"text", "json"} }

// flagWords are the flags a rule may set, in the kernel's bit order.
func flagWords() []string { return []string{"signal", "subflow", "backup", "fullmesh", "laminar"} }

const wantPrefix = `CIDR notation such as "192.0.2.0/24" or "2001:db8::/32"`

// join lists words for a "(want ...)" hint.
func join[S ~[]E, E ~string](list S) string {
	words := make([]string, len(list))
	for i, w := range list {
		words[i] = string(w)
	}
	return strings.Join(words, ", ")
}

// checkPrefixes reports the elements of a list of prefixes that are not
// valid, or that no address matches because addresses are compared
// unmapped.
func checkPrefixes(p *problems, key string, list []netip.Prefix) {
	for i, pfx := range list {
		switch {
		case !pfx.IsValid():
			p.add(key, i+1, "element %d is not a valid prefix (want %s)", i+1, wantPrefix)
		case pfx.Addr().Is4In6() && pfx.Bits() >= 96:
			v4 := netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
			p.add(key, i+1, "%s is an IPv4-mapped IPv6 prefix, which matches nothing: addresses are compared as IPv4 (write %q)", pfx, v4)
		}
	}
}

// checkNames reports the elements of the list at key whose name, if any,
// an earlier element has.
func checkNames[E any](p *problems, key string, list []E, name func(*E) string) {
	first := make(map[string]int)
	for i := range list {
		n := name(&list[i])
		if n == "" {
			continue
		}
		if j, ok := first[n]; ok {
			p.add(fmt.Sprintf("%s[%d].name", key, i+1), 0, "%q is also the name of %s[%d] (give each rule its own name)", n, key, j)
		} else {
			first[n] = i + 1
		}
	}
}

func checkPatterns(p *problems, key string, patterns []string) {
	for i, pat := range patterns {
		if err := checkPattern(pat); err != nil {
			p.add(key, i+1, "%v (want shell-style name patterns such as \"eth*\", \"wlan?\" or \"en[ops]*\")", err)
		}
	}
}

func checkPattern(pat string) error {
	switch {
	case pat == "":
		return errors.New("empty pattern")
	case strings.ContainsRune(pat, '/'):
		return fmt.Errorf("pattern %q contains '/', which no interface name does", pat)
	}
	// path.Match checks the whole pattern's syntax, even on a mismatch.
	if _, err := path.Match(pat, ""); err != nil {
		return fmt.Errorf("bad pattern %q: %v", pat, err)
	}
	return nil
}

func checkKinds(p *problems, key string, kinds []Kind) {
	for i, k := range kinds {
		if !k.Known() {
			p.add(key, i+1, "unknown kind %q (want %s)", k, join(Kinds()))
		}
	}
}

// checkFlags reports the problems of a rule's flags and returns the flags
// that are valid.
func checkFlags(p *problems, key string, words []string) genl.EndpointFlags {
	var all genl.EndpointFlags
	for i, word := range words {
		if word == "" || strings.ContainsAny(word, ", \t") {
			p.add(key, i+1, "%q is not one flag (write each flag as its own string, e.g. [\"subflow\", \"backup\"]; want %s)", word, join(flagWords()))
			continue
		}
		f, err := genl.ParseEndpointFlags(word)
		switch {
		case err != nil:
			p.add(key, i+1, "unknown flag %q (want %s)", word, join(flagWords()))
			continue
		case f == genl.FlagImplicit:
			p.add(key, i+1, "flag %q is set by the kernel only (want %s)", word, join(flagWords()))
			continue
		case all&f != 0:
			p.add(key, i+1, "flag %q is listed twice (list each flag once)", word)
			continue
		}
		all |= f
	}
	if all&genl.FlagSignal != 0 && all&genl.FlagFullmesh != 0 {
		p.add(key, 0, "signal and fullmesh cannot be combined, the kernel refuses it (use signal to announce the address to peers, or fullmesh to open subflows from it to every peer address)")
	}
	return all
}

// A document is a configuration file's text with the position of each key
// in it. Keys are written as in errors: "limits.subflows", "rule[2].flags",
// and "rule[2].flags[1]" for the first element of that list.
type document struct {
	file       string
	data       []byte
	lineStarts []int // offset of the first byte of each line

	// keys holds the first place each key is defined; pos finds the key
	// that starts at a line and column.
	keys   map[string]place
	pos    map[[2]int]string
	arrays map[string]int // [[table]] counts by key

	// errs are the problems found while indexing: values of the wrong
	// type, keys that differ from a known key by case, keys defined twice.
	errs []*Error
}

type place struct {
	line int
	what placeKind
}

type placeKind int

const (
	placeValue  placeKind = iota // a key = value
	placeHeader                  // a [table] or [[table]] header
	placeOther                   // an element of a list, or the first part of a dotted key
)

func newDocument(data []byte, file string) *document {
	d := &document{
		file:       file,
		data:       data,
		lineStarts: []int{0},
		keys:       make(map[string]place),
		pos:        make(map[[2]int]string),
		arrays:     make(map[string]int),
	}
	for i, b := range data {
		if b == '\n' {
			d.lineStarts = append(d.lineStarts, i+1)
		}
	}
	return d
}

// position returns the line and column, both counted from 1, of a byte
// offset, as go-toml's DecodeError.Position does.
func (d *document) position(off int) (line, col int) {
	i := sort.Search(len(d.lineStarts), func(i int) bool { return d.lineStarts[i] > off })
	return i, off - d.lineStarts[i-1] + 1
}

// line returns the line of key, or of the nearest enclosing key the file
// has, or 0.
func (d *document) line(key string) int {
	if d == nil {
		return 0
	}
	for key != "" {
		if p, ok := d.keys[key]; ok {
			return p.line
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// has reports whether the document defines key.
func (d *document) has(key string) bool {
	_, ok := d.keys[key]
	return ok
}

func (d *document) record(key string, r unstable.Range, what placeKind) {
	if r.Length == 0 || int(r.Offset) >= len(d.data) {
		return // the parser gives arrays no range
	}
	line, col := d.position(int(r.Offset))
	if prev, ok := d.keys[key]; ok {
		switch {
		case what == placeValue && prev.what == placeValue:
			d.errorAt(line, key, "defined twice, first on line %d (keep one)", prev.line)
		case what == placeHeader && prev.what == placeHeader:
			d.errorAt(line, key, "table defined twice, first on line %d (merge the two)", prev.line)
		}
	} else {
		d.keys[key] = place{line: line, what: what}
	}
	d.pos[[2]int{line, col}] = key
}

func (d *document) errorAt(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *document) errorAtRange(r unstable.Range, key, format string, args ...any) {
	line := d.line(key)
	if r.Length > 0 && int(r.Offset) < len(d.data) {
		line, _ = d.position(int(r.Offset))
	}
	d.errorAt(line, key, format, args...)
}

// index walks the document, recording where each key is and checking each
// value against the type of its field in Config. It returns the parser's
// error for a document that is not TOML.
func (d *document) index() error {
	var p unstable.Parser
	p.Reset(d.data)
	table, t := "", reflect.TypeFor[Config]()
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table, t = d.header(e)
		case unstable.KeyValue:
			d.keyValue(table, t, e)
		}
	}
	return p.Error()
}

type keyPart struct {
	name string
	r    unstable.Range
}

func keyParts(e *unstable.Node) []keyPart {
	var parts []keyPart
	it := e.Key()
	for it.Next() {
		n := it.Node()
		parts = append(parts, keyPart{name: string(n.Data), r: n.Raw})
	}
	return parts
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// header records a [table] or [[table]] header and returns the key and the
// Config type of the table it starts; the type is nil outside Config.
func (d *document) header(e *unstable.Node) (string, reflect.Type) {
	parts := keyParts(e)
	if len(parts) == 0 {
		return "", nil
	}
	key, t := "", reflect.TypeFor[Config]()
	for i, kp := range parts {
		t = d.field(t, key, kp)
		key = joinKey(key, kp.name)
		if i < len(parts)-1 {
			// [a.b] with a a list of tables means b of a's last element.
			if n := d.arrays[key]; n > 0 {
				key = fmt.Sprintf("%s[%d]", key, n)
				if t != nil && isTableList(t) {
					t = t.Elem()
				}
			}
			if t != nil && !isTable(t) {
				d.errorAtRange(kp.r, key, "got a table, want %s", want(key))
				t = nil
			}
		}
	}
	first := parts[0].r
	if e.Kind == unstable.ArrayTable {
		switch {
		case t == nil:
		case isTableList(t):
			t = t.Elem()
		case isTable(t):
			d.errorAtRange(first, key, "one table, not a list of them (write [%s], not [[%s]])", key, key)
			t = nil
		default:
			d.errorAtRange(first, key, "got a list of tables, want %s", want(key))
			t = nil
		}
		d.arrays[key]++
		key = fmt.Sprintf("%s[%d]", key, d.arrays[key])
	} else {
		switch {
		case t == nil || isTable(t):
		case isTableList(t):
			d.errorAtRange(first, key, "a list of tables (write [[%s]], not [%s])", key, key)
			t = nil
		default:
			d.errorAtRange(first, key, "got a table, want %s", want(key))
			t = nil
		}
	}
	d.record(key, first, placeHeader)
	return key, t
}

// keyValue records a key = value in the table at key table, of type t,
// and checks the value.
func (d *document) keyValue(table string, t reflect.Type, e *unstable.Node) {
	parts := keyParts(e)
	if len(parts) == 0 {
		return
	}
	key := table
	for i, kp := range parts {
		if i > 0 {
			if t != nil && !isTable(t) {
				d.errorAtRange(kp.r, key, "got a table, want %s", want(key))
				t = nil
			}
			d.record(key, parts[0].r, placeOther)
		}
		t = d.field(t, key, kp)
		key = joinKey(key, kp.name)
	}
	d.record(key, parts[0].r, placeValue)
	d.value(key, t, e.Value())
}

// field returns the type of the field of struct type t whose TOML key is
// kp.name, or nil. A key that matches a field's key only when case is
// ignored is an error: go-toml would accept it, but it is not what the
// documentation says.
func (d *document) field(t reflect.Type, parent string, kp keyPart) reflect.Type {
	if t == nil || !isTable(t) {
		return nil
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if tomlKey(f) == kp.name {
			return f.Type
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if k := tomlKey(f); strings.EqualFold(k, kp.name) {
			d.errorAtRange(kp.r, joinKey(parent, kp.name), "unknown key (keys are lower case: write %q)", k)
			return nil
		}
	}
	return nil
}

// value checks a value against the type of its field, t, and records where
// the elements of lists and the keys of inline tables are. t is nil for
// keys outside Config, which the decoder reports.
func (d *document) value(key string, t reflect.Type, n *unstable.Node) {
	if t == nil {
		d.walkUnknown(key, n)
		return
	}
	mismatch := func() {
		d.errorAtRange(n.Raw, key, "got %s, want %s", kindName(n.Kind), want(key))
	}
	switch {
	case t == reflect.TypeFor[Limit]():
		var err error
		switch n.Kind {
		case unstable.String:
			_, err = parseLimitString(string(n.Data))
		case unstable.Integer:
			var v int64
			if v, err = strconv.ParseInt(string(n.Data), 0, 64); err != nil {
				err = fmt.Errorf("%s is out of range (want %s)", n.Data, wantLimit)
			} else {
				_, err = parseLimitInt(v)
			}
		default:
			mismatch()
		}
		if err != nil {
			d.errorAtRange(n.Raw, key, "%v", err)
		}
		return
	case t == reflect.TypeFor[netip.Prefix]():
		if n.Kind != unstable.String {
			mismatch()
			return
		}
		if _, err := netip.ParsePrefix(string(n.Data)); err != nil {
			d.errorAtRange(n.Raw, key, "invalid prefix %q: %v (want %s)", n.Data, err, wantPrefix)
		}
		return
	case t == reflect.TypeFor[Duration]():
		if n.Kind != unstable.String {
			mismatch()
			return
		}
		if _, err := parseDuration(string(n.Data)); err != nil {
			d.errorAtRange(n.Raw, key, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind != unstable.Bool {
			mismatch()
		}
	case reflect.String:
		if n.Kind != unstable.String {
			mismatch()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != unstable.Integer {
			mismatch()
			return
		}
		v, err := strconv.ParseInt(string(n.Data), 0, 64)
		if err != nil || !fits(t, v) {
			d.errorAtRange(n.Raw, key, "%s is out of range (want %s)", n.Data, want(key))
		}
	case reflect.Slice:
		if n.Kind != unstable.Array {
			mismatch()
			return
		}
		it := n.Children()
		for i := 1; it.Next(); i++ {
			el := it.Node()
			elKey := fmt.Sprintf("%s[%d]", key, i)
			d.record(elKey, el.Raw, placeOther)
			d.value(elKey, t.Elem(), el)
		}
	case reflect.Struct:
		if n.Kind != unstable.InlineTable {
			mismatch()
			return
		}
		d.inlineTable(key, t, n)
	default:
		mismatch()
	}
}

func (d *document) inlineTable(key string, t reflect.Type, n *unstable.Node) {
	it := n.Children()
	for it.Next() {
		if kv := it.Node(); kv.Kind == unstable.KeyValue {
			d.keyValue(key, t, kv)
		}
	}
}

// walkUnknown records the places inside a value outside Config, so that
// the decoder's reports of unknown keys can be given their full key.
func (d *document) walkUnknown(key string, n *unstable.Node) {
	switch n.Kind {
	case unstable.Array:
		it := n.Children()
		for i := 1; it.Next(); i++ {
			elKey := fmt.Sprintf("%s[%d]", key, i)
			d.record(elKey, it.Node().Raw, placeOther)
			d.walkUnknown(elKey, it.Node())
		}
	case unstable.InlineTable:
		d.inlineTable(key, nil, n)
	}
}

func fits(t reflect.Type, v int64) bool {
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v >= 0 && (t.Bits() >= 64 || uint64(v) < 1<<t.Bits())
	default:
		return t.Bits() >= 64 || (v >= -1<<(t.Bits()-1) && v < 1<<(t.Bits()-1))
	}
}

// isTable reports whether values of t are TOML tables: structs, but for
// the types that are written as one value.
func isTable(t reflect.Type) bool {
	switch t {
	case reflect.TypeFor[Limit](), reflect.TypeFor[netip.Prefix](), reflect.TypeFor[Duration]():
		return false
	}
	return t.Kind() == reflect.Struct
}

func isTableList(t reflect.Type) bool { return t.Kind() == reflect.Slice && isTable(t.Elem()) }

func tomlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// typeAt returns the Config type of key, ignoring list indexes, or nil.
func typeAt(key string) reflect.Type {
	t := reflect.TypeFor[Config]()
	if key == "" {
		return t
	}
	for _, name := range strings.Split(stripIndexes(key), ".") {
		if isTableList(t) {
			t = t.Elem()
		}
		if !isTable(t) {
			return nil
		}
		var next reflect.Type
		for i := range t.NumField() {
			if f := t.Field(i); tomlKey(f) == name {
				next = f.Type
			}
		}
		if next == nil {
			return nil
		}
		t = next
	}
	return t
}

// stripIndexes removes the list indexes from a key: "rule[2].flags[1]"
// becomes "rule.flags".
func stripIndexes(key string) string {
	var b strings.Builder
	depth := 0
	for _, r := range key {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Bool:
		return "a boolean"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Array:
		return "a list"
	case unstable.InlineTable:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date or time"
	}
	return "a " + strings.ToLower(k.String())
}

// want describes what key takes. An element of a list ("rule[1].flags[2]")
// is described as such.
func want(key string) string {
	elem := strings.HasSuffix(key, "]")
	switch stripIndexes(key) {
	case "mode":
		return `a string: "kernel", "userspace", "fallback" or "auto"`
	case "netns":
		return "a string: a namespace name as `ip netns list` shows it, or \"\" for the daemon's own"
	case "state_dir":
		return `a string: an absolute path, e.g. "/run/mptcpd"`
	case "keep_on_exit", "keep_path_manager",
		"addresses.ipv4", "addresses.ipv6", "addresses.loopback", "addresses.link_local",
		"addresses.ula", "addresses.temporary", "addresses.require_route":
		return "true or false"
	case "log.level":
		return `a string: "debug", "info", "warn" or "error"`
	case "log.format":
		return `a string: "text" or "json"`
	case "limits.subflows", "limits.add_addr_accepted":
		return wantLimit
	case "addresses.allow_prefixes", "addresses.deny_prefixes",
		"userspace.peer.allow_prefixes", "userspace.peer.deny_prefixes", "userspace.rule.remote_prefixes",
		"fallback.capture.exclude_prefixes", "converter.allow_prefixes", "converter.deny_prefixes":
		if elem {
			return "a string in " + wantPrefix
		}
		return `a list of prefixes, e.g. ["192.0.2.0/24", "2001:db8::/32"]`
	case "fallback.capture.tproxy_interfaces":
		if elem {
			return `a string: an interface name such as "eth1"`
		}
		return `a list of interface names, e.g. ["eth1", "wlan0"]`
	case "interfaces.allow", "interfaces.deny", "rule.interfaces":
		if elem {
			return `a string: an interface name pattern such as "eth*"`
		}
		return `a list of interface name patterns, e.g. ["eth*", "wlan0"]`
	case "interfaces.deny_kinds", "rule.kinds":
		if elem {
			return "a string: one of " + join(Kinds())
		}
		return `a list of kinds, e.g. ["physical", "wwan"]`
	case "rule.flags":
		if elem {
			return "a string: one of " + join(flagWords())
		}
		return `a list of flags, e.g. ["subflow", "backup"]`
	case "rule.name", "userspace.rule.name":
		return "a string"
	case "rule.port":
		return "an integer 0..65535 (0 for none)"
	case "rule.preference":
		return "an integer (higher wins)"
	case "rule", "userspace.rule":
		if elem {
			return fmt.Sprintf("a [[%s]] table", stripIndexes(key))
		}
		return fmt.Sprintf("[[%s]] tables", stripIndexes(key))
	case "userspace.peer.accept", "userspace.rule.announce":
		return "true or false"
	case "userspace.peer.max_accepted":
		return fmt.Sprintf("an integer 0..%d", maxAcceptedMax)
	case "userspace.peer.rate":
		return fmt.Sprintf("an integer 1..%d (announcements per second)", rateMax)
	case "userspace.retry.initial":
		return fmt.Sprintf("a duration %s..%s: %s", Duration{initialMin}, Duration{initialMax}, wantDuration)
	case "userspace.retry.max":
		return fmt.Sprintf("a duration from initial up to %s: %s", Duration{retryMaxMax}, wantDuration)
	case "userspace.retry.attempts":
		return fmt.Sprintf("an integer 0..%d (0 never re-creates)", attemptsMax)
	case "userspace.rule.side":
		return `a string: "client", "server" or "any"`
	case "userspace.rule.remote_ports", "userspace.rule.local_ports", "fallback.capture.ports", "converter.allow_ports":
		if elem {
			return "an integer 1..65535"
		}
		return "a list of ports, e.g. [443, 8443]"
	case "userspace.rule.strategy":
		return `a string: "fullmesh", "per-interface", "ndiffports", "backup" or "none"`
	case "userspace.rule.max_subflows":
		return fmt.Sprintf("an integer 1..%d (the initial subflow included)", subflowsMax)
	case "userspace.rule.subflows":
		return fmt.Sprintf("an integer 2..%d, at most max_subflows", subflowsMax)
	case "userspace.rule.announce_port":
		return "an integer 0..65535 (0 for the connection's own port)"
	case "api.socket":
		return `a string: an absolute path, or "" for one under state_dir`
	case "api.group", "api.admin_group":
		return `a string: a group name from /etc/group, or ""`
	case "api.tcp.listen", "metrics.listen":
		return `a string: "host:port", e.g. "127.0.0.1:9184", or "" for none`
	case "api.tcp.cert", "api.tcp.key", "api.tcp.client_ca":
		return `a string: an absolute path to a PEM file`
	case "api.tcp.insecure":
		return "true or false"
	case "fallback.converter":
		return `a string: the converter's IP address and port, e.g. "192.0.2.1:7445" or "[2001:db8::1]:7445"`
	case "fallback.key_id":
		return fmt.Sprintf(`a string: the key id the converter's keys file gives this client, 1..%d printable ASCII characters without spaces or "#", e.g. "laptop"`, keyIDMax)
	case "fallback.key_file", "fallback.socks_users_file", "converter.keys_file":
		return `a string: an absolute path, or "" for none`
	case "fallback.tls.cert", "fallback.tls.key", "fallback.tls.ca",
		"converter.tls.cert", "converter.tls.key", "converter.tls.client_ca":
		return `a string: an absolute path to a PEM file, or "" for none`
	case "fallback.tls.server_name":
		return `a string: the name the converter's certificate carries, or "" for its address`
	case "fallback.scheduler":
		return `a string: "minrtt", "roundrobin" or "redundant"`
	case "fallback.stale_loss_cnt":
		return fmt.Sprintf("an integer 1..%d (retransmission timeouts)", staleLossCntMax)
	case "fallback.receive_window", "fallback.send_buffer":
		return fmt.Sprintf("an integer %d..%d (bytes: 64 KiB to 1 GiB)", bufferMin, bufferMax)
	case "fallback.socks_listen":
		return `a string: "host:port", e.g. "127.0.0.1:1080", or "" for none`
	case "fallback.mark":
		return fmt.Sprintf("an integer 1..4294967295, e.g. %#x", DefaultMark)
	case "fallback.capture.redirect_port", "fallback.capture.tproxy_port":
		return "an integer 0..65535 (0 for none)"
	case "converter.enabled", "converter.allow_loopback", "converter.allow_link_local", "converter.allow_own":
		return "true or false"
	case "converter.listen":
		if elem {
			return `a string: "host:port", e.g. "[::]:7445"`
		}
		return `a list of "host:port" addresses, e.g. ["[::]:7445"]`
	case "converter.max_sessions_per_key":
		return fmt.Sprintf("an integer 1..%d", sessionsPerKeyMax)
	case "converter.dial_timeout":
		return fmt.Sprintf("a duration %s..%s: %s", Duration{dialTimeoutMin}, Duration{dialTimeoutMax}, wantDuration)
	case "log", "limits", "addresses", "interfaces", "api", "api.tcp", "metrics",
		"userspace", "userspace.peer", "userspace.retry",
		"fallback", "fallback.tls", "fallback.capture", "converter", "converter.tls":
		return fmt.Sprintf("a table, [%s]", key)
	}
	return "what systemd/mptcpd.toml shows"
}

// syntaxError reports a document that is not TOML. The decoder, given the
// same bytes, reports the same failure with its line and column.
func (d *document) syntaxError(perr error) error {
	var v map[string]any
	err := toml.Unmarshal(d.data, &v)
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return &Error{File: d.file, Line: line, Msg: fmt.Sprintf("not valid TOML: column %d: %s (see https://toml.io for the syntax)", col, strings.TrimPrefix(de.Error(), "toml: "))}
	}
	return &Error{File: d.file, Msg: fmt.Sprintf("not valid TOML: %v (see https://toml.io for the syntax)", perr)}
}

// decodeError turns the decoder's errors into Errors.
func (d *document) decodeError(err error) error {
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict):
		errs := make([]*Error, 0, len(strict.Errors))
		for i := range strict.Errors {
			errs = append(errs, d.unknownKey(&strict.Errors[i]))
		}
		return joinErrors(errs)
	case errors.As(err, &de):
		line, col := de.Position()
		key, ok := d.pos[[2]int{line, col}]
		if !ok {
			key = strings.Join(de.Key(), ".")
		}
		return &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf("%s (see systemd/mptcpd.toml for the layout; each key and table may be defined once)", strings.TrimPrefix(de.Error(), "toml: "))}
	}
	return &Error{File: d.file, Msg: err.Error()}
}

// unknownKey describes a key the decoder found no field for, with the keys
// its table takes.
func (d *document) unknownKey(de *toml.DecodeError) *Error {
	line, col := de.Position()
	key, ok := d.pos[[2]int{line, col}]
	if !ok {
		key = strings.Join(de.Key(), ".")
	}
	what := "key"
	if p, ok := d.keys[key]; ok && p.what == placeHeader {
		what = "table"
	}
	parent := ""
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		parent = key[:i]
	}
	msg := fmt.Sprintf("unknown %s (see systemd/mptcpd.toml for the keys)", what)
	t := typeAt(parent)
	if t != nil && isTableList(t) && strings.HasSuffix(parent, "]") {
		t = t.Elem()
	}
	if t != nil && isTable(t) {
		msg = fmt.Sprintf("unknown %s (%s takes %s)", what, tableName(parent), keysOf(t, stripIndexes(parent)))
	}
	return &Error{File: d.file, Line: line, Key: key, Msg: msg}
}

func tableName(key string) string {
	switch k := stripIndexes(key); {
	case k == "":
		return "the top level"
	case strings.HasSuffix(key, "]"):
		return "a [[" + k + "]] table"
	default:
		return "[" + k + "]"
	}
}

// keysOf lists the keys of a table type, then its tables by their full
// names; parent is the table's key without list indexes.
func keysOf(t reflect.Type, parent string) string {
	var keys, tables []string
	for i := range t.NumField() {
		f := t.Field(i)
		switch k := tomlKey(f); {
		case isTable(f.Type):
			tables = append(tables, "["+joinKey(parent, k)+"]")
		case isTableList(f.Type):
			tables = append(tables, "[["+joinKey(parent, k)+"]]")
		default:
			keys = append(keys, k)
		}
	}
	s := strings.Join(keys, ", ")
	switch {
	case len(tables) > 0 && len(keys) == 0:
		s = "the tables " + strings.Join(tables, ", ")
	case len(tables) > 0:
		s += " and the tables " + strings.Join(tables, ", ")
	}
	return s
}

// Marshal encodes the configuration as a TOML document that Parse reads
// back to the same Config: every key, without comments.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).EnableMarshalerInterface().Encode(c); err != nil {
		return nil, fmt.Errorf("encoding the configuration: %w", err)
	}
	return buf.Bytes(), nil
}
