package diag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Addresses of the capture scenario (see TestCapture): testbed's plan for
// paths 0 and 1, the client first.
var (
	capCli4  = netip.MustParseAddr("192.0.2.1")
	capSrv4  = netip.MustParseAddr("192.0.2.2")
	capCli6  = netip.MustParseAddr("2001:db8::1")
	capSrv6  = netip.MustParseAddr("2001:db8::2")
	capJoin4 = netip.MustParseAddr("198.51.100.1")
	capJoin6 = netip.MustParseAddr("2001:db8:0:1::1")
)

func listCaptured(t *testing.T, host string, f Filter) ([]Connection, *fakeTransport) {
	t.Helper()
	c, ft := capturedClient(t, host)
	conns, err := c.Connections(context.Background(), f)
	if err != nil {
		t.Fatalf("Connections(%+v) on the %s capture: %v", f, host, err)
	}
	return conns, ft
}

// TestCapturedMatchesSS decodes the captured replies of both hosts and
// compares every connection and subflow with what ss(8), another decoder
// of the same kernel data, printed for the same sockets at capture time.
func TestCapturedMatchesSS(t *testing.T) {
	for _, host := range []string{"cli", "srv"} {
		t.Run(host, func(t *testing.T) {
			conns, _ := listCaptured(t, host, Filter{States: AllStates})
			ss := loadSS(t, host)

			mptcp := ss["ss -Mnai"]
			if len(mptcp) != len(conns) {
				t.Errorf("%d connections, ss -M shows %d sockets", len(conns), len(mptcp))
			}
			for _, s := range mptcp {
				i := slices.IndexFunc(conns, func(c Connection) bool {
					return c.Local == s.local && c.Remote == s.remote && c.State.String() == s.state
				})
				if i < 0 {
					t.Errorf("ss -M shows %s %s → %s; not listed", s.state, s.local, s.remote)
					continue
				}
				checkAgainstSS(t, &conns[i], s)
			}

			var subflows []*Subflow
			for i := range conns {
				for j := range conns[i].Subflows {
					subflows = append(subflows, &conns[i].Subflows[j])
				}
			}
			seen := 0
			for _, s := range ss["ss -tnai"] {
				i := slices.IndexFunc(subflows, func(sf *Subflow) bool { return sf.Local == s.local && sf.Remote == s.remote })
				if !strings.Contains(s.info, "tcp-ulp-mptcp flags:") {
					if i >= 0 {
						t.Errorf("TCP socket %s → %s without MPTCP details is listed as a subflow", s.local, s.remote)
					}
					continue
				}
				seen++
				if i < 0 {
					t.Errorf("ss -t shows subflow %s → %s (%s); not listed", s.local, s.remote, s.info)
					continue
				}
				checkSubflowAgainstSS(t, subflows[i], s)
			}
			if seen != len(subflows) {
				t.Errorf("%d subflows listed, ss -t shows %d", len(subflows), seen)
			}
		})
	}
}

func checkAgainstSS(t *testing.T, c *Connection, s ssSocket) {
	t.Helper()
	hex := func(key string) uint64 {
		v := ssField(s.info, key)
		if v == "" {
			return 0
		}
		n, err := strconv.ParseUint(v, 16, 64)
		if err != nil {
			t.Fatalf("ss %s:%q: %v", key, v, err)
		}
		return n
	}
	dec := func(key string) uint64 {
		n, _ := strconv.ParseUint(ssField(s.info, key), 10, 64)
		return n
	}
	what := fmt.Sprintf("connection %s → %s", c.Local, c.Remote)
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"token", uint64(c.Token), hex("token")},
		{"subflows", uint64(c.Info.ExtraSubflows), dec("subflows")},
		{"subflows_max", uint64(c.Info.LimitExtraSubflows), dec("subflows_max")},
		{"add_addr_accepted_max", uint64(c.Info.LimitAddAddrAccepted), dec("add_addr_accepted_max")},
		{"write_seq", c.Info.WriteSeq, hex("write_seq")},
		{"snd_una", c.Info.SndUna, hex("snd_una")},
		{"rcv_nxt", c.Info.RcvNxt, hex("rcv_nxt")},
	} {
		if f.got != f.want {
			t.Errorf("%s: %s = %#x, ss shows %#x", what, f.name, f.got, f.want)
		}
	}
	words := strings.Fields(s.info)
	if c.Fallback != slices.Contains(words, "fallback") {
		t.Errorf("%s: Fallback = %t, ss shows %q", what, c.Fallback, s.info)
	}
	if c.Info.Flags&InfoRemoteKeyReceived != 0 != slices.Contains(words, "remote_key") {
		t.Errorf("%s: Info.Flags = %s, ss shows %q", what, c.Info.Flags, s.info)
	}
}

// ssSubflowFlags writes flags as ss does: one letter per flag.
func ssSubflowFlags(f SubflowFlags) string {
	var b strings.Builder
	for i, c := range "MmJjBbecv" {
		if f&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}

func checkSubflowAgainstSS(t *testing.T, sf *Subflow, s ssSocket) {
	t.Helper()
	_, ulp, _ := strings.Cut(s.info, "tcp-ulp-mptcp ")
	want := fmt.Sprintf("flags:%s token:%04x(id:%d)/%04x(id:%d) seq:%x sfseq:%x ssnoff:%x maplen:%x",
		ssSubflowFlags(sf.Flags), sf.RemoteToken, sf.RemoteID, sf.LocalToken, sf.LocalID,
		sf.MapSeq, sf.MapSubflowSeq, sf.SSNOffset, sf.MapDataLen)
	if got := strings.Join(strings.Fields(ulp), " "); got != want {
		t.Errorf("subflow %s → %s:\nss shows   %s\nwe decoded %s", sf.Local, sf.Remote, got, want)
	}
	if rtt := ssField(s.info, "rtt"); rtt != "" {
		ms, _, _ := strings.Cut(rtt, "/")
		if got := fmt.Sprintf("%g", float64(sf.RTT.Microseconds())/1000); got != ms {
			t.Errorf("subflow %s → %s: RTT %v, ss shows rtt:%s", sf.Local, sf.Remote, sf.RTT, rtt)
		}
	}
	// ss leaves out counters that are 0.
	if v := ssField(s.info, "bytes_acked"); v != strconv.FormatUint(sf.BytesAcked, 10) && (v != "" || sf.BytesAcked != 0) {
		t.Errorf("subflow %s → %s: BytesAcked %d, ss shows bytes_acked:%s", sf.Local, sf.Remote, sf.BytesAcked, v)
	}
}

// TestCapturedScenario checks what the capture scenario must show: each
// kind of connection, its subflows, and how tokens relate across the two
// hosts.
func TestCapturedScenario(t *testing.T) {
	cli, _ := listCaptured(t, "cli", Filter{})
	srv, _ := listCaptured(t, "srv", Filter{})
	srvAll, _ := listCaptured(t, "srv", Filter{States: AllStates})

	// The client: three MPTCP connections with a join each, one that fell
	// back; the two plain TCP connections are not listed.
	if len(cli) != 4 {
		t.Fatalf("client lists %d connections, want 4: %v", len(cli), cli)
	}
	if len(srv) != 3 {
		t.Fatalf("server lists %d connections, want 3 (the one that fell back when accepted is not visible): %v", len(srv), srv)
	}
	if n := len(srvAll) - len(srv); n != 3 {
		t.Errorf("server lists %d listeners, want 3", n)
	}
	for _, c := range srvAll {
		if c.State == StateListen && (c.Token != 0 || c.Subflows != nil || c.Remote.Port() != 0) {
			t.Errorf("listener %+v has a token, subflows or a peer", c)
		}
	}

	for _, c := range cli {
		what := fmt.Sprintf("client connection %s → %s", c.Local, c.Remote)
		if c.State != StateEstablished || c.Token == 0 || c.Token != c.Info.Token {
			t.Errorf("%s: state %s, token %08x (info %08x)", what, c.State, c.Token, c.Info.Token)
		}
		if c.Info.Len < 48 || c.Info.BytesSent != 0 && c.Info.BytesSent < captureBytes {
			t.Errorf("%s: info of %d bytes, %d bytes sent, want at least %d", what, c.Info.Len, c.Info.BytesSent, captureBytes)
		}
		wantLocal, wantRemote := capCli4, capSrv4
		if c.Local.Addr().Is6() {
			wantLocal, wantRemote = capCli6, capSrv6
		}
		if c.Local.Addr() != wantLocal || c.Remote.Addr() != wantRemote {
			t.Errorf("%s: want from %s to %s", what, wantLocal, wantRemote)
		}
		if c.Remote.Port() == capturePlain4 {
			checkFallback(t, c)
			continue
		}
		if c.Fallback || len(c.Subflows) != 2 {
			t.Errorf("%s: fallback %t, %d subflows, want an MPTCP connection with 2", what, c.Fallback, len(c.Subflows))
			continue
		}
		first, join := c.Subflows[0], c.Subflows[1]
		if first.Local != c.Local || first.Remote != c.Remote || first.LocalID != 0 || first.RemoteID != 0 ||
			first.LocalToken != c.Token || first.RemoteToken != 0 ||
			first.Flags&(SubflowMPCapableLocal|SubflowMPCapableRemote|SubflowFullyEstablished) != SubflowMPCapableLocal|SubflowMPCapableRemote|SubflowFullyEstablished {
			t.Errorf("%s: initial subflow %+v", what, first)
		}
		if first.RTT <= 0 || first.BytesAcked < captureBytes || first.BytesReceived < captureBytes || first.TCPInfo.Len < 104 {
			t.Errorf("%s: initial subflow RTT %v, %d bytes acked, %d received, want > 0 and ≥ %d",
				what, first.RTT, first.BytesAcked, first.BytesReceived, captureBytes)
		}
		wantJoin, backup := capJoin4, true
		if c.Family == IPv6 && c.Local.Addr().Is6() {
			wantJoin, backup = capJoin6, false
		}
		if join.Local.Addr() != wantJoin || join.Remote != c.Remote || join.LocalID == 0 || join.RemoteID != 0 ||
			join.Flags&SubflowJoinLocal == 0 || !join.FullyEstablished || join.LocalToken != c.Token ||
			join.RemoteToken == 0 || join.BackupLocal != backup || join.BackupRemote || (join.Interface != 0) != backup {
			t.Errorf("%s: join subflow %+v, want from %s (backup and bound to a device: %t)", what, join, wantJoin, backup)
		}
		if c.RemoteToken != join.RemoteToken {
			t.Errorf("%s: RemoteToken %08x, want the join's %08x", what, c.RemoteToken, join.RemoteToken)
		}

		// The server's end of the connection.
		i := slices.IndexFunc(srv, func(s Connection) bool { return s.Remote == c.Local })
		if i < 0 {
			t.Errorf("%s: the server does not list it", what)
			continue
		}
		s := srv[i]
		if s.Local != c.Remote || s.Token == c.Token || s.RemoteToken != 0 || len(s.Subflows) != 2 {
			t.Errorf("%s: server end %s → %s token %08x remote token %08x, %d subflows", what, s.Local, s.Remote, s.Token, s.RemoteToken, len(s.Subflows))
			continue
		}
		// The token the client's join carried is the server's token: the
		// only place either end shows the other's.
		if c.RemoteToken != s.Token {
			t.Errorf("%s: the client's join carried token %08x, the server's token is %08x", what, c.RemoteToken, s.Token)
		}
		sjoin := s.Subflows[1]
		if sjoin.Local != join.Remote || sjoin.Remote != join.Local || sjoin.LocalID != 0 || sjoin.RemoteID != join.LocalID ||
			sjoin.Flags&SubflowJoinRemote == 0 || sjoin.Flags&SubflowJoinLocal != 0 || sjoin.RemoteToken != 0 ||
			sjoin.BackupRemote != backup || sjoin.BackupLocal {
			t.Errorf("%s: server's join subflow %+v, want the mirror of %+v", what, sjoin, join)
		}
		if s.Info.BytesReceived != 0 && s.Info.BytesReceived < captureBytes {
			t.Errorf("%s: server received %d bytes, want at least %d", what, s.Info.BytesReceived, captureBytes)
		}
		// A dual-stack server socket carries IPv4 with mapped addresses,
		// reported unmapped.
		if s.Local.Port() == captureMPTCPDual && (s.Family != IPv6 || !s.Local.Addr().Is4() || s.Subflows[0].Family != IPv6) {
			t.Errorf("%s: dual-stack server end: family %s, local %s", what, s.Family, s.Local)
		}
	}
}

func checkFallback(t *testing.T, c Connection) {
	t.Helper()
	if !c.Fallback || c.Info.Flags&InfoFallback == 0 || len(c.Subflows) != 1 {
		t.Errorf("connection to the plain TCP server: fallback %t, %d subflows, want fallback with 1", c.Fallback, len(c.Subflows))
		return
	}
	s := c.Subflows[0]
	if s.Flags&SubflowMPCapableLocal == 0 || s.Flags&(SubflowMPCapableRemote|SubflowFullyEstablished) != 0 ||
		s.Local != c.Local || s.LocalToken != c.Token || s.BytesAcked < captureBytes {
		t.Errorf("fallback subflow %+v", s)
	}
}

func TestConnectionByToken(t *testing.T) {
	conns, _ := listCaptured(t, "cli", Filter{})
	c, ft := capturedClient(t, "cli")
	for _, want := range conns {
		ft.reqs = nil
		got, err := c.Connection(context.Background(), want.Token)
		if err != nil {
			t.Fatalf("Connection(%08x): %v", want.Token, err)
		}
		if got.Local != want.Local || got.Token != want.Token || len(got.Subflows) != len(want.Subflows) {
			t.Errorf("Connection(%08x) = %s → %s with %d subflows, the listing has %s → %s with %d",
				want.Token, got.Local, got.Remote, len(got.Subflows), want.Local, want.Remote, len(want.Subflows))
		}
		if len(ft.reqs) == 0 || !ft.reqs[0].exact || ft.reqs[0].token != want.Token {
			t.Errorf("Connection(%08x) did not ask for the token: %+v", want.Token, ft.reqs)
		}
		wantTCP := 1
		if want.Family == IPv6 {
			wantTCP = 2
		}
		if len(ft.reqs) != 1+wantTCP {
			t.Errorf("Connection(%08x) made %d requests, want 1 + %d TCP dumps: %+v", want.Token, len(ft.reqs), wantTCP, ft.reqs)
		}
	}
	_, err := c.Connection(context.Background(), 0x12345678)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Connection(unknown) = %v, want ErrNotFound wrapping ENOENT", err)
	}
}

func TestFilter(t *testing.T) {
	all, ft := listCaptured(t, "cli", Filter{})
	want := []request{
		{family: IPv4, protocol: protoMPTCP, states: DefaultStates, ext: extInfo},
		{family: IPv6, protocol: protoMPTCP, states: DefaultStates, ext: extInfo},
		{family: IPv4, protocol: protoTCP, states: subflowStates, ext: extInfo},
		{family: IPv6, protocol: protoTCP, states: subflowStates, ext: extInfo},
	}
	if !slices.Equal(ft.reqs, want) {
		t.Errorf("requests of a default listing:\n%+v\nwant\n%+v", ft.reqs, want)
	}

	v6, _ := listCaptured(t, "srv", Filter{Family: IPv6})
	if len(v6) != 2 {
		t.Errorf("IPv6 filter on the server: %d connections, want 2 (IPv6 and dual-stack)", len(v6))
	}
	for _, c := range v6 {
		if c.Family != IPv6 {
			t.Errorf("IPv6 filter listed %v", c.Family)
		}
	}

	tokens := []uint32{all[1].Token, all[3].Token, 1}
	some, _ := listCaptured(t, "cli", Filter{Tokens: tokens})
	if len(some) != 2 || !slices.Contains(tokens, some[0].Token) || !slices.Contains(tokens, some[1].Token) {
		t.Errorf("token filter %08x: %d connections", tokens, len(some))
	}

	bare, ft := listCaptured(t, "cli", Filter{NoSubflows: true})
	if len(bare) != len(all) || len(ft.reqs) != 2 {
		t.Errorf("NoSubflows: %d connections, %d requests; want %d and 2", len(bare), len(ft.reqs), len(all))
	}
	for _, c := range bare {
		if c.Subflows != nil {
			t.Errorf("NoSubflows listed subflows: %+v", c)
		}
	}

	listeners, _ := listCaptured(t, "srv", Filter{States: States(StateListen)})
	if len(listeners) != 3 {
		t.Errorf("listeners: %d, want 3", len(listeners))
	}
	c, _ := capturedClient(t, "cli")
	if _, err := c.Connections(context.Background(), Filter{Family: 7}); err == nil {
		t.Error("a filter with family 7 was accepted")
	}
}

func TestErrors(t *testing.T) {
	c, ft := capturedClient(t, "cli")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Connections(ctx, Filter{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Connections with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := c.Connection(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Connection with a cancelled context = %v, want context.Canceled", err)
	}

	ft.fail = fmt.Errorf("kernel says: %w", fs.ErrNotExist)
	if _, err := c.Connections(context.Background(), Filter{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Connections when the kernel has no MPTCP diag = %v, want ErrUnavailable", err)
	}
	ft.fail = nil

	if err := c.Close(); err != nil || !ft.closed {
		t.Fatalf("Close = %v, transport closed %t", err, ft.closed)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := c.Connections(context.Background(), Filter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Connections after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Connection(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Connection after Close = %v, want ErrClosed", err)
	}
}
