//go:build linux

package genl

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// goldenRequest is one netlink request as captured from `ip mptcp` by
// testdata/golden/capture.sh.
type goldenRequest struct {
	length  uint32
	typ     netlink.HeaderType
	flags   netlink.HeaderFlags
	command uint8
	version uint8
	attrs   []byte
}

// readGolden reads testdata/golden/NAME.hex.
func readGolden(t *testing.T, name string) goldenRequest {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".hex")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden request: %v", err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(b) < 20 {
		t.Fatalf("%s: %d bytes, shorter than the netlink and genetlink headers", path, len(b))
	}
	g := goldenRequest{
		length:  binary.LittleEndian.Uint32(b[0:4]),
		typ:     netlink.HeaderType(binary.LittleEndian.Uint16(b[4:6])),
		flags:   netlink.HeaderFlags(binary.LittleEndian.Uint16(b[6:8])),
		command: b[16],
		version: b[17],
		attrs:   b[20:],
	}
	if int(g.length) != len(b) {
		t.Fatalf("%s: nlmsg_len is %d but the file holds %d bytes", path, g.length, len(b))
	}
	return g
}

// capturedRequest is a request the client sent to the fake.
type capturedRequest struct {
	greq genetlink.Message
	nreq netlink.Message
}

// checkGolden compares a captured request with a golden one.
func checkGolden(t *testing.T, name string, got capturedRequest) {
	t.Helper()
	want := readGolden(t, name)
	if got.nreq.Header.Type != want.typ {
		t.Errorf("%s: netlink type = %#04x, want %#04x (the family ID)", name, uint16(got.nreq.Header.Type), uint16(want.typ))
	}
	if got.nreq.Header.Flags != want.flags {
		t.Errorf("%s: netlink flags = %#04x (%s), want %#04x (%s)", name,
			uint16(got.nreq.Header.Flags), got.nreq.Header.Flags, uint16(want.flags), want.flags)
	}
	if got.greq.Header.Command != want.command || got.greq.Header.Version != want.version {
		t.Errorf("%s: genetlink command %d version %d, want command %d version %d", name,
			got.greq.Header.Command, got.greq.Header.Version, want.command, want.version)
	}
	if diff := cmp.Diff(hex.EncodeToString(want.attrs), hex.EncodeToString(got.greq.Data)); diff != "" {
		t.Errorf("%s: attribute bytes differ from ip mptcp's (-ip mptcp +ours):\n%s", name, diff)
	}
	if got.nreq.Header.Length != want.length {
		t.Errorf("%s: nlmsg_len = %d, want %d", name, got.nreq.Header.Length, want.length)
	}
}

func TestGoldenRequests(t *testing.T) {
	var (
		v4      = netip.MustParseAddr("192.0.2.1")
		v4other = netip.MustParseAddr("198.51.100.7")
		v6      = netip.MustParseAddr("2001:db8::1")
	)
	tests := []struct {
		golden string
		call   func(*Client) (any, error)
		// replies answers each command; requests of other commands get no reply.
		replies func(t *testing.T) map[command][]genetlink.Message
		// then are the golden files of the requests sent after the first one.
		then []string
		want any
	}{
		{
			golden: "add_v4_plain",
			call:   func(c *Client) (any, error) { return c.AddEndpoint(Endpoint{Addr: v4}) },
			replies: func(t *testing.T) map[command][]genetlink.Message {
				return map[command][]genetlink.Message{cmdGetAddr: {
					endpointReply(t, Endpoint{ID: 1, Addr: v4other, Flags: FlagSubflow}),
					endpointReply(t, Endpoint{ID: 4, Addr: v4, Port: 9000, Flags: FlagSignal}), // same address, other port
					endpointReply(t, Endpoint{ID: 5, Addr: v4}),
				}}
			},
			then: []string{"dump"},
			want: Endpoint{ID: 5, Addr: v4},
		},
		{
			golden: "add_v4_full",
			call: func(c *Client) (any, error) {
				return c.AddEndpoint(Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3})
			},
			replies: func(t *testing.T) map[command][]genetlink.Message {
				return map[command][]genetlink.Message{cmdGetAddr: {
					endpointReply(t, Endpoint{ID: 1, Addr: v4, Port: 8080}), // same address and port, other ID
					endpointReply(t, Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3}),
				}}
			},
			then: []string{"dump"},
			want: Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3},
		},
		{
			// The same request as AddEndpoint's, and no read-back.
			golden: "add_v4_full",
			call: func(c *Client) (any, error) {
				return nil, c.CreateEndpoint(Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3})
			},
		},
		{
			golden: "add_v6_flags",
			call: func(c *Client) (any, error) {
				return c.AddEndpoint(Endpoint{ID: 7, Addr: v6, Flags: FlagSubflow | FlagBackup | FlagFullmesh})
			},
			replies: func(t *testing.T) map[command][]genetlink.Message {
				return map[command][]genetlink.Message{cmdGetAddr: {
					endpointReply(t, Endpoint{ID: 7, Addr: v6, Flags: FlagSubflow | FlagBackup | FlagFullmesh}),
				}}
			},
			then: []string{"dump"},
			want: Endpoint{ID: 7, Addr: v6, Flags: FlagSubflow | FlagBackup | FlagFullmesh},
		},
		{
			golden: "delete_id",
			call:   func(c *Client) (any, error) { return nil, c.DeleteEndpoint(3) },
		},
		{
			golden: "delete_id0_addr",
			call: func(c *Client) (any, error) {
				return nil, c.DeleteAddressID0(netip.MustParseAddr("192.0.2.9"))
			},
		},
		{
			golden: "get_id",
			call:   func(c *Client) (any, error) { return c.Endpoint(3) },
			replies: func(t *testing.T) map[command][]genetlink.Message {
				return map[command][]genetlink.Message{cmdGetAddr: {
					endpointReply(t, Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3}),
				}}
			},
			want: Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3},
		},
		{
			golden: "dump",
			call:   func(c *Client) (any, error) { return c.Endpoints() },
			replies: func(t *testing.T) map[command][]genetlink.Message {
				return map[command][]genetlink.Message{cmdGetAddr: {
					endpointReply(t, Endpoint{ID: 1, Addr: v4, Flags: FlagSubflow | FlagImplicit}),
					endpointReply(t, Endpoint{ID: 2, Addr: v6, Port: 443, Flags: FlagSignal | FlagBackup, IfIndex: 12}),
				}}
			},
			want: []Endpoint{
				{ID: 1, Addr: v4, Flags: FlagSubflow | FlagImplicit},
				{ID: 2, Addr: v6, Port: 443, Flags: FlagSignal | FlagBackup, IfIndex: 12},
			},
		},
		{
			golden: "flush",
			call:   func(c *Client) (any, error) { return nil, c.FlushEndpoints() },
		},
		{
			golden: "change_id_backup",
			call:   func(c *Client) (any, error) { return nil, c.SetEndpointFlags(3, FlagBackup) },
		},
		{
			golden: "change_addr_nobackup",
			call: func(c *Client) (any, error) {
				return nil, c.SetEndpointFlagsByAddr(netip.AddrPortFrom(v4, 0), 0)
			},
		},
		{
			golden: "change_addr_port_fullmesh",
			call: func(c *Client) (any, error) {
				return nil, c.SetEndpointFlagsByAddr(netip.AddrPortFrom(v6, 8080), FlagFullmesh)
			},
		},
		{
			golden: "limits_set",
			call:   func(c *Client) (any, error) { return nil, c.SetLimits(Limits{AddAddrAccepted: 2, Subflows: 4}) },
		},
		{
			// Back to back: the limits, then the add, no read-back.
			golden: "limits_set",
			call: func(c *Client) (any, error) {
				limitsErr, createErr := c.SetLimitsAndCreateEndpoint(Limits{AddAddrAccepted: 2, Subflows: 4},
					Endpoint{ID: 3, Addr: v4, Port: 8080, Flags: FlagSignal, IfIndex: 3})
				return nil, errors.Join(limitsErr, createErr)
			},
			then: []string{"add_v4_full"},
		},
		{
			golden: "limits_get",
			call:   func(c *Client) (any, error) { return c.Limits() },
			replies: func(t *testing.T) map[command][]genetlink.Message {
				return map[command][]genetlink.Message{cmdGetLimits: {{
					Header: genetlink.Header{Command: uint8(cmdGetLimits), Version: 1},
					Data:   limitsReplyData(t, Limits{AddAddrAccepted: 2, Subflows: 4}),
				}}}
			},
			want: Limits{AddAddrAccepted: 2, Subflows: 4},
		},
	}

	covered := make(map[string]bool)
	for _, tt := range tests {
		covered[tt.golden] = true
		t.Run(tt.golden, func(t *testing.T) {
			var replies map[command][]genetlink.Message
			if tt.replies != nil {
				replies = tt.replies(t)
			}
			var sent []capturedRequest
			c := newGenltestClient(t, testFamily(), func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
				if nreq.Header.Length == 0 {
					// nltest reads again after a request that got no reply.
					return nil, nil
				}
				sent = append(sent, capturedRequest{greq: greq, nreq: nreq})
				return replies[command(greq.Header.Command)], nil
			})

			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts()...); diff != "" {
				t.Errorf("returned value differs (-want +got):\n%s", diff)
			}

			goldens := append([]string{tt.golden}, tt.then...)
			if len(sent) != len(goldens) {
				t.Fatalf("sent %d requests, want %d (%s)", len(sent), len(goldens), strings.Join(goldens, ", "))
			}
			for i, name := range goldens {
				checkGolden(t, name, sent[i])
			}
		})
	}

	// Every captured request must be checked, so that a new capture cannot
	// be forgotten.
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden requests in testdata/golden")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".hex")
		if !covered[name] {
			t.Errorf("golden request %s is not checked by any test case", f)
		}
	}
	names := slices.Sorted(maps.Keys(covered))
	t.Logf("checked %d golden requests: %s", len(names), strings.Join(names, " "))
}
