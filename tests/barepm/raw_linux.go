package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/internal/nlread"
)

// The numbers of the mptcp_pm family this program writes (see genl's
// constants, which are not exported).
const (
	cmdSubflowCreate = 10
	attrAddr         = 1
	attrToken        = 4
	attrAddrRemote   = 6
	addrFamily       = 1
	addrID           = 2
	addrAddr4        = 3
	addrAddr6        = 4
	addrPort         = 5
	addrIfIdx        = 7
)

// runRaw is the -raw mode: events read as mptcpd reads them (see
// internal/nlread), requests written with a raw write(2) and not waited
// for.
func runRaw(ctx context.Context, ep genl.Endpoint) error {
	family, group, err := resolve()
	if err != nil {
		return err
	}
	r, err := openEvents(group)
	if err != nil {
		return err
	}
	defer r.Close()
	reqFD, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return fmt.Errorf("request socket: %w", err)
	}
	defer unix.Close(reqFD)
	if err := unix.Bind(reqFD, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now()) })
	defer stop()
	var asked, lost int64
	fmt.Println("ready")
	err = readRaw(r, reqFD, family, ep, &asked, &lost)
	// Count the kernel's refusals, which it sends as errors.
	var failed int64
	buf := make([]byte, 1<<16)
	for {
		n, _, rerr := unix.Recvfrom(reqFD, buf, unix.MSG_DONTWAIT)
		if rerr != nil || n == 0 {
			break
		}
		for b := buf[:n]; len(b) >= 20; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < 16 || l > len(b) {
				break
			}
			if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR && int32(binary.NativeEndian.Uint32(b[16:])) != 0 {
				failed++
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
	fmt.Printf("asked %d failed %d events-lost %d\n", asked, failed, lost)
	return err
}

// openEvents subscribes a socket of its own to the events group and
// returns its reader.
func openEvents(group uint32) (*nlread.Reader, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("event socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "events")
	// The reader keeps a descriptor of its own, as mptcpd's does.
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group)); err != nil {
		return nil, fmt.Errorf("joining the events group: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return nlread.New(rc)
}

func resolve() (family uint16, group uint32, err error) {
	c, err := genl.New()
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if c.EventsGroup() == 0 {
		return 0, 0, errors.New("the kernel has no MPTCP events group")
	}
	return c.Family().ID, c.EventsGroup(), nil
}

// readRaw asks for a subflow for each client connection of ep's family
// that becomes established, until r's deadline passes.
func readRaw(r *nlread.Reader, reqFD int, family uint16, ep genl.Endpoint, asked, lost *int64) error {
	buf := make([]byte, 16<<10)
	req := make([]byte, 0, 256)
	var seq uint32
	for {
		n, err := r.Read(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		case errors.Is(err, unix.ENOBUFS):
			*lost++
			continue
		case err != nil:
			return fmt.Errorf("reading events: %w", err)
		}
		for b := buf[:min(n, len(buf))]; len(b) >= 20; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < 20 || l > len(b) {
				break
			}
			var gm genetlink.Message
			if gm.UnmarshalBinary(b[16:l]) == nil && gm.Header.Command == uint8(genl.EventEstablished) {
				if e, err := genl.DecodeEvent(gm); err == nil && !e.ServerSide && e.Remote.Addr().Is4() == ep.Addr.Is4() {
					seq++
					req = subflowCreate(req[:0], family, seq, e.Token, ep, e.Remote)
					// Raw: the kernel handles the request within the call.
					if _, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(reqFD), uintptr(unsafe.Pointer(&req[0])), uintptr(len(req))); errno == 0 {
						*asked++
					}
				}
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}

// subflowCreate appends a SUBFLOW_CREATE request to b.
func subflowCreate(b []byte, family uint16, seq, token uint32, local genl.Endpoint, remote netip.AddrPort) []byte {
	addr := func(a netip.Addr, id uint8, port uint16, ifIndex int32) func(*netlink.AttributeEncoder) error {
		return func(ae *netlink.AttributeEncoder) error {
			if a.Is4() {
				ae.Uint16(addrFamily, unix.AF_INET)
				v := a.As4()
				ae.Bytes(addrAddr4, v[:])
			} else {
				ae.Uint16(addrFamily, unix.AF_INET6)
				v := a.As16()
				ae.Bytes(addrAddr6, v[:])
			}
			if id != 0 {
				ae.Uint8(addrID, id)
			}
			if port != 0 {
				ae.Uint16(addrPort, port)
			}
			if ifIndex != 0 {
				ae.Int32(addrIfIdx, ifIndex)
			}
			return nil
		}
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrToken, token)
	ae.Nested(attrAddr, addr(local.Addr, local.ID, 0, local.IfIndex))
	ae.Nested(attrAddrRemote, addr(remote.Addr(), 0, remote.Port(), 0))
	attrs, _ := ae.Encode()
	l := 16 + 4 + len(attrs)
	b = binary.NativeEndian.AppendUint32(b, uint32(l))
	b = binary.NativeEndian.AppendUint16(b, family)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, cmdSubflowCreate, genl.FamilyVersion, 0, 0)
	return append(b, attrs...)
}
