package genl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// EventType is the type of an MPTCP event (MPTCP_EVENT_*), carried in the
// generic-netlink command field. Numbers have gaps; types this package does
// not know still arrive, as events with Raw set.
type EventType uint8

const (
	// EventCreated: a connection was created (MP_CAPABLE seen, not yet confirmed).
	EventCreated EventType = 1
	// EventEstablished: the connection is established.
	EventEstablished EventType = 2
	// EventClosed: the connection is closed.
	EventClosed EventType = 3
	// EventAnnounced: the peer announced an address with ADD_ADDR.
	EventAnnounced EventType = 6
	// EventRemoved: the peer withdrew an address with RM_ADDR.
	EventRemoved EventType = 7
	// EventSubEstablished: a subflow was established.
	EventSubEstablished EventType = 10
	// EventSubClosed: a subflow was closed.
	EventSubClosed EventType = 11
	// EventSubPriority: a subflow's backup flag changed (MP_PRIO).
	EventSubPriority EventType = 13
	// EventListenerCreated: an MPTCP listener was created.
	EventListenerCreated EventType = 15
	// EventListenerClosed: an MPTCP listener was closed.
	EventListenerClosed EventType = 16
)

var eventNames = map[EventType]string{
	EventCreated:         "created",
	EventEstablished:     "established",
	EventClosed:          "closed",
	EventAnnounced:       "announced",
	EventRemoved:         "removed",
	EventSubEstablished:  "sf_established",
	EventSubClosed:       "sf_closed",
	EventSubPriority:     "sf_priority",
	EventListenerCreated: "listener_created",
	EventListenerClosed:  "listener_closed",
}

func (t EventType) String() string {
	if s, ok := eventNames[t]; ok {
		return s
	}
	return "unknown_" + strconv.Itoa(int(t))
}

// Known reports whether this package knows the event type.
func (t EventType) Known() bool {
	_, ok := eventNames[t]
	return ok
}

// EventFlags are the flags of a connection event (MPTCP_PM_EV_FLAG_*).
type EventFlags uint16

const (
	// EventFlagDenyJoinID0: the peer does not accept joins to its initial
	// address and port (it set the 'C' bit in MP_CAPABLE).
	EventFlagDenyJoinID0 EventFlags = 1 << 0
	// EventFlagServerSide: this host accepted the connection.
	EventFlagServerSide EventFlags = 1 << 1
)

// ResetReason is the reason a peer gave in an MP_TCPRST option (MPTCP_RST_*).
type ResetReason uint32

const (
	ResetUnspecified     ResetReason = 0 // MPTCP_RST_EUNSPEC
	ResetMPTCPError      ResetReason = 1 // MPTCP_RST_EMPTCP
	ResetResource        ResetReason = 2 // MPTCP_RST_ERESOURCE
	ResetProhibited      ResetReason = 3 // MPTCP_RST_EPROHIBIT
	ResetTooMuchQueued   ResetReason = 4 // MPTCP_RST_EWQ2BIG
	ResetBadPerformance  ResetReason = 5 // MPTCP_RST_EBADPERF
	ResetMiddleboxFailed ResetReason = 6 // MPTCP_RST_EMIDDLEBOX
)

var resetNames = [...]string{"unspecified", "mptcp-error", "resource", "prohibited", "too-much-queued", "bad-performance", "middlebox"}

func (r ResetReason) String() string {
	if int(r) < len(resetNames) {
		return resetNames[r]
	}
	return "reason-" + strconv.FormatUint(uint64(r), 10)
}

// Event is one MPTCP event from the kernel. Which fields are set depends on
// the type; see the kernel's mptcp_pm netlink specification.
type Event struct {
	Type EventType
	// Token identifies the connection (all but listener events).
	Token uint32
	// Family is the address family the kernel reported (2 IPv4, 10 IPv6).
	Family uint16
	// LocalID and RemoteID are the address IDs of a subflow's ends;
	// RemoteID is also the ID of an announced or removed peer address.
	LocalID, RemoteID uint8
	// Local and Remote are the source and destination address and port.
	// For ANNOUNCED, Remote is the announced address (port 0 if none).
	// For listener events, Local is the listening address and port.
	Local, Remote netip.AddrPort
	// Backup reports a subflow's backup flag.
	Backup bool
	// SubflowErr is the socket error a subflow ended with (0 for none).
	SubflowErr syscall.Errno
	// Flags are the connection event flags.
	Flags EventFlags
	// ServerSide reports that this host accepted the connection, from either
	// the Flags bit or the older MPTCP_ATTR_SERVER_SIDE attribute.
	ServerSide bool
	// Timeout is MPTCP_ATTR_TIMEOUT (no current kernel sends it).
	Timeout uint32
	// IfIndex is the interface of a subflow bound to a device, 0 otherwise.
	IfIndex int32
	// ResetReason and ResetFlags are set when the peer reset the subflow
	// with MP_TCPRST.
	ResetReason ResetReason
	ResetFlags  uint32
	// Raw holds the attributes of an event this package could not decode:
	// an unknown type, or a malformed message (then DecodeErr says why).
	Raw       []byte
	DecodeErr error
}

// DenyJoinID0 reports whether the peer refuses joins to its initial address.
func (e Event) DenyJoinID0() bool { return e.Flags&EventFlagDenyJoinID0 != 0 }

// String formats the event on one line in the manner of `ip mptcp monitor`.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString("[")
	b.WriteString(e.Type.String())
	b.WriteString("]")
	if e.Raw != nil {
		fmt.Fprintf(&b, " raw=%x", e.Raw)
		if e.DecodeErr != nil {
			fmt.Fprintf(&b, " error=%q", e.DecodeErr.Error())
		}
		return b.String()
	}
	if e.Type != EventListenerCreated && e.Type != EventListenerClosed {
		fmt.Fprintf(&b, " token=%08x", e.Token)
	}
	switch e.Type {
	case EventSubEstablished, EventSubClosed, EventSubPriority:
		fmt.Fprintf(&b, " remid=%d locid=%d", e.RemoteID, e.LocalID)
	case EventAnnounced, EventRemoved:
		fmt.Fprintf(&b, " remid=%d", e.RemoteID)
	}
	if e.Local.IsValid() {
		fmt.Fprintf(&b, " saddr=%s sport=%d", e.Local.Addr(), e.Local.Port())
	}
	if e.Remote.IsValid() {
		fmt.Fprintf(&b, " daddr=%s dport=%d", e.Remote.Addr(), e.Remote.Port())
	}
	switch e.Type {
	case EventSubEstablished, EventSubClosed, EventSubPriority:
		fmt.Fprintf(&b, " backup=%d", btoi(e.Backup))
	}
	if e.IfIndex != 0 {
		fmt.Fprintf(&b, " ifindex=%d", e.IfIndex)
	}
	if e.SubflowErr != 0 {
		fmt.Fprintf(&b, " error=%d", int(e.SubflowErr))
	}
	if e.ResetReason != 0 || e.ResetFlags != 0 {
		fmt.Fprintf(&b, " reset_reason=%s reset_flags=%#x", e.ResetReason, e.ResetFlags)
	}
	if e.ServerSide {
		b.WriteString(" server_side")
	}
	if e.DenyJoinID0() {
		b.WriteString(" deny_join_id0")
	}
	return b.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DecodeEvent decodes one event message of the mptcp_pm_events group. An
// unknown event type is not an error: the event comes back with Raw set. A
// malformed known event is an error.
func DecodeEvent(m genetlink.Message) (Event, error) {
	ev := Event{Type: EventType(m.Header.Command)}
	if !ev.Type.Known() {
		ev.Raw = append([]byte{}, m.Data...)
		return ev, nil
	}
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return Event{}, fmt.Errorf("decoding %s event: %w", ev.Type, err)
	}
	var (
		saddr, daddr netip.Addr
		sport, dport uint16
	)
	for ad.Next() {
		switch eventAttr(ad.Type()) {
		case eventAttrToken:
			ev.Token = ad.Uint32()
		case eventAttrFamily:
			ev.Family = ad.Uint16()
		case eventAttrLocID:
			ev.LocalID = ad.Uint8()
		case eventAttrRemID:
			ev.RemoteID = ad.Uint8()
		case eventAttrSAddr4:
			ad.Do(ipFrom(&saddr, 4))
		case eventAttrSAddr6:
			ad.Do(ipFrom(&saddr, 16))
		case eventAttrDAddr4:
			ad.Do(ipFrom(&daddr, 4))
		case eventAttrDAddr6:
			ad.Do(ipFrom(&daddr, 16))
		case eventAttrSPort:
			ad.Do(be16(&sport))
		case eventAttrDPort:
			ad.Do(be16(&dport))
		case eventAttrBackup:
			ev.Backup = ad.Uint8() != 0
		case eventAttrError:
			ev.SubflowErr = syscall.Errno(ad.Uint8())
		case eventAttrFlags:
			ev.Flags = EventFlags(ad.Uint16())
		case eventAttrTimeout:
			ev.Timeout = ad.Uint32()
		case eventAttrIfIdx:
			ev.IfIndex = ad.Int32()
		case eventAttrResetReason:
			ev.ResetReason = ResetReason(ad.Uint32())
		case eventAttrResetFlags:
			ev.ResetFlags = ad.Uint32()
		case eventAttrServerSide:
			ev.ServerSide = ad.Uint8() != 0
		}
	}
	if err := ad.Err(); err != nil {
		return Event{}, fmt.Errorf("decoding %s event: %w", ev.Type, err)
	}
	if ev.Flags&EventFlagServerSide != 0 {
		ev.ServerSide = true
	}
	if saddr.IsValid() {
		ev.Local = netip.AddrPortFrom(saddr, sport)
	}
	if daddr.IsValid() {
		ev.Remote = netip.AddrPortFrom(daddr, dport)
	}
	return ev, nil
}
