package mpx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Frame types (docs/mpx-protocol.md §6).
const (
	frameData       = 1
	frameDataAck    = 2
	framePing       = 3
	framePong       = 4
	framePrio       = 5
	frameAddAddr    = 6
	frameRemoveAddr = 7
	frameClose      = 8
	frameReset      = 9
)

const (
	// MaxPayload is the largest payload of one DATA frame.
	MaxPayload = 16384
	// frameHeaderLen is type, flags and length.
	frameHeaderLen = 4
	// dataHeaderLen is a DATA frame's header and DSN.
	dataHeaderLen = frameHeaderLen + 8
	// maxResetText bounds a RESET frame's text.
	maxResetText = 200
	// addrMACLen is the truncated HMAC of an ADD_ADDR frame.
	addrMACLen = 8

	flagFIN    = 1 // DATA
	flagBackup = 1 // PRIO, ADD_ADDR, OPEN and JOIN flags
)

// ErrMalformed is wrapped by every error about bytes that break the
// protocol.
var ErrMalformed = errors.New("malformed MPX message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Addr is a destination or an advertised address: an IP address or a host
// name, and a port.
type Addr struct {
	// Host is a host name, resolved by the converter; empty when IP is set.
	Host string
	IP   netip.Addr
	Port uint16
}

// AddrFromAddrPort returns the Addr of ap.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

// AddrPort returns the address as a netip.AddrPort; it is invalid for a
// host name.
func (a Addr) AddrPort() netip.AddrPort {
	if a.Host != "" {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.IP, a.Port)
}

func (a Addr) String() string {
	if a.Host != "" {
		return netJoin(a.Host, a.Port)
	}
	return netip.AddrPortFrom(a.IP, a.Port).String()
}

func netJoin(host string, port uint16) string {
	return host + ":" + strconv.Itoa(int(port))
}

// Validate checks that the address can be encoded: exactly one of Host and
// IP, a host name of 1–255 valid bytes, and a port other than 0.
func (a Addr) Validate() error {
	switch {
	case a.Host != "" && a.IP.IsValid():
		return errors.New("address has both a host name and an IP address")
	case a.Host == "" && !a.IP.IsValid():
		return errors.New("address has neither a host name nor an IP address")
	case a.Port == 0:
		return errors.New("port 0 is not a destination port")
	case a.Host != "":
		return validHostName(a.Host)
	}
	return nil
}

// validHostName accepts what DNS names may hold: letters, digits, '-', '.'
// and '_', 1–255 bytes, no empty label except a trailing dot.
func validHostName(h string) error {
	if len(h) == 0 || len(h) > 255 {
		return fmt.Errorf("host name of %d bytes: it must have 1 to 255", len(h))
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return fmt.Errorf("host name %q has an empty label", h)
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("host name %q holds byte 0x%02x, which no DNS name has", h, c)
		}
		label++
		if label > 63 {
			return fmt.Errorf("host name %q has a label longer than 63 bytes", h)
		}
	}
	return nil
}

// Address types, as SOCKS5 numbers them.
const (
	atypIPv4 = 1
	atypName = 3
	atypIPv6 = 4
)

// appendAddr appends the encoding of a (§3); a must be valid.
func appendAddr(b []byte, a Addr) []byte {
	switch {
	case a.Host != "":
		b = append(b, atypName, byte(len(a.Host)))
		b = append(b, a.Host...)
	case a.IP.Unmap().Is4():
		ip := a.IP.Unmap().As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	default:
		ip := a.IP.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	}
	return binary.BigEndian.AppendUint16(b, a.Port)
}

// readAddr reads an address from r, appending its bytes to raw (for a
// transcript).
func readAddr(r io.Reader, raw []byte) (Addr, []byte, error) {
	var a Addr
	start := len(raw)
	raw, err := readN(r, raw, 1)
	if err != nil {
		return a, raw, err
	}
	switch raw[start] {
	case atypIPv4:
		if raw, err = readN(r, raw, 4+2); err != nil {
			return a, raw, err
		}
		a.IP = netip.AddrFrom4([4]byte(raw[start+1 : start+5]))
	case atypIPv6:
		if raw, err = readN(r, raw, 16+2); err != nil {
			return a, raw, err
		}
		a.IP = netip.AddrFrom16([16]byte(raw[start+1 : start+17]))
	case atypName:
		if raw, err = readN(r, raw, 1); err != nil {
			return a, raw, err
		}
		n := int(raw[start+1])
		if raw, err = readN(r, raw, n+2); err != nil {
			return a, raw, err
		}
		a.Host = string(raw[start+2 : start+2+n])
	default:
		return a, raw, &StatusError{Status: StatusBadAddress, Text: fmt.Sprintf("address type %d is not 1 (IPv4), 3 (name) or 4 (IPv6)", raw[start])}
	}
	a.Port = binary.BigEndian.Uint16(raw[len(raw)-2:])
	if err := a.Validate(); err != nil {
		return a, raw, malformed("address: %v", err)
	}
	return a, raw, nil
}

// parseAddr decodes an address from the start of b, returning the bytes
// it took.
func parseAddr(b []byte) (Addr, int, error) {
	r := &sliceReader{b: b}
	a, raw, err := readAddr(r, nil)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return a, 0, malformed("truncated address")
		}
		return a, 0, err
	}
	return a, len(raw), nil
}

// readN reads n more bytes from r onto b.
func readN(r io.Reader, b []byte, n int) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := io.ReadFull(r, b[start:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return b[:start], err
	}
	return b, nil
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// frameHeader is a decoded frame header.
type frameHeader struct {
	typ, flags uint8
	length     int
}

// knownFlags are the flags each frame type may carry.
var knownFlags = [...]uint8{
	frameData:    flagFIN,
	framePrio:    flagBackup,
	frameAddAddr: flagBackup,
}

// check validates the header's type, flags and length against §6.
func (h frameHeader) check() error {
	if h.typ < frameData || h.typ > frameReset {
		return malformed("frame type %d is unknown", h.typ)
	}
	if h.typ < uint8(len(knownFlags)) && h.flags&^knownFlags[h.typ] != 0 || h.typ >= uint8(len(knownFlags)) && h.flags != 0 {
		return malformed("frame type %d has unknown flags 0x%02x", h.typ, h.flags)
	}
	ok := false
	switch h.typ {
	case frameData:
		ok = h.length >= 8 && h.length <= 8+MaxPayload
	case frameDataAck:
		ok = h.length == 12
	case framePing, framePong:
		ok = h.length == 8
	case framePrio:
		ok = h.length == 0
	case frameAddAddr:
		ok = h.length == 1+1+4+2+addrMACLen || h.length == 1+1+16+2+addrMACLen
	case frameRemoveAddr, frameClose:
		ok = h.length == 1
	case frameReset:
		ok = h.length >= 1 && h.length <= 1+maxResetText
	}
	if !ok {
		return malformed("frame type %d with a body of %d bytes", h.typ, h.length)
	}
	return nil
}

// frameReader reads frames from one subflow.
type frameReader struct {
	r *bufio.Reader
	// body holds the body of the last control frame.
	body [1 + maxResetText]byte
}

// readHeader reads and checks the next frame header.
func (fr *frameReader) readHeader() (frameHeader, error) {
	var b [frameHeaderLen]byte
	if _, err := io.ReadFull(fr.r, b[:]); err != nil {
		return frameHeader{}, err
	}
	h := frameHeader{typ: b[0], flags: b[1], length: int(binary.BigEndian.Uint16(b[2:]))}
	return h, h.check()
}

// readBody reads the body of a control frame (any type but DATA).
func (fr *frameReader) readBody(h frameHeader) ([]byte, error) {
	body := fr.body[:h.length]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		return nil, unexpected(err)
	}
	return body, nil
}

// readDSN reads the DSN of a DATA frame; the payload, h.length-8 bytes,
// follows.
func (fr *frameReader) readDSN() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(fr.r, b[:]); err != nil {
		return 0, unexpected(err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// unexpected turns an EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func appendHeader(b []byte, typ, flags uint8, length int) []byte {
	return append(b, typ, flags, byte(length>>8), byte(length))
}

// appendDataHeader appends a DATA frame's header and DSN; n payload bytes
// follow.
func appendDataHeader(b []byte, dsn uint64, n int, fin bool) []byte {
	var flags uint8
	if fin {
		flags = flagFIN
	}
	b = appendHeader(b, frameData, flags, 8+n)
	return binary.BigEndian.AppendUint64(b, dsn)
}

func appendAck(b []byte, ack uint64, window uint32) []byte {
	b = appendHeader(b, frameDataAck, 0, 12)
	b = binary.BigEndian.AppendUint64(b, ack)
	return binary.BigEndian.AppendUint32(b, window)
}

func appendPing(b []byte, typ uint8, v uint64) []byte {
	b = appendHeader(b, typ, 0, 8)
	return binary.BigEndian.AppendUint64(b, v)
}

func appendPrio(b []byte, backup bool) []byte {
	var flags uint8
	if backup {
		flags = flagBackup
	}
	return appendHeader(b, framePrio, flags, 0)
}

func appendByteFrame(b []byte, typ, v uint8) []byte {
	return append(appendHeader(b, typ, 0, 1), v)
}

func appendReset(b []byte, code Status, text string) []byte {
	if len(text) > maxResetText {
		text = text[:maxResetText]
	}
	b = appendHeader(b, frameReset, 0, 1+len(text))
	b = append(b, byte(code))
	return append(b, text...)
}

// addrAdvert is an address of the converter, advertised with ADD_ADDR.
type addrAdvert struct {
	ID     uint8
	Addr   netip.AddrPort
	Backup bool
}

// appendAddAddr appends an ADD_ADDR frame authenticated with the session's
// join key.
func appendAddAddr(b []byte, a addrAdvert, kj *[32]byte) []byte {
	var flags uint8
	if a.Backup {
		flags = flagBackup
	}
	body := make([]byte, 0, 1+1+16+2+addrMACLen)
	body = append(body, a.ID)
	body = appendAddr(body, AddrFromAddrPort(a.Addr))
	mac := addrMAC(kj, body)
	body = append(body, mac[:addrMACLen]...)
	b = appendHeader(b, frameAddAddr, flags, len(body))
	return append(b, body...)
}

// parseAddAddr decodes and authenticates an ADD_ADDR body.
func parseAddAddr(flags uint8, body []byte, kj *[32]byte) (addrAdvert, error) {
	var a addrAdvert
	if len(body) < 1+addrMACLen {
		return a, malformed("ADD_ADDR of %d bytes", len(body))
	}
	signed := body[:len(body)-addrMACLen]
	addr, n, err := parseAddr(signed[1:])
	if err != nil {
		return a, err
	}
	if 1+n != len(signed) || addr.Host != "" {
		return a, malformed("ADD_ADDR does not hold one IP address")
	}
	mac := addrMAC(kj, signed)
	if !hmacEqual(mac[:addrMACLen], body[len(signed):]) {
		return a, malformed("ADD_ADDR's HMAC is wrong")
	}
	if body[0] == 0 {
		return a, malformed("ADD_ADDR with address ID 0")
	}
	return addrAdvert{ID: body[0], Addr: addr.AddrPort(), Backup: flags&flagBackup != 0}, nil
}
