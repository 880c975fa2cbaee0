package socks5

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// Reply codes (the REP field of a reply, RFC 1928 section 6).
const (
	ReplySucceeded               byte = 0x00
	ReplyGeneralFailure          byte = 0x01
	ReplyNotAllowed              byte = 0x02 // connection not allowed by ruleset
	ReplyNetworkUnreachable      byte = 0x03
	ReplyHostUnreachable         byte = 0x04
	ReplyConnectionRefused       byte = 0x05
	ReplyTTLExpired              byte = 0x06 // also sent for timeouts
	ReplyCommandNotSupported     byte = 0x07
	ReplyAddressTypeNotSupported byte = 0x08
)

// ErrNotAllowed is the error a Connect function returns (or wraps) when
// policy forbids the target; the client gets ReplyNotAllowed.
var ErrNotAllowed = errors.New("socks5: connection not allowed by ruleset")

// ReplyCode returns the reply code that tells a client why its CONNECT
// failed with err:
//   - an error in err's chain with a SOCKSReply() byte method gives its own
//     code (so an uplink can pass on the code its far end reported);
//   - ErrNotAllowed gives ReplyNotAllowed;
//   - ECONNREFUSED gives ReplyConnectionRefused, ENETUNREACH
//     ReplyNetworkUnreachable, EHOSTUNREACH ReplyHostUnreachable;
//   - a name that does not exist (a *net.DNSError with IsNotFound) gives
//     ReplyHostUnreachable;
//   - a timeout (os.ErrDeadlineExceeded, context.DeadlineExceeded, a
//     net.Error whose Timeout is true) gives ReplyTTLExpired;
//   - anything else, ReplyGeneralFailure.
//
// ReplyCode(nil) is ReplySucceeded.
func ReplyCode(err error) byte {
	if err == nil {
		return ReplySucceeded
	}
	var coded interface{ SOCKSReply() byte }
	if errors.As(err, &coded) {
		return coded.SOCKSReply()
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, ErrNotAllowed):
		return ReplyNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReplyConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return ReplyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return ReplyHostUnreachable
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return ReplyHostUnreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return ReplyTTLExpired
	}
	return ReplyGeneralFailure
}

// requestError is a client's request the server refuses, with the reply
// code that says why.
type requestError struct {
	code byte
	msg  string
}

func (e *requestError) Error() string    { return "socks5: " + e.msg }
func (e *requestError) SOCKSReply() byte { return e.code }

// appendReply appends a reply (VER REP RSV ATYP BND.ADDR BND.PORT). An
// unknown bound address is sent as 0.0.0.0:0, an IPv4-mapped one as IPv4.
func appendReply(b []byte, code byte, bound netip.AddrPort) []byte {
	b = append(b, version, code, 0)
	addr := bound.Addr().Unmap()
	switch {
	case !addr.IsValid():
		return append(b, atypIPv4, 0, 0, 0, 0, 0, 0)
	case addr.Is4():
		a := addr.As4()
		b = append(append(b, atypIPv4), a[:]...)
	default:
		a := addr.As16()
		b = append(append(b, atypIPv6), a[:]...)
	}
	return append(b, byte(bound.Port()>>8), byte(bound.Port()))
}
