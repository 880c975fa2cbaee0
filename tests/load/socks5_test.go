package load

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
)

// fakeProxy is a minimal SOCKS5 server for the tests: it checks the
// greeting and, when user is set, the user name and password, records the
// requested target, answers with reply (0: connect to the target, which
// must be an IP address, and relay).
type fakeProxy struct {
	user, pass string
	reply      byte
	targets    chan string
}

func (p *fakeProxy) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.targets = make(chan string, 8)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return ln.Addr().String()
}

func (p *fakeProxy) handle(c net.Conn) {
	defer c.Close()
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	want := byte(0)
	if p.user != "" {
		want = 2
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		_, _ = c.Write([]byte{5, 0xff})
		return
	}
	_, _ = c.Write([]byte{5, want})
	if want == 2 {
		var v [2]byte
		if _, err := io.ReadFull(c, v[:]); err != nil {
			return
		}
		user := make([]byte, v[1])
		_, _ = io.ReadFull(c, user)
		var l [1]byte
		_, _ = io.ReadFull(c, l[:])
		pass := make([]byte, l[0])
		_, _ = io.ReadFull(c, pass)
		if string(user) != p.user || string(pass) != p.pass {
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		a := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		_, _ = io.ReadFull(c, a)
		host = net.IP(a).String()
	case 3:
		var l [1]byte
		_, _ = io.ReadFull(c, l[:])
		a := make([]byte, l[0])
		_, _ = io.ReadFull(c, a)
		host = string(a)
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:]))))
	p.targets <- target
	if p.reply != 0 {
		_, _ = c.Write([]byte{5, p.reply, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	_, _ = c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38})
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	<-done
}

func TestSOCKS5Transfer(t *testing.T) {
	t.Parallel()
	for _, auth := range []*SOCKS5Auth{nil, {User: "u", Password: "secret"}} {
		p := &fakeProxy{}
		if auth != nil {
			p.user, p.pass = auth.User, auth.Password
		}
		proxy := p.serve(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan error, 1)
		var rst RecvStats
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err
				return
			}
			defer c.Close()
			rst, err = Receive(testCtx(t), c, RecvConfig{Records: 1000})
			got <- err
		}()
		c, err := DialSOCKS5(testCtx(t), &net.Dialer{}, proxy, ln.Addr().String(), auth)
		if err != nil {
			t.Fatalf("DialSOCKS5 (auth %v): %v", auth != nil, err)
		}
		st, err := Send(testCtx(t), c, SendConfig{Records: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if rst.SHA256 != st.SHA256 || rst.Bytes != 1000*DefaultSize {
			t.Errorf("through the proxy: received %d bytes, hash equal %v", rst.Bytes, rst.SHA256 == st.SHA256)
		}
		if tgt := <-p.targets; tgt != ln.Addr().String() {
			t.Errorf("the proxy was asked for %s, want %s", tgt, ln.Addr())
		}
	}
}

func TestSOCKS5Refusals(t *testing.T) {
	t.Parallel()
	// A host name is passed unresolved, and the reply code comes back.
	p := &fakeProxy{reply: 5}
	proxy := p.serve(t)
	_, err := DialSOCKS5(testCtx(t), &net.Dialer{}, proxy, "target.example:8080", nil)
	var se *SOCKS5Error
	if !errors.As(err, &se) || se.Code != 5 || !errors.Is(err, ErrSOCKS5) {
		t.Errorf("refused CONNECT: %v, want a SOCKS5Error with code 5", err)
	}
	if tgt := <-p.targets; tgt != "target.example:8080" {
		t.Errorf("the proxy was asked for %q, want the unresolved name", tgt)
	}
	p6 := &fakeProxy{reply: 2}
	proxy6 := p6.serve(t)
	if _, err := DialSOCKS5(testCtx(t), &net.Dialer{}, proxy6, "[2001:db8::1]:443", nil); !errors.Is(err, ErrSOCKS5) {
		t.Errorf("refused CONNECT: %v, want ErrSOCKS5", err)
	}
	if tgt := <-p6.targets; tgt != "[2001:db8::1]:443" {
		t.Errorf("the proxy was asked for %q, want [2001:db8::1]:443", tgt)
	}

	// Authentication: needed and not offered, or wrong.
	pa := &fakeProxy{user: "u", pass: "p"}
	proxyA := pa.serve(t)
	if _, err := DialSOCKS5(testCtx(t), &net.Dialer{}, proxyA, "192.0.2.1:80", nil); !errors.Is(err, ErrSOCKS5) {
		t.Errorf("without credentials: %v, want ErrSOCKS5", err)
	}
	if _, err := DialSOCKS5(testCtx(t), &net.Dialer{}, proxyA, "192.0.2.1:80", &SOCKS5Auth{User: "u", Password: "wrong"}); !errors.Is(err, ErrSOCKS5) {
		t.Errorf("wrong password: %v, want ErrSOCKS5", err)
	}

	// Bad targets are refused before anything is sent.
	for _, target := range []string{"no-port", "host:99999", ":80x", "[fe80::1%eth0]:80"} {
		if _, err := socks5Request(target); err == nil {
			t.Errorf("socks5Request(%q) succeeded", target)
		}
	}
}
