package diag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// The decoders are pure functions on the bytes of one inet_diag reply. They
// walk attributes with nextAttr instead of netlink.AttributeDecoder: a
// listing decodes tens of thousands of messages, and this walk allocates
// nothing. Unknown attributes are skipped, so newer kernels do not break
// them, and fixed structures are read by length, so older and newer kernels
// with shorter or longer structs both work.

var errTruncated = errors.New("truncated")

// ne is the byte order of netlink headers, attributes and the structures
// inside them; addresses and ports in struct inet_diag_sockid are
// big-endian.
var ne = binary.NativeEndian

// nextAttr splits the first netlink attribute off b and returns its type
// (without the nested and byte-order flags), its payload and the attributes
// after it. At the end of b it returns an empty payload and rest nil with
// typ 0 and ok false.
func nextAttr(b []byte) (typ uint16, val, rest []byte, ok bool, err error) {
	if len(b) < 4 {
		if len(b) == 0 {
			return 0, nil, nil, false, nil
		}
		return 0, nil, nil, false, fmt.Errorf("attribute header: %w (%d bytes left)", errTruncated, len(b))
	}
	n := int(ne.Uint16(b))
	if n < 4 || n > len(b) {
		return 0, nil, nil, false, fmt.Errorf("attribute of length %d in %d bytes: %w", n, len(b), errTruncated)
	}
	typ = ne.Uint16(b[2:]) & 0x3fff // NLA_TYPE_MASK
	val = b[4:n]
	if a := (n + 3) &^ 3; a < len(b) {
		rest = b[a:]
	}
	return typ, val, rest, true, nil
}

// sockMsg is one struct inet_diag_msg with the attributes this package
// reads; info and ulp point into the message.
type sockMsg struct {
	family        Family
	state         State
	local, remote netip.AddrPort
	ifindex       uint32
	cookie        uint64
	rqueue        uint32
	wqueue        uint32
	uid           uint32
	inode         uint32
	info          []byte // INET_DIAG_INFO payload; nil when absent
	ulp           []byte // INET_DIAG_ULP_INFO payload; nil when absent
}

// parseSockMsg decodes the header and finds the attributes of one reply.
func parseSockMsg(b []byte) (sockMsg, error) {
	if len(b) < sizeofDiagMsg {
		return sockMsg{}, fmt.Errorf("inet_diag_msg of %d bytes, want %d: %w", len(b), sizeofDiagMsg, errTruncated)
	}
	m := sockMsg{
		family: Family(b[msgOffFamily]),
		state:  State(b[msgOffState]),
		rqueue: ne.Uint32(b[msgOffRQueue:]),
		wqueue: ne.Uint32(b[msgOffWQueue:]),
		uid:    ne.Uint32(b[msgOffUID:]),
		inode:  ne.Uint32(b[msgOffInode:]),
	}
	id := b[msgOffSockid : msgOffSockid+48]
	m.ifindex = ne.Uint32(id[sockidOffIf:])
	// sock_diag_save_cookie stores the 64-bit cookie as two u32, low first.
	m.cookie = uint64(ne.Uint32(id[sockidOffCookie:])) | uint64(ne.Uint32(id[sockidOffCookie+4:]))<<32
	sport := binary.BigEndian.Uint16(id[sockidOffSPort:])
	dport := binary.BigEndian.Uint16(id[sockidOffDPort:])
	switch m.family {
	case IPv4:
		m.local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[sockidOffSrc:])), sport)
		m.remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[sockidOffDst:])), dport)
	case IPv6:
		m.local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(id[sockidOffSrc:])).Unmap(), sport)
		m.remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(id[sockidOffDst:])).Unmap(), dport)
	default:
		return sockMsg{}, fmt.Errorf("inet_diag_msg of unknown address family %d", m.family)
	}
	for rest := b[sizeofDiagMsg:]; ; {
		typ, val, next, ok, err := nextAttr(rest)
		if err != nil {
			return sockMsg{}, fmt.Errorf("inet_diag_msg attributes: %w", err)
		}
		if !ok {
			break
		}
		switch diagAttr(typ) {
		case diagAttrInfo:
			m.info = val
		case diagAttrULPInfo:
			m.ulp = val
		}
		rest = next
	}
	return m, nil
}

// decodeConnection decodes the reply for one MPTCP socket.
func decodeConnection(b []byte) (Connection, error) {
	m, err := parseSockMsg(b)
	if err != nil {
		return Connection{}, err
	}
	info := decodeMPTCPInfo(m.info)
	return Connection{
		Family:    m.family,
		Local:     m.local,
		Remote:    m.remote,
		State:     m.state,
		Token:     info.Token,
		Cookie:    m.cookie,
		Inode:     m.inode,
		UID:       m.uid,
		RecvQueue: m.rqueue,
		SendQueue: m.wqueue,
		Fallback:  info.Flags&InfoFallback != 0,
		Info:      info,
	}, nil
}

// decodeSubflow decodes the reply for one TCP socket. ok is false, with no
// error, for a socket that is not an MPTCP subflow: no ULP, another ULP, or
// no MPTCP details (a listener's), or no local token.
func decodeSubflow(b []byte) (s Subflow, ok bool, err error) {
	m, err := parseSockMsg(b)
	if err != nil {
		return Subflow{}, false, err
	}
	nest, err := subflowNest(&m)
	if err != nil || nest == nil {
		return Subflow{}, false, err
	}
	if _, ok, err := nestToken(nest); err != nil || !ok {
		return Subflow{}, false, err
	}
	if err := decodeSubflowNest(nest, &s); err != nil {
		return Subflow{}, false, err
	}
	completeSubflow(&s, &m)
	return s, true, nil
}

// subflowNest returns the payload of the MPTCP subflow nest of a TCP
// socket's reply; nil when the socket has no ULP, another ULP, or no MPTCP
// details (a listener).
func subflowNest(m *sockMsg) ([]byte, error) {
	if m.ulp == nil {
		return nil, nil
	}
	name, nest, err := parseULP(m.ulp)
	if err != nil || string(name) != ulpNameMPTCP {
		return nil, err
	}
	return nest, nil
}

// nestToken returns the local token of an MPTCP subflow nest.
func nestToken(nest []byte) (token uint32, ok bool, err error) {
	for {
		typ, val, rest, more, err := nextAttr(nest)
		if err != nil || !more {
			return 0, false, err
		}
		if subflowAttr(typ) == subflowAttrTokenLoc {
			if len(val) < 4 {
				return 0, false, fmt.Errorf("MPTCP subflow local token of %d bytes: %w", len(val), errTruncated)
			}
			return ne.Uint32(val), true, nil
		}
		nest = rest
	}
}

// completeSubflow fills in what the MPTCP nest does not have: the addresses,
// state and TCP statistics.
func completeSubflow(s *Subflow, m *sockMsg) {
	s.Family = m.family
	s.Local, s.Remote = m.local, m.remote
	s.Interface = int(m.ifindex)
	s.State = m.state
	s.Cookie = m.cookie
	s.RecvQueue, s.SendQueue = m.rqueue, m.wqueue
	s.TCPInfo = decodeTCPInfo(m.info)
}

// parseULP returns the ULP name (without its NUL) and the payload of the
// INET_ULP_INFO_MPTCP nest, nil when absent.
func parseULP(b []byte) (name, mptcp []byte, err error) {
	for {
		typ, val, rest, ok, err := nextAttr(b)
		if err != nil {
			return nil, nil, fmt.Errorf("ULP info: %w", err)
		}
		if !ok {
			return name, mptcp, nil
		}
		switch ulpAttr(typ) {
		case ulpAttrName:
			name, _, _ = bytes.Cut(val, []byte{0})
		case ulpAttrMPTCP:
			mptcp = val
		}
		b = rest
	}
}

// decodeSubflowNest decodes the MPTCP_SUBFLOW_ATTR_* attributes into s.
func decodeSubflowNest(b []byte, s *Subflow) error {
	for {
		typ, val, rest, ok, err := nextAttr(b)
		if err != nil {
			return fmt.Errorf("MPTCP subflow info: %w", err)
		}
		if !ok {
			break
		}
		want := 0
		switch subflowAttr(typ) {
		case subflowAttrTokenRem, subflowAttrTokenLoc, subflowAttrRelWriteSeq, subflowAttrMapSfSeq,
			subflowAttrSSNOffset, subflowAttrFlags:
			want = 4
		case subflowAttrMapSeq:
			want = 8
		case subflowAttrMapDataLen:
			want = 2
		case subflowAttrIDRem, subflowAttrIDLoc:
			want = 1
		}
		if len(val) < want {
			return fmt.Errorf("MPTCP subflow attribute %d of %d bytes, want %d: %w", typ, len(val), want, errTruncated)
		}
		switch subflowAttr(typ) {
		case subflowAttrTokenRem:
			s.RemoteToken = ne.Uint32(val)
		case subflowAttrTokenLoc:
			s.LocalToken = ne.Uint32(val)
		case subflowAttrRelWriteSeq:
			s.RelWriteSeq = ne.Uint32(val)
		case subflowAttrMapSeq:
			s.MapSeq = ne.Uint64(val)
		case subflowAttrMapSfSeq:
			s.MapSubflowSeq = ne.Uint32(val)
		case subflowAttrSSNOffset:
			s.SSNOffset = ne.Uint32(val)
		case subflowAttrMapDataLen:
			s.MapDataLen = ne.Uint16(val)
		case subflowAttrFlags:
			s.Flags = SubflowFlags(ne.Uint32(val))
		case subflowAttrIDRem:
			s.RemoteID = val[0]
		case subflowAttrIDLoc:
			s.LocalID = val[0]
		}
		b = rest
	}
	s.BackupLocal = s.Flags&SubflowBackupLocal != 0
	s.BackupRemote = s.Flags&SubflowBackupRemote != 0
	s.FullyEstablished = s.Flags&SubflowFullyEstablished != 0
	return nil
}

// fields reads fixed-size fields of a structure that may be shorter than
// the reader expects: a field beyond the end reads as 0.
type fields []byte

func (f fields) u8(off int) uint8 {
	if off < len(f) {
		return f[off]
	}
	return 0
}

func (f fields) u32(off int) uint32 {
	if off+4 <= len(f) {
		return ne.Uint32(f[off:])
	}
	return 0
}

func (f fields) u64(off int) uint64 {
	if off+8 <= len(f) {
		return ne.Uint64(f[off:])
	}
	return 0
}

func (f fields) ms(off int) time.Duration { return time.Duration(f.u32(off)) * time.Millisecond }
func (f fields) us(off int) time.Duration { return time.Duration(f.u32(off)) * time.Microsecond }
func (f fields) us64(off int) time.Duration {
	return time.Duration(min(f.u64(off), uint64(1<<63-1)/1000)) * time.Microsecond
}

// decodeMPTCPInfo decodes struct mptcp_info of any length.
func decodeMPTCPInfo(b []byte) MPTCPInfo {
	f := fields(b)
	return MPTCPInfo{
		Len:                  len(b),
		ExtraSubflows:        f.u8(infoOffSubflows),
		AddAddrSignal:        f.u8(infoOffAddAddrSignal),
		AddAddrAccepted:      f.u8(infoOffAddAddrAccepted),
		LimitExtraSubflows:   f.u8(infoOffSubflowsMax),
		EndpSignalMax:        f.u8(infoOffAddAddrSignalMax),
		LimitAddAddrAccepted: f.u8(infoOffAddAddrAcceptedMax),
		Flags:                InfoFlags(f.u32(infoOffFlags)),
		Token:                f.u32(infoOffToken),
		WriteSeq:             f.u64(infoOffWriteSeq),
		SndUna:               f.u64(infoOffSndUna),
		RcvNxt:               f.u64(infoOffRcvNxt),
		LocalAddrUsed:        f.u8(infoOffLocalAddrUsed),
		EndpSubflowMax:       f.u8(infoOffLocalAddrMax),
		ChecksumEnabled:      f.u8(infoOffCsumEnabled) != 0,
		Retransmits:          f.u32(infoOffRetransmits),
		BytesRetrans:         f.u64(infoOffBytesRetrans),
		BytesSent:            f.u64(infoOffBytesSent),
		BytesReceived:        f.u64(infoOffBytesReceived),
		BytesAcked:           f.u64(infoOffBytesAcked),
		SubflowsTotal:        f.u8(infoOffSubflowsTotal),
		EndpLaminarMax:       f.u8(infoOffEndpLaminarMax),
		EndpFullmeshMax:      f.u8(infoOffEndpFullmeshMax),
		LastDataSent:         f.ms(infoOffLastDataSent),
		LastDataRecv:         f.ms(infoOffLastDataRecv),
		LastAckRecv:          f.ms(infoOffLastAckRecv),
	}
}

// decodeTCPInfo decodes struct tcp_info of any length.
func decodeTCPInfo(b []byte) TCPInfo {
	f := fields(b)
	snd, rcv := wscale(f.u8(tcpOffWScale))
	return TCPInfo{
		Len:           len(b),
		CAState:       f.u8(tcpOffCAState),
		Retransmits:   f.u8(tcpOffRetransmits),
		Probes:        f.u8(tcpOffProbes),
		Backoff:       f.u8(tcpOffBackoff),
		Options:       f.u8(tcpOffOptions),
		SndWScale:     snd,
		RcvWScale:     rcv,
		RTO:           f.us(tcpOffRTO),
		ATO:           f.us(tcpOffATO),
		SndMSS:        f.u32(tcpOffSndMSS),
		RcvMSS:        f.u32(tcpOffRcvMSS),
		Unacked:       f.u32(tcpOffUnacked),
		Sacked:        f.u32(tcpOffSacked),
		Lost:          f.u32(tcpOffLost),
		Retrans:       f.u32(tcpOffRetrans),
		LastDataSent:  f.ms(tcpOffLastDataSent),
		LastDataRecv:  f.ms(tcpOffLastDataRecv),
		LastAckRecv:   f.ms(tcpOffLastAckRecv),
		PMTU:          f.u32(tcpOffPMTU),
		RcvSsthresh:   f.u32(tcpOffRcvSsthresh),
		RTT:           f.us(tcpOffRTT),
		RTTVar:        f.us(tcpOffRTTVar),
		MinRTT:        f.us(tcpOffMinRTT),
		RcvRTT:        f.us(tcpOffRcvRTT),
		SndSsthresh:   f.u32(tcpOffSndSsthresh),
		SndCwnd:       f.u32(tcpOffSndCwnd),
		AdvMSS:        f.u32(tcpOffAdvMSS),
		Reordering:    f.u32(tcpOffReordering),
		RcvSpace:      f.u32(tcpOffRcvSpace),
		TotalRetrans:  f.u32(tcpOffTotalRetrans),
		PacingRate:    f.u64(tcpOffPacingRate),
		MaxPacingRate: f.u64(tcpOffMaxPacingRate),
		DeliveryRate:  f.u64(tcpOffDeliveryRate),
		BytesSent:     f.u64(tcpOffBytesSent),
		BytesRetrans:  f.u64(tcpOffBytesRetrans),
		BytesAcked:    f.u64(tcpOffBytesAcked),
		BytesReceived: f.u64(tcpOffBytesReceived),
		SegsOut:       f.u32(tcpOffSegsOut),
		SegsIn:        f.u32(tcpOffSegsIn),
		DataSegsOut:   f.u32(tcpOffDataSegsOut),
		DataSegsIn:    f.u32(tcpOffDataSegsIn),
		NotsentBytes:  f.u32(tcpOffNotsentBytes),
		BusyTime:      f.us64(tcpOffBusyTime),
		RwndLimited:   f.us64(tcpOffRwndLimited),
		SndbufLimited: f.us64(tcpOffSndbufLimited),
		Delivered:     f.u32(tcpOffDelivered),
		DeliveredCE:   f.u32(tcpOffDeliveredCE),
		DSACKDups:     f.u32(tcpOffDSACKDups),
		ReordSeen:     f.u32(tcpOffReordSeen),
		RcvOOOPack:    f.u32(tcpOffRcvOOOPack),
		SndWnd:        f.u32(tcpOffSndWnd),
		RcvWnd:        f.u32(tcpOffRcvWnd),
	}
}

// wscale splits tcp_info's byte of bit fields "__u8 tcpi_snd_wscale : 4,
// tcpi_rcv_wscale : 4": C compilers allocate bit fields from the least
// significant bit on little-endian machines and from the most significant
// one on big-endian machines.
func wscale(b byte) (snd, rcv uint8) {
	if ne.Uint16([]byte{1, 0}) == 1 {
		return b & 0xf, b >> 4
	}
	return b >> 4, b & 0xf
}
