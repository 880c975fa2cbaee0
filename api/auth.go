package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// writeMethods are the methods that change the kernel or the policy.
var writeMethods = map[string]bool{
	pb.MptcpdService_CreateEndpoint_FullMethodName:   true,
	pb.MptcpdService_UpdateEndpoint_FullMethodName:   true,
	pb.MptcpdService_DeleteEndpoint_FullMethodName:   true,
	pb.MptcpdService_FlushEndpoints_FullMethodName:   true,
	pb.MptcpdService_SetLimits_FullMethodName:        true,
	pb.MptcpdService_ApplyPolicy_FullMethodName:      true,
	pb.MptcpdService_Announce_FullMethodName:         true,
	pb.MptcpdService_Withdraw_FullMethodName:         true,
	pb.MptcpdService_CreateSubflow_FullMethodName:    true,
	pb.MptcpdService_DestroySubflow_FullMethodName:   true,
	pb.MptcpdService_SetSubflowBackup_FullMethodName: true,
}

// IsWrite reports whether the full method name changes something.
func IsWrite(method string) bool { return writeMethods[method] }

// Access decides who may do what, from the credentials of the caller.
type Access struct {
	// DaemonUID is the daemon's own user, which may always write.
	DaemonUID int
	// AdminGID is the group whose members may write; -1 for none.
	AdminGID int
	// AdminGroup names it, for messages.
	AdminGroup string
	// ReadGID is the group that may read (it owns the socket); -1 for
	// anyone who can reach the socket.
	ReadGID int
}

// PeerCred is the AuthInfo of a caller on the unix socket: its
// credentials as the kernel reported them (SO_PEERCRED).
type PeerCred struct {
	credentials.CommonAuthInfo
	UID, GID uint32
	PID      int32
}

// AuthType implements credentials.AuthInfo.
func (PeerCred) AuthType() string { return "peercred" }

// peerCredentials are the transport credentials of the unix socket: no
// encryption (the socket never leaves the host), the caller's
// SO_PEERCRED as its identity.
type peerCredentials struct{}

func (peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peer credentials need a unix socket, got %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the caller's credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("reading the caller's credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("reading the caller's credentials: %w", credErr)
	}
	return conn, PeerCred{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.Uid, GID: cred.Gid, PID: cred.Pid,
	}, nil
}

func (peerCredentials) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, nil, nil
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (c peerCredentials) Clone() credentials.TransportCredentials { return c }
func (peerCredentials) OverrideServerName(string) error           { return nil }

// groupsOf returns the primary and supplementary groups of the process,
// from /proc (the groups it runs with, which may differ from /etc/group).
func groupsOf(pid int32, primary uint32) []uint32 {
	groups := []uint32{primary}
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return groups
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(rest) {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	return groups
}

const insecureHint = "the insecure TCP listener is read-only; use the unix socket or mutual TLS to change things"

// Role is what a caller may do.
type Role int

const (
	// RoleNone may do nothing.
	RoleNone Role = iota
	// RoleRead may read.
	RoleRead
	// RoleWrite may read and change things.
	RoleWrite
)

// RoleOf returns the role of the caller whose AuthInfo is info.
func (a Access) RoleOf(info credentials.AuthInfo) (Role, string) {
	switch info := info.(type) {
	case PeerCred:
		if info.UID == 0 || int(info.UID) == a.DaemonUID {
			return RoleWrite, ""
		}
		groups := groupsOf(info.PID, info.GID)
		for _, g := range groups {
			if a.AdminGID >= 0 && int(g) == a.AdminGID {
				return RoleWrite, ""
			}
		}
		if a.ReadGID < 0 {
			return RoleRead, a.writeHint()
		}
		for _, g := range groups {
			if int(g) == a.ReadGID {
				return RoleRead, a.writeHint()
			}
		}
		return RoleNone, fmt.Sprintf("uid %d is not in the socket's group", info.UID)
	case credentials.TLSInfo:
		if len(info.State.VerifiedChains) > 0 {
			return RoleWrite, ""
		}
		return RoleNone, "no verified client certificate"
	case nil:
		return RoleRead, insecureHint
	}
	if info.AuthType() == "insecure" {
		// A plaintext TCP listener, which only loopback may have.
		return RoleRead, insecureHint
	}
	return RoleNone, fmt.Sprintf("unknown credentials %T", info)
}

func (a Access) writeHint() string {
	if a.AdminGroup != "" {
		return "changing things needs root or membership of group " + a.AdminGroup
	}
	return "changing things needs root"
}

func (a Access) check(ctx context.Context, method string) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no peer information")
	}
	role, why := a.RoleOf(p.AuthInfo)
	switch {
	case role == RoleNone:
		return status.Errorf(codes.PermissionDenied, "permission denied: %s", why)
	case role == RoleRead && writeMethods[method]:
		return status.Errorf(codes.PermissionDenied, "permission denied: %s", why)
	}
	return nil
}

// UnaryInterceptor authorises each call, then converts the handler's
// error with ToStatus.
func (a Access) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	resp, err := handler(ctx, req)
	return resp, ToStatus(err)
}

// StreamInterceptor authorises each stream and converts its error.
func (a Access) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return ToStatus(handler(srv, ss))
}

// ServerTLS returns the TLS configuration of a TCP listener that requires
// client certificates signed by the CA in caFile (mutual TLS, TLS 1.3):
// the API's, and the fallback converter's. Its errors name the files; the
// caller names the configuration keys.
func ServerTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the server certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("client CA %s: %w", caFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// ClientTLS returns the TLS configuration of a client with the
// certificate and key given, trusting the CA in caFile (system roots if "").
func ClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS13}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// isAddrInUse reports a listener that could not bind.
func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
