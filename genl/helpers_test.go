package genl

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// cmpOpts lets cmp compare the package's types, which hold netip values.
func cmpOpts() []cmp.Option {
	return []cmp.Option{cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})}
}

// This file builds messages the way the kernel writes them, independently of
// the package's own encoders, so that tests compare the package against the
// wire format rather than against itself.

// testFamily is the mptcp_pm family as a 6.x kernel reports it; the IDs are
// those observed on the development machine.
func testFamily() genetlink.Family {
	return genetlink.Family{
		ID:      0x1c,
		Version: 1,
		Name:    FamilyName,
		Groups: []genetlink.MulticastGroup{
			{ID: 8, Name: CommandsGroupName},
			{ID: 9, Name: EventsGroupName},
		},
	}
}

// mustEncode returns the attributes of ae, failing the test on error.
func mustEncode(tb testing.TB, ae *netlink.AttributeEncoder) []byte {
	tb.Helper()
	b, err := ae.Encode()
	if err != nil {
		tb.Fatalf("encoding attributes: %v", err)
	}
	return b
}

// kernelAddrNest writes ep as an address nest in the order the kernel's
// GET_ADDR reply uses: family, id, flags, [port], [if_idx], addr4/addr6.
// The port is in host byte order, the IPv4 address in network byte order.
func kernelAddrNest(ae *netlink.AttributeEncoder, ep Endpoint) {
	ae.Nested(1, func(nae *netlink.AttributeEncoder) error { // MPTCP_PM_ATTR_ADDR, NLA_F_NESTED
		family := uint16(10)
		if ep.Addr.Is4() {
			family = 2
		}
		nae.Uint16(1, family)           // FAMILY
		nae.Uint8(2, ep.ID)             // ID
		nae.Uint32(6, uint32(ep.Flags)) // FLAGS
		if ep.Port != 0 {
			nae.Uint16(5, ep.Port) // PORT, host order
		}
		if ep.IfIndex != 0 {
			nae.Int32(7, ep.IfIndex) // IF_IDX
		}
		if ep.Addr.Is4() {
			b := ep.Addr.As4()
			nae.Bytes(3, b[:]) // ADDR4
		} else {
			b := ep.Addr.As16()
			nae.Bytes(4, b[:]) // ADDR6
		}
		return nil
	})
}

// endpointReplyData returns the attributes of a GET_ADDR reply for ep.
func endpointReplyData(tb testing.TB, ep Endpoint) []byte {
	tb.Helper()
	ae := netlink.NewAttributeEncoder()
	kernelAddrNest(ae, ep)
	return mustEncode(tb, ae)
}

// endpointReply returns a GET_ADDR reply message for ep.
func endpointReply(tb testing.TB, ep Endpoint) genetlink.Message {
	tb.Helper()
	return genetlink.Message{
		Header: genetlink.Header{Command: 3, Version: 1}, // MPTCP_PM_CMD_GET_ADDR
		Data:   endpointReplyData(tb, ep),
	}
}

// limitsReplyData returns the attributes of a GET_LIMITS reply.
func limitsReplyData(tb testing.TB, l Limits) []byte {
	tb.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(2, l.AddAddrAccepted) // MPTCP_PM_ATTR_RCV_ADD_ADDRS
	ae.Uint32(3, l.Subflows)        // MPTCP_PM_ATTR_SUBFLOWS
	return mustEncode(tb, ae)
}

// attr is one raw attribute of a hand-built message.
type attr struct {
	typ  uint16
	data []byte
}

func attrU8(typ uint16, v uint8) attr { return attr{typ, []byte{v}} }

func attrU16(typ uint16, v uint16) attr { return attr{typ, binary.NativeEndian.AppendUint16(nil, v)} }

func attrBE16(typ uint16, v uint16) attr { return attr{typ, binary.BigEndian.AppendUint16(nil, v)} }

func attrU32(typ uint16, v uint32) attr { return attr{typ, binary.NativeEndian.AppendUint32(nil, v)} }

func attrS32(typ uint16, v int32) attr { return attrU32(typ, uint32(v)) }

// attrAddr returns a's bytes in network order: 4 bytes for IPv4, 16 for IPv6.
func attrAddr(typ uint16, a netip.Addr) attr { return attr{typ, a.AsSlice()} }

// encodeAttrs encodes attrs in order.
func encodeAttrs(tb testing.TB, attrs ...attr) []byte {
	tb.Helper()
	ae := netlink.NewAttributeEncoder()
	for _, a := range attrs {
		ae.Bytes(a.typ, a.data)
	}
	return mustEncode(tb, ae)
}

// eventMessage returns an event of type typ carrying attrs, as the kernel
// multicasts it.
func eventMessage(tb testing.TB, typ EventType, attrs ...attr) genetlink.Message {
	tb.Helper()
	return genetlink.Message{
		Header: genetlink.Header{Command: uint8(typ), Version: 1},
		Data:   encodeAttrs(tb, attrs...),
	}
}

// Event attribute numbers (MPTCP_ATTR_*), written out here rather than taken
// from the package so a wrong constant cannot hide itself.
const (
	wireToken       = 1
	wireFamily      = 2
	wireLocID       = 3
	wireRemID       = 4
	wireSAddr4      = 5
	wireSAddr6      = 6
	wireDAddr4      = 7
	wireDAddr6      = 8
	wireSPort       = 9
	wireDPort       = 10
	wireBackup      = 11
	wireError       = 12
	wireFlags       = 13
	wireTimeout     = 14
	wireIfIdx       = 15
	wireResetReason = 16
	wireResetFlags  = 17
	wireServerSide  = 18
)

// subEstablishedAttrs returns the attributes of a SUB_ESTABLISHED event for
// the subflow local→remote, in the order the kernel writes them.
func subEstablishedAttrs(token uint32, locID, remID uint8, local, remote netip.AddrPort, backup bool, ifIndex int32) []attr {
	family, saddr, daddr := uint16(2), uint16(wireSAddr4), uint16(wireDAddr4)
	if local.Addr().Is6() {
		family, saddr, daddr = 10, wireSAddr6, wireDAddr6
	}
	var b uint8
	if backup {
		b = 1
	}
	attrs := []attr{
		attrU32(wireToken, token),
		attrU16(wireFamily, family),
		attrU8(wireLocID, locID),
		attrU8(wireRemID, remID),
		attrAddr(saddr, local.Addr()),
		attrAddr(daddr, remote.Addr()),
		attrBE16(wireSPort, local.Port()),
		attrBE16(wireDPort, remote.Port()),
		attrU8(wireBackup, b),
	}
	if ifIndex != 0 {
		attrs = append(attrs, attrS32(wireIfIdx, ifIndex))
	}
	return attrs
}

// encodeEventData writes ev's fields back as event attributes, for round-trip
// checks of the decoder: every field DecodeEvent sets is written so that
// decoding the result gives ev again.
func encodeEventData(tb testing.TB, ev Event) []byte {
	tb.Helper()
	attrs := []attr{
		attrU32(wireToken, ev.Token),
		attrU16(wireFamily, ev.Family),
		attrU8(wireLocID, ev.LocalID),
		attrU8(wireRemID, ev.RemoteID),
		attrU8(wireBackup, boolByte(ev.Backup)),
		attrU8(wireError, uint8(ev.SubflowErr)),
		attrU16(wireFlags, uint16(ev.Flags)),
		attrU32(wireTimeout, ev.Timeout),
		attrS32(wireIfIdx, ev.IfIndex),
		attrU32(wireResetReason, uint32(ev.ResetReason)),
		attrU32(wireResetFlags, ev.ResetFlags),
		attrU8(wireServerSide, boolByte(ev.ServerSide)),
	}
	if ev.Local.IsValid() {
		typ := uint16(wireSAddr6)
		if ev.Local.Addr().Is4() {
			typ = wireSAddr4
		}
		attrs = append(attrs, attrAddr(typ, ev.Local.Addr()), attrBE16(wireSPort, ev.Local.Port()))
	}
	if ev.Remote.IsValid() {
		typ := uint16(wireDAddr6)
		if ev.Remote.Addr().Is4() {
			typ = wireDAddr4
		}
		attrs = append(attrs, attrAddr(typ, ev.Remote.Addr()), attrBE16(wireDPort, ev.Remote.Port()))
	}
	return encodeAttrs(tb, attrs...)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
