package diag

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestConstantsMatchXSys checks the values the portable files repeat
// against golang.org/x/sys/unix, and the tcp_info offsets against its
// TCPInfo, generated from newer headers than most machines have installed.
func TestConstantsMatchXSys(t *testing.T) {
	for _, c := range []struct {
		name      string
		ours, sys int64
	}{
		{"IPPROTO_TCP", protoTCP, unix.IPPROTO_TCP},
		{"IPPROTO_MPTCP", protoMPTCP, unix.IPPROTO_MPTCP},
		{"SOCK_DIAG_BY_FAMILY", sockDiagByFamily, unix.SOCK_DIAG_BY_FAMILY},
		{"AF_INET", int64(IPv4), unix.AF_INET},
		{"AF_INET6", int64(IPv6), unix.AF_INET6},
		{"NLMSG_HDRLEN", nlmHdrLen, unix.NLMSG_HDRLEN},
		{"NLMSG_NOOP", nlmsgNoop, unix.NLMSG_NOOP},
		{"NLMSG_ERROR", nlmsgError, unix.NLMSG_ERROR},
		{"NLMSG_DONE", nlmsgDone, unix.NLMSG_DONE},
		{"NLMSG_OVERRUN", nlmsgOverrun, unix.NLMSG_OVERRUN},
		{"NLM_F_MULTI", nlmFMulti, unix.NLM_F_MULTI},
		{"NLM_F_ACK_TLVS", nlmFAckTLVs, unix.NLM_F_ACK_TLVS},
		{"NLM_F_CAPPED", nlmFCapped, unix.NLM_F_CAPPED},
		{"NLMSGERR_ATTR_MSG", nlmsgErrAttrMsg, unix.NLMSGERR_ATTR_MSG},
		// The kernel keeps BPF_TCP_* equal to its TCP states (BUILD_BUG_ON
		// in net/ipv4/tcp.c).
		{"TCP_ESTABLISHED", int64(StateEstablished), unix.BPF_TCP_ESTABLISHED},
		{"TCP_SYN_SENT", int64(StateSynSent), unix.BPF_TCP_SYN_SENT},
		{"TCP_SYN_RECV", int64(StateSynRecv), unix.BPF_TCP_SYN_RECV},
		{"TCP_FIN_WAIT1", int64(StateFinWait1), unix.BPF_TCP_FIN_WAIT1},
		{"TCP_FIN_WAIT2", int64(StateFinWait2), unix.BPF_TCP_FIN_WAIT2},
		{"TCP_TIME_WAIT", int64(StateTimeWait), unix.BPF_TCP_TIME_WAIT},
		{"TCP_CLOSE", int64(StateClose), unix.BPF_TCP_CLOSE},
		{"TCP_CLOSE_WAIT", int64(StateCloseWait), unix.BPF_TCP_CLOSE_WAIT},
		{"TCP_LAST_ACK", int64(StateLastAck), unix.BPF_TCP_LAST_ACK},
		{"TCP_LISTEN", int64(StateListen), unix.BPF_TCP_LISTEN},
		{"TCP_CLOSING", int64(StateClosing), unix.BPF_TCP_CLOSING},
		{"TCP_NEW_SYN_RECV", int64(StateNewSynRecv), unix.BPF_TCP_NEW_SYN_RECV},
		{"TCP_BOUND_INACTIVE", int64(StateBoundInactive), unix.BPF_TCP_MAX_STATES - 1},
	} {
		if c.ours != c.sys {
			t.Errorf("%s: ours is %d, x/sys/unix has %d", c.name, c.ours, c.sys)
		}
	}

	var ti unix.TCPInfo
	for _, f := range []struct {
		name      string
		ours, sys uintptr
	}{
		{"State", tcpOffState, unsafe.Offsetof(ti.State)},
		{"Ca_state", tcpOffCAState, unsafe.Offsetof(ti.Ca_state)},
		{"Retransmits", tcpOffRetransmits, unsafe.Offsetof(ti.Retransmits)},
		{"Probes", tcpOffProbes, unsafe.Offsetof(ti.Probes)},
		{"Backoff", tcpOffBackoff, unsafe.Offsetof(ti.Backoff)},
		{"Options", tcpOffOptions, unsafe.Offsetof(ti.Options)},
		{"Rto", tcpOffRTO, unsafe.Offsetof(ti.Rto)},
		{"Ato", tcpOffATO, unsafe.Offsetof(ti.Ato)},
		{"Snd_mss", tcpOffSndMSS, unsafe.Offsetof(ti.Snd_mss)},
		{"Rcv_mss", tcpOffRcvMSS, unsafe.Offsetof(ti.Rcv_mss)},
		{"Unacked", tcpOffUnacked, unsafe.Offsetof(ti.Unacked)},
		{"Sacked", tcpOffSacked, unsafe.Offsetof(ti.Sacked)},
		{"Lost", tcpOffLost, unsafe.Offsetof(ti.Lost)},
		{"Retrans", tcpOffRetrans, unsafe.Offsetof(ti.Retrans)},
		{"Last_data_sent", tcpOffLastDataSent, unsafe.Offsetof(ti.Last_data_sent)},
		{"Last_data_recv", tcpOffLastDataRecv, unsafe.Offsetof(ti.Last_data_recv)},
		{"Last_ack_recv", tcpOffLastAckRecv, unsafe.Offsetof(ti.Last_ack_recv)},
		{"Pmtu", tcpOffPMTU, unsafe.Offsetof(ti.Pmtu)},
		{"Rcv_ssthresh", tcpOffRcvSsthresh, unsafe.Offsetof(ti.Rcv_ssthresh)},
		{"Rtt", tcpOffRTT, unsafe.Offsetof(ti.Rtt)},
		{"Rttvar", tcpOffRTTVar, unsafe.Offsetof(ti.Rttvar)},
		{"Snd_ssthresh", tcpOffSndSsthresh, unsafe.Offsetof(ti.Snd_ssthresh)},
		{"Snd_cwnd", tcpOffSndCwnd, unsafe.Offsetof(ti.Snd_cwnd)},
		{"Advmss", tcpOffAdvMSS, unsafe.Offsetof(ti.Advmss)},
		{"Reordering", tcpOffReordering, unsafe.Offsetof(ti.Reordering)},
		{"Rcv_rtt", tcpOffRcvRTT, unsafe.Offsetof(ti.Rcv_rtt)},
		{"Rcv_space", tcpOffRcvSpace, unsafe.Offsetof(ti.Rcv_space)},
		{"Total_retrans", tcpOffTotalRetrans, unsafe.Offsetof(ti.Total_retrans)},
		{"Pacing_rate", tcpOffPacingRate, unsafe.Offsetof(ti.Pacing_rate)},
		{"Max_pacing_rate", tcpOffMaxPacingRate, unsafe.Offsetof(ti.Max_pacing_rate)},
		{"Bytes_acked", tcpOffBytesAcked, unsafe.Offsetof(ti.Bytes_acked)},
		{"Bytes_received", tcpOffBytesReceived, unsafe.Offsetof(ti.Bytes_received)},
		{"Segs_out", tcpOffSegsOut, unsafe.Offsetof(ti.Segs_out)},
		{"Segs_in", tcpOffSegsIn, unsafe.Offsetof(ti.Segs_in)},
		{"Notsent_bytes", tcpOffNotsentBytes, unsafe.Offsetof(ti.Notsent_bytes)},
		{"Min_rtt", tcpOffMinRTT, unsafe.Offsetof(ti.Min_rtt)},
		{"Data_segs_in", tcpOffDataSegsIn, unsafe.Offsetof(ti.Data_segs_in)},
		{"Data_segs_out", tcpOffDataSegsOut, unsafe.Offsetof(ti.Data_segs_out)},
		{"Delivery_rate", tcpOffDeliveryRate, unsafe.Offsetof(ti.Delivery_rate)},
		{"Busy_time", tcpOffBusyTime, unsafe.Offsetof(ti.Busy_time)},
		{"Rwnd_limited", tcpOffRwndLimited, unsafe.Offsetof(ti.Rwnd_limited)},
		{"Sndbuf_limited", tcpOffSndbufLimited, unsafe.Offsetof(ti.Sndbuf_limited)},
		{"Delivered", tcpOffDelivered, unsafe.Offsetof(ti.Delivered)},
		{"Delivered_ce", tcpOffDeliveredCE, unsafe.Offsetof(ti.Delivered_ce)},
		{"Bytes_sent", tcpOffBytesSent, unsafe.Offsetof(ti.Bytes_sent)},
		{"Bytes_retrans", tcpOffBytesRetrans, unsafe.Offsetof(ti.Bytes_retrans)},
		{"Dsack_dups", tcpOffDSACKDups, unsafe.Offsetof(ti.Dsack_dups)},
		{"Reord_seen", tcpOffReordSeen, unsafe.Offsetof(ti.Reord_seen)},
		{"Rcv_ooopack", tcpOffRcvOOOPack, unsafe.Offsetof(ti.Rcv_ooopack)},
		{"Snd_wnd", tcpOffSndWnd, unsafe.Offsetof(ti.Snd_wnd)},
		{"Rcv_wnd", tcpOffRcvWnd, unsafe.Offsetof(ti.Rcv_wnd)},
	} {
		if f.ours != f.sys {
			t.Errorf("unix.TCPInfo.%s is at %d, ours at %d", f.name, f.sys, f.ours)
		}
	}
	// The bit-field byte sits between Options and Rto.
	if tcpOffWScale != unsafe.Offsetof(ti.Options)+1 {
		t.Errorf("tcpOffWScale = %d, want the byte after Options (%d)", tcpOffWScale, unsafe.Offsetof(ti.Options)+1)
	}
}
