package diag

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The fuzz targets' seed corpus is committed under testdata/fuzz/<Target>/.
// It is made of the real replies in testdata/capture (and datagrams built
// from them), and TestFuzzSeedCorpus checks that the files match. To
// regenerate them, after a new capture:
//
//	DIAG_UPDATE_FUZZ_SEEDS=1 go test -run TestFuzzSeedCorpus ./diag/
//
// Run a target with, for example:
//
//	go test -run '^$' -fuzz FuzzDecodeSubflow -fuzztime 1m ./diag/

func FuzzDecodeConnection(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := decodeConnection(msg)
		if err != nil {
			if !cmp.Equal(c, Connection{}, cmpOpts()...) {
				t.Fatalf("error %v came with a partial connection %+v", err, c)
			}
			return
		}
		checkAddrs(t, c.Family, c.Local, c.Remote)
		if c.Info.Len > len(msg)-sizeofDiagMsg || c.Token != c.Info.Token || c.Fallback != (c.Info.Flags&InfoFallback != 0) {
			t.Fatalf("inconsistent connection %+v", c)
		}
		col := newCollector(nil, 0)
		if err := col.addConnection(msg); err != nil || len(col.conns) != 1 || !cmp.Equal(col.conns[0], c, cmpOpts()...) {
			t.Fatalf("the collector decoded %+v, %v; decodeConnection %+v", col.conns, err, c)
		}
	})
}

func FuzzDecodeSubflow(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, ok, err := decodeSubflow(msg)
		if err != nil || !ok {
			if !cmp.Equal(s, Subflow{}, cmpOpts()...) {
				t.Fatalf("(%t, %v) came with a partial subflow %+v", ok, err, s)
			}
		} else {
			checkAddrs(t, s.Family, s.Local, s.Remote)
			if s.BackupLocal != (s.Flags&SubflowBackupLocal != 0) || s.BackupRemote != (s.Flags&SubflowBackupRemote != 0) ||
				s.FullyEstablished != (s.Flags&SubflowFullyEstablished != 0) || s.TCPInfo.Len > len(msg) ||
				s.RTT < 0 || s.BusyTime < 0 {
				t.Fatalf("inconsistent subflow %+v", s)
			}
		}

		// The collector's own path through the same reply, for a
		// connection with the token the reply names, agrees (it may skip
		// a reply of another connection without reading all of it).
		token := s.LocalToken
		if m, err := parseSockMsg(msg); err == nil {
			if nest, err := subflowNest(&m); err == nil && nest != nil {
				token, _, _ = nestToken(nest)
			}
		}
		col := newCollector(nil, 1)
		col.conns = append(col.conns, Connection{Token: token, State: StateEstablished})
		cerr := col.addSubflow(msg)
		conns := col.connections()
		switch {
		case (err != nil) != (cerr != nil):
			t.Fatalf("decodeSubflow error %v, collector error %v", err, cerr)
		case err != nil:
		case !ok && len(conns[0].Subflows) != 0:
			t.Fatalf("not a subflow for decodeSubflow, the collector added %+v", conns[0].Subflows)
		case ok && (len(conns[0].Subflows) != 1 || !cmp.Equal(conns[0].Subflows[0], s, cmpOpts()...)):
			t.Fatalf("the collector added %+v, decodeSubflow decoded %+v", conns[0].Subflows, s)
		}
	})
}

func FuzzParseDatagram(f *testing.F) {
	f.Fuzz(func(t *testing.T, seq uint32, data []byte) {
		var total int
		done, err := parseDatagram(data, seq, func(msg []byte) error {
			total += len(msg)
			if len(msg) > 0 && !bytes.Contains(data, msg) {
				t.Fatalf("payload %x is not from the datagram", msg)
			}
			return nil
		})
		if total > len(data) {
			t.Fatalf("%d payload bytes from a %d-byte datagram", total, len(data))
		}
		if done && err == nil && total == 0 && !bytes.Contains(data, []byte{nlmsgDone, 0}) &&
			!bytes.Contains(data, []byte{nlmsgError, 0}) && !bytes.Contains(data, []byte{sockDiagByFamily, 0}) {
			t.Fatalf("done without a message that ends a reply in %x", data)
		}
	})
}

// cmpOpts compares the package's types, whose addresses are netip values.
func cmpOpts() []cmp.Option {
	return []cmp.Option{cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})}
}

// checkAddrs checks that decoded addresses are valid, unmapped and of the
// socket's family (IPv4 ones may come from an IPv6 socket).
func checkAddrs(t *testing.T, family Family, addrs ...netip.AddrPort) {
	t.Helper()
	if family != IPv4 && family != IPv6 {
		t.Fatalf("family %d decoded", family)
	}
	for _, a := range addrs {
		if !a.IsValid() || a.Addr().Is4In6() || a.Addr().Zone() != "" || family == IPv4 && !a.Addr().Is4() {
			t.Fatalf("address %v decoded for a socket of family %s", a, family)
		}
	}
}

// fuzzSeed is one entry of a fuzz target's seed corpus.
type fuzzSeed struct {
	name string
	args []any // the fuzz function's arguments after *testing.T
}

// fuzzSeeds returns the seed corpus of each target: every captured reply,
// and datagrams that wrap some of them the way the kernel sends them.
func fuzzSeeds(tb testing.TB) map[string][]fuzzSeed {
	seeds := make(map[string][]fuzzSeed)
	const seq = 1234
	for _, host := range []string{"cli", "srv"} {
		counts := map[uint16]int{}
		var first []byte
		for _, c := range loadCapture(tb, host) {
			kind := map[uint16]string{protoMPTCP: "mptcp", protoTCP: "tcp"}[c.protocol]
			name := fmt.Sprintf("%s_%s_%02d", host, kind, counts[c.protocol])
			counts[c.protocol]++
			target := "FuzzDecodeSubflow"
			if c.protocol == protoMPTCP {
				target = "FuzzDecodeConnection"
				if first == nil {
					first = c.msg
				}
			}
			seeds[target] = append(seeds[target], fuzzSeed{name, []any{c.msg}})
		}
		dump := slices.Concat(nlmsg(sockDiagByFamily, nlmFMulti, seq, first),
			nlmsg(sockDiagByFamily, nlmFMulti, seq+1, first), nlmsg(nlmsgDone, nlmFMulti, seq, make([]byte, 4)))
		seeds["FuzzParseDatagram"] = append(seeds["FuzzParseDatagram"],
			fuzzSeed{host + "_dump_end", []any{uint32(seq), dump}},
			fuzzSeed{host + "_exact_reply", []any{uint32(seq), nlmsg(sockDiagByFamily, 0, seq, first)}})
	}
	seeds["FuzzParseDatagram"] = append(seeds["FuzzParseDatagram"],
		fuzzSeed{"enoent_ext_ack", []any{uint32(seq), nlmsg(nlmsgError, nlmFAckTLVs|nlmFCapped, seq, errorPayload(2, seq, "no such token"))}},
		fuzzSeed{"done_with_error", []any{uint32(seq), nlmsg(nlmsgDone, nlmFMulti, seq, binary.NativeEndian.AppendUint32(nil, ^uint32(16-1)))}},
		fuzzSeed{"noop_and_overrun", []any{uint32(seq), slices.Concat(nlmsg(nlmsgNoop, 0, seq, nil), nlmsg(nlmsgOverrun, 0, seq, nil))}},
	)
	// Shapes of other kernels: an mptcp_info of Linux 5.9 (48 bytes) and a
	// tcp_info of Linux 4.x (104 bytes).
	seeds["FuzzDecodeConnection"] = append(seeds["FuzzDecodeConnection"], fuzzSeed{"linux_5_9_info", []any{
		sockReply(IPv4, StateEstablished, testLocal, testRemote, 7, attr{uint16(diagAttrInfo), mptcpInfo(48, 0xabcd, 1, 0)})}})
	seeds["FuzzDecodeSubflow"] = append(seeds["FuzzDecodeSubflow"], fuzzSeed{"short_tcp_info", []any{
		sockReply(IPv4, StateEstablished, testLocal, testRemote, 7, attr{uint16(diagAttrInfo), tcpInfo(104, time.Millisecond, 5)},
			attr{uint16(diagAttrULPInfo), subflowULP(0xabcd, 0, 0, 0, SubflowMPCapableLocal)})}})
	// Malformed MPTCP nests, where the two ways of decoding a subflow
	// (decodeSubflow, and the collector's, which looks for the token
	// first) once disagreed: a bad attribute after the token, and a bad
	// attribute with no token at all.
	nest := func(inner []byte) []byte {
		return sockReply(IPv4, StateEstablished, testLocal, testRemote, 7, attr{uint16(diagAttrULPInfo),
			encodeAttrs(attr{uint16(ulpAttrName), []byte("mptcp\x00")}, attr{uint16(ulpAttrMPTCP), inner})})
	}
	seeds["FuzzDecodeSubflow"] = append(seeds["FuzzDecodeSubflow"],
		fuzzSeed{"nest_token_then_truncated", []any{nest(append(encodeAttrs(attr{uint16(subflowAttrTokenLoc), u32(0xabcd)}),
			0x30, 0x30, byte(subflowAttrMapSfSeq), 0))}},
		fuzzSeed{"nest_short_attr_no_token", []any{nest(encodeAttrs(attr{uint16(subflowAttrMapSfSeq), u16(1)}))}},
	)
	return seeds
}

// marshalSeed writes args in the format of Go's fuzzing corpus files.
func marshalSeed(tb testing.TB, args []any) []byte {
	tb.Helper()
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		default:
			tb.Fatalf("seed argument of type %T not supported", a)
		}
	}
	return b.Bytes()
}

// TestFuzzSeedCorpus checks that the committed seed corpus is the one
// fuzzSeeds builds from the captures, so that it stays made of real replies.
func TestFuzzSeedCorpus(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the seed corpus holds native-endian replies captured on a little-endian machine")
	}
	update := os.Getenv("DIAG_UPDATE_FUZZ_SEEDS") == "1"
	seeds := fuzzSeeds(t)
	for _, target := range slices.Sorted(maps.Keys(seeds)) {
		dir := filepath.Join("testdata", "fuzz", target)
		if update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		want := make(map[string]bool)
		for _, s := range seeds[target] {
			want[s.name] = true
			path := filepath.Join(dir, s.name)
			data := marshalSeed(t, s.args)
			if update {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: %v (regenerate with DIAG_UPDATE_FUZZ_SEEDS=1)", target, err)
				continue
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s differs from what fuzzSeeds builds (regenerate with DIAG_UPDATE_FUZZ_SEEDS=1)", path)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			// Crashers the fuzzer found are kept beside the seeds; their
			// names are hashes.
			if want[e.Name()] || !strings.Contains(e.Name(), "_") {
				continue
			}
			if !update {
				t.Errorf("%s/%s is not a seed fuzzSeeds builds (regenerate with DIAG_UPDATE_FUZZ_SEEDS=1)", dir, e.Name())
			} else if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}
