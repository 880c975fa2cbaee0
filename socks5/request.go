package socks5

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Protocol numbers (RFC 1928, RFC 1929).
const (
	version = 0x05

	methodNone         = 0x00
	methodPassword     = 0x02
	methodNoAcceptable = 0xff

	passwordVersion = 0x01 // version of the username/password subnegotiation
	passwordOK      = 0x00
	passwordFailed  = 0x01

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// Target is where a client asks to connect: exactly one of Host, a domain
// name passed on unresolved (the far end resolves it), or Addr is set.
type Target struct {
	Host string
	Addr netip.Addr
	Port uint16
}

// String returns host:port, with an IPv6 address in brackets.
func (t Target) String() string {
	if t.Host != "" {
		return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
	}
	if t.Addr.IsValid() {
		return netip.AddrPortFrom(t.Addr, t.Port).String()
	}
	return ""
}

// AppendBinary appends t in the SOCKS5 address form (ATYP, DST.ADDR,
// DST.PORT), which ReadTarget reads. It fails for a Target that ReadTarget
// would refuse.
func (t Target) AppendBinary(b []byte) ([]byte, error) {
	if err := t.check(); err != nil {
		return b, err
	}
	switch {
	case t.Host != "":
		b = append(append(b, atypDomain, byte(len(t.Host))), t.Host...)
	case t.Addr.Is4() || t.Addr.Is4In6():
		a := t.Addr.Unmap().As4()
		b = append(append(b, atypIPv4), a[:]...)
	default:
		a := t.Addr.As16()
		b = append(append(b, atypIPv6), a[:]...)
	}
	return binary.BigEndian.AppendUint16(b, t.Port), nil
}

// readRequest reads a client's request (VER CMD RSV, then the target).
// Errors the client should hear about carry a reply code (SOCKSReply).
func readRequest(r io.Reader) (Target, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Target{}, fmt.Errorf("socks5: reading the request: %w", err)
	}
	switch {
	case hdr[0] != version:
		return Target{}, &requestError{ReplyGeneralFailure, fmt.Sprintf("request has version %d, want 5", hdr[0])}
	case hdr[1] == cmdBind:
		return Target{}, &requestError{ReplyCommandNotSupported, "command BIND is not supported, only CONNECT"}
	case hdr[1] == cmdUDPAssociate:
		return Target{}, &requestError{ReplyCommandNotSupported, "command UDP ASSOCIATE is not supported, only CONNECT"}
	case hdr[1] != cmdConnect:
		return Target{}, &requestError{ReplyCommandNotSupported, fmt.Sprintf("unknown command %#02x, only CONNECT (1) is supported", hdr[1])}
	case hdr[2] != 0:
		return Target{}, &requestError{ReplyGeneralFailure, fmt.Sprintf("reserved byte is %#02x, want 0", hdr[2])}
	}
	return ReadTarget(r)
}

// ReadTarget reads an address in the SOCKS5 form: ATYP (1 IPv4, 3 domain
// name, 4 IPv6), the address, and the port. It refuses, with an error that
// carries the reply code (see ReplyCode):
//   - an unknown ATYP (ReplyAddressTypeNotSupported);
//   - a domain name that is empty, longer than 253 bytes (without its
//     final dot), has an empty label or one longer than 63 bytes, a byte
//     other than a letter, digit, '-' or '_', or a label that starts or ends
//     with '-' (ReplyGeneralFailure: the request is malformed);
//   - the unspecified or a multicast address, and port 0
//     (ReplyGeneralFailure).
//
// A domain name that is an IP address literal gives a Target with Addr set;
// an IPv4-mapped IPv6 address gives its IPv4 address.
func ReadTarget(r io.Reader) (Target, error) {
	var atyp [1]byte
	if _, err := io.ReadFull(r, atyp[:]); err != nil {
		return Target{}, fmt.Errorf("socks5: reading the address type: %w", err)
	}
	var t Target
	var buf [16]byte
	switch atyp[0] {
	case atypIPv4:
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			return Target{}, fmt.Errorf("socks5: reading the IPv4 address: %w", err)
		}
		t.Addr = netip.AddrFrom4([4]byte(buf[:4]))
	case atypIPv6:
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return Target{}, fmt.Errorf("socks5: reading the IPv6 address: %w", err)
		}
		t.Addr = netip.AddrFrom16(buf).Unmap()
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return Target{}, fmt.Errorf("socks5: reading the domain name length: %w", err)
		}
		name := make([]byte, buf[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return Target{}, fmt.Errorf("socks5: reading the %d-byte domain name: %w", len(name), err)
		}
		t.Host = string(name)
		if a, err := netip.ParseAddr(t.Host); err == nil && a.Zone() == "" {
			t.Host, t.Addr = "", a.Unmap()
		}
	default:
		return Target{}, &requestError{ReplyAddressTypeNotSupported, fmt.Sprintf("unknown address type %#02x", atyp[0])}
	}
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return Target{}, fmt.Errorf("socks5: reading the port: %w", err)
	}
	t.Port = binary.BigEndian.Uint16(buf[:2])
	if err := t.check(); err != nil {
		return Target{}, err
	}
	return t, nil
}

// check validates t as ReadTarget documents.
func (t Target) check() error {
	switch {
	case t.Host != "" && t.Addr.IsValid():
		return &requestError{ReplyGeneralFailure, fmt.Sprintf("target has both a name (%q) and an address (%s)", t.Host, t.Addr)}
	case t.Host != "":
		if err := checkHostname(t.Host); err != nil {
			return err
		}
	case !t.Addr.IsValid():
		return &requestError{ReplyGeneralFailure, "target has neither a name nor an address"}
	case t.Addr.IsUnspecified() || t.Addr.IsMulticast() || t.Addr.Zone() != "":
		return &requestError{ReplyGeneralFailure, fmt.Sprintf("target address %s is not a unicast destination", t.Addr)}
	}
	if t.Port == 0 {
		return &requestError{ReplyGeneralFailure, "target port is 0"}
	}
	return nil
}

// checkHostname accepts the names DNS can hold as host names: letters,
// digits, '-' (not first or last in a label) and '_' (found in real names
// although not a host name character), labels of 1 to 63 bytes, at most 253
// bytes with an optional final dot.
func checkHostname(name string) error {
	bad := func(why string) error {
		return &requestError{ReplyGeneralFailure, fmt.Sprintf("invalid domain name %q: %s", name, why)}
	}
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return bad("empty")
	}
	if len(n) > 253 {
		return bad(fmt.Sprintf("%d bytes long, at most 253 allowed", len(n)))
	}
	for label := range strings.SplitSeq(n, ".") {
		switch {
		case label == "":
			return bad("empty label")
		case len(label) > 63:
			return bad(fmt.Sprintf("label of %d bytes, at most 63 allowed", len(label)))
		case label[0] == '-' || label[len(label)-1] == '-':
			return bad("label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return bad(fmt.Sprintf("byte %#02x is not allowed in a name", c))
			}
		}
	}
	return nil
}
