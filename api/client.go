package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// DefaultSocket is the API socket of a daemon managing its own namespace
// with the default configuration.
const DefaultSocket = "/run/mptcpd/mptcpd.sock"

// Dial returns a client of the daemon at server: a unix socket path (or
// "unix:///path"), or "host:port" for a TCP listener, which needs tlsConf
// unless it is nil and plaintext is set. Like grpc.NewClient it does not
// connect; the first call does. Errors of calls are restored by FromStatus,
// so errors.Is matches the domain sentinels.
func Dial(server string, tlsConf *tls.Config, plaintext bool, opts ...grpc.DialOption) (*grpc.ClientConn, mptcpdv1.MptcpdServiceClient, error) {
	target := server
	var creds credentials.TransportCredentials
	switch {
	case strings.HasPrefix(server, "unix:"):
		creds = insecure.NewCredentials()
	case strings.HasPrefix(server, "/"):
		target = "unix://" + server
		creds = insecure.NewCredentials()
	case tlsConf != nil:
		creds = credentials.NewTLS(tlsConf)
	case plaintext:
		creds = insecure.NewCredentials()
	default:
		return nil, nil, fmt.Errorf("server %q is a TCP address: give a client certificate for mutual TLS, or plaintext for an insecure loopback listener", server)
	}
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(unaryErrors),
		grpc.WithChainStreamInterceptor(streamErrors),
	}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to mptcpd at %s: %w", server, err)
	}
	return conn, mptcpdv1.NewMptcpdServiceClient(conn), nil
}

func unaryErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return FromStatus(invoker(ctx, method, req, reply, cc, opts...))
}

func streamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return errorStream{s}, nil
}

// errorStream restores the errors of a client stream.
type errorStream struct{ grpc.ClientStream }

func (s errorStream) RecvMsg(m any) error { return FromStatus(s.ClientStream.RecvMsg(m)) }
func (s errorStream) SendMsg(m any) error { return FromStatus(s.ClientStream.SendMsg(m)) }
