// Package relay copies bytes both ways between two stream connections, as
// the SOCKS5 server, transparent capture and the converter do for every
// application connection they carry.
//
// An end of stream in one direction is passed on as a half-close (CloseWrite)
// on the other connection, and the other direction keeps flowing. A relay
// holds no buffer while its connections are idle: for a connection that
// exposes its socket (*net.TCPConn, *net.UnixConn, anything with
// SyscallConn) it waits for the socket to become readable and only then takes
// a buffer, which it gives back as soon as the bytes are written out.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// BufferSize is the size of the buffers a Relay reads into.
const BufferSize = 32 << 10

// HalfCloser is a stream connection that can close its sending direction
// alone, as *net.TCPConn and *net.UnixConn can.
type HalfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Relay runs pipes that share one set of buffers. A program relaying many
// connections should use one Relay for all of them, so that buffers freed by
// one connection serve the next. The zero value is ready to use; a Relay must
// not be copied after its first use.
type Relay struct {
	bufs sync.Pool // of *[BufferSize]byte

	// splice lets TCP-to-TCP copies go through the kernel's splice (via
	// (*net.TCPConn).ReadFrom). It stays off: on loopback it was within
	// the noise of the socket loop (2.0-2.9 GB/s both), and an idle
	// spliced direction holds a kernel pipe, two descriptors. The
	// benchmarks keep the comparison.
	splice bool
}

// Pipe relays between a and b with a Relay of its own; see Relay.Pipe. Use a
// shared Relay when relaying many connections.
func Pipe(ctx context.Context, a, b HalfCloser) (aToB, bToA int64, err error) {
	var r Relay
	return r.Pipe(ctx, a, b)
}

// Pipe copies what a sends to b and what b sends to a. When one direction
// reaches the end of its stream, Pipe closes the writing side of the other
// connection (CloseWrite) and keeps copying the other direction.
//
// Pipe returns when both directions have ended, when ctx ends, or at the
// first error; in the last two cases it closes both connections at once to
// stop the other direction, resetting those that are TCP connections, so
// that neither end takes a stream cut short for a complete one. Both
// connections are closed when Pipe returns.
// It returns the byte counts copied each way and the first error: nil when
// both streams ended normally, ctx's cause when ctx ended first, else the
// read, write or close error that ended the relay.
//
// A connection that exposes SyscallConn is read from its socket directly, so
// it must not have bytes buffered in user space (such as in a bufio.Reader
// wrapped around it).
func (r *Relay) Pipe(ctx context.Context, a, b HalfCloser) (aToB, bToA int64, err error) {
	p := &pipe{a: a, b: b}
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cancelled)
		p.shut(fmt.Errorf("relay: %w", context.Cause(ctx)))
	})

	done := make(chan struct{})
	go func() {
		defer close(done)
		bToA = p.half(r, a, b)
	}()
	aToB = p.half(r, b, a)
	<-done

	if !stop() {
		<-cancelled
	}
	p.shut(nil)
	p.mu.Lock()
	defer p.mu.Unlock()
	return aToB, bToA, p.err
}

// pipe is the state two directions of one Pipe share.
type pipe struct {
	a, b HalfCloser

	mu      sync.Mutex
	err     error // the first error that ended the pipe
	closing bool  // set before the connections are closed
	once    sync.Once
}

// shut records err if it is the first and closes both connections, once.
func (p *pipe) shut(err error) {
	p.mu.Lock()
	if err != nil && p.err == nil && !(p.closing && errors.Is(err, net.ErrClosed)) {
		p.err = err
	}
	p.closing = true
	failed := p.err != nil
	p.mu.Unlock()
	p.once.Do(func() {
		// A stream cut short by an error is reset, not ended: a TCP peer
		// must not take what it got for the whole stream.
		if failed {
			for _, c := range []HalfCloser{p.a, p.b} {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
		}
		// Close errors are not reported: the relay is over, and a socket
		// close has nothing left to lose.
		_ = p.a.Close()
		_ = p.b.Close()
	})
}

// half copies src to dst until src's stream ends, then half-closes dst. On
// error it shuts the pipe, which ends the other direction too.
func (p *pipe) half(r *Relay, dst, src HalfCloser) int64 {
	n, err := r.copy(dst, src)
	if err == nil {
		if err = dst.CloseWrite(); err != nil {
			err = fmt.Errorf("relay: closing the writing side after end of stream: %w", err)
		}
	}
	if err != nil {
		p.shut(err)
	}
	return n
}

// copy copies until src reports the end of its stream (returning nil) or an
// error.
func (r *Relay) copy(dst io.Writer, src io.Reader) (int64, error) {
	if r.splice {
		d, dok := dst.(*net.TCPConn)
		s, sok := src.(*net.TCPConn)
		if dok && sok {
			n, err := d.ReadFrom(s)
			if err != nil {
				return n, fmt.Errorf("relay: splice: %w", err)
			}
			return n, nil
		}
	}
	if sc, ok := src.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return r.copyRaw(dst, rc)
		}
	}
	// A source that writes out what it holds needs no buffer here.
	if wt, ok := src.(io.WriterTo); ok {
		n, err := wt.WriteTo(dst)
		if err != nil {
			return n, fmt.Errorf("relay: %w", err)
		}
		return n, nil
	}
	return r.copyBuffered(dst, src)
}

// copyRaw waits for src to be readable without holding a buffer, then reads
// into a pooled buffer with a non-blocking read.
func (r *Relay) copyRaw(dst io.Writer, src syscall.RawConn) (int64, error) {
	var written int64
	for {
		var (
			buf  *[BufferSize]byte
			n    int
			rerr error
		)
		err := src.Read(func(fd uintptr) bool {
			buf = r.get()
			for {
				n, rerr = unix.Read(int(fd), buf[:])
				if !errors.Is(rerr, unix.EINTR) {
					break
				}
			}
			if errors.Is(rerr, unix.EAGAIN) {
				r.put(buf) // nothing to read: wait without the buffer
				buf = nil
				return false
			}
			return true
		})
		if err != nil {
			// The callback returned true, or never kept a buffer.
			if buf != nil {
				r.put(buf)
			}
			return written, fmt.Errorf("relay: waiting to read: %w", err)
		}
		if rerr != nil {
			r.put(buf)
			return written, fmt.Errorf("relay: %w", os.NewSyscallError("read", rerr))
		}
		if n == 0 {
			r.put(buf)
			return written, nil // end of stream
		}
		nw, werr := dst.Write(buf[:n])
		r.put(buf)
		written += int64(nw)
		if werr != nil {
			return written, fmt.Errorf("relay: write: %w", werr)
		}
		if nw != n {
			return written, fmt.Errorf("relay: write: %w", io.ErrShortWrite)
		}
	}
}

// copyBuffered is the copy for sources that do not expose their socket: it
// holds a buffer for as long as it runs.
func (r *Relay) copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	buf := r.get()
	defer r.put(buf)
	var written int64
	for {
		n, rerr := src.Read(buf[:])
		if n > 0 {
			nw, werr := dst.Write(buf[:n])
			written += int64(nw)
			if werr != nil {
				return written, fmt.Errorf("relay: write: %w", werr)
			}
			if nw != n {
				return written, fmt.Errorf("relay: write: %w", io.ErrShortWrite)
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, fmt.Errorf("relay: read: %w", rerr)
		}
	}
}

func (r *Relay) get() *[BufferSize]byte {
	if b, ok := r.bufs.Get().(*[BufferSize]byte); ok {
		return b
	}
	return new([BufferSize]byte)
}

func (r *Relay) put(b *[BufferSize]byte) { r.bufs.Put(b) }
