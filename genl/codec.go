package genl

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// addrNest is the content of an address nest (MPTCP_PM_ADDR_ATTR_*) in a
// request. Attributes are written in the order iproute2 writes them, so our
// requests are byte-for-byte those of `ip mptcp` for the same operation.
type addrNest struct {
	id      uint8
	withID  bool // write the ID even when it is 0
	addr    netip.Addr
	port    uint16
	flags   EndpointFlags
	ifIndex int32
}

func (n addrNest) encode(ae *netlink.AttributeEncoder) {
	if n.id != 0 || n.withID {
		ae.Uint8(uint16(addrAttrID), n.id)
	}
	if n.flags != 0 {
		ae.Uint32(uint16(addrAttrFlags), uint32(n.flags))
	}
	if n.ifIndex != 0 {
		ae.Int32(uint16(addrAttrIfIdx), n.ifIndex)
	}
	if n.port != 0 {
		// Host byte order: the kernel reads the port with nla_get_u16.
		ae.Uint16(uint16(addrAttrPort), n.port)
	}
	if !n.addr.IsValid() {
		return
	}
	if a := n.addr; a.Is4() {
		ae.Uint16(uint16(addrAttrFamily), afINET)
		b := a.As4()
		ae.Bytes(uint16(addrAttrAddr4), b[:]) // network byte order
	} else {
		ae.Uint16(uint16(addrAttrFamily), afINET6)
		b := a.As16()
		ae.Bytes(uint16(addrAttrAddr6), b[:])
	}
}

// nest writes n as the nested attribute typ of a request.
func (n addrNest) nest(ae *netlink.AttributeEncoder, typ pmAttr) {
	ae.Nested(uint16(typ), func(nae *netlink.AttributeEncoder) error {
		n.encode(nae)
		return nil
	})
}

// appendNest appends to b the bytes nest writes, without allocating.
func (n addrNest) appendNest(b []byte, typ pmAttr) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0) // the header, once the length is known
	if n.id != 0 || n.withID {
		b = appendAttr(b, uint16(addrAttrID), n.id)
	}
	if n.flags != 0 {
		b = appendU32Attr(b, uint16(addrAttrFlags), uint32(n.flags))
	}
	if n.ifIndex != 0 {
		b = appendU32Attr(b, uint16(addrAttrIfIdx), uint32(n.ifIndex))
	}
	if n.port != 0 {
		b = appendU16Attr(b, uint16(addrAttrPort), n.port)
	}
	if a := n.addr; a.Is4() {
		b = appendU16Attr(b, uint16(addrAttrFamily), afINET)
		v := a.As4()
		b = appendAttr(b, uint16(addrAttrAddr4), v[:]...)
	} else if a.IsValid() {
		b = appendU16Attr(b, uint16(addrAttrFamily), afINET6)
		v := a.As16()
		b = appendAttr(b, uint16(addrAttrAddr6), v[:]...)
	}
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	binary.NativeEndian.PutUint16(b[start+2:], uint16(typ)|netlink.Nested)
	return b
}

// appendAttr appends a netlink attribute: header, data, padding.
func appendAttr(b []byte, typ uint16, data ...byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for range (4 - len(data)%4) % 4 {
		b = append(b, 0)
	}
	return b
}

// appendU16Attr appends an attribute holding v in host byte order.
func appendU16Attr(b []byte, typ uint16, v uint16) []byte {
	b = binary.NativeEndian.AppendUint16(b, 4+2)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, v)
	return append(b, 0, 0)
}

// appendU32Attr appends an attribute holding v in host byte order.
func appendU32Attr(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, 4+4)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return binary.NativeEndian.AppendUint32(b, v)
}

// decodeEndpoint decodes an address nest as the kernel writes it in a
// GET_ADDR reply. Unknown attributes are ignored so newer kernels do not
// break older clients.
func decodeEndpoint(ad *netlink.AttributeDecoder) (Endpoint, error) {
	var (
		ep     Endpoint
		family uint16
		addr4  []byte
		addr6  []byte
	)
	for ad.Next() {
		switch addrAttr(ad.Type()) {
		case addrAttrFamily:
			family = ad.Uint16()
		case addrAttrID:
			ep.ID = ad.Uint8()
		case addrAttrAddr4:
			addr4 = ad.Bytes()
		case addrAttrAddr6:
			addr6 = ad.Bytes()
		case addrAttrPort:
			ep.Port = ad.Uint16()
		case addrAttrFlags:
			ep.Flags = EndpointFlags(ad.Uint32())
		case addrAttrIfIdx:
			ep.IfIndex = ad.Int32()
		}
	}
	if err := ad.Err(); err != nil {
		return Endpoint{}, fmt.Errorf("decoding address: %w", err)
	}
	switch family {
	case afINET:
		a, ok := addrFrom(addr4, 4)
		if !ok {
			return Endpoint{}, fmt.Errorf("decoding address: IPv4 address has %d bytes, want 4", len(addr4))
		}
		ep.Addr = a
	case afINET6:
		a, ok := addrFrom(addr6, 16)
		if !ok {
			return Endpoint{}, fmt.Errorf("decoding address: IPv6 address has %d bytes, want 16", len(addr6))
		}
		ep.Addr = a
	case 0:
		// A reply without an address: leave Addr invalid.
	default:
		return Endpoint{}, fmt.Errorf("decoding address: unknown address family %d", family)
	}
	return ep, nil
}

// addrFrom returns the address held in b, which must be n (4 or 16) bytes.
func addrFrom(b []byte, n int) (netip.Addr, bool) {
	if len(b) != n {
		return netip.Addr{}, false
	}
	if n == 4 {
		return netip.AddrFrom4([4]byte(b)), true
	}
	return netip.AddrFrom16([16]byte(b)), true
}

// decodeEndpointMessage decodes the attributes of a GET_ADDR reply: one
// MPTCP_PM_ATTR_ADDR nest.
func decodeEndpointMessage(b []byte) (Endpoint, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Endpoint{}, fmt.Errorf("decoding endpoint: %w", err)
	}
	var (
		ep    Endpoint
		found bool
	)
	for ad.Next() {
		if pmAttr(ad.Type()) != pmAttrAddr {
			continue
		}
		found = true
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			var err error
			ep, err = decodeEndpoint(nad)
			return err
		})
	}
	if err := ad.Err(); err != nil {
		return Endpoint{}, fmt.Errorf("decoding endpoint: %w", err)
	}
	if !found {
		return Endpoint{}, fmt.Errorf("decoding endpoint: reply has no address attribute")
	}
	return ep, nil
}

// decodeLimits decodes the attributes of a GET_LIMITS reply.
func decodeLimits(b []byte) (Limits, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Limits{}, fmt.Errorf("decoding limits: %w", err)
	}
	var (
		l        Limits
		rcv, sub bool
	)
	for ad.Next() {
		switch pmAttr(ad.Type()) {
		case pmAttrRcvAddAddrs:
			l.AddAddrAccepted, rcv = ad.Uint32(), true
		case pmAttrSubflows:
			l.Subflows, sub = ad.Uint32(), true
		}
	}
	if err := ad.Err(); err != nil {
		return Limits{}, fmt.Errorf("decoding limits: %w", err)
	}
	if !rcv || !sub {
		return Limits{}, fmt.Errorf("decoding limits: reply lacks the add_addr_accepted or subflows attribute")
	}
	return l, nil
}

// be16 reads a big-endian 16-bit value into *v.
func be16(v *uint16) func([]byte) error {
	return func(b []byte) error {
		if len(b) != 2 {
			return fmt.Errorf("want 2 bytes for a port, got %d", len(b))
		}
		*v = binary.BigEndian.Uint16(b)
		return nil
	}
}

// ipFrom reads an address of n bytes into *a.
func ipFrom(a *netip.Addr, n int) func([]byte) error {
	return func(b []byte) error {
		v, ok := addrFrom(b, n)
		if !ok {
			return fmt.Errorf("want %d bytes for an address, got %d", n, len(b))
		}
		*a = v
		return nil
	}
}
