package diag

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/tests/testbed"
)

// TestNetNSReopen checks that a client made with WithNetNS stays in its
// namespace when it reopens its socket after an interrupted dump, even
// though the caller closed its namespace fd right after New.
func TestNetNSReopen(t *testing.T) {
	bed := testbed.New(t)
	h := bed.Host("h")
	fd, err := unix.FcntlInt(uintptr(h.FD()), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(WithNetNS(fd))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}

	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	var ln net.Listener
	var conn net.Conn
	if err := h.Do(func() (err error) {
		if ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		d.SetMultipathTCP(true)
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer conn.Close()
	go echo(ln)
	if err := echoRoundTrip(conn, 1<<10); err != nil {
		t.Fatal(err)
	}

	stop := errors.New("stop")
	nt := c.t.(*netlinkTransport)
	if err := nt.dump(context.Background(), request{family: IPv4, protocol: protoMPTCP, states: AllStates, ext: extInfo},
		func([]byte) error { return stop }); !errors.Is(err, stop) || nt.conn != nil {
		t.Fatalf("interrupted dump: %v; socket kept: %t", err, nt.conn != nil)
	}
	conns, err := c.Connections(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	if len(conns) != 2 || !slices.ContainsFunc(conns, func(c Connection) bool { return c.Local == local }) {
		t.Errorf("after reopening, the client lists %+v; want the two ends of %s in the host's namespace", conns, local)
	}
}
