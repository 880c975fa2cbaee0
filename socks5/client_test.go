package socks5

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/mptcpd/mptcpd/relay"
)

// originName is the name clients ask for; only the server's Connect
// function knows where it is (.test names never resolve), so a client
// reaches it only if the name is passed on unresolved.
const originName = "origin.test"

// origin is an HTTP server on loopback: GET /blob sends blob, POST /sum
// answers the hex SHA-256 of the body.
type origin struct {
	addr netip.AddrPort
	blob []byte
}

func startOrigin(t *testing.T) *origin {
	t.Helper()
	o := &origin{blob: make([]byte, 4<<20)}
	_, _ = rand.Read(o.blob)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(o.blob)))
		_, _ = w.Write(o.blob)
	})
	mux.HandleFunc("POST /sum", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	o.addr = netip.MustParseAddrPort(ln.Addr().String())
	return o
}

// connector is a Connect function in the role of the converter: it
// resolves originName itself and dials plainly. It records what it was
// asked for.
func (o *origin) connector(targets chan<- Target) func(ctx context.Context, t Target) (relay.HalfCloser, netip.AddrPort, error) {
	return func(ctx context.Context, t Target) (relay.HalfCloser, netip.AddrPort, error) {
		targets <- t
		dst := netip.AddrPortFrom(t.Addr, t.Port)
		if t.Host != "" {
			if t.Host != originName {
				return nil, netip.AddrPort{}, &net.DNSError{Err: "no such host", Name: t.Host, IsNotFound: true}
			}
			dst = netip.AddrPortFrom(o.addr.Addr(), t.Port)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", dst.String())
		if err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("dialing %s: %w", t, err)
		}
		return c.(*net.TCPConn), c.LocalAddr().(*net.TCPAddr).AddrPort(), nil
	}
}

// curl runs curl with args and a clean environment (no proxy variables),
// and returns its standard output.
func curl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is missing under CI (scripts/install-deps.sh installs it)")
		}
		t.Skip("skipping: needs curl (apt-get install curl, or scripts/install-deps.sh)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"--silent", "--show-error", "--fail", "--max-time", "10"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("curl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// curlProxyError is curl's exit status for a proxy's refusal
// (CURLE_PROXY).
const curlProxyError = 97

// exitCode returns the exit status in a curl error, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func oneTarget(t *testing.T, targets <-chan Target, want Target) {
	t.Helper()
	select {
	case got := <-targets:
		if got != want {
			t.Errorf("Connect got %+v, want %+v", got, want)
		}
	default:
		t.Errorf("Connect was not called (want %+v)", want)
	}
	select {
	case got := <-targets:
		t.Errorf("Connect called again, for %+v", got)
	default:
	}
}

// TestCurl: curl, unmodified, downloads and uploads through the server, in
// both of its SOCKS5 modes: --socks5-hostname passes the name on (which
// only Connect can resolve), --socks5 resolves it and sends the address.
func TestCurl(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	o := startOrigin(t)
	port := o.addr.Port()
	upload := filepath.Join(t.TempDir(), "upload")
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(upload, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	byName := Target{Host: originName, Port: port}
	byAddr := Target{Addr: o.addr.Addr(), Port: port}

	for _, tc := range []struct {
		name   string
		users  map[string]string
		args   []string // before the URL
		host   string   // in the URL
		target Target
	}{
		{"socks5-hostname", nil, []string{"--socks5-hostname"}, originName, byName},
		{"socks5", nil, []string{"--socks5"}, o.addr.Addr().String(), byAddr},
		{"socks5-hostname with password", map[string]string{"alice": "s3cret"}, []string{"--proxy-user", "alice:s3cret", "--socks5-hostname"}, originName, byName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets := make(chan Target, 10)
			addr := serve(t, &Server{Users: tc.users, Connect: o.connector(targets)})
			base := "http://" + net.JoinHostPort(tc.host, strconv.Itoa(int(port)))

			got, err := curl(t, append(tc.args, addr, base+"/blob")...)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(o.blob) {
				t.Errorf("download: got %d bytes with another SHA-256 than the %d served", len(got), len(o.blob))
			}
			oneTarget(t, targets, tc.target)

			got, err = curl(t, append(tc.args, addr, "--data-binary", "@"+upload, base+"/sum")...)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != hex.EncodeToString(sum[:]) {
				t.Errorf("upload: the server received data with SHA-256 %s, want %x", got, sum)
			}
			oneTarget(t, targets, tc.target)
		})
	}
}

// TestCurlRefused: curl reports the server's refusals: a wrong password,
// and a name Connect cannot resolve ("host unreachable").
func TestCurlRefused(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	o := startOrigin(t)
	targets := make(chan Target, 10)
	addr := serve(t, &Server{Users: map[string]string{"alice": "s3cret"}, Connect: o.connector(targets)})
	url := "http://" + net.JoinHostPort(originName, strconv.Itoa(int(o.addr.Port()))) + "/blob"

	_, err := curl(t, "--proxy-user", "alice:wrong", "--socks5-hostname", addr, url)
	if exitCode(err) != curlProxyError || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("curl with a wrong password: %v, want exit status 97 and the user rejected", err)
	}
	select {
	case got := <-targets:
		t.Errorf("Connect called for %+v after a failed authentication", got)
	default:
	}

	_, err = curl(t, "--proxy-user", "alice:s3cret", "--socks5-hostname", addr, "http://nowhere.test/")
	if exitCode(err) != curlProxyError || !strings.Contains(err.Error(), "(4)") {
		t.Errorf("curl to a name Connect cannot resolve: %v, want reply 4 (host unreachable)", err)
	}
	oneTarget(t, targets, Target{Host: "nowhere.test", Port: 80})
}

// TestGoClient: golang.org/x/net/proxy's SOCKS5 client, with a password,
// reaches an echo server by a name only Connect knows, and learns the
// bound address.
func TestGoClient(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	echo := echoServer(t)
	o := &origin{addr: echo}
	targets := make(chan Target, 10)
	addr := serve(t, &Server{Users: map[string]string{"bob": "pw"}, Connect: o.connector(targets)})

	d, err := proxy.SOCKS5("tcp", addr, &proxy.Auth{User: "bob", Password: "pw"}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", net.JoinHostPort(originName, strconv.Itoa(int(echo.Port()))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	oneTarget(t, targets, Target{Host: originName, Port: echo.Port()})
	if b, ok := c.(interface{ BoundAddr() net.Addr }); !ok {
		t.Errorf("the client's connection (%T) has no BoundAddr", c)
	} else if bound, err := netip.ParseAddrPort(b.BoundAddr().String()); err != nil || bound.Addr() != echo.Addr() || bound.Port() == 0 {
		t.Errorf("bound address %v, want Connect's local address %v:port", b.BoundAddr(), echo.Addr())
	}

	data := make([]byte, 2<<20)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		errc <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Error("echo: SHA-256 differs from what was sent")
	}

	// The same client is told why a target cannot be reached.
	_, err = d.(proxy.ContextDialer).DialContext(ctx, "tcp", "nowhere.test:80")
	if err == nil || !strings.Contains(err.Error(), "host unreachable") {
		t.Errorf("dialing a name Connect cannot resolve: %v, want host unreachable", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("error %T, want *net.OpError", err)
	}
}
