package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// Options say where the API listens and who may use it.
type Options struct {
	// Socket is the unix socket's path; "" for none. SocketGID is the
	// group it is given (mode 0660); -1 keeps the daemon's.
	Socket    string
	SocketGID int
	// Access decides who may read and write.
	Access Access
	// TCP is an optional "host:port" listener; TLS its configuration (it
	// must require client certificates), or nil with Insecure for a
	// plaintext, read-only listener on loopback.
	TCP      string
	TLS      *tls.Config
	Insecure bool
	// Interceptors are called around every call, after authorisation
	// (e.g. metrics).
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	Log    *slog.Logger
}

// Service is the API's listeners and servers.
type Service struct {
	servers   []*grpc.Server
	listeners []net.Listener
	health    *health.Server
	log       *slog.Logger
	socket    string
	impl      *Server
}

// Listen opens the listeners, so that a daemon can fail before it reports
// ready; Serve then serves them.
func Listen(opts Options, backend Backend) (*Service, error) {
	s := &Service{health: health.NewServer(), log: opts.Log, socket: opts.Socket}
	s.SetServing(false)
	impl := NewServer(backend)
	s.impl = impl
	newServer := func(creds credentials.TransportCredentials) *grpc.Server {
		srv := grpc.NewServer(
			grpc.Creds(creds),
			grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{opts.Access.UnaryInterceptor}, opts.Unary...)...),
			grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{opts.Access.StreamInterceptor}, opts.Stream...)...),
		)
		pb.RegisterMptcpdServiceServer(srv, impl)
		healthpb.RegisterHealthServer(srv, s.health)
		reflection.Register(srv)
		return srv
	}
	if opts.Socket != "" {
		lis, err := listenUnix(opts.Socket, opts.SocketGID)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, lis)
		s.servers = append(s.servers, newServer(peerCredentials{}))
	}
	if opts.TCP != "" {
		var creds credentials.TransportCredentials
		switch {
		case opts.TLS != nil:
			if opts.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
				s.closeListeners()
				return nil, errors.New("api: the TCP listener must require client certificates")
			}
			creds = credentials.NewTLS(opts.TLS)
		case opts.Insecure:
			if err := checkLoopback(opts.TCP); err != nil {
				s.closeListeners()
				return nil, err
			}
			creds = insecure.NewCredentials()
		default:
			s.closeListeners()
			return nil, fmt.Errorf("api: refusing a TCP listener on %s without TLS: set cert, key and client_ca in [api.tcp], or bind it to loopback with insecure = true", opts.TCP)
		}
		lis, err := net.Listen("tcp", opts.TCP)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("api: listening on %s: %w", opts.TCP, err)
		}
		s.listeners = append(s.listeners, lis)
		s.servers = append(s.servers, newServer(creds))
	}
	return s, nil
}

// checkLoopback refuses a plaintext listener anywhere but loopback.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("api: TCP listener %q: %w", hostport, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("api: refusing an insecure TCP listener on %s: without TLS it may only listen on 127.0.0.1 or ::1", hostport)
	}
	return nil
}

// listenUnix listens on the socket at path with mode 0660 and group gid.
// A stale socket (nobody answers on it) is replaced; a live one is an
// error.
func listenUnix(path string, gid int) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("api: another process serves on %s: is another mptcpd running? (set api.socket to use another path)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api: removing stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api: creating the socket's directory: %w", err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("api: setting the socket's mode: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			_ = lis.Close()
			return nil, fmt.Errorf("api: giving the socket to group %d: %w", gid, err)
		}
	}
	return lis, nil
}

// SetServing sets the health service's status.
func (s *Service) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(pb.MptcpdService_ServiceDesc.ServiceName, st)
}

// Addrs returns the addresses listened on.
func (s *Service) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

func (s *Service) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

// Serve serves until ctx ends, then stops: calls in progress get a few
// seconds to finish, streams (Watch) end at once. The socket is removed.
func (s *Service) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.servers))
	for i, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(s.listeners[i]); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- fmt.Errorf("api: serving on %s: %w", s.listeners[i].Addr(), err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	s.health.Shutdown()
	s.impl.Stop()
	for _, srv := range s.servers {
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			srv.Stop()
			<-done
		}
	}
	wg.Wait()
	if s.socket != "" {
		_ = os.Remove(s.socket)
	}
	return err
}

// Close closes the listeners of a Service that will not Serve.
func (s *Service) Close() {
	s.closeListeners()
	if s.socket != "" {
		_ = os.Remove(s.socket)
	}
}
