package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// SOCKS5Auth is a user name and password for a SOCKS5 proxy (RFC 1929).
type SOCKS5Auth struct {
	User, Password string
}

// ErrSOCKS5 is matched by every error a SOCKS5 proxy's answer causes.
var ErrSOCKS5 = errors.New("SOCKS5")

// SOCKS5Error is a SOCKS5 proxy's refusal of a CONNECT request, with the
// reply code of RFC 1928 section 6.
type SOCKS5Error struct{ Code byte }

func (e *SOCKS5Error) Error() string {
	text := map[byte]string{
		1: "general SOCKS server failure",
		2: "connection not allowed by ruleset",
		3: "network unreachable",
		4: "host unreachable",
		5: "connection refused",
		6: "TTL expired",
		7: "command not supported",
		8: "address type not supported",
	}[e.Code]
	if text == "" {
		text = "unassigned reply code"
	}
	return fmt.Sprintf("SOCKS5 proxy refused the connection: %s (reply %d)", text, e.Code)
}

func (e *SOCKS5Error) Is(target error) bool { return target == ErrSOCKS5 }

// DialSOCKS5 connects to the SOCKS5 proxy at proxy with d and asks it to
// CONNECT to target ("host:port"; a host name is passed to the proxy
// unresolved). auth may be nil for a proxy that needs none.
func DialSOCKS5(ctx context.Context, d *net.Dialer, proxy, target string, auth *SOCKS5Auth) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, fmt.Errorf("connecting to SOCKS5 proxy %s: %w", proxy, err)
	}
	if _, err := SOCKS5Connect(ctx, c, target, auth); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("through SOCKS5 proxy %s: %w", proxy, err)
	}
	return c, nil
}

// SOCKS5Connect runs the SOCKS5 CONNECT handshake for target on c, a fresh
// connection to a proxy, and returns the address the proxy reports it
// bound (a host name for a domain-name reply). The handshake is bounded by
// ctx (through c's deadline, which is cleared afterwards).
func SOCKS5Connect(ctx context.Context, c net.Conn, target string, auth *SOCKS5Auth) (string, error) {
	req, err := socks5Request(target)
	if err != nil {
		return "", err
	}
	if auth != nil && (len(auth.User) == 0 || len(auth.User) > 255 || len(auth.Password) == 0 || len(auth.Password) > 255) {
		return "", errors.New("SOCKS5 user name and password must be 1 to 255 bytes each")
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if stop() {
			_ = c.SetDeadline(time.Time{})
		}
	}()
	bound, err := socks5Handshake(c, req, auth)
	if err != nil && ctx.Err() != nil {
		return "", fmt.Errorf("SOCKS5 handshake: %w", context.Cause(ctx))
	}
	return bound, err
}

func socks5Handshake(rw io.ReadWriter, req []byte, auth *SOCKS5Auth) (string, error) {
	methods := []byte{5, 1, 0}
	if auth != nil {
		methods = []byte{5, 2, 0, 2}
	}
	if _, err := rw.Write(methods); err != nil {
		return "", fmt.Errorf("sending SOCKS5 greeting: %w", err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(rw, sel[:]); err != nil {
		return "", fmt.Errorf("reading SOCKS5 method selection: %w", err)
	}
	if sel[0] != 5 {
		return "", fmt.Errorf("%w: the proxy answered version %d, not 5", ErrSOCKS5, sel[0])
	}
	switch {
	case sel[1] == 0:
	case sel[1] == 2 && auth != nil:
		msg := append([]byte{1, byte(len(auth.User))}, auth.User...)
		msg = append(append(msg, byte(len(auth.Password))), auth.Password...)
		if _, err := rw.Write(msg); err != nil {
			return "", fmt.Errorf("sending SOCKS5 user name and password: %w", err)
		}
		var st [2]byte
		if _, err := io.ReadFull(rw, st[:]); err != nil {
			return "", fmt.Errorf("reading SOCKS5 authentication status: %w", err)
		}
		if st[0] != 1 || st[1] != 0 {
			return "", fmt.Errorf("%w: the proxy rejected the user name and password (status %d)", ErrSOCKS5, st[1])
		}
	case sel[1] == 0xff:
		return "", fmt.Errorf("%w: the proxy accepts none of the offered methods (%s)", ErrSOCKS5, map[bool]string{false: "no authentication", true: "none, user/password"}[auth != nil])
	default:
		return "", fmt.Errorf("%w: the proxy chose method %d, which was not offered", ErrSOCKS5, sel[1])
	}
	if _, err := rw.Write(req); err != nil {
		return "", fmt.Errorf("sending SOCKS5 CONNECT: %w", err)
	}
	return readSOCKS5Reply(rw)
}

// socks5Request encodes a CONNECT request for target.
func socks5Request(target string) ([]byte, error) {
	host, portText, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("SOCKS5 target %q: %w", target, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("SOCKS5 target %q: port %q is not a number from 0 to 65535", target, portText)
	}
	req := []byte{5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return nil, fmt.Errorf("SOCKS5 target %q: an address with a zone cannot be sent", target)
		}
		if ip.Is4() || ip.Is4In6() {
			a := ip.Unmap().As4()
			req = append(append(req, 1), a[:]...)
		} else {
			a := ip.As16()
			req = append(append(req, 4), a[:]...)
		}
	} else {
		if len(host) == 0 || len(host) > 255 {
			return nil, fmt.Errorf("SOCKS5 target %q: host name must be 1 to 255 bytes", target)
		}
		req = append(append(req, 3, byte(len(host))), host...)
	}
	return binary.BigEndian.AppendUint16(req, uint16(port)), nil
}

// readSOCKS5Reply reads a CONNECT reply and returns the bound address.
func readSOCKS5Reply(r io.Reader) (string, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", fmt.Errorf("reading SOCKS5 reply: %w", err)
	}
	if hdr[0] != 5 {
		return "", fmt.Errorf("%w: reply version %d, not 5", ErrSOCKS5, hdr[0])
	}
	if hdr[1] != 0 {
		return "", &SOCKS5Error{Code: hdr[1]}
	}
	if hdr[2] != 0 {
		return "", fmt.Errorf("%w: reserved byte of the reply is %d, not 0", ErrSOCKS5, hdr[2])
	}
	var n int
	switch hdr[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return "", fmt.Errorf("reading SOCKS5 reply: %w", err)
		}
		if l[0] == 0 {
			return "", fmt.Errorf("%w: empty host name in the reply", ErrSOCKS5)
		}
		n = int(l[0])
	default:
		return "", fmt.Errorf("%w: unknown address type %d in the reply", ErrSOCKS5, hdr[3])
	}
	addr := make([]byte, n+2)
	if _, err := io.ReadFull(r, addr); err != nil {
		return "", fmt.Errorf("reading SOCKS5 reply: %w", err)
	}
	port := binary.BigEndian.Uint16(addr[n:])
	if hdr[3] == 3 {
		return net.JoinHostPort(string(addr[:n]), strconv.Itoa(int(port))), nil
	}
	ip, _ := netip.AddrFromSlice(addr[:n])
	return netip.AddrPortFrom(ip, port).String(), nil
}
