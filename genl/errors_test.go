//go:build linux

package genl

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// requestMethod is a Client method that sends one request, called with
// arguments the package accepts, so that any error comes from the kernel.
type requestMethod struct {
	name string
	call func(*Client) error
}

func requestMethods() []requestMethod {
	var (
		v4     = netip.MustParseAddr("192.0.2.1")
		local  = netip.MustParseAddrPort("192.0.2.1:40000")
		remote = netip.MustParseAddrPort("198.51.100.2:443")
	)
	const token = 0x0a0b0c0d
	return []requestMethod{
		{"AddEndpoint", func(c *Client) error {
			_, err := c.AddEndpoint(Endpoint{ID: 3, Addr: v4, Flags: FlagSubflow})
			return err
		}},
		{"CreateEndpoint", func(c *Client) error {
			return c.CreateEndpoint(Endpoint{ID: 3, Addr: v4, Flags: FlagSubflow})
		}},
		{"SetLimitsAndCreateEndpoint", func(c *Client) error {
			limitsErr, createErr := c.SetLimitsAndCreateEndpoint(Limits{Subflows: 3}, Endpoint{ID: 3, Addr: v4, Flags: FlagSubflow})
			if limitsErr == nil {
				return errors.New("the limits' refusal is missing")
			}
			return createErr
		}},
		{"DeleteEndpoint", func(c *Client) error { return c.DeleteEndpoint(3) }},
		{"DeleteAddressID0", func(c *Client) error { return c.DeleteAddressID0(v4) }},
		{"FlushEndpoints", func(c *Client) error { return c.FlushEndpoints() }},
		{"SetEndpointFlags", func(c *Client) error { return c.SetEndpointFlags(3, FlagBackup) }},
		{"SetEndpointFlagsByAddr", func(c *Client) error {
			return c.SetEndpointFlagsByAddr(netip.AddrPortFrom(v4, 0), FlagBackup)
		}},
		{"Endpoint", func(c *Client) error {
			_, err := c.Endpoint(3)
			return err
		}},
		{"Endpoints", func(c *Client) error {
			_, err := c.Endpoints()
			return err
		}},
		{"Limits", func(c *Client) error {
			_, err := c.Limits()
			return err
		}},
		{"SetLimits", func(c *Client) error { return c.SetLimits(Limits{AddAddrAccepted: 2, Subflows: 2}) }},
		{"LocalAddresses", func(c *Client) error {
			_, err := c.LocalAddresses(token)
			return err
		}},
		{"LocalAddress", func(c *Client) error {
			_, err := c.LocalAddress(token, 1)
			return err
		}},
		{"Announce", func(c *Client) error { return c.Announce(token, Endpoint{ID: 1, Addr: v4}) }},
		{"Remove", func(c *Client) error { return c.Remove(token, 1) }},
		{"CreateSubflow", func(c *Client) error { return c.CreateSubflow(token, Endpoint{ID: 1, Addr: v4}, remote) }},
		{"DestroySubflow", func(c *Client) error { return c.DestroySubflow(token, local, remote) }},
		{"SetSubflowBackup", func(c *Client) error { return c.SetSubflowBackup(token, local, remote, true) }},
	}
}

// allSentinels are the errors errors.Is is checked against: the package's
// sentinels and the os errors an errno can match.
func allSentinels() map[string]error {
	return map[string]error{
		"ErrNotFound":         ErrNotFound,
		"ErrExists":           ErrExists,
		"ErrIDInUse":          ErrIDInUse,
		"ErrLimit":            ErrLimit,
		"ErrPermission":       ErrPermission,
		"ErrUnavailable":      ErrUnavailable,
		"ErrWrongPathManager": ErrWrongPathManager,
		"ErrUnknownToken":     ErrUnknownToken,
		"ErrInvalid":          ErrInvalid,
		"ErrEventsLost":       ErrEventsLost,
		"os.ErrPermission":    os.ErrPermission,
		"os.ErrExist":         os.ErrExist,
		"os.ErrNotExist":      os.ErrNotExist,
	}
}

// checkSentinels asserts that err matches exactly the sentinels named in want
// among allSentinels.
func checkSentinels(t *testing.T, err error, want ...string) {
	t.Helper()
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		if _, ok := allSentinels()[w]; !ok {
			t.Fatalf("test bug: unknown sentinel %s", w)
		}
		wanted[w] = true
	}
	for name, sentinel := range allSentinels() {
		if got := errors.Is(err, sentinel); got != wanted[name] {
			t.Errorf("errors.Is(err, %s) = %t, want %t; err: %v", name, got, wanted[name], err)
		}
	}
}

// TestKernelErrors runs every request method against every refusal of the
// kernel (KERNEL.md §5 and net/mptcp/pm_*.c) and checks the error the caller
// gets: the right sentinels and no others, the errno, and the kernel's text.
func TestKernelErrors(t *testing.T) {
	const dup = "too many addresses or duplicate one"
	refusals := []struct {
		name  string
		errno unix.Errno
		msg   string
		want  []string
	}{
		{"duplicate address", unix.EEXIST, dup, []string{"ErrExists", "os.ErrExist"}},
		{"ID in use", unix.EBUSY, dup, []string{"ErrIDInUse"}},
		{"too many endpoints", unix.ERANGE, dup, []string{"ErrLimit"}},
		{"address not found", unix.EINVAL, "address not found", []string{"ErrNotFound"}},
		{"limit above maximum", unix.EINVAL, "limit greater than maximum (8)", []string{"ErrLimit", "ErrInvalid"}},
		{"port without signal", unix.EINVAL, "flags must have signal when using port", []string{"ErrInvalid"}},
		{"signal with fullmesh", unix.EINVAL, "flags mustn't have both signal and fullmesh", []string{"ErrInvalid"}},
		{"userspace PM not selected", unix.EINVAL, "invalid request; userspace PM not selected", []string{"ErrWrongPathManager"}},
		{"invalid token", unix.EINVAL, "invalid token", []string{"ErrUnknownToken", "ErrNotFound"}},
		{"no such subflow", unix.ESRCH, "", []string{"ErrNotFound"}},
		{"not permitted", unix.EPERM, "", []string{"ErrPermission", "os.ErrPermission"}},
		{"not supported", unix.EOPNOTSUPP, "", []string{"ErrUnavailable"}},
		{"address and ID mismatch", unix.EINVAL, "did not match address and id", []string{"ErrIDInUse"}},
		{"EINVAL without text", unix.EINVAL, "", []string{"ErrInvalid"}},
	}

	for _, m := range requestMethods() {
		for _, r := range refusals {
			t.Run(m.name+"/"+r.name, func(t *testing.T) {
				requests := 0
				c := newFakeKernelClient(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
					requests++
					return nil, kernelError{errno: r.errno, msg: r.msg}
				})

				err := m.call(c)
				if err == nil {
					t.Fatal("got no error, want the kernel's refusal")
				}
				// SetLimitsAndCreateEndpoint sends its second request
				// before it reads the answer to its first.
				want := 1
				if m.name == "SetLimitsAndCreateEndpoint" {
					want = 2
				}
				if requests != want {
					t.Errorf("sent %d requests, want %d", requests, want)
				}
				checkSentinels(t, err, r.want...)
				if !errors.Is(err, r.errno) {
					t.Errorf("errors.Is(err, %v) = false, want true; err: %v", r.errno, err)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err is %T, want it to wrap *genl.Error: %v", err, err)
				}
				if e.Message != r.msg {
					t.Errorf("Error.Message = %q, want the kernel's text %q", e.Message, r.msg)
				}
				if r.msg != "" && !strings.Contains(err.Error(), r.msg) {
					t.Errorf("err.Error() = %q, want it to contain the kernel's text %q", err.Error(), r.msg)
				}
				if e.Op == "" || !strings.Contains(err.Error(), e.Op) {
					t.Errorf("err.Error() = %q does not name the operation %q", err.Error(), e.Op)
				}
			})
		}
	}
}

// TestAddEndpointReadBack checks AddEndpoint's second step: after the kernel
// accepted the endpoint, it is looked up in a dump.
func TestAddEndpointReadBack(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name      string
		dump      func(t *testing.T) ([]genetlink.Message, error)
		want      Endpoint
		wantErrIs []string // sentinels; nil: no error
	}{
		{
			name: "kernel chose the ID",
			dump: func(t *testing.T) ([]genetlink.Message, error) {
				return []genetlink.Message{
					endpointReply(t, Endpoint{ID: 1, Addr: netip.MustParseAddr("198.51.100.1")}),
					endpointReply(t, Endpoint{ID: 9, Addr: addr, Flags: FlagSubflow}),
				}, nil
			},
			want: Endpoint{ID: 9, Addr: addr, Flags: FlagSubflow},
		},
		{
			name: "endpoint missing from the dump",
			dump: func(t *testing.T) ([]genetlink.Message, error) {
				return []genetlink.Message{endpointReply(t, Endpoint{ID: 1, Addr: netip.MustParseAddr("198.51.100.1")})}, nil
			},
			wantErrIs: []string{"ErrNotFound"},
		},
		{
			name: "dump refused",
			dump: func(*testing.T) ([]genetlink.Message, error) {
				return nil, kernelError{errno: unix.EPERM}
			},
			wantErrIs: []string{"ErrPermission", "os.ErrPermission"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cmds []command
			c := newFakeKernelClient(t, func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
				cmd := command(greq.Header.Command)
				cmds = append(cmds, cmd)
				switch {
				case cmd == cmdAddAddr:
					return nil, nil
				case cmd == cmdGetAddr && nreq.Header.Flags&netlink.Dump == netlink.Dump:
					return tt.dump(t)
				}
				t.Errorf("unexpected request: command %d flags %s", cmd, nreq.Header.Flags)
				return nil, kernelError{errno: unix.EINVAL}
			})
			got, err := c.AddEndpoint(Endpoint{Addr: addr, Flags: FlagSubflow})
			if want := []command{cmdAddAddr, cmdGetAddr}; !slices.Equal(cmds, want) {
				t.Errorf("commands sent = %v, want %v", cmds, want)
			}
			if tt.wantErrIs == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got != tt.want {
					t.Errorf("AddEndpoint = %v, want %v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("AddEndpoint = %v, want an error", got)
			}
			checkSentinels(t, err, tt.wantErrIs...)
		})
	}
}

// TestValidation checks that invalid arguments are refused with ErrInvalid
// before anything is sent.
func TestValidation(t *testing.T) {
	var (
		v4     = netip.MustParseAddr("192.0.2.1")
		local  = netip.MustParseAddrPort("192.0.2.1:40000")
		remote = netip.MustParseAddrPort("198.51.100.2:443")
	)
	const token = 0x0a0b0c0d
	tests := []struct {
		name string
		call func(*Client) error
	}{
		{"Endpoint ID 0", func(c *Client) error { _, err := c.Endpoint(0); return err }},
		{"AddEndpoint without address", func(c *Client) error {
			_, err := c.AddEndpoint(Endpoint{ID: 1, Flags: FlagSignal})
			return err
		}},
		{"AddEndpoint with implicit", func(c *Client) error {
			_, err := c.AddEndpoint(Endpoint{Addr: v4, Flags: FlagSubflow | FlagImplicit})
			return err
		}},
		{"AddEndpoint negative ifindex", func(c *Client) error {
			_, err := c.AddEndpoint(Endpoint{Addr: v4, IfIndex: -1})
			return err
		}},
		{"CreateEndpoint ID 0", func(c *Client) error { return c.CreateEndpoint(Endpoint{Addr: v4, Flags: FlagSubflow}) }},
		{"SetLimitsAndCreateEndpoint ID 0", func(c *Client) error {
			_, err := c.SetLimitsAndCreateEndpoint(Limits{Subflows: 3}, Endpoint{Addr: v4, Flags: FlagSubflow})
			return err
		}},
		{"CreateEndpoint without address", func(c *Client) error { return c.CreateEndpoint(Endpoint{ID: 1, Flags: FlagSignal}) }},
		{"DeleteEndpoint ID 0", func(c *Client) error { return c.DeleteEndpoint(0) }},
		{"DeleteAddressID0 without address", func(c *Client) error { return c.DeleteAddressID0(netip.Addr{}) }},
		{"SetEndpointFlags ID 0", func(c *Client) error { return c.SetEndpointFlags(0, FlagBackup) }},
		{"SetEndpointFlagsByAddr without address", func(c *Client) error {
			return c.SetEndpointFlagsByAddr(netip.AddrPort{}, FlagBackup)
		}},
		{"Announce ID 0", func(c *Client) error { return c.Announce(token, Endpoint{Addr: v4}) }},
		{"Announce without address", func(c *Client) error { return c.Announce(token, Endpoint{ID: 1}) }},
		{"Announce negative ifindex", func(c *Client) error {
			return c.Announce(token, Endpoint{ID: 1, Addr: v4, IfIndex: -1})
		}},
		{"CreateSubflow negative ifindex", func(c *Client) error {
			return c.CreateSubflow(token, Endpoint{ID: 1, Addr: v4, IfIndex: -1}, remote)
		}},
		{"CreateSubflow without local address", func(c *Client) error {
			return c.CreateSubflow(token, Endpoint{ID: 1}, remote)
		}},
		{"CreateSubflow without remote address", func(c *Client) error {
			return c.CreateSubflow(token, Endpoint{ID: 1, Addr: v4}, netip.AddrPort{})
		}},
		{"CreateSubflow without remote port", func(c *Client) error {
			return c.CreateSubflow(token, Endpoint{ID: 1, Addr: v4}, netip.AddrPortFrom(remote.Addr(), 0))
		}},
		{"DestroySubflow without local port", func(c *Client) error {
			return c.DestroySubflow(token, netip.AddrPortFrom(local.Addr(), 0), remote)
		}},
		{"DestroySubflow without remote port", func(c *Client) error {
			return c.DestroySubflow(token, local, netip.AddrPortFrom(remote.Addr(), 0))
		}},
		{"DestroySubflow without local address", func(c *Client) error {
			return c.DestroySubflow(token, netip.AddrPort{}, remote)
		}},
		{"DestroySubflow without remote address", func(c *Client) error {
			return c.DestroySubflow(token, local, netip.AddrPort{})
		}},
		{"SetSubflowBackup without local address", func(c *Client) error {
			return c.SetSubflowBackup(token, netip.AddrPort{}, remote, true)
		}},
		{"SetSubflowBackup without remote port", func(c *Client) error {
			return c.SetSubflowBackup(token, local, netip.AddrPortFrom(remote.Addr(), 0), false)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newGenltestClient(t, testFamily(), func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
				t.Errorf("request sent for invalid input: command %d, flags %s", greq.Header.Command, nreq.Header.Flags)
				return nil, nil
			})
			err := tt.call(c)
			if err == nil {
				t.Fatal("got no error, want ErrInvalid")
			}
			checkSentinels(t, err, "ErrInvalid")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err is %T, want it to wrap *genl.Error: %v", err, err)
			}
			if e.Message != "" {
				t.Errorf("Error.Message = %q, want none: the kernel was not asked", e.Message)
			}
		})
	}
}

// TestInitClientFamilyMissing checks how a failure to resolve the family is
// reported: a kernel without mptcp_pm (ENOENT) is ErrUnavailable; other
// failures keep their own meaning.
func TestInitClientFamilyMissing(t *testing.T) {
	tests := []struct {
		name  string
		errno unix.Errno
		want  []string
	}{
		{"no such family", unix.ENOENT, []string{"ErrUnavailable", "os.ErrNotExist"}},
		{"other failure", unix.EIO, nil},
		{"not permitted", unix.EPERM, []string{"ErrPermission", "os.ErrPermission"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			conn := genltest.Dial(func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
				calls++
				if nreq.Header.Type != unix.GENL_ID_CTRL || greq.Header.Command != unix.CTRL_CMD_GETFAMILY {
					t.Errorf("unexpected request: type %#x command %d", nreq.Header.Type, greq.Header.Command)
				}
				return nil, genltest.Error(int(tt.errno))
			})
			c, err := initClient(conn, noDial(t), buildOptions(nil))
			if err == nil {
				_ = c.Close()
				t.Fatal("initClient succeeded, want an error")
			}
			if c != nil {
				t.Errorf("initClient returned a client with its error")
			}
			if calls != 1 {
				t.Errorf("sent %d requests, want 1 (GETFAMILY)", calls)
			}
			checkSentinels(t, err, tt.want...)
			if !errors.Is(err, tt.errno) {
				t.Errorf("errors.Is(err, %v) = false; err: %v", tt.errno, err)
			}
			if !strings.Contains(err.Error(), FamilyName) {
				t.Errorf("err.Error() = %q, want it to name the family %q", err.Error(), FamilyName)
			}
		})
	}

	// The same through the fake kernel, whose controller knows no mptcp_pm.
	t.Run("fake kernel without the family", func(t *testing.T) {
		other := testFamily()
		other.Name = "nl80211"
		_, err := initClient(dialFakeKernel(t, other, nil), noDial(t), buildOptions(nil))
		checkSentinels(t, err, "ErrUnavailable", "os.ErrNotExist")
	})
}

// TestInitClientFamily checks what initClient resolves.
func TestInitClientFamily(t *testing.T) {
	tests := []struct {
		name       string
		groups     []genetlink.MulticastGroup
		wantEvents uint32
	}{
		{"both groups", testFamily().Groups, 9},
		{"events group only, other ID", []genetlink.MulticastGroup{{ID: 31, Name: EventsGroupName}}, 31},
		{"no events group", []genetlink.MulticastGroup{{ID: 8, Name: CommandsGroupName}}, 0},
		{"no groups", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFamily()
			f.Groups = tt.groups
			c, err := initClient(dialFakeKernel(t, f, nil), noDial(t), buildOptions(nil))
			if err != nil {
				t.Fatalf("initClient: %v", err)
			}
			defer c.Close()
			if got := c.Family(); got.ID != f.ID || got.Version != f.Version || got.Name != f.Name {
				t.Errorf("Family() = %+v, want ID %#x version %d name %q", got, f.ID, f.Version, f.Name)
			}
			if c.events != tt.wantEvents {
				t.Errorf("events group = %d, want %d", c.events, tt.wantEvents)
			}
		})
	}
}
