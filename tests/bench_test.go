package tests

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// BenchmarkRoundTrip measures one command's round trip to the real kernel
// through the client, against a baseline measured in the same run: the same
// request sent with a bare genetlink connection, no encoding helpers, no
// decoding, no error mapping. The two are interleaved so machine noise hits
// both alike; the ratio is the client's cost over the bare round trip.
func BenchmarkRoundTrip(b *testing.B) {
	bed := testbed.New(b)
	h := bed.Host("h")
	c, err := genl.New(genl.WithNetNS(h.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	raw, err := genetlink.Dial(&netlink.Config{NetNS: h.FD(), Strict: true})
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	family := c.Family().ID
	rawExec := func(cmd uint8, flags netlink.HeaderFlags, data []byte) {
		if _, err := raw.Execute(genetlink.Message{Header: genetlink.Header{Command: cmd, Version: 1}, Data: data}, family, netlink.Request|flags); err != nil {
			b.Fatal(err)
		}
	}
	encode := func(fn func(*netlink.AttributeEncoder)) []byte {
		ae := netlink.NewAttributeEncoder()
		fn(ae)
		data, err := ae.Encode()
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	addr := netip.MustParseAddr("192.0.2.1")
	addrNest := func(id uint8, withAddr bool) []byte {
		return encode(func(ae *netlink.AttributeEncoder) {
			ae.Nested(1, func(nae *netlink.AttributeEncoder) error {
				nae.Uint8(2, id)
				if withAddr {
					nae.Uint16(1, 2)
					a := addr.As4()
					nae.Bytes(3, a[:])
				}
				return nil
			})
		})
	}
	limits := encode(func(ae *netlink.AttributeEncoder) {
		ae.Uint32(2, 2)
		ae.Uint32(3, 4)
	})

	cases := []struct {
		name   string
		client func()
		raw    func()
	}{
		{"get-limits", func() {
			if _, err := c.Limits(); err != nil {
				b.Fatal(err)
			}
		}, func() { rawExec(6, 0, nil) }},
		{"set-limits", func() {
			if err := c.SetLimits(genl.Limits{AddAddrAccepted: 2, Subflows: 4}); err != nil {
				b.Fatal(err)
			}
		}, func() { rawExec(5, netlink.Acknowledge, limits) }},
		{"get-endpoint", func() {
			if _, err := c.Endpoint(1); err != nil {
				b.Fatal(err)
			}
		}, func() { rawExec(3, 0, addrNest(1, false)) }},
		// AddEndpoint reads the endpoint back to learn its ID: one more
		// round trip than the bare add.
		{"add-delete-endpoint", func() {
			if _, err := c.AddEndpoint(genl.Endpoint{ID: 2, Addr: addr}); err != nil {
				b.Fatal(err)
			}
			if err := c.DeleteEndpoint(2); err != nil {
				b.Fatal(err)
			}
		}, func() {
			rawExec(1, netlink.Acknowledge, addrNest(2, true))
			rawExec(2, netlink.Acknowledge, addrNest(2, false))
		}},
	}
	if _, err := c.AddEndpoint(genl.Endpoint{ID: 1, Addr: netip.MustParseAddr("198.51.100.1")}); err != nil {
		b.Fatal(err)
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var clientTime, rawTime time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				tc.client()
				t1 := time.Now()
				tc.raw()
				rawTime += time.Since(t1)
				clientTime += t1.Sub(t0)
			}
			b.ReportMetric(float64(clientTime.Nanoseconds())/float64(b.N), "client-ns/op")
			b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "bare-ns/op")
			b.ReportMetric(float64(clientTime)/float64(rawTime), "client/bare")
		})
	}
}
