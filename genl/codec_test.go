package genl

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
)

// TestAppendAttrs: the requests written without the netlink package's
// encoder are byte for byte those it writes.
func TestAppendAttrs(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	reqs := map[string]request{
		"limits":     setLimitsRequest(Limits{AddAddrAccepted: 2, Subflows: 4}),
		"limits max": setLimitsRequest(Limits{AddAddrAccepted: 8, Subflows: 1 << 31}),
	}
	for name, ep := range map[string]Endpoint{
		"v4 plain":      {ID: 1, Addr: v4},
		"v4 full":       {ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3},
		"v6 flags":      {ID: 255, Addr: v6, Flags: FlagSubflow | FlagBackup | FlagFullmesh},
		"v6 laminar":    {ID: 7, Addr: v6, Flags: FlagLaminar | FlagSubflow, IfIndex: 1<<31 - 1},
		"v4 in v6 form": {ID: 2, Addr: netip.MustParseAddr("::ffff:192.0.2.9"), Flags: FlagSubflow},
	} {
		r, err := createRequest(ep)
		if err != nil {
			t.Fatal(err)
		}
		reqs["create "+name] = r
	}
	for name, r := range reqs {
		ae := netlink.NewAttributeEncoder()
		r.encode(ae)
		want, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendAttrs([]byte{0xff}); hex.EncodeToString(got[1:]) != hex.EncodeToString(want) || got[0] != 0xff {
			t.Errorf("%s: appendAttrs = %x, want %x after the byte before", name, got, want)
		}
	}
}
