package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fallback is the client side of the userspace fallback datapath (mode
// "fallback"): applications' TCP streams are carried over several TCP
// subflows, one per path the interface rules select, to a converter that
// forwards them to their destinations.
//
// The values set are checked in every mode. The table must be complete in
// mode "fallback", and in every other mode when Converter is set: a
// converter, one way to authenticate (KeyID and KeyFile, or TLS) and at
// least one way in for applications (SocksListen, Capture.RedirectPort or
// Capture.TProxyPort). In modes "kernel" and "userspace" (and "auto" on a
// kernel with MPTCP) a converter set here is reached over kernel MPTCP:
// one MPTCP connection per application connection, whose subflows the
// kernel's path manager adds. With Converter "" there is no fallback: on a
// kernel without MPTCP, mode "auto" has nothing to fall back to.
type Fallback struct {
	// Converter is the converter's address, "IP:port": an IP address, not
	// a name, since transparent capture must exclude it.
	Converter string `toml:"converter"`
	// KeyID and KeyFile are this client's pre-shared key: its identifier
	// (1–64 printable ASCII bytes, no spaces and no "#", as the
	// converter's keys file lists it) and the absolute path of a file
	// holding 32–64 bytes, in hex or base64 (one line; see LoadKey).
	// Not with TLS.
	KeyID   string `toml:"key_id"`
	KeyFile string `toml:"key_file"`
	// TLS, when Cert is set, authenticates with a client certificate over
	// TLS instead of the pre-shared key; Cert, Key and CA are then all
	// needed.
	TLS FallbackTLS `toml:"tls"`
	// Scheduler spreads data over the subflows: "minrtt", "roundrobin" or
	// "redundant".
	Scheduler string `toml:"scheduler"`
	// StaleLossCnt is the number of retransmission timeouts without
	// progress after which a subflow is stale and its data re-sent on the
	// others (the kernel's net.mptcp.stale_loss_cnt), 1..100.
	StaleLossCnt int `toml:"stale_loss_cnt"`
	// ReceiveWindow and SendBuffer bound each connection's buffers, in
	// bytes, 65536..1073741824.
	ReceiveWindow int `toml:"receive_window"`
	SendBuffer    int `toml:"send_buffer"`
	// SocksListen is the SOCKS5 server's "host:port"; "" for none.
	SocksListen string `toml:"socks_listen"`
	// SocksUsersFile, when set, is the absolute path of a file of
	// "user:password" lines (see LoadUsers); the SOCKS5 server then
	// requires one of them.
	SocksUsersFile string `toml:"socks_users_file"`
	// Mark is the firewall mark of the subflows' sockets, so transparent
	// capture never takes them; 1..4294967295.
	Mark uint32 `toml:"mark"`
	// Capture is transparent capture of TCP with nftables.
	Capture Capture `toml:"capture"`
}

// FallbackTLS is the client's certificate for a converter that uses
// mutual TLS.
type FallbackTLS struct {
	// Cert and Key are the client's certificate and key (PEM files).
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// CA is the CA bundle (PEM) the converter's certificate must chain to.
	CA string `toml:"ca"`
	// ServerName is the name the converter's certificate must carry; ""
	// uses the converter's address.
	ServerName string `toml:"server_name"`
}

// Capture is transparent capture: the daemon installs nftables rules that
// send TCP to its own listeners, and removes them when it stops.
type Capture struct {
	// RedirectPort captures locally generated TCP (nftables REDIRECT) to
	// this port; 0 for none.
	RedirectPort uint16 `toml:"redirect_port"`
	// TProxyPort captures routed TCP (nftables TPROXY) to this port; 0
	// for none.
	TProxyPort uint16 `toml:"tproxy_port"`
	// TProxyInterfaces are the names of the interfaces whose incoming TCP
	// is captured with TPROXY (names, not patterns: the kernel matches
	// them as packets arrive, so an interface may appear later); empty for
	// all but loopback. It needs TProxyPort.
	TProxyInterfaces []string `toml:"tproxy_interfaces"`
	// Ports, when not empty, limit capture to these destination ports
	// (1..65535, each once).
	Ports []uint16 `toml:"ports"`
	// ExcludePrefixes are never captured (the converter's addresses,
	// loopback, link-local and the host's own addresses never are).
	ExcludePrefixes []netip.Prefix `toml:"exclude_prefixes"`
}

// Converter is the converter role: it accepts fallback clients' sessions
// and forwards them to their destinations over MPTCP where the
// destination speaks it. It runs beside any mode. The values set are
// checked whether or not it is enabled; when Enabled, Listen and one way
// for clients to authenticate (KeysFile or TLS) are needed.
type Converter struct {
	// Enabled runs the converter.
	Enabled bool `toml:"enabled"`
	// Listen are the "host:port" addresses it accepts subflows on; not
	// empty when Enabled.
	Listen []string `toml:"listen"`
	// KeysFile is the absolute path of a file of "key-id key" lines, the
	// key in hex or base64 (32–64 bytes); "#" starts a comment (see
	// LoadKeys). When Enabled, KeysFile or TLS (or both) must be set:
	// the converter is never an open proxy.
	KeysFile string `toml:"keys_file"`
	// TLS, when Cert is set, requires mutual TLS on every subflow; Cert,
	// Key and ClientCA are then all needed.
	TLS ConverterTLS `toml:"tls"`
	// AllowPrefixes, when not empty, limit destinations to addresses inside
	// one of them; DenyPrefixes are never allowed.
	AllowPrefixes []netip.Prefix `toml:"allow_prefixes"`
	DenyPrefixes  []netip.Prefix `toml:"deny_prefixes"`
	// AllowPorts, when not empty, limit destinations to these ports.
	AllowPorts []uint16 `toml:"allow_ports"`
	// AllowLoopback, AllowLinkLocal and AllowOwn allow destinations that
	// are refused by default: loopback, link-local, and the converter
	// host's own addresses.
	AllowLoopback  bool `toml:"allow_loopback"`
	AllowLinkLocal bool `toml:"allow_link_local"`
	AllowOwn       bool `toml:"allow_own"`
	// MaxSessionsPerKey bounds one client's sessions, 1..1000000.
	MaxSessionsPerKey int `toml:"max_sessions_per_key"`
	// DialTimeout bounds reaching a destination, 100ms..5m.
	DialTimeout Duration `toml:"dial_timeout"`
}

// ConverterTLS is the converter's certificate and the CA of its clients.
type ConverterTLS struct {
	Cert     string `toml:"cert"`
	Key      string `toml:"key"`
	ClientCA string `toml:"client_ca"`
}

// DefaultMark is the default firewall mark of fallback subflows ("MP").
const DefaultMark = 0x4d50

func defaultFallback() Fallback {
	return Fallback{
		Scheduler:     "minrtt",
		StaleLossCnt:  4,
		ReceiveWindow: 4 << 20,
		SendBuffer:    4 << 20,
		SocksListen:   "127.0.0.1:1080",
		Mark:          DefaultMark,
	}
}

func defaultConverter() Converter {
	return Converter{
		Listen:            []string{"[::]:7445"},
		MaxSessionsPerKey: 10000,
		DialTimeout:       Duration{10e9},
	}
}

// Schedulers returns the names fallback.scheduler takes, in the order the
// documentation lists them.
func Schedulers() []string { return []string{"minrtt", "roundrobin", "redundant"} }

// The bounds of the [fallback] and [converter] values.
const (
	keyIDMax          = 64
	keyMin            = 32
	keyMax            = 64
	staleLossCntMax   = 100
	bufferMin         = 64 << 10
	bufferMax         = 1 << 30
	sessionsPerKeyMax = 1_000_000
	dialTimeoutMin    = 100 * time.Millisecond
	dialTimeoutMax    = 5 * time.Minute
	// The most ports, prefixes and interfaces capture takes (the capture
	// package's MaxPorts, MaxExclude and MaxInterfaces).
	capturePortsMax      = 1024
	captureExcludeMax    = 1024
	captureInterfacesMax = 256
	// tproxyMark is the mark capture gives TPROXY'd packets; the subflows'
	// mark must differ from it.
	tproxyMark = 0x4d51
	// ifNameMax is the longest interface name the kernel accepts.
	ifNameMax = 15
)

func (f *Fallback) normalize() {
	nilIfEmpty(&f.Capture.TProxyInterfaces)
	nilIfEmpty(&f.Capture.Ports)
	nilIfEmpty(&f.Capture.ExcludePrefixes)
}

func (c *Converter) normalize() {
	nilIfEmpty(&c.Listen)
	nilIfEmpty(&c.AllowPrefixes)
	nilIfEmpty(&c.DenyPrefixes)
	nilIfEmpty(&c.AllowPorts)
}

// validate checks the [fallback] table: the values set in every mode, and
// that it is complete where the daemon may run the fallback (mode
// "fallback", or "auto" with a converter).
func (f *Fallback) validate(p *problems, mode Mode) {
	if f.Converter != "" {
		checkConverterAddr(p, "fallback.converter", f.Converter)
	}
	if f.KeyID != "" {
		if err := checkKeyID(f.KeyID); err != nil {
			p.add("fallback.key_id", 0, "%v (want %s)", err, want("fallback.key_id"))
		}
	}
	for _, k := range []struct{ key, path string }{
		{"fallback.key_file", f.KeyFile},
		{"fallback.tls.cert", f.TLS.Cert},
		{"fallback.tls.key", f.TLS.Key},
		{"fallback.tls.ca", f.TLS.CA},
		{"fallback.socks_users_file", f.SocksUsersFile},
	} {
		checkAbsPath(p, k.key, k.path)
	}
	if n := f.TLS.ServerName; n != "" && strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		p.add("fallback.tls.server_name", 0, "%q contains spaces or control characters (want %s)", n, want("fallback.tls.server_name"))
	}
	if !slices.Contains(Schedulers(), f.Scheduler) {
		p.add("fallback.scheduler", 0, "unknown scheduler %q (want %s)", f.Scheduler, join(Schedulers()))
	}
	checkRange(p, "fallback.stale_loss_cnt", f.StaleLossCnt, 1, staleLossCntMax)
	checkRange(p, "fallback.receive_window", f.ReceiveWindow, bufferMin, bufferMax)
	checkRange(p, "fallback.send_buffer", f.SendBuffer, bufferMin, bufferMax)
	socksPort := uint16(0)
	if _, ok := checkHostPort(p, "fallback.socks_listen", f.SocksListen); ok {
		_, port, _ := net.SplitHostPort(f.SocksListen)
		n, _ := strconv.ParseUint(port, 10, 16)
		socksPort = uint16(n)
	}
	if f.Mark == 0 {
		p.add("fallback.mark", 0, "0 sets no mark, so transparent capture could take the subflows themselves (want %s)", want("fallback.mark"))
	}
	f.Capture.validate(p, f.Mark, socksPort)

	if mode != ModeFallback && f.Converter == "" {
		return
	}
	// The file may have no [fallback] table at all: such problems are
	// placed on the mode's line.
	if f.Converter == "" {
		p.addNear("fallback.converter", "mode", `empty, but mode %q needs a converter to carry the traffic (want %s)`, mode, want("fallback.converter"))
	}
	psk := f.KeyID != "" || f.KeyFile != ""
	tls := f.TLS.Cert != "" || f.TLS.Key != "" || f.TLS.CA != ""
	switch {
	case psk && tls:
		p.add("fallback.tls.cert", 0, "both a pre-shared key (key_id, key_file) and TLS (tls.cert, tls.key, tls.ca) are set (use one: empty key_id and key_file, or the three tls keys)")
	case psk:
		for _, k := range []struct{ key, value, other string }{
			{"fallback.key_id", f.KeyID, "key_file"},
			{"fallback.key_file", f.KeyFile, "key_id"},
		} {
			if k.value == "" {
				p.add(k.key, 0, "empty, but %s is set: the pre-shared key needs both (want %s)", k.other, want(k.key))
			}
		}
	case tls:
		checkTLSComplete(p, "fallback.tls", []struct{ key, value string }{
			{"cert", f.TLS.Cert}, {"key", f.TLS.Key}, {"ca", f.TLS.CA},
		})
	default:
		p.addNear("fallback.key_id", "mode", "no way to authenticate to the converter (set key_id and key_file to a pre-shared key the converter knows, or tls.cert, tls.key and tls.ca for a client certificate)")
	}
	if f.SocksListen == "" && f.Capture.RedirectPort == 0 && f.Capture.TProxyPort == 0 {
		p.addNear("fallback.socks_listen", "mode", `empty, and capture has neither redirect_port nor tproxy_port, so applications would have no way to use the fallback (set socks_listen, e.g. "127.0.0.1:1080", or capture.redirect_port or capture.tproxy_port)`)
	}
}

// addNear reports a problem with key as add does; when the file sets
// neither key nor its table, the problem is placed on the line of alt.
func (p *problems) addNear(key, alt, format string, args ...any) {
	p.add(key, 0, format, args...)
	if e := p.errs[len(p.errs)-1]; e.Line == 0 && p.d != nil {
		e.Line = p.d.line(alt)
	}
}

// validate checks [fallback.capture]; mark is the subflows' mark and
// socksPort the SOCKS5 listener's port (0 for none), which the capture
// listeners must not share.
func (c *Capture) validate(p *problems, mark uint32, socksPort uint16) {
	const key = "fallback.capture"
	if c.RedirectPort != 0 && c.RedirectPort == c.TProxyPort {
		p.add(key+".tproxy_port", 0, "%d is also redirect_port, and REDIRECT and TPROXY need a listener each (give them different ports)", c.TProxyPort)
	}
	for _, l := range []struct {
		name string
		port uint16
	}{{"redirect_port", c.RedirectPort}, {"tproxy_port", c.TProxyPort}} {
		if l.port != 0 && l.port == socksPort {
			p.add(key+"."+l.name, 0, "%d is also socks_listen's port, and each listener needs its own (give them different ports)", l.port)
		}
	}
	if c.TProxyPort != 0 && mark == tproxyMark {
		p.add("fallback.mark", 0, "%#x is the mark capture gives TPROXY'd packets, which are delivered locally, so the subflows' own packets would be too (choose another mark, e.g. %#x)", mark, DefaultMark)
	}

	k := key + ".tproxy_interfaces"
	switch {
	case len(c.TProxyInterfaces) > captureInterfacesMax:
		p.add(k, 0, "%d patterns, at most %d allowed", len(c.TProxyInterfaces), captureInterfacesMax)
	case len(c.TProxyInterfaces) > 0 && c.TProxyPort == 0:
		p.add(k, 0, "given, but tproxy_port is 0, so nothing is captured with TPROXY (set tproxy_port, or tproxy_interfaces = [])")
	}
	for i, pat := range c.TProxyInterfaces {
		switch {
		case pat == "":
			p.add(k, i+1, "empty (want an interface name, e.g. \"eth1\")")
		case strings.ContainsAny(pat, `*?[\`) || strings.ContainsAny(pat, " /:"):
			p.add(k, i+1, "%q is not an interface name (want names such as \"eth1\"; patterns are not matched here)", pat)
		case pat == "lo":
			p.add(k, i+1, `"lo" cannot be a TPROXY interface: its traffic is this host's own (capture it with redirect_port)`)
		case len(pat) > ifNameMax:
			p.add(k, i+1, "%q is %d bytes long, and interface names are at most %d (want %s)", pat, len(pat), ifNameMax, want(k+"[1]"))
		case slices.Contains(c.TProxyInterfaces[:i], pat):
			p.add(k, i+1, "%q is listed twice (list each pattern once)", pat)
		}
	}

	k = key + ".ports"
	switch {
	case len(c.Ports) > capturePortsMax:
		p.add(k, 0, "%d ports, at most %d allowed (leave ports empty to capture every port)", len(c.Ports), capturePortsMax)
	case len(c.Ports) > 0 && c.RedirectPort == 0 && c.TProxyPort == 0:
		p.add(k, 0, "given, but neither redirect_port nor tproxy_port is set, so nothing is captured (set one of them, or ports = [])")
	}
	checkPorts(p, k, c.Ports)

	k = key + ".exclude_prefixes"
	if len(c.ExcludePrefixes) > captureExcludeMax {
		p.add(k, 0, "%d prefixes, at most %d allowed", len(c.ExcludePrefixes), captureExcludeMax)
	}
	checkPrefixes(p, k, c.ExcludePrefixes)
	for i, pfx := range c.ExcludePrefixes {
		if pfx.IsValid() && pfx.Addr().Is4In6() && pfx.Bits() < 96 {
			p.add(k, i+1, "%s is an IPv6 prefix written with an IPv4-mapped address (write it as plain IPv6, or as an IPv4 prefix)", pfx)
		}
	}
}

// validate checks the [converter] table: the values set always, and that
// it is complete when it is enabled.
func (c *Converter) validate(p *problems) {
	const key = "converter"
	for i, hp := range c.Listen {
		k := key + ".listen"
		switch {
		case hp == "":
			p.add(k, i+1, "element %d is empty (want %s)", i+1, want(k+"[1]"))
		case slices.Contains(c.Listen[:i], hp):
			p.add(k, i+1, "%q is listed twice (list each address once)", hp)
		default:
			// checkHostPort reports on the list; report on the element.
			var one problems
			checkHostPort(&one, k, hp)
			for _, e := range one.errs {
				p.add(k, i+1, "%s", e.Msg)
			}
		}
	}
	for _, k := range []struct{ key, path string }{
		{key + ".keys_file", c.KeysFile},
		{key + ".tls.cert", c.TLS.Cert},
		{key + ".tls.key", c.TLS.Key},
		{key + ".tls.client_ca", c.TLS.ClientCA},
	} {
		checkAbsPath(p, k.key, k.path)
	}
	checkPrefixes(p, key+".allow_prefixes", c.AllowPrefixes)
	checkPrefixes(p, key+".deny_prefixes", c.DenyPrefixes)
	checkPorts(p, key+".allow_ports", c.AllowPorts)
	checkRange(p, key+".max_sessions_per_key", c.MaxSessionsPerKey, 1, sessionsPerKeyMax)
	if d := c.DialTimeout.Duration; d < dialTimeoutMin || d > dialTimeoutMax {
		p.add(key+".dial_timeout", 0, "%s is out of range (want %s)", c.DialTimeout, want(key+".dial_timeout"))
	}

	if !c.Enabled {
		return
	}
	if len(c.Listen) == 0 {
		p.add(key+".listen", 0, `empty, so no client could reach the converter (want %s)`, want(key+".listen"))
	}
	tls := c.TLS.Cert != "" || c.TLS.Key != "" || c.TLS.ClientCA != ""
	if tls {
		checkTLSComplete(p, key+".tls", []struct{ key, value string }{
			{"cert", c.TLS.Cert}, {"key", c.TLS.Key}, {"client_ca", c.TLS.ClientCA},
		})
	}
	if c.KeysFile == "" && !tls {
		p.add(key+".keys_file", 0, "no way for clients to authenticate, and the converter is never an open proxy (set keys_file to a file of client keys, or cert, key and client_ca in [converter.tls], or both)")
	}
}

// checkTLSComplete reports the keys of a TLS table (named by key) that are
// empty when another is set.
func checkTLSComplete(p *problems, key string, keys []struct{ key, value string }) {
	var all, missing []string
	for _, k := range keys {
		all = append(all, k.key)
		if k.value == "" {
			missing = append(missing, k.key)
		}
	}
	if len(missing) == 0 {
		return
	}
	verb := "is"
	if len(missing) > 1 {
		verb = "are"
	}
	p.add(key+"."+missing[0], 0, "TLS needs %s, but %s %s not set (set them all in [%s], or leave them all \"\")",
		strings.Join(all, ", "), strings.Join(missing, ", "), verb, key)
}

// checkAbsPath reports a path that is set but not absolute.
func checkAbsPath(p *problems, key, path string) {
	if path != "" && (!filepath.IsAbs(path) || strings.ContainsRune(path, 0)) {
		p.add(key, 0, "%q is not an absolute path (want %s)", path, want(key))
	}
}

// checkConverterAddr reports a converter address that is not a unicast
// IP address and a port 1..65535.
func checkConverterAddr(p *problems, key, s string) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		host, _, serr := net.SplitHostPort(s)
		if serr == nil && host != "" {
			if _, aerr := netip.ParseAddr(host); aerr != nil {
				p.add(key, 0, "%q names its host, and the converter is given by IP address, so that transparent capture can exclude it (want %s)", s, want(key))
				return
			}
		}
		p.add(key, 0, "%q is not IP:port (want %s)", s, want(key))
		return
	}
	a := ap.Addr().Unmap()
	switch {
	case ap.Port() == 0:
		p.add(key, 0, "%q has port 0 (want a port 1..65535)", s)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		p.add(key, 0, "%s is not a unicast address (want %s)", a, want(key))
	}
}

// checkKeyID reports a key id that is not 1..64 printable ASCII bytes
// without spaces or "#" (which starts a comment in the keys file).
func checkKeyID(id string) error {
	if len(id) > keyIDMax {
		return fmt.Errorf("%d bytes long, at most %d allowed", len(id), keyIDMax)
	}
	if id == "" {
		return errors.New("empty")
	}
	for i := range len(id) {
		if b := id[i]; b <= ' ' || b >= 0x7f || b == '#' {
			return fmt.Errorf("%q contains %q (byte %d)", id, id[i:i+1], i+1)
		}
	}
	return nil
}

// The largest files the loaders read: a key file holds one line; a keys
// file or a users file one line per client.
const (
	keyFileMax    = 4 << 10
	secretFileMax = 16 << 20
)

// keyHint says how to make a key.
const keyHint = "head -c 32 /dev/urandom | xxd -p -c 64"

// LoadKey reads a pre-shared key file (fallback.key_file): one line holding
// the key, 32 to 64 bytes, as 64 to 128 hex digits or in standard base64
// (with or without its padding). A line of hex digits only is read as hex.
// Spaces around the key and the final newline are ignored. The error
// names the file and says what is wrong and how to make a key.
//
// LoadKey does not refuse a file that others may read; the daemon checks
// that apart with CheckPrivate and warns.
func LoadKey(path string) ([]byte, error) {
	data, err := readSmall(path, keyFileMax, "key file")
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(data))
	hint := fmt.Sprintf("(e.g. `%s > %s`)", keyHint, path)
	switch {
	case text == "":
		return nil, fmt.Errorf("key file %s: empty; want a key of %d to %d bytes in hex or base64 %s", path, keyMin, keyMax, hint)
	case strings.ContainsAny(text, "\r\n"):
		n := len(strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == '\r' }))
		return nil, fmt.Errorf("key file %s: %d lines; want the key on one line %s; for base64, `base64 -w0` does not wrap it", path, n, hint)
	}
	key, err := decodeKey(text)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w %s", path, err, hint)
	}
	return key, nil
}

// decodeKey decodes a key written in hex or base64, 32 to 64 bytes.
func decodeKey(text string) ([]byte, error) {
	var key []byte
	var err error
	switch {
	case isHex(text):
		if len(text)%2 != 0 {
			return nil, fmt.Errorf("%d hex digits, an odd number; want %d to %d", len(text), 2*keyMin, 2*keyMax)
		}
		key, err = hex.DecodeString(text)
	case len(text)%4 == 0:
		key, err = base64.StdEncoding.DecodeString(text)
	default:
		key, err = base64.RawStdEncoding.DecodeString(text)
	}
	if err != nil || strings.ContainsAny(text, "\r\n") {
		return nil, errors.New("not hex or standard base64")
	}
	if len(key) < keyMin || len(key) > keyMax {
		return nil, fmt.Errorf("%d bytes; want %d to %d", len(key), keyMin, keyMax)
	}
	return key, nil
}

func isHex(s string) bool {
	for i := range len(s) {
		switch b := s[i]; {
		case b >= '0' && b <= '9', b >= 'a' && b <= 'f', b >= 'A' && b <= 'F':
		default:
			return false
		}
	}
	return s != ""
}

// LoadKeys reads the converter's keys file (converter.keys_file): one
// client per line, "key-id key", the key id as fallback.key_id takes it
// and the key as LoadKey reads it, separated by spaces or tabs. "#"
// starts a comment, to the end of the line; blank lines are ignored. A
// key id listed twice is refused, and so is a file without keys. The
// error names the file and the line of the first problem; it never
// shows a key.
//
// LoadKeys does not refuse a file that others may read; see CheckPrivate.
func LoadKeys(path string) (map[string][]byte, error) {
	data, err := readSmall(path, secretFileMax, "keys file")
	if err != nil {
		return nil, err
	}
	return parseKeys(data, path)
}

// parseKeys parses a keys file; name labels errors.
func parseKeys(data []byte, name string) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	first := make(map[string]int)
	for n, line := range lines(data) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
		switch len(fields) {
		case 0:
			continue
		case 2:
		default:
			return nil, fmt.Errorf("%s:%d: %d fields; want \"key-id key\", e.g. \"laptop 5f1c…\" (a key made by `%s`)", name, n, len(fields), keyHint)
		}
		id, text := fields[0], fields[1]
		if err := checkKeyID(id); err != nil {
			return nil, fmt.Errorf("%s:%d: key id: %v (want 1 to %d printable ASCII characters without spaces or '#')", name, n, err, keyIDMax)
		}
		if prev, ok := first[id]; ok {
			return nil, fmt.Errorf("%s:%d: key id %q is also on line %d (give each client its own key id)", name, n, id, prev)
		}
		key, err := decodeKey(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: key of %q: %w (make one with `%s`)", name, n, id, err, keyHint)
		}
		first[id] = n
		keys[id] = key
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no keys; want one \"key-id key\" line per client (a key made by `%s`)", name, keyHint)
	}
	return keys, nil
}

// LoadUsers reads the SOCKS5 users file (fallback.socks_users_file): one
// user per line, "user:password", the user name before the first ":" and
// the password the rest of the line, spaces included (a final "\r" is
// dropped); each 1 to 255 bytes, as SOCKS5 user/password authentication
// (RFC 1929) carries them. Lines whose first non-blank character is "#"
// and blank lines are ignored, so a user name cannot start with "#". A
// user listed twice is refused, and so is a file without users. The error
// names the file and the line of the first problem; it never shows a
// password.
//
// LoadUsers does not refuse a file that others may read; see CheckPrivate.
func LoadUsers(path string) (map[string]string, error) {
	data, err := readSmall(path, secretFileMax, "users file")
	if err != nil {
		return nil, err
	}
	return parseUsers(data, path)
}

// socksFieldMax is the longest user name or password SOCKS5 carries.
const socksFieldMax = 255

// parseUsers parses a users file; name labels errors.
func parseUsers(data []byte, name string) (map[string]string, error) {
	users := make(map[string]string)
	first := make(map[string]int)
	for n, line := range lines(data) {
		line = strings.TrimSuffix(line, "\r")
		if t := strings.TrimLeft(line, " \t"); t == "" || t[0] == '#' {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: no ':'; want \"user:password\"", name, n)
		case len(user) == 0 || len(user) > socksFieldMax:
			return nil, fmt.Errorf("%s:%d: user name of %d bytes; want 1 to %d", name, n, len(user), socksFieldMax)
		case len(pass) == 0 || len(pass) > socksFieldMax:
			return nil, fmt.Errorf("%s:%d: password of %d bytes for user %q; want 1 to %d", name, n, len(pass), user, socksFieldMax)
		}
		if prev, ok := first[user]; ok {
			return nil, fmt.Errorf("%s:%d: user %q is also on line %d (list each user once)", name, n, user, prev)
		}
		first[user] = n
		users[user] = pass
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s: no users; want one \"user:password\" line per user", name)
	}
	return users, nil
}

// lines yields the lines of data with their numbers, counted from 1,
// without their "\n".
func lines(data []byte) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		n := 0
		for len(data) > 0 {
			n++
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if !yield(n, string(line)) {
				return
			}
		}
	}
}

// readSmall reads a file of at most max bytes; what names the file in
// errors.
func readSmall(path string, max int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("reading %s: %w (the daemon's user may not read it; under mptcpd.service, whose user is dynamic, hand it over with LoadCredential= and name the credential's path, as the unit's comments show)", what, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", what, path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s %s: larger than %d bytes; is it the right file?", what, path, max)
	}
	return data, nil
}

// ErrNotPrivate is wrapped by CheckPrivate's error for a file of secrets
// that users other than its owner may read.
var ErrNotPrivate = errors.New("readable by group or others")

// CheckPrivate checks that a file of secrets (a key file, a keys file, a
// users file) grants its group and others no permission. For one that
// does it returns an error wrapping ErrNotPrivate that names the file,
// its mode and the fix; the daemon logs it as a warning and uses the file
// anyway, since a deployment may share it with a group on purpose. Other
// errors are the file's stat errors.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("checking the mode of %s: %w", path, err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s has mode %#o: %w (`chmod 600 %s`)", path, m, ErrNotPrivate, path)
	}
	return nil
}
