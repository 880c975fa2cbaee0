package diag

import "fmt"

// request is one inet_diag request: a dump of the sockets of a family and
// protocol in some states, or (exact) the MPTCP socket with a token.
type request struct {
	family   Family
	protocol uint16 // protoTCP or protoMPTCP
	states   StateSet
	ext      uint8 // idiag_ext: extensions to include
	exact    bool  // one socket, not a dump
	token    uint32
}

// encodeRequest returns the payload of the request's SOCK_DIAG_BY_FAMILY
// message: struct inet_diag_req_v2 and, for MPTCP, the protocol attribute.
//
// Protocols above 255 do not fit sdiag_protocol: the kernel (5.9+) takes the
// u32 attribute INET_DIAG_REQ_PROTOCOL after the struct instead, and ignores
// sdiag_protocol; ss(8) and the kernel's selftests put IPPROTO_TCP there,
// which is also 262's low byte. A kernel before 5.9 ignores the attribute and
// answers with TCP sockets, which is why the package needs 5.9.
//
// An exact MPTCP request finds the connection by its token, which the kernel
// takes from the first word of the cookie (mptcp_diag_dump_one); the family
// only picks the inet_diag handler, and the connection may be of either.
func encodeRequest(r request) []byte {
	n := sizeofReqV2
	if r.protocol > 0xff {
		n += 8
	}
	b := make([]byte, n)
	b[reqOffFamily] = byte(r.family)
	b[reqOffProtocol] = byte(r.protocol)
	if r.protocol > 0xff {
		b[reqOffProtocol] = protoTCP
	}
	b[reqOffExt] = r.ext
	ne.PutUint32(b[reqOffStates:], uint32(r.states))
	if r.exact {
		ne.PutUint32(b[reqOffCookie:], r.token)
	}
	if r.protocol > 0xff {
		a := b[sizeofReqV2:]
		ne.PutUint16(a[0:], 8)
		ne.PutUint16(a[2:], uint16(reqAttrProtocol))
		ne.PutUint32(a[4:], uint32(r.protocol))
	}
	return b
}

// replyError is an error the kernel answered a request with: a positive
// errno and the extended-ACK text, if any.
type replyError struct {
	errno   int32
	message string
}

func (e *replyError) Error() string {
	if e.message != "" {
		return fmt.Sprintf("errno %d (kernel: %q)", e.errno, e.message)
	}
	return fmt.Sprintf("errno %d", e.errno)
}

// parseDatagram walks the netlink messages of one received datagram of the
// reply to the request with sequence number seq and calls fn with the
// payload of each SOCK_DIAG_BY_FAMILY message; the payload is valid only
// during the call. Messages of other sequence numbers are skipped. done is
// set at the end of the reply: NLMSG_DONE, an error or acknowledgement, or a
// reply to an exact request (not part of a multipart dump). An error reply
// is returned as a *replyError.
func parseDatagram(b []byte, seq uint32, fn func(msg []byte) error) (done bool, err error) {
	for len(b) > 0 {
		if len(b) < nlmHdrLen {
			return false, fmt.Errorf("netlink message header: %w (%d bytes left)", errTruncated, len(b))
		}
		n := int(ne.Uint32(b))
		if n < nlmHdrLen || n > len(b) {
			return false, fmt.Errorf("netlink message of length %d in %d bytes: %w", n, len(b), errTruncated)
		}
		typ, flags, s := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
		payload := b[nlmHdrLen:n]
		if a := (n + 3) &^ 3; a < len(b) {
			b = b[a:]
		} else {
			b = nil
		}
		if s != seq {
			continue
		}
		switch typ {
		case nlmsgNoop:
		case nlmsgError:
			return true, errorReply(payload, flags, true)
		case nlmsgDone:
			return true, errorReply(payload, flags, false)
		case nlmsgOverrun:
			return true, fmt.Errorf("netlink: data lost (overrun)")
		case sockDiagByFamily:
			if err := fn(payload); err != nil {
				return false, err
			}
			if flags&nlmFMulti == 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

// errorReply returns the error an NLMSG_ERROR (withHeader) or NLMSG_DONE
// payload carries: nil for an acknowledgement or a clean end of dump.
func errorReply(p []byte, flags uint16, withHeader bool) error {
	if len(p) < 4 {
		if withHeader {
			return fmt.Errorf("netlink error message of %d bytes: %w", len(p), errTruncated)
		}
		return nil // NLMSG_DONE without an error code
	}
	code := int32(ne.Uint32(p))
	if code == 0 {
		return nil
	}
	e := &replyError{errno: -code}
	if code > 0 {
		e.errno = code
	}
	if flags&nlmFAckTLVs == 0 {
		return e
	}
	// The TLVs follow the request: its header only when capped, else the
	// whole message.
	off := 4
	if withHeader {
		if len(p) < 4+nlmHdrLen {
			return e
		}
		off += nlmHdrLen
		if flags&nlmFCapped == 0 {
			off = 4 + int(ne.Uint32(p[4:]))
		}
	}
	if off < 4 || off > len(p) {
		return e
	}
	for attrs := p[off:]; ; {
		typ, val, rest, ok, err := nextAttr(attrs)
		if err != nil || !ok {
			return e
		}
		if typ == nlmsgErrAttrMsg {
			msg := val
			for i, c := range msg {
				if c == 0 {
					msg = msg[:i]
					break
				}
			}
			e.message = string(msg)
		}
		attrs = rest
	}
}
