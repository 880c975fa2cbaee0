// Package socks5 is a SOCKS5 server (RFC 1928) for the CONNECT command, with
// optional username/password authentication (RFC 1929). It is how
// applications reach the userspace datapath without privileges: the server
// hands each request to a Connect function (which reaches the converter)
// and relays the bytes. Domain names are passed on unresolved.
package socks5

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd/mptcpd/relay"
)

// DefaultHandshakeTimeout is the handshake time limit when
// Server.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// lingerTimeout bounds how long a refused client is read from (and
// ignored) after its reply, so that closing the connection with its unread
// bytes does not reset it before the client has read the reply.
const lingerTimeout = time.Second

// Server is a SOCKS5 server. Set its fields before calling Serve and do not
// change them while it runs; do not copy a Server after its first use.
type Server struct {
	// Users maps each username to its password. Empty or nil: clients
	// need not authenticate (method 0x00); otherwise they must
	// authenticate with username and password (method 0x02).
	Users map[string]string

	// Connect opens a connection to the client's target. It returns the
	// connection, the address it is bound to (sent to the client; the zero
	// value if unknown) and an error, whose reply code (see ReplyCode) is
	// sent to the client. Connect must return when ctx ends.
	Connect func(ctx context.Context, t Target) (conn relay.HalfCloser, bound netip.AddrPort, err error)

	// Logger receives a Debug record per refused client and per ended
	// connection; nil discards them.
	Logger *slog.Logger

	// HandshakeTimeout bounds the time from accepting a client to the end
	// of its request (and the writing of its reply). Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// MaxConns limits the clients served at once; zero means no limit.
	// Beyond it, new clients get the reply "general failure" after their
	// request (up to MaxConns of them at a time; past that they are closed
	// at once).
	MaxConns int

	relay relay.Relay
}

// Serve accepts clients on ln until ctx ends or ln fails, and serves each
// in its own goroutine. It closes ln, disconnects its clients and waits for
// their goroutines before it returns. It returns nil when ctx ended or ln
// was closed, else the error that stopped it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Connect == nil {
		return errors.New("socks5: Server.Connect is nil")
	}
	if s.MaxConns < 0 {
		return fmt.Errorf("socks5: Server.MaxConns is %d, want 0 (no limit) or more", s.MaxConns)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // also closes ln
		wg.Wait()
	}()
	context.AfterFunc(ctx, func() { _ = ln.Close() })

	// slots holds a token per client served, spare one per client being
	// refused for lack of a slot.
	var slots, spare chan struct{}
	if s.MaxConns > 0 {
		slots, spare = make(chan struct{}, s.MaxConns), make(chan struct{}, s.MaxConns)
	}
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !temporary(err) {
				return fmt.Errorf("socks5: accepting clients: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Warn("socks5: accepting clients failed, retrying", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0

		busy, release := false, func() {}
		if slots != nil {
			select {
			case slots <- struct{}{}:
				release = func() { <-slots }
			default:
				select {
				case spare <- struct{}{}:
					busy, release = true, func() { <-spare }
				default:
					s.logger().Debug("socks5: client refused", "client", conn.RemoteAddr().String(),
						"reason", "too many clients being served and refused", "max_conns", s.MaxConns)
					_ = conn.Close()
					continue
				}
			}
		}
		wg.Go(func() {
			defer release()
			s.serveClient(ctx, conn, busy)
		})
	}
}

// temporary reports whether an Accept error may pass (the process or the
// system is out of descriptors or memory).
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// serveClient runs one client from handshake to the end of its relay. busy
// means the server has no slot for it: it is refused after its request.
func (s *Server) serveClient(ctx context.Context, conn net.Conn, busy bool) {
	log := s.logger().With("client", conn.RemoteAddr().String())
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	t, err := s.handshake(conn)
	if err == nil && busy {
		err = &requestError{ReplyGeneralFailure, fmt.Sprintf("too many clients (%d served at once)", s.MaxConns)}
		err = s.reply(conn, ReplyGeneralFailure, netip.AddrPort{}, err)
	}
	if err != nil {
		log.Debug("socks5: client refused", "reason", err)
		if errors.As(err, new(replied)) {
			linger(conn)
		}
		return
	}

	remote, bound, err := s.Connect(ctx, t)
	if err == nil && remote == nil {
		err = errors.New("socks5: Connect returned neither a connection nor an error")
	}
	if err != nil {
		code := ReplyCode(err)
		log.Debug("socks5: client refused", "target", t.String(), "reason", err, "reply", code)
		if errors.As(s.reply(conn, code, netip.AddrPort{}, err), new(replied)) {
			linger(conn)
		}
		return
	}
	if err := s.reply(conn, ReplySucceeded, bound, nil); err != nil {
		_ = remote.Close()
		log.Debug("socks5: client lost before its reply", "target", t.String(), "reason", err)
		return
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		_ = remote.Close()
		log.Debug("socks5: clearing the client's deadline", "err", err)
		return
	}
	up, down, err := s.relay.Pipe(ctx, halfCloser(conn), remote)
	log.Debug("socks5: connection ended", "target", t.String(), "sent", up, "received", down, "err", err)
}

// replied marks an error the client has been told about, so the connection
// is closed gently (see linger).
type replied struct{ error }

func (r replied) Unwrap() error { return r.error }

// reply writes a reply within the handshake time limit. With a non-nil
// cause it returns the cause marked as replied (or the write error).
func (s *Server) reply(conn net.Conn, code byte, bound netip.AddrPort, cause error) error {
	if err := conn.SetWriteDeadline(time.Now().Add(s.handshakeTimeout())); err != nil {
		return fmt.Errorf("socks5: setting the reply's deadline: %w", err)
	}
	if _, err := conn.Write(appendReply(make([]byte, 0, 22), code, bound)); err != nil {
		return fmt.Errorf("socks5: writing the reply: %w", err)
	}
	if cause != nil {
		return replied{cause}
	}
	return nil
}

// handshake negotiates the method, authenticates and reads the request,
// within the handshake time limit. On a protocol error it sends the reply
// the protocol has for it, if any, and returns the error marked replied.
func (s *Server) handshake(conn net.Conn) (Target, error) {
	if err := conn.SetDeadline(time.Now().Add(s.handshakeTimeout())); err != nil {
		return Target{}, fmt.Errorf("socks5: setting the handshake deadline: %w", err)
	}
	var hdr [2]byte // VER NMETHODS
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return Target{}, fmt.Errorf("socks5: reading the greeting: %w", err)
	}
	if hdr[0] != version {
		return Target{}, fmt.Errorf("socks5: greeting has version %d, want 5 (not a SOCKS5 client)", hdr[0])
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(conn, methods); err != nil {
		return Target{}, fmt.Errorf("socks5: reading the %d offered methods: %w", len(methods), err)
	}
	method := byte(methodNone)
	if len(s.Users) > 0 {
		method = methodPassword
	}
	if !bytes.Contains(methods, []byte{method}) {
		err := fmt.Errorf("socks5: no acceptable method: client offers % x, server requires %#02x", methods, method)
		return Target{}, writeOr(conn, []byte{version, methodNoAcceptable}, replied{err})
	}
	if _, err := conn.Write([]byte{version, method}); err != nil {
		return Target{}, fmt.Errorf("socks5: writing the method: %w", err)
	}
	if method == methodPassword {
		if err := s.authenticate(conn); err != nil {
			return Target{}, err
		}
	}
	t, err := readRequest(conn)
	if err != nil {
		var bad *requestError
		if errors.As(err, &bad) {
			return Target{}, s.reply(conn, bad.code, netip.AddrPort{}, err)
		}
		return Target{}, err
	}
	return t, nil
}

// authenticate runs the username/password subnegotiation (RFC 1929).
func (s *Server) authenticate(conn net.Conn) error {
	fail := func(err error) error {
		return writeOr(conn, []byte{passwordVersion, passwordFailed}, replied{err})
	}
	var ver [1]byte
	if _, err := io.ReadFull(conn, ver[:]); err != nil {
		return fmt.Errorf("socks5: reading the authentication version: %w", err)
	}
	if ver[0] != passwordVersion {
		return fail(fmt.Errorf("socks5: username/password authentication has version %d, want 1", ver[0]))
	}
	user, err := readField(conn, "username")
	if err != nil {
		return err
	}
	pass, err := readField(conn, "password")
	if err != nil {
		return err
	}
	switch want, ok := s.Users[user]; {
	case len(user) == 0 || len(pass) == 0:
		return fail(errors.New("socks5: empty username or password"))
	case !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1:
		return fail(fmt.Errorf("socks5: wrong username or password (user %q)", user))
	}
	if _, err := conn.Write([]byte{passwordVersion, passwordOK}); err != nil {
		return fmt.Errorf("socks5: writing the authentication status: %w", err)
	}
	return nil
}

// readField reads a length-prefixed string.
func readField(r io.Reader, what string) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", fmt.Errorf("socks5: reading the %s length: %w", what, err)
	}
	b := make([]byte, n[0])
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("socks5: reading the %d-byte %s: %w", n[0], what, err)
	}
	return string(b), nil
}

// writeOr writes b and returns err, or the write error.
func writeOr(conn net.Conn, b []byte, err error) error {
	if _, werr := conn.Write(b); werr != nil {
		return fmt.Errorf("socks5: writing the refusal (%v): %w", err, werr)
	}
	return err
}

// linger closes the sending side, then reads and drops what the client
// still sends, for a bounded time and size, so that closing with unread
// bytes does not reset the connection before the client reads its reply.
func linger(conn net.Conn) {
	if hc, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	if conn.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil {
		_, _ = io.CopyN(io.Discard, conn, 64<<10)
	}
}

// noHalfClose gives a connection without CloseWrite a CloseWrite that does
// nothing: the client's end of stream then reaches it only when the
// relay closes the connection.
type noHalfClose struct{ net.Conn }

func (noHalfClose) CloseWrite() error { return nil }

func halfCloser(conn net.Conn) relay.HalfCloser {
	if hc, ok := conn.(relay.HalfCloser); ok {
		return hc
	}
	return noHalfClose{conn}
}
