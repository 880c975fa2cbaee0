// Command mptcpd-load sends and receives load-test traffic: fixed-size,
// timestamped, verifiable records (see package
// github.com/mptcpd/mptcpd/tests/load for the format), and reports goodput,
// the SHA-256 of the stream, the longest stall and latency percentiles.
//
//	mptcpd-load send  --connect ADDR [--socks5 PROXY] [--records N | --bytes N | --duration D] [--rate R] [--echo]
//	mptcpd-load recv  (--listen ADDR | --connect ADDR [--socks5 PROXY]) [--records N | --bytes N] [--event-after D]
//	mptcpd-load serve --listen ADDR [--download [--records N | --bytes N | --duration D] [--rate R] | --echo] [--max-conns N]
//
// Upload: `serve` (or `recv --listen`) on one side, `send` on the other.
// Download: `serve --download` on one side, `recv --connect` on the other.
// Round trip: `serve --echo` and `send --echo`, which checks the echoed
// records too (their latency is the round trip).
//
// Both ends must use the same --size and --seed. At the end of the stream
// the receiving end sends its report back as one line of JSON and closes,
// so the sender prints both ends' figures. A listening command writes
// "listening on ADDR" to standard error once it accepts connections, and
// keeps listening until its transfers end, so that an MPTCP client's
// additional subflows can join.
// Reports go to standard output, one line each, as JSON with --json. The
// exit status is non-zero if a transfer failed, including any record that
// did not check out.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd/mptcpd/tests/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mptcpd-load:", err)
		os.Exit(1)
	}
}

const usage = `usage: mptcpd-load send|recv|serve [flags]; mptcpd-load COMMAND -h for the flags`

// options are the flags of every command.
type options struct {
	connect, listen, local, socks5, socks5Auth string
	size                                       int
	seed                                       uint64
	records                                    int64
	bytes, rate                                string
	duration, eventAfter, bin, timeout         time.Duration
	mptcp, json, echo, download                bool
	maxConns                                   int

	// Derived.
	nRecords int64
	rateBps  float64
	auth     *load.SOCKS5Auth
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd := args[0]
	if cmd != "send" && cmd != "recv" && cmd != "serve" {
		if cmd == "-h" || cmd == "--help" || cmd == "help" {
			fmt.Fprintln(stdout, usage)
			return nil
		}
		return fmt.Errorf("unknown command %q; %s", cmd, usage)
	}
	var o options
	fs := flag.NewFlagSet("mptcpd-load "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.size, "size", load.DefaultSize, "record size in `bytes` (both ends alike)")
	fs.Uint64Var(&o.seed, "seed", 1, "pattern seed (both ends alike)")
	fs.BoolVar(&o.mptcp, "mptcp", false, "use MPTCP sockets (falls back to TCP if the peer lacks it)")
	fs.BoolVar(&o.json, "json", false, "print reports as JSON")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0: never)")
	if cmd != "serve" {
		fs.StringVar(&o.connect, "connect", "", "connect to `host:port`")
		fs.StringVar(&o.local, "local", "", "connect from this local `address`")
		fs.StringVar(&o.socks5, "socks5", "", "connect through the SOCKS5 proxy at `host:port` (CONNECT)")
		fs.StringVar(&o.socks5Auth, "socks5-auth", "", "SOCKS5 `user:password`")
	}
	if cmd != "send" {
		fs.StringVar(&o.listen, "listen", "", "accept connections on `host:port`")
	}
	fs.Int64Var(&o.records, "records", 0, "number of records to send, or expected")
	fs.StringVar(&o.bytes, "bytes", "", "bytes to send, or expected (a whole number of records; units k, m, g, KiB, MB…)")
	if cmd != "recv" {
		fs.DurationVar(&o.duration, "duration", 0, "send for this long")
		fs.StringVar(&o.rate, "rate", "", "send at this rate in bits/s (e.g. 50mbit; default: as fast as possible)")
		fs.BoolVar(&o.echo, "echo", false, map[string]string{
			"send":  "the peer echoes: receive and check the echoed records",
			"serve": "echo what each client sends",
		}[cmd])
	}
	if cmd != "send" {
		fs.DurationVar(&o.eventAfter, "event-after", 0, "report the time to recover to 80 % of the later rate after an event this long after the first byte")
		fs.DurationVar(&o.bin, "bin", load.DefaultBin, "timeline bin width")
	}
	if cmd == "serve" {
		fs.BoolVar(&o.download, "download", false, "send records to each client instead of receiving")
		fs.IntVar(&o.maxConns, "max-conns", 0, "exit after this many connections (0: serve until stopped)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (all options are flags)", fs.Args())
	}
	if err := o.validate(cmd); err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	out := &printer{w: stdout, json: o.json}
	switch cmd {
	case "send":
		c, err := o.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		return out.print(sendFlow(ctx, c, &o))
	case "recv":
		if o.connect != "" {
			c, err := o.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			return out.print(recvFlow(ctx, c, &o))
		}
		o.maxConns = 1
	}
	return serve(ctx, &o, out, stderr)
}

func (o *options) validate(cmd string) error {
	if o.size < load.MinSize || o.size > load.MaxSize {
		return fmt.Errorf("--size %d out of range: want %d to %d", o.size, load.MinSize, load.MaxSize)
	}
	switch {
	case cmd == "send" && o.connect == "":
		return errors.New("send needs --connect")
	case cmd == "serve" && o.listen == "":
		return errors.New("serve needs --listen")
	case cmd == "recv" && (o.listen == "") == (o.connect == ""):
		return errors.New("recv needs exactly one of --listen and --connect")
	case o.socks5 != "" && o.connect == "":
		return errors.New("--socks5 needs --connect (the target to ask the proxy for)")
	case o.socks5Auth != "" && o.socks5 == "":
		return errors.New("--socks5-auth needs --socks5")
	case o.echo && o.download:
		return errors.New("--echo and --download exclude each other")
	case o.records < 0:
		return fmt.Errorf("--records %d is negative", o.records)
	case o.records > 0 && o.bytes != "":
		return errors.New("--records and --bytes exclude each other")
	case o.duration < 0 || o.eventAfter < 0 || o.timeout < 0 || o.bin < 0:
		return errors.New("durations must not be negative")
	case o.maxConns < 0:
		return fmt.Errorf("--max-conns %d is negative", o.maxConns)

	}
	o.nRecords = o.records
	if o.bytes != "" {
		n, err := load.ParseBytes(o.bytes)
		if err != nil {
			return fmt.Errorf("--bytes: %w", err)
		}
		if n%int64(o.size) != 0 {
			return fmt.Errorf("--bytes %d is not a whole number of %d-byte records", n, o.size)
		}
		o.nRecords = n / int64(o.size)
	}
	if o.rate != "" {
		r, err := load.ParseRate(o.rate)
		if err != nil {
			return fmt.Errorf("--rate: %w", err)
		}
		o.rateBps = r
	}
	sends := cmd == "send" || (cmd == "serve" && o.download)
	if sends && o.nRecords == 0 && o.duration == 0 {
		return errors.New("say how much to send: --records, --bytes or --duration")
	}
	if !sends && (o.duration > 0 || o.rateBps > 0) {
		return errors.New("--duration and --rate are for the sending side")
	}
	if o.socks5Auth != "" {
		user, pass, ok := strings.Cut(o.socks5Auth, ":")
		if !ok || user == "" || pass == "" || len(user) > 255 || len(pass) > 255 {
			return errors.New("--socks5-auth must be user:password, each 1 to 255 bytes")
		}
		o.auth = &load.SOCKS5Auth{User: user, Password: pass}
	}
	return nil
}

func (o *options) sendConfig() load.SendConfig {
	return load.SendConfig{Size: o.size, Seed: o.seed, Records: o.nRecords, Duration: o.duration, Rate: o.rateBps}
}

func (o *options) recvConfig(expected int64) load.RecvConfig {
	return load.RecvConfig{Size: o.size, Seed: o.seed, Records: expected, Bin: o.bin}
}

func (o *options) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	d.SetMultipathTCP(o.mptcp)
	if o.local != "" {
		a, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(o.local, "0"))
		if err != nil {
			return nil, fmt.Errorf("--local %q: %w", o.local, err)
		}
		d.LocalAddr = a
	}
	var c net.Conn
	var err error
	if o.socks5 != "" {
		c, err = load.DialSOCKS5(ctx, d, o.socks5, o.connect, o.auth)
	} else if c, err = d.DialContext(ctx, "tcp", o.connect); err != nil {
		err = fmt.Errorf("connecting to %s: %w", o.connect, err)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// mptcpOf reports whether c is an MPTCP connection, when it can tell.
func mptcpOf(c net.Conn) *bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	m, err := tc.MultipathTCP()
	if err != nil {
		return nil
	}
	return &m
}

// sendFlow sends the records on c, and reads back the echo or the
// peer's report.
func sendFlow(ctx context.Context, c net.Conn, o *options) load.Report {
	type back struct {
		r   *load.Report
		err error
	}
	backc := make(chan back, 1)
	go func() {
		if o.echo {
			// The echo is as long as what was sent, which only the
			// sender knows in advance when counting records.
			st, err := load.Receive(ctx, c, o.recvConfig(o.nRecords))
			r := st.Report()
			if err != nil {
				r.Error = err.Error()
			}
			backc <- back{&r, err}
			return
		}
		r, err := readReport(c)
		backc <- back{r, err}
	}()
	st, err := load.Send(ctx, c, o.sendConfig())
	rep := st.Report()
	rep.MPTCP = mptcpOf(c)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if !o.echo {
		// The peer reports once it has read everything; allow it the
		// time to drain the buffers on a slow path.
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	}
	var b back
	select {
	case b = <-backc:
	case <-ctx.Done():
		_ = c.SetReadDeadline(time.Unix(1, 0))
		b = <-backc
	}
	if o.echo {
		rep.Echo = b.r
		if b.err == nil && b.r.SHA256 != rep.SHA256 {
			b.r.Error = "the echoed stream differs from the one sent"
		}
		if b.r.Error != "" {
			rep.Error = "echo: " + b.r.Error
		}
		return rep
	}
	rep.Peer = b.r
	if b.err != nil {
		rep.Error = fmt.Sprintf("no report from the peer: %v", b.err)
	} else if b.r != nil && b.r.Error != "" {
		rep.Error = "peer: " + b.r.Error
	} else if b.r != nil && b.r.SHA256 != rep.SHA256 {
		rep.Error = "the peer received another stream than the one sent (SHA-256 differs)"
	}
	return rep
}

// readReport reads the peer's report: one line of JSON, then the end of
// the stream. A peer that sends nothing gives no report and no error.
func readReport(c net.Conn) (*load.Report, error) {
	line, err := bufio.NewReader(io.LimitReader(c, 64<<10)).ReadBytes('\n')
	if len(line) == 0 && errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the peer's report: %w", err)
	}
	var r load.Report
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("the peer's report: %w", err)
	}
	return &r, nil
}

// recvFlow receives the stream on c, then sends the report back.
func recvFlow(ctx context.Context, c net.Conn, o *options) load.Report {
	st, err := load.Receive(ctx, c, o.recvConfig(o.nRecords))
	rep := st.Report()
	rep.MPTCP = mptcpOf(c)
	if err != nil {
		rep.Error = err.Error()
	}
	if o.eventAfter > 0 && st.Bytes > 0 {
		if d, err := st.Recovery(st.Start.Add(o.eventAfter)); err == nil {
			v := float64(d) / float64(time.Millisecond)
			rep.RecoveryMs = &v
		} else {
			rep.RecoveryError = err.Error()
		}
	}
	if line, err := json.Marshal(rep); err == nil {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(append(line, '\n'))
	}
	return rep
}

// echoFlow copies what c sends back to it.
func echoFlow(ctx context.Context, c net.Conn) load.Report {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	n, err := io.Copy(c, c)
	rep := load.Report{Role: "echo", Bytes: n, MPTCP: mptcpOf(c)}
	if err != nil {
		rep.Error = err.Error()
	} else if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			rep.Error = err.Error()
		}
	}
	return rep
}

func serve(ctx context.Context, o *options, out *printer, stderr io.Writer) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(o.mptcp)
	ln, err := lc.Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	defer ln.Close()
	fmt.Fprintf(stderr, "listening on %s\n", ln.Addr())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		n      int
	)
	for ; o.maxConns == 0 || n < o.maxConns; n++ {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wg.Wait()
			return fmt.Errorf("accepting on %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			var rep load.Report
			switch {
			case o.echo:
				rep = echoFlow(ctx, c)
			case o.download:
				rep = sendFlow(ctx, c, o)
			default:
				rep = recvFlow(ctx, c, o)
			}
			mu.Lock()
			defer mu.Unlock()
			if out.print(rep) != nil {
				failed++
			}
		}()
	}
	// The listener stays open until the transfers end: an MPTCP peer's
	// additional subflows join through it.
	wg.Wait()
	_ = ln.Close()
	if failed > 0 {
		return fmt.Errorf("%d of %d transfers failed", failed, n)
	}
	if o.maxConns > 0 && n < o.maxConns {
		return fmt.Errorf("stopped after %d of %d connections: %w", n, o.maxConns, context.Cause(ctx))
	}
	return nil
}

// printer prints reports, one line each.
type printer struct {
	w    io.Writer
	json bool
}

// print prints r and returns an error if the transfer failed.
func (p *printer) print(r load.Report) error {
	if p.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(p.w, "%s\n", b)
	} else {
		fmt.Fprintln(p.w, r.String())
		if r.Peer != nil {
			fmt.Fprintln(p.w, "  peer", r.Peer.String())
		}
		if r.Echo != nil {
			fmt.Fprintln(p.w, "  echo", r.Echo.String())
		}
	}
	if r.Error != "" {
		return fmt.Errorf("%s failed: %s", r.Role, r.Error)
	}
	return nil
}
