package diag

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestConstantsMatchUAPI compares the package's wire constants and
// structure offsets with the kernel's uapi headers installed on this machine
// (linux/inet_diag.h, linux/mptcp.h, linux/tcp.h, and netinet/tcp.h for the
// TCP states). Set DIAG_UAPI_INCLUDE to a directory that holds linux/ and
// netinet/ (e.g. a kernel's usr/include after `make headers_install`) to
// check against other headers.
//
// Names and fields a header lacks (newer than it) are skipped with a log
// line; those of every kernel since 5.9 must be present. The newer fields
// are checked by TestNewerLayouts and, on Linux, against x/sys/unix in
// TestConstantsMatchXSys.
func TestConstantsMatchUAPI(t *testing.T) {
	dir := os.Getenv("DIAG_UAPI_INCLUDE")
	if dir == "" {
		dir = "/usr/include"
	}
	h := make(header)
	for _, name := range []string{"linux/inet_diag.h", "linux/mptcp.h", "linux/tcp.h", "netinet/tcp.h"} {
		src, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			t.Skipf("%s: install the kernel's uapi headers (linux-libc-dev) or set DIAG_UAPI_INCLUDE", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := h.parse(string(src)); err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
	}

	for _, c := range uapiConstants() {
		got, ok := h[c.name]
		switch {
		case !ok && c.core:
			t.Errorf("%s: not in the headers, though every kernel since 5.9 has it", c.name)
		case !ok:
			t.Logf("%s: not in these headers (newer kernel); not checked", c.name)
		case got.num != c.value:
			t.Errorf("%s = %d in the header, ours is %d", c.name, got.num, c.value)
		}
	}

	for _, s := range uapiStructs() {
		layout, ok := h[s.name]
		if !ok || layout.fields == nil {
			t.Errorf("struct %s: not found in the headers", s.name)
			continue
		}
		if s.size != 0 && layout.num != int64(s.size) {
			t.Errorf("sizeof(struct %s) = %d in the header, ours is %d", s.name, layout.num, s.size)
		}
		for _, f := range s.fields {
			off, ok := layout.fields[f.name]
			switch {
			case !ok && f.core:
				t.Errorf("struct %s has no field %s, though every kernel since 5.9 has it", s.name, f.name)
			case !ok:
				t.Logf("struct %s: no field %s in these headers (newer kernel); not checked", s.name, f.name)
			case off != f.offset:
				t.Errorf("offsetof(struct %s, %s) = %d in the header, ours is %d", s.name, f.name, off, f.offset)
			}
		}
	}
}

// uapiConstant pairs a header name with our value.
type uapiConstant struct {
	name  string
	value int64
	core  bool // in every header since Linux 5.9
}

func uapiConstants() []uapiConstant {
	core := func(name string, v int64) uapiConstant { return uapiConstant{name, v, true} }
	return []uapiConstant{
		core("INET_DIAG_REQ_BYTECODE", int64(reqAttrBytecode)),
		core("INET_DIAG_REQ_PROTOCOL", int64(reqAttrProtocol)),
		core("INET_DIAG_INFO", int64(diagAttrInfo)),
		core("INET_DIAG_ULP_INFO", int64(diagAttrULPInfo)),
		core("INET_ULP_INFO_NAME", int64(ulpAttrName)),
		core("INET_ULP_INFO_MPTCP", int64(ulpAttrMPTCP)),

		core("MPTCP_SUBFLOW_ATTR_TOKEN_REM", int64(subflowAttrTokenRem)),
		core("MPTCP_SUBFLOW_ATTR_TOKEN_LOC", int64(subflowAttrTokenLoc)),
		core("MPTCP_SUBFLOW_ATTR_RELWRITE_SEQ", int64(subflowAttrRelWriteSeq)),
		core("MPTCP_SUBFLOW_ATTR_MAP_SEQ", int64(subflowAttrMapSeq)),
		core("MPTCP_SUBFLOW_ATTR_MAP_SFSEQ", int64(subflowAttrMapSfSeq)),
		core("MPTCP_SUBFLOW_ATTR_SSN_OFFSET", int64(subflowAttrSSNOffset)),
		core("MPTCP_SUBFLOW_ATTR_MAP_DATALEN", int64(subflowAttrMapDataLen)),
		core("MPTCP_SUBFLOW_ATTR_FLAGS", int64(subflowAttrFlags)),
		core("MPTCP_SUBFLOW_ATTR_ID_REM", int64(subflowAttrIDRem)),
		core("MPTCP_SUBFLOW_ATTR_ID_LOC", int64(subflowAttrIDLoc)),
		core("MPTCP_SUBFLOW_ATTR_PAD", int64(subflowAttrPad)),

		core("MPTCP_SUBFLOW_FLAG_MCAP_REM", int64(SubflowMPCapableRemote)),
		core("MPTCP_SUBFLOW_FLAG_MCAP_LOC", int64(SubflowMPCapableLocal)),
		core("MPTCP_SUBFLOW_FLAG_JOIN_REM", int64(SubflowJoinRemote)),
		core("MPTCP_SUBFLOW_FLAG_JOIN_LOC", int64(SubflowJoinLocal)),
		core("MPTCP_SUBFLOW_FLAG_BKUP_REM", int64(SubflowBackupRemote)),
		core("MPTCP_SUBFLOW_FLAG_BKUP_LOC", int64(SubflowBackupLocal)),
		core("MPTCP_SUBFLOW_FLAG_FULLY_ESTABLISHED", int64(SubflowFullyEstablished)),
		core("MPTCP_SUBFLOW_FLAG_CONNECTED", int64(SubflowConnected)),
		core("MPTCP_SUBFLOW_FLAG_MAPVALID", int64(SubflowMapValid)),

		core("MPTCP_INFO_FLAG_FALLBACK", int64(InfoFallback)),
		core("MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED", int64(InfoRemoteKeyReceived)),

		// netinet/tcp.h has the states that are also userspace's; the
		// kernel-only ones (NEW_SYN_RECV, BOUND_INACTIVE) are checked
		// against x/sys/unix's BPF_TCP_* on Linux.
		core("TCP_ESTABLISHED", int64(StateEstablished)),
		core("TCP_SYN_SENT", int64(StateSynSent)),
		core("TCP_SYN_RECV", int64(StateSynRecv)),
		core("TCP_FIN_WAIT1", int64(StateFinWait1)),
		core("TCP_FIN_WAIT2", int64(StateFinWait2)),
		core("TCP_TIME_WAIT", int64(StateTimeWait)),
		core("TCP_CLOSE", int64(StateClose)),
		core("TCP_CLOSE_WAIT", int64(StateCloseWait)),
		core("TCP_LAST_ACK", int64(StateLastAck)),
		core("TCP_LISTEN", int64(StateListen)),
		core("TCP_CLOSING", int64(StateClosing)),
	}
}

// uapiStruct is a structure whose size and field offsets we use.
type uapiStruct struct {
	name   string
	size   int // 0: the struct grows, its size is not fixed
	fields []uapiField
}

type uapiField struct {
	name   string
	offset int
	core   bool // in every header since Linux 5.9
}

func uapiStructs() []uapiStruct {
	core := func(name string, off int) uapiField { return uapiField{name, off, true} }
	newer := func(name string, off int) uapiField { return uapiField{name, off, false} }
	return []uapiStruct{
		{"inet_diag_sockid", 48, []uapiField{
			core("idiag_sport", sockidOffSPort), core("idiag_dport", sockidOffDPort),
			core("idiag_src", sockidOffSrc), core("idiag_dst", sockidOffDst),
			core("idiag_if", sockidOffIf), core("idiag_cookie", sockidOffCookie),
		}},
		{"inet_diag_req_v2", sizeofReqV2, []uapiField{
			core("sdiag_family", reqOffFamily), core("sdiag_protocol", reqOffProtocol),
			core("idiag_ext", reqOffExt), core("idiag_states", reqOffStates),
			core("id", reqOffCookie-sockidOffCookie),
		}},
		{"inet_diag_msg", sizeofDiagMsg, []uapiField{
			core("idiag_family", msgOffFamily), core("idiag_state", msgOffState), core("id", msgOffSockid),
			core("idiag_rqueue", msgOffRQueue), core("idiag_wqueue", msgOffWQueue),
			core("idiag_uid", msgOffUID), core("idiag_inode", msgOffInode),
		}},
		{"mptcp_info", 0, mptcpInfoFields(core, newer)},
		{"tcp_info", 0, tcpInfoFields(core, newer)},
	}
}

func mptcpInfoFields(core, newer func(string, int) uapiField) []uapiField {
	return []uapiField{
		core("mptcpi_subflows", infoOffSubflows),
		core("mptcpi_add_addr_signal", infoOffAddAddrSignal),
		core("mptcpi_add_addr_accepted", infoOffAddAddrAccepted),
		core("mptcpi_subflows_max", infoOffSubflowsMax),
		core("mptcpi_add_addr_signal_max", infoOffAddAddrSignalMax),
		core("mptcpi_add_addr_accepted_max", infoOffAddAddrAcceptedMax),
		core("mptcpi_flags", infoOffFlags),
		core("mptcpi_token", infoOffToken),
		core("mptcpi_write_seq", infoOffWriteSeq),
		core("mptcpi_snd_una", infoOffSndUna),
		core("mptcpi_rcv_nxt", infoOffRcvNxt),
		core("mptcpi_local_addr_used", infoOffLocalAddrUsed),
		core("mptcpi_local_addr_max", infoOffLocalAddrMax),
		core("mptcpi_csum_enabled", infoOffCsumEnabled),
		newer("mptcpi_retransmits", infoOffRetransmits),
		newer("mptcpi_bytes_retrans", infoOffBytesRetrans),
		newer("mptcpi_bytes_sent", infoOffBytesSent),
		newer("mptcpi_bytes_received", infoOffBytesReceived),
		newer("mptcpi_bytes_acked", infoOffBytesAcked),
		newer("mptcpi_subflows_total", infoOffSubflowsTotal),
		newer("mptcpi_endp_laminar_max", infoOffEndpLaminarMax),
		newer("mptcpi_endp_fullmesh_max", infoOffEndpFullmeshMax),
		newer("mptcpi_last_data_sent", infoOffLastDataSent),
		newer("mptcpi_last_data_recv", infoOffLastDataRecv),
		newer("mptcpi_last_ack_recv", infoOffLastAckRecv),
	}
}

func tcpInfoFields(core, newer func(string, int) uapiField) []uapiField {
	return []uapiField{
		core("tcpi_state", tcpOffState), core("tcpi_ca_state", tcpOffCAState),
		core("tcpi_retransmits", tcpOffRetransmits), core("tcpi_probes", tcpOffProbes),
		core("tcpi_backoff", tcpOffBackoff), core("tcpi_options", tcpOffOptions),
		core("tcpi_snd_wscale", tcpOffWScale), core("tcpi_rcv_wscale", tcpOffWScale),
		core("tcpi_rto", tcpOffRTO), core("tcpi_ato", tcpOffATO),
		core("tcpi_snd_mss", tcpOffSndMSS), core("tcpi_rcv_mss", tcpOffRcvMSS),
		core("tcpi_unacked", tcpOffUnacked), core("tcpi_sacked", tcpOffSacked),
		core("tcpi_lost", tcpOffLost), core("tcpi_retrans", tcpOffRetrans),
		core("tcpi_last_data_sent", tcpOffLastDataSent), core("tcpi_last_data_recv", tcpOffLastDataRecv),
		core("tcpi_last_ack_recv", tcpOffLastAckRecv), core("tcpi_pmtu", tcpOffPMTU),
		core("tcpi_rcv_ssthresh", tcpOffRcvSsthresh), core("tcpi_rtt", tcpOffRTT),
		core("tcpi_rttvar", tcpOffRTTVar), core("tcpi_snd_ssthresh", tcpOffSndSsthresh),
		core("tcpi_snd_cwnd", tcpOffSndCwnd), core("tcpi_advmss", tcpOffAdvMSS),
		core("tcpi_reordering", tcpOffReordering), core("tcpi_rcv_rtt", tcpOffRcvRTT),
		core("tcpi_rcv_space", tcpOffRcvSpace), core("tcpi_total_retrans", tcpOffTotalRetrans),
		core("tcpi_pacing_rate", tcpOffPacingRate), core("tcpi_max_pacing_rate", tcpOffMaxPacingRate),
		core("tcpi_bytes_acked", tcpOffBytesAcked), core("tcpi_bytes_received", tcpOffBytesReceived),
		core("tcpi_segs_out", tcpOffSegsOut), core("tcpi_segs_in", tcpOffSegsIn),
		core("tcpi_notsent_bytes", tcpOffNotsentBytes), core("tcpi_min_rtt", tcpOffMinRTT),
		core("tcpi_data_segs_in", tcpOffDataSegsIn), core("tcpi_data_segs_out", tcpOffDataSegsOut),
		core("tcpi_delivery_rate", tcpOffDeliveryRate), core("tcpi_busy_time", tcpOffBusyTime),
		core("tcpi_rwnd_limited", tcpOffRwndLimited), core("tcpi_sndbuf_limited", tcpOffSndbufLimited),
		core("tcpi_delivered", tcpOffDelivered), core("tcpi_delivered_ce", tcpOffDeliveredCE),
		core("tcpi_bytes_sent", tcpOffBytesSent), core("tcpi_bytes_retrans", tcpOffBytesRetrans),
		core("tcpi_dsack_dups", tcpOffDSACKDups), core("tcpi_reord_seen", tcpOffReordSeen),
		newer("tcpi_rcv_ooopack", tcpOffRcvOOOPack), newer("tcpi_snd_wnd", tcpOffSndWnd),
		newer("tcpi_rcv_wnd", tcpOffRcvWnd),
	}
}

// TestNewerLayouts lays out struct mptcp_info as Linux 6.19's uapi header
// declares it, with the C rules the header parser uses, and compares the
// offsets with ours: the installed headers may be older than the fields we
// decode.
func TestNewerLayouts(t *testing.T) {
	const mptcpInfo619 = `struct mptcp_info {
	__u8	mptcpi_subflows;
	__u8	mptcpi_add_addr_signal;
	__u8	mptcpi_add_addr_accepted;
	__u8	mptcpi_subflows_max;
	__u8	mptcpi_add_addr_signal_max;
	__u8	mptcpi_add_addr_accepted_max;
	__u32	mptcpi_flags;
	__u32	mptcpi_token;
	__u64	mptcpi_write_seq;
	__u64	mptcpi_snd_una;
	__u64	mptcpi_rcv_nxt;
	__u8	mptcpi_local_addr_used;
	__u8	mptcpi_local_addr_max;
	__u8	mptcpi_csum_enabled;
	__u32	mptcpi_retransmits;
	__u64	mptcpi_bytes_retrans;
	__u64	mptcpi_bytes_sent;
	__u64	mptcpi_bytes_received;
	__u64	mptcpi_bytes_acked;
	__u8	mptcpi_subflows_total;
	__u8	mptcpi_endp_laminar_max;
	__u8	mptcpi_endp_fullmesh_max;
	__u8	reserved;
	__u32	mptcpi_last_data_sent;
	__u32	mptcpi_last_data_recv;
	__u32	mptcpi_last_ack_recv;
};`
	h := make(header)
	if err := h.parse(mptcpInfo619); err != nil {
		t.Fatal(err)
	}
	layout := h["mptcp_info"]
	if layout.num != 96 {
		t.Errorf("sizeof(struct mptcp_info) = %d, want 96", layout.num)
	}
	field := func(name string, off int) uapiField { return uapiField{name, off, true} }
	for _, f := range mptcpInfoFields(field, field) {
		if got, ok := layout.fields[f.name]; !ok || got != f.offset {
			t.Errorf("offsetof(struct mptcp_info, %s) = %d (found %t), ours is %d", f.name, got, ok, f.offset)
		}
	}
}

func TestHeaderParser(t *testing.T) {
	const src = `
/* comment */
#define BIT2	_BITUL(2)	/* a bit */
#define NUM	0x10
#define ALIAS	NUM
enum {
	A_UNSPEC,
	A_ONE,	/* u32 */
	A_TEN = 10,
	A_ELEVEN,
};
enum named { B = 1, C };
struct inner {
	__be16	port;
	__be32	addr[4];
#define INNER_MACRO (~0U)
};
struct outer {
	__u8	a;
	__u8	b : 4,
		c : 4;
	struct inner in;
	__u16	d;
	__u64	e;
	__u8	f[3];
};`
	h := make(header)
	if err := h.parse(src); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"BIT2": 4, "NUM": 16, "ALIAS": 16, "A_UNSPEC": 0, "A_ONE": 1,
		"A_TEN": 10, "A_ELEVEN": 11, "B": 1, "C": 2, "inner": 20, "outer": 48} {
		if got, ok := h[name]; !ok || got.num != want {
			t.Errorf("%s = %d (found %t), want %d", name, got.num, ok, want)
		}
	}
	for name, want := range map[string]int{"a": 0, "b": 1, "c": 1, "in": 4, "d": 24, "e": 32, "f": 40} {
		if got, ok := h["outer"].fields[name]; !ok || got != want {
			t.Errorf("offsetof(outer, %s) = %d (found %t), want %d", name, got, ok, want)
		}
	}
}

// header holds what parse found in C headers: constants (#define and enum
// members) and struct layouts (num the size, fields the offsets).
type header map[string]cDef

type cDef struct {
	num    int64
	align  int            // structs: alignment
	fields map[string]int // structs: offset of each field
}

var (
	cCommentRe = regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`)
	cDefineRe  = regexp.MustCompile(`(?m)^\s*#\s*define\s+([A-Za-z_]\w*)[ \t]+([^\n]+?)\s*$`)
	cBlockRe   = regexp.MustCompile(`(?s)\b(enum|struct)\s*(\w*)\s*\{(.*?)\}\s*;`)
	cFieldRe   = regexp.MustCompile(`^(?:struct\s+(\w+)|(\w+))\s+(.+)$`)
	cMemberRe  = regexp.MustCompile(`^(\w+)\s*(?:\[\s*(\w+)\s*\])?\s*(?::\s*(\d+))?$`)
)

// parse adds the #defines, enum members and structs of src, in order. It
// understands what these uapi headers use: integer literals, _BITUL(n),
// names defined before, enums with implicit numbering, and structs of
// fixed-size integers, arrays, bit fields and structs parsed before (not
// unions or nested definitions, which the structs we read do not have).
// What it cannot evaluate it leaves out.
func (h header) parse(src string) error {
	src = cCommentRe.ReplaceAllString(src, " ")
	src = strings.ReplaceAll(src, "\\\n", " ")
	type item struct {
		at   int
		m    []string
		kind string
	}
	var items []item
	for _, m := range cDefineRe.FindAllStringSubmatchIndex(src, -1) {
		items = append(items, item{m[0], []string{src[m[2]:m[3]], src[m[4]:m[5]]}, "define"})
	}
	for _, m := range cBlockRe.FindAllStringSubmatchIndex(src, -1) {
		items = append(items, item{m[0], []string{src[m[2]:m[3]], src[m[4]:m[5]], src[m[6]:m[7]]}, "block"})
	}
	// Parse in source order so that later definitions can use earlier ones.
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].at < items[j-1].at; j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
	for _, it := range items {
		switch {
		case it.kind == "define":
			if v, err := h.eval(it.m[1]); err == nil {
				h[it.m[0]] = cDef{num: v}
			}
		case it.m[0] == "enum":
			next, known := int64(0), true
			for _, member := range strings.Split(it.m[2], ",") {
				name, expr, hasValue := strings.Cut(strings.TrimSpace(member), "=")
				name = strings.TrimSpace(name)
				if name == "" {
					continue
				}
				if hasValue {
					v, err := h.eval(expr)
					next, known = v, err == nil
				}
				if known {
					h[name] = cDef{num: next}
				}
				next++
			}
		default:
			// Structs this parser cannot lay out (unions, other types)
			// are left out; a test that needs one reports it missing.
			_ = h.parseStruct(it.m[1], it.m[2])
		}
	}
	return nil
}

func (h header) eval(expr string) (int64, error) {
	expr = strings.TrimSpace(expr)
	if inner, ok := strings.CutPrefix(expr, "_BITUL("); ok {
		n, err := h.eval(strings.TrimSuffix(inner, ")"))
		return 1 << n, err
	}
	if d, ok := h[expr]; ok && d.fields == nil {
		return d.num, nil
	}
	return strconv.ParseInt(strings.TrimRight(expr, "uUlL"), 0, 64)
}

// parseStruct lays out a struct with the natural alignment of the
// integer types, as GCC and Clang do on Linux.
func (h header) parseStruct(name, body string) error {
	sizes := map[string]int{"__u8": 1, "__s8": 1, "__u16": 2, "__s16": 2, "__be16": 2, "__u32": 4, "__s32": 4,
		"__be32": 4, "__u64": 8, "__s64": 8, "__be64": 8}
	def := cDef{align: 1, fields: make(map[string]int)}
	off := 0
	bitUnit, bitUsed, bitSize := -1, 0, 0 // current bit-field storage unit
	for _, decl := range strings.Split(body, ";") {
		var lines []string
		for _, l := range strings.Split(decl, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		decl = strings.Join(lines, " ")
		if decl == "" {
			continue
		}
		m := cFieldRe.FindStringSubmatch(decl)
		if m == nil {
			return fmt.Errorf("cannot parse %q", decl)
		}
		size, align := sizes[m[2]], sizes[m[2]]
		if m[1] != "" {
			inner, ok := h[m[1]]
			if !ok || inner.fields == nil {
				return fmt.Errorf("struct %s used before its definition", m[1])
			}
			size, align = int(inner.num), inner.align
		} else if size == 0 {
			return fmt.Errorf("unknown type %q", m[2])
		}
		for _, member := range strings.Split(m[3], ",") {
			mm := cMemberRe.FindStringSubmatch(strings.TrimSpace(member))
			if mm == nil {
				return fmt.Errorf("cannot parse member %q", member)
			}
			if mm[3] != "" { // a bit field
				bits, _ := strconv.Atoi(mm[3])
				if bitUnit < 0 || bitSize != size || bitUsed+bits > 8*size {
					off = (off + align - 1) / align * align
					bitUnit, bitUsed, bitSize = off, 0, size
					off += size
				}
				def.fields[mm[1]] = bitUnit
				bitUsed += bits
				def.align = max(def.align, align)
				continue
			}
			bitUnit = -1
			n := 1
			if mm[2] != "" {
				v, err := h.eval(mm[2])
				if err != nil {
					return fmt.Errorf("array length of %s: %v", mm[1], err)
				}
				n = int(v)
			}
			off = (off + align - 1) / align * align
			def.fields[mm[1]] = off
			off += n * size
			def.align = max(def.align, align)
		}
	}
	def.num = int64((off + def.align - 1) / def.align * def.align)
	h[name] = def
	return nil
}
