package diag

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// attr is a netlink attribute for building test replies.
type attr struct {
	typ uint16
	val []byte
}

func encodeAttrs(attrs ...attr) []byte {
	var b []byte
	for _, a := range attrs {
		b = binary.NativeEndian.AppendUint16(b, uint16(4+len(a.val)))
		b = binary.NativeEndian.AppendUint16(b, a.typ)
		b = append(b, a.val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func u8(v uint8) []byte    { return []byte{v} }
func u16(v uint16) []byte  { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte  { return binary.NativeEndian.AppendUint32(nil, v) }
func u64b(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// sockReply builds one inet_diag reply: struct inet_diag_msg for a socket
// of family between local and remote in state, then attrs.
func sockReply(family Family, state State, local, remote netip.AddrPort, cookie uint64, attrs ...attr) []byte {
	b := make([]byte, sizeofDiagMsg)
	b[msgOffFamily], b[msgOffState] = byte(family), byte(state)
	id := b[msgOffSockid:]
	binary.BigEndian.PutUint16(id[sockidOffSPort:], local.Port())
	binary.BigEndian.PutUint16(id[sockidOffDPort:], remote.Port())
	if family == IPv4 {
		l, r := local.Addr().As4(), remote.Addr().As4()
		copy(id[sockidOffSrc:], l[:])
		copy(id[sockidOffDst:], r[:])
	} else {
		l, r := local.Addr().As16(), remote.Addr().As16()
		copy(id[sockidOffSrc:], l[:])
		copy(id[sockidOffDst:], r[:])
	}
	binary.NativeEndian.PutUint32(id[sockidOffCookie:], uint32(cookie))
	binary.NativeEndian.PutUint32(id[sockidOffCookie+4:], uint32(cookie>>32))
	binary.NativeEndian.PutUint32(b[msgOffInode:], 4242)
	return append(b, encodeAttrs(attrs...)...)
}

// mptcpInfo returns struct mptcp_info of size n with a token, extra
// subflow count and flags.
func mptcpInfo(n int, token uint32, extra uint8, flags InfoFlags) []byte {
	b := make([]byte, n)
	put := func(off int, v []byte) {
		if off+len(v) <= n {
			copy(b[off:], v)
		}
	}
	put(infoOffSubflows, u8(extra))
	put(infoOffFlags, u32(uint32(flags)))
	put(infoOffToken, u32(token))
	put(infoOffWriteSeq, u64b(0x1122334455667788))
	put(infoOffBytesSent, u64b(65536))
	put(infoOffSubflowsTotal, u8(extra+1))
	put(infoOffLastAckRecv, u32(1500))
	return b
}

// tcpInfo returns struct tcp_info of size n with an RTT and byte counters.
func tcpInfo(n int, rtt time.Duration, bytes uint64) []byte {
	b := make([]byte, n)
	put := func(off int, v []byte) {
		if off+len(v) <= n {
			copy(b[off:], v)
		}
	}
	put(tcpOffState, u8(uint8(StateEstablished)))
	put(tcpOffWScale, u8(0x7a)) // snd 10, rcv 7 on little-endian
	put(tcpOffRTT, u32(uint32(rtt.Microseconds())))
	put(tcpOffBytesAcked, u64b(bytes+1))
	put(tcpOffBytesReceived, u64b(bytes))
	put(tcpOffBytesSent, u64b(bytes))
	put(tcpOffBusyTime, u64b(1<<63)) // saturates
	put(tcpOffRcvWnd, u32(65535))
	return b
}

// subflowULP returns the INET_DIAG_ULP_INFO payload of an MPTCP subflow.
func subflowULP(tokenLoc, tokenRem uint32, idLoc, idRem uint8, flags SubflowFlags) []byte {
	return encodeAttrs(
		attr{uint16(ulpAttrName), []byte("mptcp\x00")},
		attr{uint16(ulpAttrMPTCP) | 0x8000, encodeAttrs(
			attr{uint16(subflowAttrTokenRem), u32(tokenRem)},
			attr{uint16(subflowAttrTokenLoc), u32(tokenLoc)},
			attr{uint16(subflowAttrFlags), u32(uint32(flags))},
			attr{uint16(subflowAttrIDRem), u8(idRem)},
			attr{uint16(subflowAttrIDLoc), u8(idLoc)},
			attr{uint16(subflowAttrRelWriteSeq), u32(7)},
			attr{uint16(subflowAttrMapSeq), u64b(0xdeadbeef00)},
			attr{uint16(subflowAttrMapSfSeq), u32(9)},
			attr{uint16(subflowAttrSSNOffset), u32(10)},
			attr{uint16(subflowAttrMapDataLen), u16(1400)},
			attr{99, u32(1)}, // unknown: skipped
		)},
	)
}

var (
	testLocal  = netip.MustParseAddrPort("192.0.2.1:40000")
	testRemote = netip.MustParseAddrPort("192.0.2.2:5201")
)

func TestDecodeConnectionLengths(t *testing.T) {
	for _, n := range []int{0, 48, 80, 96, 128} {
		msg := sockReply(IPv4, StateEstablished, testLocal, testRemote, 0x0102030405060708,
			attr{8, u8(0)}, attr{uint16(diagAttrInfo), mptcpInfo(n, 0xabcd, 1, InfoRemoteKeyReceived)}, attr{200, nil})
		c, err := decodeConnection(msg)
		if err != nil {
			t.Fatalf("mptcp_info of %d bytes: %v", n, err)
		}
		if c.Local != testLocal || c.Remote != testRemote || c.Cookie != 0x0102030405060708 || c.Inode != 4242 ||
			c.Info.Len != n || c.Fallback {
			t.Errorf("mptcp_info of %d bytes: %+v", n, c)
		}
		wantToken, wantSent, wantTotal := uint32(0xabcd), uint64(65536), uint8(2)
		if n < 48 {
			wantToken = 0
		}
		if n < 80 {
			wantSent = 0
		}
		if n < 96 {
			wantTotal = 0
		}
		if c.Token != wantToken || c.Info.BytesSent != wantSent || c.Info.SubflowsTotal != wantTotal {
			t.Errorf("mptcp_info of %d bytes: token %x, bytes sent %d, subflows total %d; want %x, %d, %d",
				n, c.Token, c.Info.BytesSent, c.Info.SubflowsTotal, wantToken, wantSent, wantTotal)
		}
		if n >= 96 && c.Info.LastAckRecv != 1500*time.Millisecond {
			t.Errorf("LastAckRecv = %v", c.Info.LastAckRecv)
		}
	}

	v6 := netip.MustParseAddrPort("[::ffff:192.0.2.1]:40000")
	c, err := decodeConnection(sockReply(IPv6, StateEstablished, v6, netip.MustParseAddrPort("[2001:db8::2]:5201"), 0,
		attr{uint16(diagAttrInfo), mptcpInfo(96, 1, 0, InfoFallback)}))
	if err != nil || c.Family != IPv6 || c.Local != testLocal || !c.Fallback {
		t.Errorf("IPv6 socket with a mapped address: %+v, %v", c, err)
	}
}

func TestDecodeSubflow(t *testing.T) {
	msg := sockReply(IPv4, StateEstablished, testLocal, testRemote, 5,
		attr{uint16(diagAttrInfo), tcpInfo(280, 1500*time.Microsecond, 65536)},
		attr{uint16(diagAttrULPInfo) | 0x8000, subflowULP(0xabcd, 0x1234, 2, 1, SubflowJoinLocal|SubflowBackupLocal|SubflowFullyEstablished)})
	s, ok, err := decodeSubflow(msg)
	if err != nil || !ok {
		t.Fatalf("decodeSubflow = %v, %v", ok, err)
	}
	if s.LocalToken != 0xabcd || s.RemoteToken != 0x1234 || s.LocalID != 2 || s.RemoteID != 1 ||
		!s.BackupLocal || s.BackupRemote || !s.FullyEstablished || s.MapSeq != 0xdeadbeef00 || s.MapDataLen != 1400 ||
		s.RelWriteSeq != 7 || s.MapSubflowSeq != 9 || s.SSNOffset != 10 || s.Cookie != 5 {
		t.Errorf("subflow %+v", s)
	}
	if s.RTT != 1500*time.Microsecond || s.BytesAcked != 65537 || s.BytesReceived != 65536 || s.RcvWnd != 65535 ||
		s.TCPInfo.Len != 280 || s.BusyTime <= 0 {
		t.Errorf("TCP info %+v", s.TCPInfo)
	}
	if snd, rcv := wscale(0x7a); binary.NativeEndian.Uint16([]byte{1, 0}) == 1 && (snd != 10 || rcv != 7) {
		t.Errorf("wscale(0x7a) = %d, %d; want 10, 7", snd, rcv)
	}
	if got := s.Flags.String(); got != "join_loc,backup_loc,fully_established" {
		t.Errorf("flags %q", got)
	}

	// An older kernel's shorter tcp_info.
	short := sockReply(IPv4, StateEstablished, testLocal, testRemote, 5,
		attr{uint16(diagAttrInfo), tcpInfo(104, time.Millisecond, 100)},
		attr{uint16(diagAttrULPInfo), subflowULP(1, 0, 0, 0, 0)})
	if s, ok, err := decodeSubflow(short); err != nil || !ok || s.RTT != time.Millisecond || s.BytesAcked != 0 {
		t.Errorf("short tcp_info: %+v, %v, %v", s.TCPInfo, ok, err)
	}

	for name, ulp := range map[string][]byte{
		"plain TCP":      nil,
		"tls":            encodeAttrs(attr{uint16(ulpAttrName), []byte("tls\x00")}, attr{2, encodeAttrs(attr{1, u16(0x303)})}),
		"listener":       encodeAttrs(attr{uint16(ulpAttrName), []byte("mptcp\x00")}),
		"no local token": encodeAttrs(attr{uint16(ulpAttrName), []byte("mptcp\x00")}, attr{uint16(ulpAttrMPTCP), encodeAttrs(attr{uint16(subflowAttrIDLoc), u8(1)})}),
	} {
		attrs := []attr{{uint16(diagAttrInfo), tcpInfo(280, time.Millisecond, 1)}}
		if ulp != nil {
			attrs = append(attrs, attr{uint16(diagAttrULPInfo), ulp})
		}
		if _, ok, err := decodeSubflow(sockReply(IPv4, StateEstablished, testLocal, testRemote, 1, attrs...)); ok || err != nil {
			t.Errorf("%s: decodeSubflow = %t, %v; want not a subflow, no error", name, ok, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := sockReply(IPv4, StateEstablished, testLocal, testRemote, 1,
		attr{uint16(diagAttrULPInfo), subflowULP(1, 0, 0, 0, 0)})
	bad := map[string][]byte{
		"short header":        good[:sizeofDiagMsg-1],
		"unknown family":      append([]byte{7}, good[1:]...),
		"attribute too long":  append(append([]byte{}, good[:sizeofDiagMsg]...), 0xff, 0, 2, 0),
		"attribute too short": append(append([]byte{}, good[:sizeofDiagMsg]...), 2, 0, 2, 0),
		"stray bytes":         append(append([]byte{}, good...), 1, 2),
		"short token": sockReply(IPv4, StateEstablished, testLocal, testRemote, 1, attr{uint16(diagAttrULPInfo),
			encodeAttrs(attr{uint16(ulpAttrName), []byte("mptcp")}, attr{uint16(ulpAttrMPTCP), encodeAttrs(attr{uint16(subflowAttrTokenLoc), u16(1)})})}),
	}
	for name, msg := range bad {
		_, _, err := decodeSubflow(msg)
		if err == nil {
			t.Errorf("%s: decodeSubflow accepted %x", name, msg)
		}
		if name != "short token" {
			if _, err := decodeConnection(msg); err == nil {
				t.Errorf("%s: decodeConnection accepted %x", name, msg)
			}
		}
		var col collector
		if err := col.addSubflow(msg); err == nil {
			t.Errorf("%s: addSubflow accepted %x", name, msg)
		}
	}
}

func TestStates(t *testing.T) {
	if DefaultStates.Has(StateListen) || !DefaultStates.Has(StateEstablished) || !AllStates.Has(StateListen) ||
		!AllStates.Has(StateBoundInactive) || AllStates.Has(0) || AllStates.Has(14) {
		t.Errorf("AllStates %#x, DefaultStates %#x", AllStates, DefaultStates)
	}
	if s := States(StateListen, StateEstablished, 40); s != 1<<10|1<<1 {
		t.Errorf("States = %#x", s)
	}
	for st, want := range map[State]string{StateEstablished: "ESTAB", StateListen: "LISTEN", StateClose: "UNCONN", 99: "state(99)"} {
		if st.String() != want {
			t.Errorf("%d.String() = %q, want %q", st, st.String(), want)
		}
	}
	if got := (InfoFallback | 8).String(); got != "fallback,0x8" {
		t.Errorf("InfoFlags.String() = %q", got)
	}
}

// syntheticNamespace returns the replies of a namespace with n MPTCP
// connections of two subflows each and n plain TCP connections, built
// like the kernel's (96-byte mptcp_info, 280-byte tcp_info).
func syntheticNamespace(n int) []captured {
	var out []captured
	srv := netip.MustParseAddr("203.0.113.2")
	for i := range n {
		token := uint32(0x10000 + i)
		local := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(10000+i%50000))
		remote := netip.AddrPortFrom(srv, 5201)
		out = append(out, captured{protoMPTCP, sockReply(IPv4, StateEstablished, local, remote, uint64(i),
			attr{8, u8(0)}, attr{uint16(diagAttrInfo), mptcpInfo(96, token, 1, InfoRemoteKeyReceived)})})
		join := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), local.Port())
		for k, l := range []netip.AddrPort{local, join} {
			out = append(out, captured{protoTCP, sockReply(IPv4, StateEstablished, l, remote, uint64(i),
				attr{8, u8(0)}, attr{uint16(diagAttrInfo), tcpInfo(280, time.Millisecond, 65536)},
				attr{uint16(diagAttrULPInfo), subflowULP(token, 0, uint8(k), 0, SubflowConnected|SubflowFullyEstablished)})})
		}
		plain := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(60000+i%5000))
		out = append(out, captured{protoTCP, sockReply(IPv4, StateEstablished, plain, remote, uint64(i),
			attr{8, u8(0)}, attr{uint16(diagAttrInfo), tcpInfo(280, time.Millisecond, 1)})})
	}
	return out
}

// TestListingAllocations checks that a listing's allocations do not grow
// with the number of connections.
func TestListingAllocations(t *testing.T) {
	c := &Client{t: &replayTransport{replies: syntheticNamespace(10000)}}
	var conns []Connection
	allocs := testing.AllocsPerRun(5, func() {
		var err error
		conns, err = c.Connections(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
	})
	if len(conns) != 10000 || len(conns[9999].Subflows) != 2 || conns[9999].Subflows[1].LocalID != 1 {
		t.Fatalf("%d connections, the last with %+v", len(conns), conns[len(conns)-1].Subflows)
	}
	t.Logf("listing 10000 connections and 20000 subflows among 30000 TCP sockets: %.0f allocations", allocs)
	if allocs > 16 {
		t.Errorf("listing 10000 connections took %.0f allocations, want at most 16", allocs)
	}
}

// BenchmarkDecodeListing measures the decoding of a listing of 10,000
// connections (20,000 subflows, 10,000 plain TCP sockets), without the
// kernel: what a listing costs beyond the dumps themselves.
func BenchmarkDecodeListing(b *testing.B) {
	const n = 10000
	c := &Client{t: &replayTransport{replies: syntheticNamespace(n)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Connections(context.Background(), Filter{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/conn")
}

// replayTransport answers dumps with every reply of the request's protocol
// and family, without the fake's checks, for allocation counts and
// benchmarks.
type replayTransport struct{ replies []captured }

func (r *replayTransport) dump(_ context.Context, req request, fn func([]byte) error) error {
	for _, c := range r.replies {
		if c.protocol == req.protocol && Family(c.msg[0]) == req.family {
			if err := fn(c.msg); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *replayTransport) close() error { return nil }

func TestTokenIndex(t *testing.T) {
	x := newTokenIndex(1000)
	for i := range 1000 {
		x.add(uint32(i)<<20, int32(i)) // tokens that differ only in high bits
	}
	x.add(0, 999) // a duplicate keeps the first index
	for i := range 1000 {
		if got, ok := x.get(uint32(i) << 20); !ok || got != int32(i) {
			t.Fatalf("get(%#x) = %d, %t; want %d", uint32(i)<<20, got, ok, i)
		}
	}
	if _, ok := x.get(12345); ok {
		t.Error("get of a missing token succeeded")
	}
	if _, ok := tokenIndex(nil).get(1); ok {
		t.Error("get on an empty index succeeded")
	}
}

func TestManyTokens(t *testing.T) {
	c := &Client{t: &replayTransport{replies: syntheticNamespace(100)}}
	var tokens []uint32
	for i := range 50 {
		tokens = append(tokens, uint32(0x10000+2*i)) // every other connection
	}
	conns, err := c.Connections(context.Background(), Filter{Tokens: tokens})
	if err != nil || len(conns) != 50 {
		t.Fatalf("%d connections, %v; want 50", len(conns), err)
	}
	for _, cn := range conns {
		if cn.Token%2 != 0 || len(cn.Subflows) != 2 {
			t.Errorf("connection %08x with %d subflows", cn.Token, len(cn.Subflows))
		}
	}
}
