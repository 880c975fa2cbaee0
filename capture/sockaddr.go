package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Linux socket address layouts, as SO_ORIGINAL_DST returns them. The family
// is in host byte order, the port in network byte order.
//
//	struct sockaddr_in  (16 bytes): family u16 | port u16 | addr [4]byte | zero [8]byte
//	struct sockaddr_in6 (28 bytes): family u16 | port u16 | flowinfo u32 | addr [16]byte | scope_id u32
const (
	afInet  = 2  // AF_INET on Linux
	afInet6 = 10 // AF_INET6 on Linux

	sizeofSockaddrInet4 = 16
	sizeofSockaddrInet6 = 28
)

// decodeSockaddr decodes a struct sockaddr_in or sockaddr_in6 that names a
// TCP destination: the length must match the family's layout, and neither
// the address nor the port may be zero. The IPv6 flow label and scope are
// ignored (captured destinations are never link-local).
func decodeSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("socket address is %d bytes long, too short to hold a family", len(b))
	}
	var ap netip.AddrPort
	switch family := binary.NativeEndian.Uint16(b); family {
	case afInet:
		if len(b) != sizeofSockaddrInet4 {
			return netip.AddrPort{}, fmt.Errorf("IPv4 socket address is %d bytes long, want %d", len(b), sizeofSockaddrInet4)
		}
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
	case afInet6:
		if len(b) != sizeofSockaddrInet6 {
			return netip.AddrPort{}, fmt.Errorf("IPv6 socket address is %d bytes long, want %d", len(b), sizeofSockaddrInet6)
		}
		ap = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:4]))
	default:
		return netip.AddrPort{}, fmt.Errorf("socket address has family %d, want AF_INET (%d) or AF_INET6 (%d)", family, afInet, afInet6)
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("socket address %s has the unspecified address", ap)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("socket address %s has port 0", ap)
	}
	return ap, nil
}
