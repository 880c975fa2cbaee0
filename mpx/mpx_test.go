package mpx

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/relay"
)

var dbgBuf = &lockedBuf{}

var dbgLogger = slog.New(slog.NewTextHandler(dbgBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) lines(sub string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

var testKey = bytes.Repeat([]byte{7}, 32)

// testConverter runs a Server on loopback whose destinations are dialled
// plainly on loopback.
type testConverter struct {
	srv  *Server
	addr netip.AddrPort
}

func startConverter(t *testing.T, mod func(*Server)) *testConverter {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Key: func(id string) ([]byte, bool) {
			if id == "client" {
				return testKey, true
			}
			return nil, false
		},
		Connect: func(ctx context.Context, _ string, dst Addr) (net.Conn, netip.AddrPort, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", dst.String())
			if err != nil {
				return nil, netip.AddrPort{}, err
			}
			return c, addrPortOf(c.LocalAddr()), nil
		},
		Handle: func(ctx context.Context, c *Conn, up net.Conn) {
			_, _, _ = relay.Pipe(ctx, c, up.(*net.TCPConn))
		},
	}
	s.Config.Logger = dbgLogger
	if mod != nil {
		mod(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(ctx, ln); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &testConverter{srv: s, addr: addrPortOf(ln.Addr())}
}

// echoServer echoes what it reads, then half-closes.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return addrPortOf(ln.Addr())
}

func newClient(conv *testConverter, paths ...Path) *Client {
	cl := &Client{Converter: conv.addr, KeyID: "client", Key: testKey, Config: Config{Logger: dbgLogger}}
	cl.SetPaths(paths)
	return cl
}

// roundTrip writes n random bytes through c and reads the echo,
// comparing hashes.
func roundTrip(t *testing.T, c *Conn, n int) {
	t.Helper()
	if err := echoCheck(c, n); err != nil {
		t.Fatal(err)
	}
}

func echoCheck(c *Conn, n int) error {
	data := make([]byte, n)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("reading the echo after %d bytes: %w", got, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if want := sha256.Sum256(data); got != int64(n) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echo of %d bytes came back as %d bytes with another hash", n, got)
	}
	return nil
}

func TestSessionEcho(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	for _, paths := range [][]Path{
		nil,
		{{ID: 1, Addr: netip.MustParseAddr("127.0.0.1")}, {ID: 2, Addr: netip.MustParseAddr("127.0.0.2")}},
	} {
		for _, sched := range []Scheduler{MinRTT, RoundRobin, Redundant} {
			cl := newClient(conv, paths...)
			cl.Config.Scheduler = sched
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			c, err := cl.Dial(ctx, AddrFromAddrPort(echo))
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) > 1 {
				waitSubflows(t, c, len(paths))
			}
			roundTrip(t, c, 3<<20+17)
			_ = c.Close()
			cancel()
			st := c.Stats()
			t.Logf("%s, %d paths: subflows %d, sent %d", sched, len(paths), len(st.Subflows), st.BytesSent)
		}
	}
}

func waitSubflows(t *testing.T, c *Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Stats().Subflows) < n {
		if time.Now().After(deadline) {
			t.Fatalf("session has %d subflows, want %d\n%s\n%s", len(c.Stats().Subflows), n, c.debugState(), dbgBuf.lines(fmt.Sprintf("%016x", c.Token())))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitSubflowsAtMost(t *testing.T, c *Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Stats().Subflows) > n {
		if time.Now().After(deadline) {
			t.Fatalf("session has %d subflows, want at most %d", len(c.Stats().Subflows), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOpenRefusals(t *testing.T) {
	conv := startConverter(t, func(s *Server) {
		inner := s.Connect
		s.Connect = func(ctx context.Context, id string, dst Addr) (net.Conn, netip.AddrPort, error) {
			if dst.Port == 9 {
				return nil, netip.AddrPort{}, &StatusError{Status: StatusNotAllowed}
			}
			return inner(ctx, id, dst)
		}
	})
	echo := echoServer(t)
	ctx := context.Background()

	bad := &Client{Converter: conv.addr, KeyID: "client", Key: bytes.Repeat([]byte{8}, 32)}
	if _, err := bad.Dial(ctx, AddrFromAddrPort(echo)); !errors.Is(err, &StatusError{Status: StatusAuthFailed}) {
		t.Errorf("wrong key: %v, want authentication failed", err)
	}
	unknown := &Client{Converter: conv.addr, KeyID: "stranger", Key: testKey}
	if _, err := unknown.Dial(ctx, AddrFromAddrPort(echo)); !errors.Is(err, &StatusError{Status: StatusAuthFailed}) {
		t.Errorf("unknown key id: %v, want authentication failed", err)
	}
	good := newClient(conv)
	if _, err := good.Dial(ctx, Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 9}); !errors.Is(err, &StatusError{Status: StatusNotAllowed}) {
		t.Errorf("forbidden destination: %v, want not allowed", err)
	}
	// A port nobody listens on.
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	closed := addrPortOf(l.Addr())
	_ = l.Close()
	if _, err := good.Dial(ctx, AddrFromAddrPort(closed)); !errors.Is(err, &StatusError{Status: StatusRefused}) {
		t.Errorf("closed port: %v, want refused", err)
	}
}

// rawOpen sends an OPEN on a fresh connection and returns the answer's
// status.
func rawOpen(t *testing.T, conv *testConverter, msg []byte) Status {
	t.Helper()
	nc, err := net.Dial("tcp", conv.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return Status(b[0])
}

func TestOpenReplayRefused(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	o := &openRequest{time: time.Now().Unix(), keyID: "client", dst: AddrFromAddrPort(echo), window: 1 << 20}
	_, _ = rand.Read(o.nonce[:])
	pub, _ := hexKey()
	copy(o.pub[:], pub)
	msg := encodeOpen(o, testKey)
	if s := rawOpen(t, conv, msg); s != StatusOK {
		t.Fatalf("first OPEN: %v", s)
	}
	if s := rawOpen(t, conv, msg); s != StatusReplayed {
		t.Fatalf("replayed OPEN: %v, want %v", s, StatusReplayed)
	}
	o2 := *o
	o2.time = time.Now().Add(-time.Hour).Unix()
	_, _ = rand.Read(o2.nonce[:])
	if s := rawOpen(t, conv, encodeOpen(&o2, testKey)); s != StatusReplayed {
		t.Fatalf("OPEN an hour old: %v, want %v", s, StatusReplayed)
	}
}

func TestJoinRefusals(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	cl := newClient(conv)
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := clientSessionOf(cl, c)

	var last net.Conn
	join := func(keys sessionKeys, j *joinRequest) error {
		nc, err := net.Dial("tcp", conv.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		last = nc
		return clientJoin(nc, &keys, j)
	}
	// Unknown token.
	wrong := s.keys
	wrong.token++
	if err := join(wrong, &joinRequest{local: 5, generation: 1}); !errors.Is(err, &StatusError{Status: StatusUnknownToken}) {
		t.Errorf("unknown token: %v", err)
	}
	// Right token, wrong join key: the client sees the converter's HMAC
	// fail first; send a proof anyway with the raw exchange.
	forged := s.keys
	forged.join[0] ^= 1
	if err := join(forged, &joinRequest{local: 5, generation: 1}); err == nil {
		t.Errorf("join with a wrong key succeeded")
	}
	if status := forgedProof(t, conv, s.keys.token); status != StatusBadHMAC {
		t.Errorf("forged proof: %v, want %v", status, StatusBadHMAC)
	}
	// A good join, then the same (L, R, G) again.
	if err := join(s.keys, &joinRequest{local: 5, generation: 7}); err != nil {
		t.Fatalf("good join: %v", err)
	}
	waitSubflows(t, conv.srv.Sessions()[0], 2)
	if err := join(s.keys, &joinRequest{local: 5, generation: 7}); !errors.Is(err, &StatusError{Status: StatusDuplicate}) {
		t.Errorf("duplicate join: %v", err)
	}
	// A newer generation replaces the old subflow.
	if err := join(s.keys, &joinRequest{local: 5, generation: 8}); err != nil {
		t.Errorf("newer generation: %v", err)
	}
	// This test's subflows speak no frames: end them before data flows.
	_ = last.Close()
	waitSubflowsAtMost(t, conv.srv.Sessions()[0], 1)
	roundTrip(t, c, 1<<20)
}

// forgedProof runs a JOIN whose proof is made up and returns the RESULT.
func forgedProof(t *testing.T, conv *testConverter, token uint64) Status {
	nc, err := net.Dial("tcp", conv.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	j := &joinRequest{token: token, local: 9, generation: 1}
	if _, err := nc.Write(j.encode()); err != nil {
		t.Fatal(err)
	}
	var ch [1 + nonceLen + 16]byte
	if _, err := io.ReadFull(nc, ch[:]); err != nil || ch[0] != 0 {
		t.Fatalf("challenge: %v %v\n%s", err, ch[0], dbgBuf.lines(fmt.Sprintf("%016x", token)))
	}
	if _, err := nc.Write(make([]byte, macLen)); err != nil {
		t.Fatal(err)
	}
	var r [1]byte
	if _, err := io.ReadFull(nc, r[:]); err != nil {
		t.Fatal(err)
	}
	return Status(r[0])
}

func clientSessionOf(cl *Client, c *Conn) *clientSession {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.sessions[c]
}

func hexKey() ([]byte, error) {
	b := make([]byte, 32)
	b[0] = 9 // the X25519 base point: a valid public key
	return b, nil
}

func TestManySessions(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	cl := newClient(conv, Path{ID: 1, Addr: netip.MustParseAddr("127.0.0.1")}, Path{ID: 2, Addr: netip.MustParseAddr("127.0.0.3")})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
			if err := echoCheck(c, 64<<10); err != nil {
				t.Error(err, c.debugState(), dbgBuf.lines(fmt.Sprintf("%016x", c.Token())))
				for _, sc := range conv.srv.Sessions() {
					if sc.Token() == c.Token() {
						t.Log(sc.debugState())
					}
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for len(conv.srv.Sessions()) > 0 || len(cl.Sessions()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions left: converter %d, client %d", len(conv.srv.Sessions()), len(cl.Sessions()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubflowLostMidTransfer closes one subflow's socket in the middle of
// an echo: its data is sent again on the other, nothing is lost, and the
// path manager opens the subflow again while the stream goes on.
func TestSubflowLostMidTransfer(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	cl := newClient(conv, Path{ID: 1, Addr: netip.MustParseAddr("127.0.0.1")}, Path{ID: 2, Addr: netip.MustParseAddr("127.0.0.2")})
	cl.Config.Scheduler = RoundRobin
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitSubflows(t, c, 2)
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if _, err := c.Write(data[:4<<20]); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	victim := c.subflows[0]
	c.mu.Unlock()
	_ = victim.nc.Close()
	waitSubflowsAtMost(t, c, 1)
	waitSubflows(t, c, 2)
	if _, err := c.Write(data[4<<20:]); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("echo of %d bytes came back as %d different bytes", len(data), len(b))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no echo")
	}
}

// TestSmallWindowSlowReader keeps both receive windows at their minimum
// while the client reads slowly: the senders must stay inside the window
// (a violation resets the session) and everything arrives.
func TestSmallWindowSlowReader(t *testing.T) {
	conv := startConverter(t, func(s *Server) { s.Config.ReceiveWindow = 64 << 10 })
	echo := echoServer(t)
	cl := newClient(conv, Path{ID: 1, Addr: netip.MustParseAddr("127.0.0.1")}, Path{ID: 2, Addr: netip.MustParseAddr("127.0.0.2")})
	cl.Config.ReceiveWindow = 64 << 10
	cl.Config.SendBuffer = 64 << 10
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	go func() {
		_, _ = c.Write(data)
		_ = c.CloseWrite()
	}()
	var got bytes.Buffer
	buf := make([]byte, 7000)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
		if got.Len()%(256<<10) < n {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("got %d bytes, not the %d sent", got.Len(), len(data))
	}
}

// TestJoinReplayRefused records a successful JOIN's messages and plays
// them again on a new subflow: the converter's fresh challenge makes the
// recorded proof worthless.
func TestJoinReplayRefused(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	cl := newClient(conv)
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := clientSessionOf(cl, c)
	// A genuine join, recorded.
	nc, err := net.Dial("tcp", conv.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rec := &recorder{Conn: nc}
	j := &joinRequest{local: 7, generation: 1}
	if err := clientJoin(rec, &s.keys, j); err != nil {
		t.Fatalf("genuine join: %v", err)
	}
	// The same bytes on a new subflow, with a newer generation's worth
	// of hope: the proof was made for another challenge.
	nc2, err := net.Dial("tcp", conv.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	_ = nc2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc2.Write(rec.sent[:joinMsgLen]); err != nil {
		t.Fatal(err)
	}
	var challenge [1 + nonceLen + 16]byte
	if _, err := io.ReadFull(nc2, challenge[:]); err != nil || challenge[0] != byte(StatusOK) {
		t.Fatalf("challenge: %v %v", err, challenge[0])
	}
	if _, err := nc2.Write(rec.sent[joinMsgLen : joinMsgLen+macLen]); err != nil {
		t.Fatal(err)
	}
	var result [1]byte
	if _, err := io.ReadFull(nc2, result[:]); err != nil || Status(result[0]) != StatusBadHMAC {
		t.Fatalf("replayed proof: %v %v, want %v", err, Status(result[0]), StatusBadHMAC)
	}
}

type recorder struct {
	net.Conn
	sent []byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.sent = append(r.sent, p...)
	return r.Conn.Write(p)
}

// TestSessionIPv6 runs a session whose subflows are IPv6.
func TestSessionIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = ln.Close()
	conv := startConverter(t, func(s *Server) {})
	// A second listener of the same converter on ::1.
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = conv.srv.Serve(ctx, ln6)
	}()
	defer func() {
		cancel()
		<-done
	}()
	echo := echoServer(t)
	cl := &Client{Converter: addrPortOf(ln6.Addr()), KeyID: "client", Key: testKey}
	cl.SetPaths([]Path{{ID: 1, Addr: netip.MustParseAddr("::1")}})
	cl.Limits.Subflows = 2
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := c.Stats(); len(st.Subflows) == 0 || !st.Subflows[0].Local.Addr().Is6() {
		t.Fatalf("subflows %+v, want IPv6", st.Subflows)
	}
	roundTrip(t, c, 1<<20)
}

// TestJoinFloodBounded sends JOINs with made-up tokens from one source
// faster than the converter allows: past the burst they are refused as
// BUSY without a token lookup, and a genuine session is unaffected.
func TestJoinFloodBounded(t *testing.T) {
	conv := startConverter(t, func(s *Server) { s.JoinRate, s.JoinBurst = 5, 10 })
	busy := 0
	for i := range 40 {
		nc, err := net.Dial("tcp", conv.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		j := &joinRequest{token: uint64(i) + 1, local: 1, generation: 1}
		if _, err := nc.Write(j.encode()); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(nc, b[:]); err != nil {
			t.Fatal(err)
		}
		switch Status(b[0]) {
		case StatusBusy:
			busy++
		case StatusUnknownToken:
		default:
			t.Fatalf("join %d: %v", i, Status(b[0]))
		}
		nc.Close()
	}
	if busy < 25 {
		t.Errorf("%d of 40 JOINs in a burst were refused as busy, want at least 25 (burst 10, 5/s)", busy)
	}
}

// TestAdvertisedAddressJoined: the converter advertises a second address
// (ADD_ADDR); a client that accepts advertisements opens a subflow to it.
func TestAdvertisedAddressJoined(t *testing.T) {
	second, err := net.Listen("tcp4", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	conv := startConverter(t, func(s *Server) {
		s.Advertise = func() []Advert {
			return []Advert{{ID: 3, Addr: addrPortOf(second.Addr())}}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = conv.srv.Serve(ctx, second)
	}()
	defer func() {
		cancel()
		<-done
	}()
	echo := echoServer(t)
	cl := newClient(conv)
	cl.Limits = Limits{Subflows: 2, AddAddrAccepted: 1}
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitSubflows(t, c, 2)
	var toSecond bool
	for _, sf := range c.Stats().Subflows {
		toSecond = toSecond || sf.Remote == addrPortOf(second.Addr()) && sf.RemoteID == 3
	}
	if !toSecond {
		t.Fatalf("no subflow to the advertised address: %+v", c.Stats().Subflows)
	}
	// A client that accepts none stays on one subflow.
	cl0 := newClient(conv)
	c0, err := cl0.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c0.Close()
	time.Sleep(300 * time.Millisecond)
	if n := len(c0.Stats().Subflows); n != 1 {
		t.Errorf("client with add_addr_accepted 0 has %d subflows, want 1", n)
	}
	roundTrip(t, c, 1<<20)
}

// TestBackupFlagChange turns a path into a backup path on a live session:
// the subflow is marked on both sides (PRIO), and a transfer then runs on
// the other path only.
func TestBackupFlagChange(t *testing.T) {
	conv := startConverter(t, nil)
	echo := echoServer(t)
	a, b := Path{ID: 1, Addr: netip.MustParseAddr("127.0.0.1")}, Path{ID: 2, Addr: netip.MustParseAddr("127.0.0.2")}
	cl := newClient(conv, a, b)
	c, err := cl.Dial(context.Background(), AddrFromAddrPort(echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitSubflows(t, c, 2)
	b.Backup = true
	cl.SetPaths([]Path{a, b})
	var server *Conn
	if err := waitFor(5*time.Second, func() bool {
		for _, s := range conv.srv.Sessions() {
			if s.Token() == c.Token() {
				server = s
			}
		}
		if server == nil {
			return false
		}
		for _, sf := range server.Stats().Subflows {
			if sf.LocalID == 2 && sf.PeerBackup {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the converter never saw subflow 2 marked backup: %+v", server.Stats().Subflows)
	}
	var before uint64
	for _, sf := range c.Stats().Subflows {
		if sf.LocalID == 2 {
			before = sf.BytesSent
		}
	}
	roundTrip(t, c, 4<<20)
	for _, sf := range c.Stats().Subflows {
		if sf.LocalID == 2 && sf.BytesSent-before > 64<<10 {
			t.Errorf("the backup subflow carried %d bytes while the primary worked", sf.BytesSent-before)
		}
	}
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
