package diag

// Wire values of NETLINK_SOCK_DIAG / inet_diag that golang.org/x/sys/unix
// does not define (it has NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY and
// IPPROTO_MPTCP, used from the Linux files), from the uapi headers
// linux/inet_diag.h, linux/mptcp.h and linux/tcp.h. const_test.go checks
// them against the headers installed on the machine. They are repeated here,
// rather than taken from x/sys, where this file must build on every OS.

const (
	// protoTCP and protoMPTCP are IPPROTO_TCP and IPPROTO_MPTCP. 262 does not
	// fit inet_diag_req_v2's u8 sdiag_protocol; requests for MPTCP carry it
	// in the INET_DIAG_REQ_PROTOCOL attribute (Linux 5.9+).
	protoTCP   = 6
	protoMPTCP = 262

	// sockDiagByFamily is the netlink message type of inet_diag requests and
	// replies (SOCK_DIAG_BY_FAMILY).
	sockDiagByFamily = 20

	// Netlink control message types and flags (linux/netlink.h).
	nlmsgNoop       = 1
	nlmsgError      = 2
	nlmsgDone       = 3
	nlmsgOverrun    = 4
	nlmHdrLen       = 16
	nlmFMulti       = 0x2
	nlmFAckTLVs     = 0x200 // NLM_F_ACK_TLVS: extended-ACK attributes follow
	nlmFCapped      = 0x100 // NLM_F_CAPPED: the error carries only the request's header
	nlmsgErrAttrMsg = 1     // NLMSGERR_ATTR_MSG
)

// reqAttr is an attribute of a request after struct inet_diag_req_v2
// (INET_DIAG_REQ_*).
type reqAttr uint16

const (
	reqAttrBytecode reqAttr = 1 // INET_DIAG_REQ_BYTECODE
	reqAttrProtocol reqAttr = 3 // INET_DIAG_REQ_PROTOCOL: u32 protocol
)

// diagAttr is an attribute of a reply after struct inet_diag_msg
// (INET_DIAG_*). Requesting extension n sets bit n-1 of idiag_ext.
type diagAttr uint16

const (
	diagAttrInfo    diagAttr = 2  // INET_DIAG_INFO: struct tcp_info or struct mptcp_info
	diagAttrULPInfo diagAttr = 19 // INET_DIAG_ULP_INFO: nest of ulpAttr
)

// extInfo is the idiag_ext bit that requests INET_DIAG_INFO; for TCP it
// also brings INET_DIAG_ULP_INFO.
const extInfo = 1 << (diagAttrInfo - 1)

// ulpAttr is an attribute of the INET_DIAG_ULP_INFO nest (INET_ULP_INFO_*).
type ulpAttr uint16

const (
	ulpAttrName  ulpAttr = 1 // INET_ULP_INFO_NAME: NUL-terminated string
	ulpAttrMPTCP ulpAttr = 3 // INET_ULP_INFO_MPTCP: nest of subflowAttr
)

// ulpNameMPTCP is the name of the MPTCP subflow ULP.
const ulpNameMPTCP = "mptcp"

// subflowAttr is an attribute of the INET_ULP_INFO_MPTCP nest
// (MPTCP_SUBFLOW_ATTR_*).
type subflowAttr uint16

const (
	subflowAttrTokenRem    subflowAttr = 1  // u32
	subflowAttrTokenLoc    subflowAttr = 2  // u32
	subflowAttrRelWriteSeq subflowAttr = 3  // u32
	subflowAttrMapSeq      subflowAttr = 4  // u64
	subflowAttrMapSfSeq    subflowAttr = 5  // u32
	subflowAttrSSNOffset   subflowAttr = 6  // u32
	subflowAttrMapDataLen  subflowAttr = 7  // u16
	subflowAttrFlags       subflowAttr = 8  // u32
	subflowAttrIDRem       subflowAttr = 9  // u8
	subflowAttrIDLoc       subflowAttr = 10 // u8
	subflowAttrPad         subflowAttr = 11 // alignment of MAP_SEQ
)

// Sizes of the fixed structures.
const (
	// sizeofReqV2 is sizeof(struct inet_diag_req_v2).
	sizeofReqV2 = 56
	// sizeofDiagMsg is sizeof(struct inet_diag_msg).
	sizeofDiagMsg = 72
)

// Offsets in struct inet_diag_req_v2 and struct inet_diag_msg; both embed
// struct inet_diag_sockid, at 8 and 4.
const (
	reqOffFamily   = 0
	reqOffProtocol = 1
	reqOffExt      = 2
	reqOffStates   = 4
	reqOffCookie   = 8 + sockidOffCookie

	msgOffFamily = 0
	msgOffState  = 1
	msgOffSockid = 4
	msgOffRQueue = 56
	msgOffWQueue = 60
	msgOffUID    = 64
	msgOffInode  = 68

	sockidOffSPort  = 0
	sockidOffDPort  = 2
	sockidOffSrc    = 4
	sockidOffDst    = 20
	sockidOffIf     = 36
	sockidOffCookie = 40
)

// Offsets in struct mptcp_info (linux/mptcp.h). The struct grows at its end:
// 48 bytes up to Linux 6.4, 80 from 6.5 (retransmits, bytes_*), 96 from 6.8
// (subflows_total, last_*); later kernels fill its reserved bytes
// (endp_laminar_max in 6.18, then endp_fullmesh_max). A field is decoded when
// the kernel's struct is long enough to hold it; reserved bytes read as 0.
const (
	infoOffSubflows           = 0 // alias mptcpi_extra_subflows
	infoOffAddAddrSignal      = 1
	infoOffAddAddrAccepted    = 2
	infoOffSubflowsMax        = 3 // alias mptcpi_limit_extra_subflows
	infoOffAddAddrSignalMax   = 4 // alias mptcpi_endp_signal_max
	infoOffAddAddrAcceptedMax = 5 // alias mptcpi_limit_add_addr_accepted
	infoOffFlags              = 8
	infoOffToken              = 12
	infoOffWriteSeq           = 16
	infoOffSndUna             = 24
	infoOffRcvNxt             = 32
	infoOffLocalAddrUsed      = 40
	infoOffLocalAddrMax       = 41 // alias mptcpi_endp_subflow_max
	infoOffCsumEnabled        = 42
	infoOffRetransmits        = 44
	infoOffBytesRetrans       = 48
	infoOffBytesSent          = 56
	infoOffBytesReceived      = 64
	infoOffBytesAcked         = 72
	infoOffSubflowsTotal      = 80
	infoOffEndpLaminarMax     = 81
	infoOffEndpFullmeshMax    = 82
	infoOffLastDataSent       = 84
	infoOffLastDataRecv       = 88
	infoOffLastAckRecv        = 92
)

// Offsets in struct tcp_info (linux/tcp.h), which also grows at its end.
const (
	tcpOffState         = 0
	tcpOffCAState       = 1
	tcpOffRetransmits   = 2
	tcpOffProbes        = 3
	tcpOffBackoff       = 4
	tcpOffOptions       = 5
	tcpOffWScale        = 6 // snd_wscale:4, rcv_wscale:4
	tcpOffRTO           = 8
	tcpOffATO           = 12
	tcpOffSndMSS        = 16
	tcpOffRcvMSS        = 20
	tcpOffUnacked       = 24
	tcpOffSacked        = 28
	tcpOffLost          = 32
	tcpOffRetrans       = 36
	tcpOffLastDataSent  = 44
	tcpOffLastDataRecv  = 52
	tcpOffLastAckRecv   = 56
	tcpOffPMTU          = 60
	tcpOffRcvSsthresh   = 64
	tcpOffRTT           = 68
	tcpOffRTTVar        = 72
	tcpOffSndSsthresh   = 76
	tcpOffSndCwnd       = 80
	tcpOffAdvMSS        = 84
	tcpOffReordering    = 88
	tcpOffRcvRTT        = 92
	tcpOffRcvSpace      = 96
	tcpOffTotalRetrans  = 100
	tcpOffPacingRate    = 104
	tcpOffMaxPacingRate = 112
	tcpOffBytesAcked    = 120
	tcpOffBytesReceived = 128
	tcpOffSegsOut       = 136
	tcpOffSegsIn        = 140
	tcpOffNotsentBytes  = 144
	tcpOffMinRTT        = 148
	tcpOffDataSegsIn    = 152
	tcpOffDataSegsOut   = 156
	tcpOffDeliveryRate  = 160
	tcpOffBusyTime      = 168
	tcpOffRwndLimited   = 176
	tcpOffSndbufLimited = 184
	tcpOffDelivered     = 192
	tcpOffDeliveredCE   = 196
	tcpOffBytesSent     = 200
	tcpOffBytesRetrans  = 208
	tcpOffDSACKDups     = 216
	tcpOffReordSeen     = 220
	tcpOffRcvOOOPack    = 224
	tcpOffSndWnd        = 228
	tcpOffRcvWnd        = 232
)
