package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/tests/load"
)

// startServe runs `mptcpd-load serve` (or `recv --listen`) in the test's
// process on a free loopback port and returns the address and the
// command's result, which arrives when it exits.
func startServe(t *testing.T, args ...string) (addr string, stdout *bytes.Buffer, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	stdout = &bytes.Buffer{}
	errc := make(chan error, 1)
	go func() {
		err := run(ctx, append(args, "--listen", "127.0.0.1:0", "--json"), stdout, pw)
		_ = pw.Close()
		errc <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("no listening line from %q: %q, %v", args, line, err)
	}
	return addr, stdout, errc
}

// runJSON runs a client command and decodes its one JSON report.
func runJSON(t *testing.T, args ...string) (load.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, append(args, "--json"), &out, &errOut)
	var r load.Report
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
		t.Fatalf("%q printed %q (stderr %q, error %v): %v", args, out.String(), errOut.String(), err, jerr)
	}
	return r, err
}

func TestUpload(t *testing.T) {
	t.Parallel()
	addr, srvOut, done := startServe(t, "serve", "--max-conns", "1", "--size", "4000", "--seed", "5")
	r, err := runJSON(t, "send", "--connect", addr, "--bytes", "4000000", "--size", "4000", "--seed", "5")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if r.Peer == nil || r.Peer.SHA256 != r.SHA256 || r.Peer.Records != 1000 || r.Records != 1000 {
		t.Fatalf("send report %+v, peer %+v: want 1000 records on both ends with equal hashes", r, r.Peer)
	}
	var srv load.Report
	if err := json.Unmarshal(srvOut.Bytes(), &srv); err != nil || srv.SHA256 != r.SHA256 {
		t.Errorf("serve printed %q (%v), want the receiver's report", srvOut.String(), err)
	}
}

func TestDownload(t *testing.T) {
	t.Parallel()
	addr, _, done := startServe(t, "serve", "--download", "--records", "3000", "--max-conns", "1")
	r, err := runJSON(t, "recv", "--connect", addr, "--records", "3000")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve --download: %v", err)
	}
	if r.Role != "recv" || r.Records != 3000 || r.Error != "" {
		t.Errorf("recv report %+v, want 3000 good records", r)
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	addr, _, done := startServe(t, "serve", "--echo", "--max-conns", "1")
	r, err := runJSON(t, "send", "--connect", addr, "--records", "2000", "--echo")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve --echo: %v", err)
	}
	if r.Echo == nil || r.Echo.SHA256 != r.SHA256 || r.Echo.Records != 2000 {
		t.Errorf("send --echo report %+v, echo %+v: want 2000 records back, same hash", r, r.Echo)
	}
}

// TestMismatchFails: a receiver with another seed rejects the stream,
// and both commands fail.
func TestMismatchFails(t *testing.T) {
	t.Parallel()
	addr, _, done := startServe(t, "recv", "--seed", "2")
	r, err := runJSON(t, "send", "--connect", addr, "--records", "100")
	if err == nil || r.Peer == nil || !strings.Contains(r.Peer.Error, "corrupt") {
		t.Errorf("send to a receiver with another seed: %v, report %+v; want a failure naming corruption", err, r)
	}
	if err := <-done; err == nil {
		t.Error("recv with another seed succeeded")
	}
}

func TestFlagErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"send"},
		{"send", "--connect", "127.0.0.1:1"},
		{"send", "--connect", "127.0.0.1:1", "--records", "1", "--bytes", "1k"},
		{"send", "--connect", "127.0.0.1:1", "--bytes", "1000"},
		{"send", "--connect", "127.0.0.1:1", "--records", "1", "--rate", "5mbps"},
		{"send", "--connect", "127.0.0.1:1", "--records", "1", "--size", "16"},
		{"send", "--connect", "127.0.0.1:1", "--records", "1", "--socks5-auth", "u:p"},
		{"send", "--connect", "127.0.0.1:1", "--records", "1", "--socks5", "127.0.0.1:2", "--socks5-auth", "nocolon"},
		{"recv"},
		{"recv", "--listen", ":0", "--connect", "127.0.0.1:1"},
		{"serve"},
		{"serve", "--listen", ":0", "--download"},
		{"serve", "--listen", ":0", "--rate", "1m"},
		{"serve", "--listen", ":0", "--echo", "--download", "--records", "1"},
		{"send", "--connect", "127.0.0.1:1", "--records", "1", "extra"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out); err == nil {
			t.Errorf("mptcpd-load %q succeeded", args)
		}
	}
}
