package load

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mptcpTCPInfo is the MPTCP_TCPINFO socket option (linux/mptcp.h): the
// tcp_info of each subflow, after a struct mptcp_subflow_data header.
const mptcpTCPInfo = 2

// tcpEstablished is TCP_ESTABLISHED, the first byte of struct tcp_info.
const tcpEstablished = 1

// Subflows returns how many subflows of the MPTCP connection c are
// established (TCP state ESTABLISHED), from the MPTCP_TCPINFO socket
// option (Linux 6.0 and later).
func Subflows(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	const (
		hdr      = 16 // struct mptcp_subflow_data
		perEntry = 8  // the first bytes of struct tcp_info are enough
		entries  = 16
	)
	var (
		n    int
		serr error
	)
	err = rc.Control(func(fd uintptr) {
		buf := make([]byte, hdr+perEntry*entries)
		binary.NativeEndian.PutUint32(buf[0:], hdr)       // size_subflow_data
		binary.NativeEndian.PutUint32(buf[12:], perEntry) // size_user
		size := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_MPTCP, mptcpTCPInfo,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
			return
		}
		num := binary.NativeEndian.Uint32(buf[4:])
		user := binary.NativeEndian.Uint32(buf[12:])
		if user == 0 || user > perEntry {
			serr = fmt.Errorf("MPTCP_TCPINFO: entry size %d", user)
			return
		}
		for i := uint32(0); i < num && hdr+(i+1)*user <= size; i++ {
			if buf[hdr+i*user] == tcpEstablished {
				n++
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("reading the subflows of an MPTCP connection: %w", err)
	}
	return n, nil
}

// WaitSubflows waits until the MPTCP connection c has at least n
// established subflows, or ctx ends. A client's in-kernel path manager
// adds subflows only once the connection is fully established, which
// takes data acknowledged by the server: on an idle new connection this
// waits until ctx ends.
func WaitSubflows(ctx context.Context, c syscall.Conn, n int) error {
	for {
		got, err := Subflows(c)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d subflows, %d established: %w", n, got, context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}
