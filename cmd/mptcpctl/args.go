package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mptcpd/mptcpd/genl"
	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// Checks of the arguments. Each error names the argument and says what is
// wanted; nothing is sent until every argument has passed.

// parseToken reads a connection token: decimal, or hexadecimal after 0x.
func parseToken(s string) (uint32, error) {
	var n uint64
	var err error
	if hex, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		n, err = strconv.ParseUint(hex, 16, 32)
	} else {
		n, err = strconv.ParseUint(s, 10, 32)
	}
	if err != nil {
		return 0, invalidf("bad token %q: want a decimal number or 0x and hex digits, e.g. 0x1f2e3d4c (`mptcpctl connection list` shows them)", s)
	}
	if n == 0 {
		return 0, invalidf("bad token %q: no connection has token 0 (`mptcpctl connection list` shows them)", s)
	}
	return uint32(n), nil
}

// formatToken writes a token as parseToken reads it back.
func formatToken(t uint32) string { return fmt.Sprintf("0x%08x", t) }

// parseID reads an address ID from min (0 or 1) to 255.
func parseID(what, s string, min uint64) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < min || n > 255 {
		return 0, invalidf("bad %s %q: want a number from %d to 255", what, s, min)
	}
	return uint32(n), nil
}

// parsePort reads a port, 1..65535.
func parsePort(what, s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, invalidf("bad %s %q: want a number from 1 to 65535", what, s)
	}
	return uint32(n), nil
}

// parseLimit reads a path-manager limit, 0..8.
func parseLimit(what, s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > 8 {
		return 0, invalidf("bad %s %q: want a number from 0 to 8", what, s)
	}
	return uint32(n), nil
}

// parseAddr reads a local or remote IP address.
func parseAddr(what, s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, invalidf("bad %s %q: want an IPv4 or IPv6 address, e.g. 192.0.2.1 or 2001:db8::1", what, s)
	case ip.Zone() != "":
		return netip.Addr{}, invalidf("bad %s %q: leave out the zone (%%%s); name the interface with dev instead", what, s, ip.Zone())
	case ip.IsUnspecified() || ip.IsMulticast():
		return netip.Addr{}, invalidf("bad %s %q: want a unicast address", what, s)
	}
	return ip.Unmap(), nil
}

// parseAddrPort reads ADDRESS:PORT ([ADDRESS]:PORT for IPv6), or, when
// the port is optional, a bare address too (port 0).
func parseAddrPort(what, s string, portOptional bool) (netip.Addr, uint32, error) {
	if portOptional {
		if ip, err := netip.ParseAddr(s); err == nil {
			ip, err := parseAddr(what, ip.String())
			return ip, 0, err
		}
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		form := "ADDRESS:PORT, e.g. 192.0.2.1:443 or [2001:db8::1]:443"
		if portOptional {
			form = "ADDRESS or " + form
		}
		return netip.Addr{}, 0, invalidf("bad %s %q: want %s", what, s, form)
	}
	ip, err := parseAddr(what, ap.Addr().String())
	if err != nil {
		return netip.Addr{}, 0, err
	}
	port, err := parsePort(what+" port", strconv.Itoa(int(ap.Port())))
	if err != nil {
		return netip.Addr{}, 0, err
	}
	return ip, port, nil
}

// parseIfName checks an interface name as the kernel accepts it. Whether
// the interface exists is for mptcpd to say: it may manage another
// namespace.
func parseIfName(s string) (string, error) {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/:% \t\n") {
		return "", invalidf("bad interface name %q: want 1 to 15 characters, none of them '/', ':', '%%' or a space", s)
	}
	return s, nil
}

// parseOnOff reads on or off.
func parseOnOff(what, s string) (bool, error) {
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, usageErrorf("bad %s %q: want on or off", what, s)
}

// keyword is a word that takes a value, as ip-mptcp(8) writes "port PORT".
type keyword struct {
	name, meta string
	set        func(string) error
}

// parseWords reads words in the manner of ip-mptcp(8): keywords followed
// by their value, in any order, each at most once, and bare words that
// other accepts (it returns false for a word it does not know). want
// describes the words allowed, for the error.
func parseWords(words []string, keys []keyword, other func(string) (bool, error), want string) error {
	seen := make(map[string]bool)
next:
	for i := 0; i < len(words); i++ {
		w := words[i]
		for _, k := range keys {
			if w != k.name {
				continue
			}
			if seen[w] {
				return usageErrorf("%s given twice", w)
			}
			seen[w] = true
			if i+1 == len(words) {
				return usageErrorf("%s needs a value: %s %s", w, w, k.meta)
			}
			i++
			if err := k.set(words[i]); err != nil {
				return err
			}
			continue next
		}
		if other != nil {
			ok, err := other(w)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		}
		return usageErrorf("unknown word %q: want %s", w, want)
	}
	return nil
}

// parseIDArgs reads "ID" or "id ID" at the start of args and returns the
// ID and the words after it.
func parseIDArgs(what string, args []string) (uint32, []string, error) {
	if len(args) > 0 && args[0] == "id" {
		args = args[1:]
	}
	if len(args) == 0 {
		return 0, nil, usageErrorf("give the %s", what)
	}
	id, err := parseID(what, args[0], 1)
	return id, args[1:], err
}

// requestFlagWords are the endpoint flags a request may carry.
func requestFlagWords() []string {
	return []string{"signal", "subflow", "backup", "fullmesh", "laminar"}
}

// parseFlagWord reads an endpoint flag word (or several joined by commas)
// as endpoint add takes them; false if w is no flag word.
func parseFlagWord(w string) (genl.EndpointFlags, bool, error) {
	if strings.Trim(w, ",") == "" {
		return 0, false, nil
	}
	f, err := genl.ParseEndpointFlags(w)
	if err != nil {
		return 0, false, nil
	}
	if f&genl.FlagImplicit != 0 {
		return 0, false, invalidf("flag implicit is set by the kernel on endpoints it makes itself; it cannot be asked for (want %s)", strings.Join(requestFlagWords(), ", "))
	}
	return f, true, nil
}

// flagEnum pairs one of genl's flag bits with the API's flag.
type flagEnum struct {
	bit  genl.EndpointFlags
	enum mptcpdv1.EndpointFlag
}

// flagEnums maps genl's flag bits to the API's flags, in bit order.
func flagEnums() []flagEnum {
	return []flagEnum{
		{genl.FlagSignal, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SIGNAL},
		{genl.FlagSubflow, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW},
		{genl.FlagBackup, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_BACKUP},
		{genl.FlagFullmesh, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_FULLMESH},
		{genl.FlagImplicit, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_IMPLICIT},
		{genl.FlagLaminar, mptcpdv1.EndpointFlag_ENDPOINT_FLAG_LAMINAR},
	}
}

// toEnums converts flag bits to the API's repeated flags.
func toEnums(f genl.EndpointFlags) []mptcpdv1.EndpointFlag {
	var out []mptcpdv1.EndpointFlag
	for _, fe := range flagEnums() {
		if f&fe.bit != 0 {
			out = append(out, fe.enum)
		}
	}
	return out
}

// flagString writes the API's flags as ip-mptcp(8) words.
func flagString(flags []mptcpdv1.EndpointFlag) string {
	var f genl.EndpointFlags
	var unknown []string
	for _, e := range flags {
		known := false
		for _, fe := range flagEnums() {
			if fe.enum == e {
				f |= fe.bit
				known = true
			}
		}
		if !known {
			unknown = append(unknown, strconv.Itoa(int(e)))
		}
	}
	s := f.String()
	for _, u := range unknown {
		if s != "" {
			s += ","
		}
		s += "flag" + u
	}
	return s
}

// Argument-count checks that report usage errors.

func exactArgs(n int, form string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s takes %s, not %d arguments", cmd.CommandPath(), form, len(args))
		}
		return nil
	}
}

func minArgs(n int, form string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("%s takes %s", cmd.CommandPath(), form)
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, not %q", cmd.CommandPath(), args)
	}
	return nil
}
