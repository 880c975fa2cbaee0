package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watchdog makes a hung test fail with every goroutine's stack instead of
// eating the suite's timeout; call the returned function when done.
func watchdog(tb testing.TB, d time.Duration) (stop func()) {
	timer := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s: watchdog: still running after %s\n%s\n", tb.Name(), d, buf)
		panic(fmt.Sprintf("%s: watchdog expired after %s", tb.Name(), d))
	})
	return func() { timer.Stop() }
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(tb testing.TB, ln *net.TCPListener) (dialed, accepted *net.TCPConn) {
	tb.Helper()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		_ = c.Close()
		tb.Fatalf("accept: %v", err)
	}
	return c, s
}

func listen(tb testing.TB) *net.TCPListener {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	return ln
}

// chain is app ⇄ (a  relay  b) ⇄ target over loopback TCP: what the relay
// sees as a and b, and the application's and target's ends.
type chain struct {
	app, a, b, target *net.TCPConn
}

func newChain(tb testing.TB, ln *net.TCPListener) chain {
	tb.Helper()
	var c chain
	c.app, c.a = tcpPair(tb, ln)
	c.b, c.target = tcpPair(tb, ln)
	tb.Cleanup(c.close)
	return c
}

func (c chain) close() {
	for _, conn := range []*net.TCPConn{c.app, c.a, c.b, c.target} {
		_ = conn.Close()
	}
}

type result struct {
	aToB, bToA int64
	err        error
}

func startPipe(ctx context.Context, r *Relay, a, b HalfCloser) <-chan result {
	ch := make(chan result, 1)
	go func() {
		var res result
		res.aToB, res.bToA, res.err = r.Pipe(ctx, a, b)
		ch <- res
	}()
	return ch
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("Pipe did not return within 10s")
		return result{}
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sendAndClose writes data then half-closes; readAll's counterpart.
func sendAndClose(c HalfCloser, data []byte) error {
	if _, err := c.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return c.CloseWrite()
}

// hidden hides a connection's SyscallConn, so the relay takes its plain
// buffered copy.
type hidden struct{ HalfCloser }

func TestPipeBothWays(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	for _, tc := range []struct {
		name string
		wrap func(*net.TCPConn) HalfCloser
	}{
		{"socket", func(c *net.TCPConn) HalfCloser { return c }},
		{"buffered", func(c *net.TCPConn) HalfCloser { return hidden{c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 6 << 20
			ln := listen(t)
			c := newChain(t, ln)
			var r Relay
			res := startPipe(t.Context(), &r, tc.wrap(c.a), tc.wrap(c.b))

			up, down := randomBytes(t, size), randomBytes(t, size)
			var wg sync.WaitGroup
			var upGot, downGot []byte
			var upErr, downErr, sendUpErr, sendDownErr error
			wg.Go(func() { sendUpErr = sendAndClose(c.app, up) })
			wg.Go(func() { sendDownErr = sendAndClose(c.target, down) })
			wg.Go(func() { upGot, upErr = io.ReadAll(c.target) })
			wg.Go(func() { downGot, downErr = io.ReadAll(c.app) })
			wg.Wait()
			for _, err := range []error{sendUpErr, sendDownErr, upErr, downErr} {
				if err != nil {
					t.Fatal(err)
				}
			}
			if sha256.Sum256(upGot) != sha256.Sum256(up) {
				t.Errorf("app→target: got %d bytes with another SHA-256 than the %d sent", len(upGot), len(up))
			}
			if sha256.Sum256(downGot) != sha256.Sum256(down) {
				t.Errorf("target→app: got %d bytes with another SHA-256 than the %d sent", len(downGot), len(down))
			}
			got := wait(t, res)
			if got.err != nil || got.aToB != size || got.bToA != size {
				t.Errorf("Pipe = %d, %d, %v; want %d, %d, nil", got.aToB, got.bToA, got.err, size, size)
			}
		})
	}
}

// TestPipeHalfClose: the application sends its request and closes its
// sending side; the target reads to the end, then answers, and the
// application still receives the whole answer.
func TestPipeHalfClose(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	ln := listen(t)
	c := newChain(t, ln)
	var r Relay
	res := startPipe(t.Context(), &r, c.a, c.b)

	request, answer := randomBytes(t, 1<<20), randomBytes(t, 3<<20)
	if err := sendAndClose(c.app, request); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c.target)
	if err != nil {
		t.Fatalf("target reading the request: %v", err)
	}
	if !bytes.Equal(got, request) {
		t.Fatalf("target got %d bytes, not the %d-byte request", len(got), len(request))
	}
	// The request direction is over; the answer still flows.
	if err := sendAndClose(c.target, answer); err != nil {
		t.Fatalf("target answering after the application's half-close: %v", err)
	}
	got, err = io.ReadAll(c.app)
	if err != nil {
		t.Fatalf("application reading the answer: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(answer) {
		t.Fatalf("application got %d bytes with another SHA-256 than the %d-byte answer", len(got), len(answer))
	}
	if r := wait(t, res); r.err != nil || r.aToB != int64(len(request)) || r.bToA != int64(len(answer)) {
		t.Errorf("Pipe = %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, r.err, len(request), len(answer))
	}
}

func TestPipeContextCancel(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	ln := listen(t)
	c := newChain(t, ln)
	ctx, cancel := context.WithCancel(t.Context())
	var r Relay
	res := startPipe(ctx, &r, c.a, c.b)

	// Some traffic first, so the relay is idle in the middle of a stream.
	if _, err := c.app.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c.target, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	got := wait(t, res)
	if !errors.Is(got.err, context.Canceled) {
		t.Errorf("Pipe error = %v, want context.Canceled", got.err)
	}
	if got.aToB != 4 {
		t.Errorf("Pipe copied %d bytes app→target, want 4", got.aToB)
	}
	// Both ends see their connection reset: it was cut short, and must
	// not pass for a complete stream.
	for name, conn := range map[string]*net.TCPConn{"app": c.app, "target": c.target} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s read after cancel = %d, %v; want a reset", name, n, err)
		}
	}
}

// TestPipeReset: the target resets its connection; Pipe reports the reset
// and closes the application's connection.
func TestPipeReset(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	ln := listen(t)
	c := newChain(t, ln)
	var r Relay
	res := startPipe(t.Context(), &r, c.a, c.b)

	if err := c.target.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = c.target.Close() // with linger 0: RST
	got := wait(t, res)
	if !errors.Is(got.err, syscall.ECONNRESET) {
		t.Errorf("Pipe error = %v, want ECONNRESET", got.err)
	}
	_ = c.app.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.app.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("application read after the target's reset = %d, %v; want the reset passed on", n, err)
	}
}

// failing is a connection whose reads fail.
type failing struct {
	err    error
	closed chan struct{}
	once   sync.Once
}

func (f *failing) Read([]byte) (int, error)    { return 0, f.err }
func (f *failing) Write(b []byte) (int, error) { <-f.closed; return 0, net.ErrClosed }
func (f *failing) CloseWrite() error           { return nil }
func (f *failing) Close() error                { f.once.Do(func() { close(f.closed) }); return nil }

func TestPipeReadError(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	ln := listen(t)
	c := newChain(t, ln)
	boom := errors.New("boom")
	f := &failing{err: boom, closed: make(chan struct{})}
	var r Relay
	got := wait(t, startPipe(t.Context(), &r, f, c.b))
	if !errors.Is(got.err, boom) {
		t.Errorf("Pipe error = %v, want the read error", got.err)
	}
	select {
	case <-f.closed:
	default:
		t.Error("Pipe returned without closing the failing connection")
	}
	_ = c.target.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.target.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("target read after the relay failed = %d, %v; want a reset", n, err)
	}
}

// TestPipeContextDone: a context that has already ended stops the relay
// before anything is copied.
func TestPipeContextDone(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	ln := listen(t)
	c := newChain(t, ln)
	ctx, cancel := context.WithCancelCause(t.Context())
	stopped := errors.New("shutting down")
	cancel(stopped)
	aToB, bToA, err := Pipe(ctx, c.a, c.b)
	if !errors.Is(err, stopped) || aToB != 0 || bToA != 0 {
		t.Errorf("Pipe = %d, %d, %v; want 0, 0 and the context's cause", aToB, bToA, err)
	}
}

// idleCost opens n relayed connections (application, relay and target
// ends, over loopback), passes a few bytes each way so every relay is in
// the middle of a stream, and returns what the process holds per relayed
// connection once they all sit idle: Go heap bytes, goroutine stack bytes
// and kernel pipes (splice's, as descriptors). The memory counts the relay's
// two sockets, its goroutines and buffers, and also the test's own
// application and target sockets.
func idleCost(tb testing.TB, n int, pipe func(ctx context.Context, a, b HalfCloser)) (heap, stack, pipes float64) {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	chains := make([]chain, 0, n)
	defer func() {
		cancel()
		wg.Wait()
		for _, c := range chains {
			c.close()
		}
		_ = ln.Close()
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)

	for range n {
		var c chain
		c.app, c.a = tcpPair(tb, ln)
		c.b, c.target = tcpPair(tb, ln)
		chains = append(chains, c)
		wg.Go(func() { pipe(ctx, c.a, c.b) })
	}
	buf := make([]byte, 2)
	for _, c := range chains {
		for _, ends := range [][2]*net.TCPConn{{c.app, c.target}, {c.target, c.app}} {
			if _, err := ends[0].Write([]byte("hi")); err != nil {
				tb.Fatal(err)
			}
			if _, err := io.ReadFull(ends[1], buf); err != nil {
				tb.Fatal(err)
			}
		}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n)
	pipes = float64(openPipes(tb)) / float64(n)
	return heap, stack, pipes
}

// openPipes counts the process's open pipe descriptors (the tests open none
// but splice's).
func openPipes(tb testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("cannot count open files: %v", err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// naivePipe is the relay this package replaces: io.Copy both ways, each
// direction holding its 32 KiB buffer while it waits.
func naivePipe(ctx context.Context, a, b HalfCloser) {
	stop := context.AfterFunc(ctx, func() { _ = a.Close(); _ = b.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.CopyBuffer(hidden{b}, hidden{a}, make([]byte, BufferSize)) })
	_, _ = io.CopyBuffer(hidden{a}, hidden{b}, make([]byte, BufferSize))
	wg.Wait()
}

const idleConns = 200

// TestIdleMemory: an idle relayed connection, both sides, holds less than
// 64 KiB of the process's memory.
func TestIdleMemory(t *testing.T) {
	defer watchdog(t, 60*time.Second)()
	var r Relay
	heap, stack, _ := idleCost(t, idleConns, func(ctx context.Context, a, b HalfCloser) { _, _, _ = r.Pipe(ctx, a, b) })
	t.Logf("idle relayed connection: %.0f heap + %.0f stack bytes (%d connections)", heap, stack, idleConns)
	if total := heap + stack; total >= 64<<10 {
		t.Errorf("an idle relayed connection holds %.0f bytes (heap %.0f, stacks %.0f), want < 64 KiB", total, heap, stack)
	}
}

// BenchmarkIdleMemory reports what an idle relayed connection holds (see
// idleCost), for this package's relay, for the relay with splice (whose
// kernel pipes are not Go heap and show as pipe descriptors) and for two
// io.Copy loops.
func BenchmarkIdleMemory(b *testing.B) {
	pipeWith := func(r *Relay) func(ctx context.Context, a, b HalfCloser) {
		return func(ctx context.Context, a, b HalfCloser) { _, _, _ = r.Pipe(ctx, a, b) }
	}
	for _, bc := range []struct {
		name string
		pipe func(ctx context.Context, a, b HalfCloser)
	}{
		{"relay", pipeWith(&Relay{})},
		{"splice", pipeWith(&Relay{splice: true})},
		{"iocopy", naivePipe},
	} {
		b.Run(bc.name, func(b *testing.B) {
			defer watchdog(b, 5*time.Minute)()
			var heap, stack, pipes float64
			for b.Loop() {
				h, s, f := idleCost(b, idleConns, bc.pipe)
				heap += h
				stack += s
				pipes += f
			}
			n := float64(b.N)
			b.ReportMetric(heap/n, "heap-B/conn")
			b.ReportMetric(stack/n, "stack-B/conn")
			b.ReportMetric((heap+stack)/n, "B/conn")
			b.ReportMetric(pipes/n, "pipe-fds/conn")
		})
	}
}

// BenchmarkPipe measures one relayed loopback connection carrying a bulk
// stream from the application to the target, in MB/s.
func BenchmarkPipe(b *testing.B) {
	for _, bc := range []struct {
		name   string
		splice bool
		wrap   func(*net.TCPConn) HalfCloser
	}{
		{"socket", false, func(c *net.TCPConn) HalfCloser { return c }},
		{"splice", true, func(c *net.TCPConn) HalfCloser { return c }},
		{"buffered", false, func(c *net.TCPConn) HalfCloser { return hidden{c} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			defer watchdog(b, 5*time.Minute)()
			ln := listen(b)
			c := newChain(b, ln)
			r := Relay{splice: bc.splice}
			res := make(chan error, 1)
			go func() {
				_, _, err := r.Pipe(context.Background(), bc.wrap(c.a), bc.wrap(c.b))
				res <- err
			}()
			drained := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, hidden{c.target})
				drained <- n
			}()
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.app.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.app.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			n := <-drained // the last bytes have arrived
			b.StopTimer()
			if n != int64(b.N)*int64(len(chunk)) {
				b.Fatalf("target got %d bytes, want %d", n, int64(b.N)*int64(len(chunk)))
			}
			_ = c.target.Close()
			if err := <-res; err != nil {
				b.Fatal(err)
			}
		})
	}
}
