package diag

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRequestGolden compares encodeRequest with what ss(8) sends for
// `ss -Mni` (testdata/golden, recorded by capture.sh), given the same
// parameters, which strace decodes as:
// idiag_ext=1<<(INET_DIAG_INFO-1)|1<<(INET_DIAG_VEGASINFO-1)|1<<(INET_DIAG_CONG-1),
// idiag_states=1<<TCP_ESTABLISHED|1<<TCP_SYN_SENT|1<<TCP_FIN_WAIT1|1<<TCP_FIN_WAIT2|
// 1<<TCP_CLOSE_WAIT|1<<TCP_LAST_ACK|1<<TCP_CLOSING|0x1.
func TestRequestGolden(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden requests were recorded on a little-endian machine")
	}
	const ext = 1<<(2-1) | 1<<(3-1) | 1<<(4-1)
	states := States(StateEstablished, StateSynSent, StateFinWait1, StateFinWait2, StateCloseWait,
		StateLastAck, StateClosing) | 1
	for name, family := range map[string]Family{"mptcp_v4": IPv4, "mptcp_v6": IPv6} {
		text, err := os.ReadFile(filepath.Join("testdata", "golden", name+".hex"))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := hex.DecodeString(strings.TrimSpace(string(text)))
		if err != nil || len(msg) < nlmHdrLen {
			t.Fatalf("%s: %v (%d bytes)", name, err, len(msg))
		}
		if typ := binary.NativeEndian.Uint16(msg[4:]); typ != sockDiagByFamily {
			t.Errorf("%s: message type %d, want SOCK_DIAG_BY_FAMILY", name, typ)
		}
		got := encodeRequest(request{family: family, protocol: protoMPTCP, states: states, ext: ext})
		if want := msg[nlmHdrLen:]; !bytes.Equal(got, want) {
			t.Errorf("%s: encodeRequest =\n%x\nss sends\n%x", name, got, want)
		}
	}
}

func TestEncodeRequest(t *testing.T) {
	tcp := encodeRequest(request{family: IPv6, protocol: protoTCP, states: subflowStates, ext: extInfo})
	if len(tcp) != sizeofReqV2 || tcp[0] != 10 || tcp[1] != 6 || tcp[2] != 2 ||
		binary.NativeEndian.Uint32(tcp[4:]) != subflowStates {
		t.Errorf("TCP request = %x", tcp)
	}
	exact := encodeRequest(request{family: IPv4, protocol: protoMPTCP, ext: extInfo, exact: true, token: 0x416b9b58})
	if len(exact) != sizeofReqV2+8 || binary.NativeEndian.Uint32(exact[48:]) != 0x416b9b58 ||
		binary.NativeEndian.Uint32(exact[52:]) != 0 || binary.NativeEndian.Uint32(exact[sizeofReqV2+4:]) != protoMPTCP {
		t.Errorf("exact MPTCP request = %x", exact)
	}
}

// nlmsg builds one netlink message.
func nlmsg(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, nlmHdrLen, nlmHdrLen+len(payload)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(nlmHdrLen+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// errorPayload is the payload of an NLMSG_ERROR for errno, with the
// request's header (capped) and an extended-ACK message.
func errorPayload(errno int32, seq uint32, message string) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(-errno))
	b = append(b, nlmsg(sockDiagByFamily, 0x301, seq, nil)...)
	if message != "" {
		attr := binary.NativeEndian.AppendUint16(nil, uint16(4+len(message)+1))
		attr = binary.NativeEndian.AppendUint16(attr, nlmsgErrAttrMsg)
		attr = append(append(attr, message...), 0)
		for len(attr)%4 != 0 {
			attr = append(attr, 0)
		}
		b = append(b, attr...)
	}
	return b
}

func TestParseDatagram(t *testing.T) {
	const seq = 7
	var got []string
	collect := func(msg []byte) error { got = append(got, string(msg)); return nil }
	dg := bytes.Join([][]byte{
		nlmsg(sockDiagByFamily, nlmFMulti, seq, []byte("one")),
		nlmsg(sockDiagByFamily, nlmFMulti, seq+1, []byte("stale")),
		nlmsg(nlmsgNoop, 0, seq, nil),
		nlmsg(sockDiagByFamily, nlmFMulti, seq, []byte("two!")),
	}, nil)
	done, err := parseDatagram(dg, seq, collect)
	if done || err != nil || strings.Join(got, ",") != "one,two!" {
		t.Errorf("dump datagram: done %t, err %v, messages %q", done, err, got)
	}

	got = nil
	done, err = parseDatagram(append(nlmsg(sockDiagByFamily, nlmFMulti, seq, []byte("last")),
		nlmsg(nlmsgDone, nlmFMulti, seq, []byte{0, 0, 0, 0})...), seq, collect)
	if !done || err != nil || len(got) != 1 {
		t.Errorf("last datagram: done %t, err %v, messages %q", done, err, got)
	}

	// An exact request's reply is one message without NLM_F_MULTI.
	got = nil
	done, err = parseDatagram(nlmsg(sockDiagByFamily, 0, seq, []byte("only")), seq, collect)
	if !done || err != nil || len(got) != 1 {
		t.Errorf("exact reply: done %t, err %v, messages %q", done, err, got)
	}

	done, err = parseDatagram(nlmsg(nlmsgError, nlmFAckTLVs|nlmFCapped, seq, errorPayload(2, seq, "no such token")), seq, collect)
	var re *replyError
	if !done || !errors.As(err, &re) || re.errno != 2 || re.message != "no such token" {
		t.Errorf("error reply: done %t, err %v", done, err)
	}
	// Errors of other requests are not ours.
	done, err = parseDatagram(nlmsg(nlmsgError, 0, seq+1, errorPayload(2, seq+1, "")), seq, collect)
	if done || err != nil {
		t.Errorf("stale error reply: done %t, err %v", done, err)
	}
	// A dump that ends with an error in NLMSG_DONE.
	done, err = parseDatagram(nlmsg(nlmsgDone, nlmFMulti, seq, binary.NativeEndian.AppendUint32(nil, ^uint32(16-1))), seq, collect)
	if !done || !errors.As(err, &re) || re.errno != 16 {
		t.Errorf("error at end of dump: done %t, err %v", done, err)
	}

	stop := errors.New("stop")
	if _, err := parseDatagram(dg, seq, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("callback error: got %v", err)
	}
	for _, bad := range [][]byte{
		{1, 2, 3},
		nlmsg(sockDiagByFamily, 0, seq, nil)[:15],
		append(binary.NativeEndian.AppendUint32(nil, 400), make([]byte, 12)...),
		append(binary.NativeEndian.AppendUint32(nil, 8), make([]byte, 12)...),
	} {
		if _, err := parseDatagram(bad, seq, collect); !errors.Is(err, errTruncated) {
			t.Errorf("parseDatagram(%x) = %v, want a truncation error", bad, err)
		}
	}
}
