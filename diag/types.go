package diag

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotFound: no MPTCP connection has the token.
	ErrNotFound = errors.New("MPTCP connection not found")
	// ErrUnavailable: the kernel cannot list MPTCP sockets (no MPTCP, or
	// no mptcp_diag: CONFIG_INET_MPTCP_DIAG, Linux 5.9+).
	ErrUnavailable = errors.New("MPTCP socket diagnostics unavailable in this kernel (needs Linux 5.9+ with CONFIG_INET_MPTCP_DIAG)")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("diag client closed")
)

// Family is the address family of a socket.
type Family uint8

const (
	// IPv4 is AF_INET.
	IPv4 Family = 2
	// IPv6 is AF_INET6. An IPv6 socket may carry an IPv4 connection, with
	// IPv4-mapped addresses (a server listening on the IPv6 wildcard); this
	// package reports such addresses unmapped, as plain IPv4.
	IPv6 Family = 10
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// State is the TCP state of a socket (TCP_ESTABLISHED …); MPTCP sockets use
// the same states.
type State uint8

// The states, numbered as the kernel numbers them (include/net/tcp_states.h).
const (
	StateEstablished   State = 1
	StateSynSent       State = 2
	StateSynRecv       State = 3
	StateFinWait1      State = 4
	StateFinWait2      State = 5
	StateTimeWait      State = 6
	StateClose         State = 7
	StateCloseWait     State = 8
	StateLastAck       State = 9
	StateListen        State = 10
	StateClosing       State = 11
	StateNewSynRecv    State = 12
	StateBoundInactive State = 13
)

// String returns the state as ss(8) names it, e.g. "ESTAB", "SYN-SENT".
func (s State) String() string {
	switch s {
	case StateEstablished:
		return "ESTAB"
	case StateSynSent:
		return "SYN-SENT"
	case StateSynRecv:
		return "SYN-RECV"
	case StateFinWait1:
		return "FIN-WAIT-1"
	case StateFinWait2:
		return "FIN-WAIT-2"
	case StateTimeWait:
		return "TIME-WAIT"
	case StateClose:
		return "UNCONN"
	case StateCloseWait:
		return "CLOSE-WAIT"
	case StateLastAck:
		return "LAST-ACK"
	case StateListen:
		return "LISTEN"
	case StateClosing:
		return "CLOSING"
	case StateNewSynRecv:
		return "NEW-SYN-RECV"
	case StateBoundInactive:
		return "BOUND-INACTIVE"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// StateSet is a set of states, one bit per state (bit n for State n), as
// inet_diag's idiag_states.
type StateSet uint32

const (
	// AllStates holds every state, listeners included.
	AllStates StateSet = 1<<(StateBoundInactive+1) - 2
	// DefaultStates, used when a Filter's States is 0, holds every state
	// but StateListen.
	DefaultStates = AllStates &^ (1 << StateListen)
)

// subflowStates are the states a subflow can be listed in with its MPTCP
// details: full sockets that are neither listeners (their MPTCP nest is
// empty) nor time-wait or request minisockets (which have no ULP at all).
const subflowStates = 1<<StateEstablished | 1<<StateSynSent | 1<<StateFinWait1 | 1<<StateFinWait2 |
	1<<StateClose | 1<<StateCloseWait | 1<<StateLastAck | 1<<StateClosing

// States returns the set of the given states.
func States(states ...State) StateSet {
	var s StateSet
	for _, st := range states {
		if st < 32 {
			s |= 1 << st
		}
	}
	return s
}

// Has reports whether st is in the set.
func (s StateSet) Has(st State) bool { return st < 32 && s&(1<<st) != 0 }

// Filter selects the connections Connections returns.
type Filter struct {
	// States selects by MPTCP socket state; 0 means DefaultStates (all but
	// listeners). Add StateListen, or use AllStates, for listeners: they
	// have no token and no subflows.
	States StateSet
	// Family selects IPv4 or IPv6 sockets; 0 means both.
	Family Family
	// Tokens, when not empty, selects the connections with these local
	// tokens.
	Tokens []uint32
	// NoSubflows skips the subflows: one dump per family instead of two,
	// and Connection.Subflows stays nil.
	NoSubflows bool
}

// Connection is an MPTCP connection (an MPTCP socket) with its subflows.
//
// The listing is built from separate dumps of the MPTCP and the TCP sockets;
// it is not an atomic snapshot: a connection may show fewer subflows than
// Info.ExtraSubflows+1 while subflows come and go.
type Connection struct {
	// Family is the MPTCP socket's family (see IPv6 about mapped addresses).
	Family Family
	// Local and Remote are the addresses of the connection's first
	// subflow, which the MPTCP socket keeps even when that subflow is gone.
	Local, Remote netip.AddrPort
	// State is the MPTCP socket's state.
	State State
	// Token is the connection's local token: how this host's kernel, its
	// path-manager commands and events name the connection. 0 for listeners.
	Token uint32
	// RemoteToken is the peer's token, when the kernel shows it: only on
	// subflows this host opened with MP_JOIN (see Subflow.RemoteToken). 0
	// when unknown.
	RemoteToken uint32
	// Cookie is the kernel's socket cookie; Inode and UID those of the
	// socket's file (inode 0 once the application closed it).
	Cookie uint64
	Inode  uint32
	UID    uint32
	// RecvQueue and SendQueue are the bytes of receive and send memory the
	// MPTCP socket holds (for a listener: accept queue length and backlog).
	RecvQueue, SendQueue uint32
	// Fallback is set when the connection fell back to plain TCP (the peer
	// or a middlebox did not speak MPTCP); same as Info.Flags&InfoFallback.
	// A server never lists connections that fell back when they were
	// accepted: the kernel gives them no token and no MPTCP socket state.
	Fallback bool
	// Info is the kernel's struct mptcp_info of the connection.
	Info MPTCPInfo
	// Subflows are the connection's TCP subflows: the initial one (if it
	// still exists) first, then by local and remote address ID.
	Subflows []Subflow
	// MPX is set on a session of mptcpd's userspace fallback datapath,
	// which the daemon lists beside the kernel's connections: its
	// subflows are plain TCP connections the daemon holds, and Token is
	// the low 32 bits of the session's 64-bit token.
	MPX *MPXSession
}

// MPXSession is what a fallback-datapath session has that a kernel
// connection has not.
type MPXSession struct {
	// Token is the session's whole token.
	Token uint64
	// Destination is where the converter forwards the session
	// ("host:port").
	Destination string
	// Converter is set on the converter's side of a session.
	Converter bool
}

// InfoFlags are the flags of struct mptcp_info (MPTCP_INFO_FLAG_*).
type InfoFlags uint32

const (
	// InfoFallback: the connection fell back to plain TCP.
	InfoFallback InfoFlags = 1 << 0
	// InfoRemoteKeyReceived: the peer's key has been received.
	InfoRemoteKeyReceived InfoFlags = 1 << 1
)

func (f InfoFlags) String() string {
	return flagString(uint32(f), "fallback", "remote_key")
}

// MPTCPInfo is the kernel's struct mptcp_info. Fields a kernel does not
// have yet (see Len) are 0. The comments give the uapi field names.
type MPTCPInfo struct {
	// Len is the size of the struct the kernel sent: 48 bytes before Linux
	// 6.5, 80 before 6.8, 96 since.
	Len int

	// ExtraSubflows is the number of subflows besides the initial one
	// (mptcpi_subflows).
	ExtraSubflows uint8
	// AddAddrSignal is the number of addresses announced to the peer;
	// AddAddrAccepted the number of the peer's announcements accepted.
	AddAddrSignal, AddAddrAccepted uint8
	// LimitExtraSubflows is the in-kernel PM's subflow limit
	// (mptcpi_subflows_max); LimitAddAddrAccepted its add_addr_accepted
	// limit (mptcpi_add_addr_accepted_max).
	LimitExtraSubflows, LimitAddAddrAccepted uint8
	// EndpSignalMax is the number of signal endpoints
	// (mptcpi_add_addr_signal_max).
	EndpSignalMax uint8
	// Flags: fallback, remote key received.
	Flags InfoFlags
	// Token is the local token.
	Token uint32
	// WriteSeq, SndUna and RcvNxt are the connection-level (data) sequence
	// numbers.
	WriteSeq, SndUna, RcvNxt uint64
	// LocalAddrUsed is the number of local addresses in use by subflows;
	// EndpSubflowMax the number of subflow endpoints
	// (mptcpi_local_addr_max).
	LocalAddrUsed, EndpSubflowMax uint8
	// ChecksumEnabled: DSS checksums are in use (mptcpi_csum_enabled).
	ChecksumEnabled bool

	// Linux 6.5+:

	// Retransmits counts data retransmitted at the MPTCP level (segments);
	// BytesRetrans those bytes.
	Retransmits  uint32
	BytesRetrans uint64
	// BytesSent, BytesReceived and BytesAcked count data at the MPTCP level,
	// over all subflows.
	BytesSent, BytesReceived, BytesAcked uint64

	// Linux 6.8+:

	// SubflowsTotal is the number of subflows, the initial one included.
	SubflowsTotal uint8
	// EndpLaminarMax (6.18) and EndpFullmeshMax are the number of laminar
	// and fullmesh endpoints.
	EndpLaminarMax, EndpFullmeshMax uint8
	// LastDataSent, LastDataRecv and LastAckRecv are the times since data
	// were last sent or received and since an ack was last received
	// (millisecond resolution).
	LastDataSent, LastDataRecv, LastAckRecv time.Duration
}

// SubflowFlags are a subflow's MPTCP flags (MPTCP_SUBFLOW_FLAG_*).
type SubflowFlags uint32

const (
	// SubflowMPCapableRemote: the peer sent MP_CAPABLE (initial subflow).
	SubflowMPCapableRemote SubflowFlags = 1 << 0
	// SubflowMPCapableLocal: this host sent MP_CAPABLE.
	SubflowMPCapableLocal SubflowFlags = 1 << 1
	// SubflowJoinRemote: the peer opened the subflow with MP_JOIN.
	SubflowJoinRemote SubflowFlags = 1 << 2
	// SubflowJoinLocal: this host opened the subflow with MP_JOIN.
	SubflowJoinLocal SubflowFlags = 1 << 3
	// SubflowBackupRemote: the peer asked for the subflow to be a backup.
	SubflowBackupRemote SubflowFlags = 1 << 4
	// SubflowBackupLocal: this host asked for the subflow to be a backup.
	SubflowBackupLocal SubflowFlags = 1 << 5
	// SubflowFullyEstablished: the MPTCP handshake of the subflow completed.
	SubflowFullyEstablished SubflowFlags = 1 << 6
	// SubflowConnected: the TCP handshake completed.
	SubflowConnected SubflowFlags = 1 << 7
	// SubflowMapValid: the subflow has a valid data-sequence mapping.
	SubflowMapValid SubflowFlags = 1 << 8
)

// String returns the flags as comma-separated words, e.g.
// "join_loc,fully_established,connected".
func (f SubflowFlags) String() string {
	return flagString(uint32(f), "mcap_rem", "mcap_loc", "join_rem", "join_loc", "backup_rem", "backup_loc",
		"fully_established", "connected", "map_valid")
}

// flagString writes the bits of f named by names (bit i has names[i]) as
// comma-separated words, unnamed bits in hexadecimal.
func flagString(f uint32, names ...string) string {
	var b strings.Builder
	for i, name := range names {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
	}
	if rest := f &^ (1<<len(names) - 1); rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%#x", rest)
	}
	return b.String()
}

// Subflow is one TCP subflow of an MPTCP connection, with the kernel's TCP
// statistics of it (the embedded TCPInfo: s.RTT, s.BytesSent …).
type Subflow struct {
	// Family is the TCP socket's family: an IPv6 connection may have IPv4
	// subflows and the other way round.
	Family Family
	// Local and Remote are the subflow's addresses.
	Local, Remote netip.AddrPort
	// Interface is the index of the interface the subflow is bound to (an
	// endpoint with a device), 0 for none.
	Interface int
	// State is the TCP state.
	State State
	// LocalID and RemoteID are the address IDs of the two ends: 0 for the
	// initial addresses, else the endpoint or announcement ID.
	LocalID, RemoteID uint8
	// LocalToken is the token of the connection on this host
	// (Connection.Token). RemoteToken is the peer's token, which the kernel
	// shows only on subflows this host opened with MP_JOIN (it sent the
	// token in the SYN); it is 0 on the initial subflow and on subflows the
	// peer opened.
	LocalToken, RemoteToken uint32
	// Flags are the MPTCP flags of the subflow.
	Flags SubflowFlags
	// BackupLocal and BackupRemote tell whether this host and the peer
	// asked for the subflow to be a backup (Flags' backup bits).
	BackupLocal, BackupRemote bool
	// FullyEstablished: the subflow's MPTCP handshake completed.
	FullyEstablished bool
	// RelWriteSeq is the next data sequence number to send, relative to the
	// subflow's start; MapSeq, MapSubflowSeq and MapDataLen describe the
	// current receive mapping; SSNOffset is the subflow's initial sequence.
	RelWriteSeq   uint32
	MapSeq        uint64
	MapSubflowSeq uint32
	SSNOffset     uint32
	MapDataLen    uint16
	// Cookie is the kernel's socket cookie.
	Cookie uint64
	// RecvQueue is the data received but not yet read from the subflow;
	// SendQueue the data sent but not yet acknowledged.
	RecvQueue, SendQueue uint32

	TCPInfo
}

// TCPInfo is part of the kernel's struct tcp_info of a subflow. Fields the
// running kernel does not have (see Len) are 0. Times have the kernel's
// resolution (microseconds, milliseconds for the Last* ones).
type TCPInfo struct {
	// Len is the size of the struct the kernel sent.
	Len int

	// CAState is the congestion-avoidance state (TCP_CA_Open 0, Disorder
	// 1, CWR 2, Recovery 3, Loss 4).
	CAState uint8
	// Retransmits is the number of consecutive retransmission timeouts of
	// the current segment (tcpi_retransmits); TotalRetrans counts every
	// retransmitted segment of the subflow.
	Retransmits uint8
	// Probes is the number of unanswered zero-window probes; Backoff the
	// exponential backoff of the retransmission timer.
	Probes, Backoff uint8
	// Options are the TCP options in use (TCPI_OPT_*: timestamps 1, SACK 2,
	// window scaling 4, ECN 8, ECN seen 16, SYN data 32, usec timestamps 64).
	Options uint8
	// SndWScale and RcvWScale are the window-scale shifts.
	SndWScale, RcvWScale uint8
	// RTO and ATO are the retransmission and delayed-ack timeouts.
	RTO, ATO time.Duration
	// SndMSS and RcvMSS are the send and receive maximum segment sizes.
	SndMSS, RcvMSS uint32
	// Unacked, Sacked, Lost and Retrans are segments in flight: not yet
	// acknowledged, selectively acknowledged, presumed lost, retransmitted.
	Unacked, Sacked, Lost, Retrans uint32
	// LastDataSent, LastDataRecv and LastAckRecv are the times since.
	LastDataSent, LastDataRecv, LastAckRecv time.Duration
	// PMTU is the path MTU.
	PMTU uint32
	// RcvSsthresh is the current window clamp.
	RcvSsthresh uint32
	// RTT and RTTVar are the smoothed round-trip time and its variation;
	// MinRTT the lowest seen; RcvRTT the receiver's estimate.
	RTT, RTTVar, MinRTT, RcvRTT time.Duration
	// SndSsthresh and SndCwnd are the slow-start threshold and congestion
	// window, in segments.
	SndSsthresh, SndCwnd uint32
	// AdvMSS is the advertised MSS; Reordering the reordering metric;
	// RcvSpace the receive-buffer autotuning space.
	AdvMSS, Reordering, RcvSpace uint32
	// TotalRetrans is the number of segments retransmitted.
	TotalRetrans uint32
	// PacingRate, MaxPacingRate and DeliveryRate are in bytes per second.
	PacingRate, MaxPacingRate, DeliveryRate uint64
	// BytesSent counts bytes sent (retransmissions included), BytesRetrans
	// the bytes retransmitted, BytesAcked the bytes acknowledged and
	// BytesReceived the bytes received, on this subflow.
	BytesSent, BytesRetrans, BytesAcked, BytesReceived uint64
	// SegsOut and SegsIn count segments, DataSegsOut and DataSegsIn those
	// carrying data.
	SegsOut, SegsIn, DataSegsOut, DataSegsIn uint32
	// NotsentBytes is the data queued but not yet sent.
	NotsentBytes uint32
	// BusyTime, RwndLimited and SndbufLimited are the times spent sending,
	// limited by the receive window and limited by the send buffer.
	BusyTime, RwndLimited, SndbufLimited time.Duration
	// Delivered counts segments delivered, DeliveredCE those with ECN CE.
	Delivered, DeliveredCE uint32
	// DSACKDups counts duplicate segments reported by D-SACK; ReordSeen
	// reordering events; RcvOOOPack out-of-order packets received.
	DSACKDups, ReordSeen, RcvOOOPack uint32
	// SndWnd is the peer's receive window, RcvWnd ours (bytes).
	SndWnd, RcvWnd uint32
}
