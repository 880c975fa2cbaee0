package nlread

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// newReader returns a Reader of a fresh rtnetlink socket, and the socket's
// owner, through which requests are sent.
func newReader(t *testing.T) (*Reader, *netlink.Conn) {
	t.Helper()
	sock, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		t.Skipf("skipping: no rtnetlink socket: %v", err)
	}
	t.Cleanup(func() { _ = sock.Close() })
	src, err := sock.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, sock
}

// getLoopback asks the kernel for the loopback interface through c.
func getLoopback(t *testing.T, c *netlink.Conn) {
	t.Helper()
	req := rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: 1}
	b, err := req.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(netlink.Message{Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request}, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// readResult is what a Read in a goroutine returned, and when.
type readResult struct {
	n   int
	err error
	at  time.Time
}

func readAsync(r *Reader, buf []byte) <-chan readResult {
	done := make(chan readResult, 1)
	go func() {
		n, err := r.Read(buf)
		done <- readResult{n, err, time.Now()}
	}()
	return done
}

func TestReadAnswer(t *testing.T) {
	r, sock := newReader(t)
	getLoopback(t, sock)
	buf := make([]byte, 64<<10)
	n, err := r.Read(buf)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil || len(msgs) != 1 || msgs[0].Header.Type != unix.RTM_NEWLINK {
		t.Fatalf("Read gave %d bytes: %v, %v; want one RTM_NEWLINK", n, msgs, err)
	}
	// A datagram that does not fit reports its whole length.
	getLoopback(t, sock)
	small := make([]byte, 16)
	if n, err := r.Read(small); err != nil || n <= len(small) {
		t.Errorf("Read into 16 bytes = %d, %v; want the datagram's whole length", n, err)
	}
}

func TestDeadlineEndsBlockedRead(t *testing.T) {
	r, sock := newReader(t)
	buf := make([]byte, 64<<10)
	done := readAsync(r, buf)
	select {
	case res := <-done:
		t.Fatalf("Read returned %d, %v with nothing to read", res.n, res.err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := r.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if !errors.Is(res.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after the deadline = %d, %v; want os.ErrDeadlineExceeded", res.n, res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline in the past did not end a blocked Read within 5s")
	}
	// Still past: the next Read returns at once.
	if _, err := r.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second Read = %v, want os.ErrDeadlineExceeded", err)
	}
	// Taken away: reads work again.
	if err := r.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	getLoopback(t, sock)
	if n, err := r.Read(buf); err != nil || n < unix.NLMSG_HDRLEN {
		t.Fatalf("Read after the deadline was taken away = %d, %v", n, err)
	}

	// A deadline to come ends the read when it comes, not before.
	start := time.Now()
	if err := r.SetReadDeadline(start.Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	res := <-readAsync(r, buf)
	if !errors.Is(res.err, os.ErrDeadlineExceeded) || res.at.Sub(start) < 100*time.Millisecond {
		t.Fatalf("Read with a deadline 100ms ahead = %v after %s; want os.ErrDeadlineExceeded after 100ms or more", res.err, res.at.Sub(start))
	}
}

func TestCloseEndsBlockedRead(t *testing.T) {
	r, _ := newReader(t)
	done := readAsync(r, make([]byte, 4096))
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err == nil {
			t.Fatalf("Read after Close = %d, nil; want an error", res.n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read within 5s")
	}
}
