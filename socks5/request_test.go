package socks5

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestTargetString(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{Host: "example.com", Port: 443}, "example.com:443"},
		{Target{Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}, "192.0.2.1:80"},
		{Target{Addr: netip.MustParseAddr("2001:db8::1"), Port: 80}, "[2001:db8::1]:80"},
		{Target{}, ""},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.t, got, tc.want)
		}
	}
}

func TestTargetAppendBinary(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want []byte // nil: refused
	}{
		{Target{Host: "a.example", Port: 80}, append(append([]byte{3, 9}, "a.example"...), 0, 80)},
		{Target{Addr: netip.MustParseAddr("192.0.2.1"), Port: 0x1234}, []byte{1, 192, 0, 2, 1, 0x12, 0x34}},
		{Target{Addr: netip.MustParseAddr("::ffff:192.0.2.1"), Port: 1}, []byte{1, 192, 0, 2, 1, 0, 1}},
		{Target{Addr: netip.MustParseAddr("2001:db8::1"), Port: 1}, append(append([]byte{4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 1)},
		{Target{Port: 80}, nil},
		{Target{Host: "a.example", Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}, nil},
		{Target{Host: "a.example"}, nil},
		{Target{Host: strings.Repeat("a.", 127) + "a", Port: 80}, nil},
		{Target{Addr: netip.MustParseAddr("fe80::1%eth0"), Port: 80}, nil},
	} {
		got, err := tc.t.AppendBinary(nil)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%+v.AppendBinary = %x, want an error", tc.t, got)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%+v.AppendBinary = %x, %v; want %x", tc.t, got, err, tc.want)
		}
	}
}

// TestReadTargetLengths: the longest name DNS allows is read; one byte
// more is refused.
func TestReadTargetLengths(t *testing.T) {
	label := strings.Repeat("a", 63)
	longest := label + "." + label + "." + label + "." + strings.Repeat("b", 61) // 253 bytes
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{longest, true},
		{longest + ".", true},
		{longest + "c", false},
		{longest + "..", false},
		{".", false},
	} {
		in := append(append([]byte{atypDomain, byte(len(tc.name))}, tc.name...), 0, 80)
		got, err := ReadTarget(bytes.NewReader(in))
		if tc.ok && (err != nil || got.Host != tc.name) {
			t.Errorf("ReadTarget(%d-byte name) = %+v, %v; want the name", len(tc.name), got, err)
		}
		if !tc.ok && ReplyCode(err) != ReplyGeneralFailure {
			t.Errorf("ReadTarget(%d-byte name %q) = %+v, %v; want a general failure", len(tc.name), tc.name, got, err)
		}
	}
}

// FuzzRequest feeds the request parser arbitrary bytes. A request it
// accepts names exactly one of a valid name or a unicast address, and a
// non-zero port, and it encodes back to a request that parses the same; a
// request it refuses either ran out of bytes or carries a reply code.
func FuzzRequest(f *testing.F) {
	for _, seed := range [][]byte{
		{5, 1, 0, 1, 192, 0, 2, 1, 0, 80},
		append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187),
		append(append([]byte{5, 1, 0, 3, 11}, "example.com"...), 0x1f, 0x90),
		append(append([]byte{5, 1, 0, 3, 11}, "203.0.113.1"...), 0, 22),
		append(append([]byte{5, 1, 0, 3, 12}, "fe80::1%eth0"...), 0, 22),
		{5, 2, 0, 1, 192, 0, 2, 1, 0, 80},
		{5, 1, 0, 9},
		{5, 1, 0, 3, 0, 0, 80},
		{5, 1, 0, 1, 0, 0, 0, 0, 0, 80},
		{5, 1, 0, 1, 192, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readRequest(bytes.NewReader(in))
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			var re *requestError
			if !errors.As(err, &re) || re.code == ReplySucceeded || re.code > ReplyAddressTypeNotSupported {
				t.Fatalf("readRequest(%x) = %v: neither a short read nor a reply code", in, err)
			}
			return
		}
		if (got.Host != "") == got.Addr.IsValid() || got.Port == 0 {
			t.Fatalf("readRequest(%x) = %+v: want exactly one of Host and Addr and a port", in, got)
		}
		if got.Addr.Is4In6() || got.Addr.Zone() != "" {
			t.Fatalf("readRequest(%x) = %+v: address not in its plain form", in, got)
		}
		enc, err := got.AppendBinary([]byte{5, 1, 0})
		if err != nil {
			t.Fatalf("AppendBinary(%+v) of a parsed request: %v", got, err)
		}
		again, err := readRequest(bytes.NewReader(enc))
		if err != nil || again != got {
			t.Fatalf("request %x parsed as %+v, encoded as %x, parsed again as %+v, %v", in, got, enc, again, err)
		}
	})
}
