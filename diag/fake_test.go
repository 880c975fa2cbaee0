package diag

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The unit tests replay inet_diag replies captured from real connections
// (testdata/capture, written by TestCapture) through a fake transport that
// filters them as the kernel would for each request.

// The capture scenario (see TestCapture): the server's listeners, and the
// bytes echoed on each connection.
const (
	captureMPTCP4    = 5201 // MPTCP, IPv4 only
	captureMPTCP6    = 5202 // MPTCP, IPv6 only
	captureMPTCPDual = 5203 // MPTCP, dual-stack: IPv4 clients get an IPv6 socket with mapped addresses
	capturePlain4    = 5204 // plain TCP, IPv4
	captureBytes     = 64 << 10
)

// captured is one captured reply: the protocol it was dumped for and its
// payload (struct inet_diag_msg and attributes).
type captured struct {
	protocol uint16
	msg      []byte
}

// loadCapture reads testdata/capture/NAME.txt: comment lines starting with
// '#', then one reply per line, "mptcp HEX" or "tcp HEX".
func loadCapture(tb testing.TB, name string) []captured {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", "capture", name+".txt"))
	if err != nil {
		tb.Fatalf("%v (rebuild with: go test -run TestCapture -diag.capture ./diag/, as root)", err)
	}
	defer f.Close()
	var out []captured
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, text, _ := strings.Cut(line, " ")
		msg, err := hex.DecodeString(text)
		if err != nil {
			tb.Fatalf("%s: %q: %v", name, line, err)
		}
		switch kind {
		case "mptcp":
			out = append(out, captured{protoMPTCP, msg})
		case "tcp":
			out = append(out, captured{protoTCP, msg})
		default:
			tb.Fatalf("%s: unknown kind %q", name, kind)
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// fakeTransport answers requests from captured replies, filtered by family,
// protocol and state as the kernel does (by token for exact requests). It
// hands each reply over in a scratch buffer that it overwrites afterwards,
// as the real transport reuses its receive buffer, so a decoder that keeps
// a reference to a reply shows up.
type fakeTransport struct {
	replies []captured
	reqs    []request
	fail    error // returned by every dump when set
	closed  bool
}

func (f *fakeTransport) dump(ctx context.Context, req request, fn func([]byte) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake: %w", err)
	}
	if f.closed {
		return fmt.Errorf("fake: dump after close")
	}
	f.reqs = append(f.reqs, req)
	if f.fail != nil {
		return f.fail
	}
	var scratch []byte
	hand := func(msg []byte) error {
		scratch = append(scratch[:0], msg...)
		err := fn(scratch)
		for i := range scratch {
			scratch[i] = 0xa5
		}
		return err
	}
	for _, r := range f.replies {
		if r.protocol != req.protocol || len(r.msg) < 2 {
			continue
		}
		if req.exact {
			if c, err := decodeConnection(r.msg); err == nil && c.Token == req.token && c.State != StateListen {
				return hand(r.msg)
			}
			continue
		}
		if Family(r.msg[0]) != req.family || !req.states.Has(State(r.msg[1])) {
			continue
		}
		if err := hand(r.msg); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("fake: %w", err)
		}
	}
	if req.exact {
		return fmt.Errorf("fake: no socket with token %08x: %w", req.token, fs.ErrNotExist)
	}
	return nil
}

func (f *fakeTransport) close() error {
	f.closed = true
	return nil
}

// capturedClient returns a Client over the captured replies of host name.
func capturedClient(tb testing.TB, name string) (*Client, *fakeTransport) {
	ft := &fakeTransport{replies: loadCapture(tb, name)}
	return &Client{t: ft}, ft
}

// ssSocket is one socket of ss(8)'s output: its line and the line of
// details under it (-i).
type ssSocket struct {
	state         string
	local, remote netip.AddrPort
	info          string
}

// loadSS reads testdata/capture/NAME.ss: the output of the commands in it,
// each section starting with "$ COMMAND".
func loadSS(tb testing.TB, name string) map[string][]ssSocket {
	tb.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", "capture", name+".ss"))
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string][]ssSocket)
	var cmd string
	for _, line := range strings.Split(string(text), "\n") {
		switch {
		case strings.HasPrefix(line, "$ "):
			cmd = strings.TrimPrefix(line, "$ ")
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "State"):
		case line[0] == ' ' || line[0] == '\t':
			socks := out[cmd]
			if len(socks) == 0 {
				tb.Fatalf("%s: details before any socket: %q", name, line)
			}
			socks[len(socks)-1].info += strings.TrimSpace(line)
		default:
			f := strings.Fields(line)
			if len(f) < 5 {
				tb.Fatalf("%s: cannot parse %q", name, line)
			}
			s := ssSocket{state: f[0], local: parseSSAddr(tb, f[3]), remote: parseSSAddr(tb, f[4])}
			out[cmd] = append(out[cmd], s)
		}
	}
	return out
}

// parseSSAddr parses an address as ss prints it: "192.0.2.1:40000",
// "[2001:db8::1]:40000", "[::ffff:192.0.2.1]:40000", with "%DEVICE" after
// the address of a socket bound to a device, and "*" for wildcards.
func parseSSAddr(tb testing.TB, s string) netip.AddrPort {
	tb.Helper()
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		tb.Fatalf("ss address %q has no port", s)
	}
	host, portText := s[:i], s[i+1:]
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	var port uint64
	if portText != "*" {
		var err error
		if port, err = strconv.ParseUint(portText, 10, 16); err != nil {
			tb.Fatalf("ss address %q: %v", s, err)
		}
	}
	addr := netip.IPv6Unspecified()
	if host != "*" {
		var err error
		if addr, err = netip.ParseAddr(host); err != nil {
			tb.Fatalf("ss address %q: %v", s, err)
		}
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
}

// ssField returns the value of "key:value" in ss details, "" if absent.
func ssField(info, key string) string {
	for _, f := range strings.Fields(info) {
		if v, ok := strings.CutPrefix(f, key+":"); ok {
			return v
		}
	}
	return ""
}
