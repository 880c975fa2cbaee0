package fallback

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/mpx"
	"github.com/mptcpd/mptcpd/pm"
)

var key = bytes.Repeat([]byte{5}, 32)

func TestAllowed(t *testing.T) {
	c, err := NewConverter(ConverterOptions{
		Config: config.Converter{
			AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
			DenyPrefixes:  []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")},
			AllowPorts:    []uint16{80, 443},
		},
		Keys: map[string][]byte{"k": key},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.SetHost([]netip.Addr{netip.MustParseAddr("192.0.2.10")}, nil)
	for _, tc := range []struct {
		addr string
		port uint16
		ok   bool
	}{
		{"192.0.2.1", 80, true},
		{"2001:db8::5", 443, true},
		{"::ffff:192.0.2.1", 443, true},
		{"192.0.2.1", 22, false},       // port not allowed
		{"192.0.2.200", 80, false},     // denied prefix
		{"198.51.100.1", 80, false},    // outside allowed prefixes
		{"192.0.2.10", 80, false},      // the converter's own address
		{"127.0.0.1", 80, false},       // loopback
		{"fe80::1", 80, false},         // link-local
		{"169.254.1.1", 80, false},     // link-local
		{"0.0.0.0", 80, false},         // unspecified
		{"224.0.0.1", 80, false},       // multicast
		{"255.255.255.255", 80, false}, // broadcast
	} {
		err := c.Allowed(netip.MustParseAddr(tc.addr), tc.port)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Allowed(%s, %d) = %v, want allowed %v", tc.addr, tc.port, err, tc.ok)
		}
	}
}

// TestConverterResolvesNames opens a session to a host name, which only
// the converter resolves, and to an address its rules refuse.
func TestConverterResolvesNames(t *testing.T) {
	conv, err := NewConverter(ConverterOptions{
		Config: config.Converter{Listen: []string{"127.0.0.1:0"}, AllowLoopback: true},
		Keys:   map[string][]byte{"k": key},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lns, err := conv.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = conv.Serve(ctx, lns)
	}()
	defer func() {
		cancel()
		<-done
	}()
	dst, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	go func() {
		c, err := dst.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("hello"))
		_ = c.Close()
	}()
	cl := &mpx.Client{Converter: netip.MustParseAddrPort(lns[0].Addr().String()), KeyID: "k", Key: key}
	port := uint16(dst.Addr().(*net.TCPAddr).Port)
	s, err := cl.Dial(ctx, mpx.Addr{Host: "localhost", Port: port})
	if err != nil {
		t.Fatalf("session to localhost: %v", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(s)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	_ = s.Close()
	_, err = cl.Dial(ctx, mpx.Addr{IP: netip.MustParseAddr("224.0.0.1"), Port: 80})
	if !errors.Is(err, &mpx.StatusError{Status: mpx.StatusNotAllowed}) {
		t.Errorf("session to a multicast address: %v, want not allowed", err)
	}
}

func TestPathsFromPolicy(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")
	wants := []pm.Want{
		{Addr: a1, Flags: genl.FlagSubflow, Interface: "eth0"},
		{Addr: a2, Flags: genl.FlagSubflow | genl.FlagBackup, Interface: "wwan0"},
		{Addr: a3, Flags: genl.FlagSignal, Port: 7000, Interface: "eth1"},
	}
	var ids IDs
	paths := Paths(wants, &ids)
	if len(paths) != 2 || paths[0].Addr != a1 || paths[0].Dev != "eth0" || paths[0].Backup || !paths[1].Backup || paths[0].ID == paths[1].ID {
		t.Fatalf("paths %+v", paths)
	}
	// IDs stay while their address stays, and a new address gets a free one.
	first := paths[1].ID
	again := Paths(wants[1:], &ids)
	if len(again) != 1 || again[0].ID != first {
		t.Errorf("after eth0 went: %+v, want wwan0 keeping ID %d", again, first)
	}
	var aids IDs
	ads := Adverts(wants, 7445, &aids)
	if len(ads) != 1 || ads[0].Addr != netip.AddrPortFrom(a3, 7000) || ads[0].ID == 0 {
		t.Errorf("adverts %+v", ads)
	}
}
