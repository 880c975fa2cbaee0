package capture

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// encodeSockaddr builds the struct the kernel returns for ap, with a flow
// label and scope that decoding ignores.
func encodeSockaddr(ap netip.AddrPort) []byte {
	if ap.Addr().Is4() {
		b := make([]byte, sizeofSockaddrInet4)
		binary.NativeEndian.PutUint16(b, afInet)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		return b
	}
	b := make([]byte, sizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	binary.BigEndian.PutUint32(b[4:], 0x12345)
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	binary.NativeEndian.PutUint32(b[24:], 7)
	return b
}

func TestDecodeSockaddr(t *testing.T) {
	for _, s := range []string{"198.51.100.2:8080", "192.0.2.1:1", "[2001:db8::2]:443", "[::ffff:192.0.2.1]:80", "[2001:db8::1]:65535"} {
		want := netip.MustParseAddrPort(s)
		got, err := decodeSockaddr(encodeSockaddr(want))
		if err != nil || got != want {
			t.Errorf("decodeSockaddr(%s) = %s, %v; want %s", s, got, err, want)
		}
	}

	v4 := encodeSockaddr(netip.MustParseAddrPort("198.51.100.2:8080"))
	v6 := encodeSockaddr(netip.MustParseAddrPort("[2001:db8::2]:8080"))
	unknown := append([]byte(nil), v4...)
	binary.NativeEndian.PutUint16(unknown, 1) // AF_UNIX
	swapped := append([]byte(nil), v4...)
	binary.BigEndian.PutUint16(swapped, afInet) // family in the wrong byte order
	if binary.NativeEndian.Uint16(swapped) == afInet {
		swapped = unknown // big-endian host: both orders agree
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "0 bytes long, too short"},
		{"one byte", []byte{2}, "1 bytes long, too short"},
		{"short IPv4", v4[:8], "IPv4 socket address is 8 bytes long, want 16"},
		{"long IPv4", append(append([]byte(nil), v4...), 0), "IPv4 socket address is 17 bytes long, want 16"},
		{"short IPv6", v6[:24], "IPv6 socket address is 24 bytes long, want 28"},
		{"unknown family", unknown, "family 1"},
		{"wrong byte order", swapped, "family"},
		{"unspecified IPv4", encodeSockaddr(netip.MustParseAddrPort("0.0.0.0:80")), "unspecified address"},
		{"unspecified IPv6", encodeSockaddr(netip.MustParseAddrPort("[::]:80")), "unspecified address"},
		{"port zero", encodeSockaddr(netip.MustParseAddrPort("192.0.2.1:0")), "port 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeSockaddr(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeSockaddr = %s, %v; want an error containing %q", got, err, tc.want)
			}
		})
	}
}

// FuzzDecodeSockaddr checks that decoding never panics, that what it
// accepts is a usable TCP destination, and that encoding it again gives the
// same address and port.
func FuzzDecodeSockaddr(f *testing.F) {
	f.Add(encodeSockaddr(netip.MustParseAddrPort("198.51.100.2:8080")))
	f.Add(encodeSockaddr(netip.MustParseAddrPort("[2001:db8::2]:443")))
	f.Add([]byte{})
	f.Add([]byte{10, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := decodeSockaddr(b)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
			t.Fatalf("decodeSockaddr(%x) accepted %s", b, ap)
		}
		again, err := decodeSockaddr(encodeSockaddr(ap))
		if err != nil || again != ap {
			t.Fatalf("round trip of %s gave %s, %v", ap, again, err)
		}
		if len(b) != len(encodeSockaddr(ap)) {
			t.Fatalf("decodeSockaddr accepted %d bytes as %s, whose layout is %d bytes", len(b), ap, len(encodeSockaddr(ap)))
		}
	})
}
