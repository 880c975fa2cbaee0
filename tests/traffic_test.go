package tests

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer accepts connections on ln and echoes what they send, until the
// listener is closed. The accepted connections are closed at the end of the
// test.
func echoServer(t *testing.T, ln net.Listener) {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

// roundTrip sends n random bytes over c and checks that the same bytes
// come back.
func roundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	out := make([]byte, n)
	if _, err := rand.Read(out); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		errc <- err
	}()
	in := make([]byte, n)
	if _, err := io.ReadFull(c, in); err != nil {
		t.Fatalf("reading %d echoed bytes: %v", n, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("writing %d bytes: %v", n, err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("the %d bytes that came back differ from those sent", n)
	}
}
