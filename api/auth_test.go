package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// otherAuth is an AuthInfo of a kind Access does not know.
type otherAuth struct{}

func (otherAuth) AuthType() string { return "other" }

// childWithGroup starts a process (cat, waiting on its stdin) whose
// supplementary groups are groups, and returns its pid, or 0 with why it
// could not (setting the groups needs root); the child ends with the test.
func childWithGroup(t *testing.T, groups ...uint32) (int32, string) {
	t.Helper()
	if os.Getuid() != 0 {
		return 0, "setting a child's supplementary groups needs root"
	}
	cmd := exec.Command("cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: groups}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		return 0, err.Error()
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	return int32(cmd.Process.Pid), ""
}

func TestRoleOf(t *testing.T) {
	self := int32(os.Getpid())
	// child is a process in group 4242 through its supplementary groups
	// only, which RoleOf reads from /proc.
	child, noChild := childWithGroup(t, 4242)
	access := api.Access{DaemonUID: 1234, AdminGID: 4242, AdminGroup: "mptcp-admin", ReadGID: 5555}
	noAdmin := api.Access{DaemonUID: 1234, AdminGID: -1, AdminGroup: "", ReadGID: 4242}
	anyReader := api.Access{DaemonUID: 1234, AdminGID: -1, ReadGID: -1}
	cases := []struct {
		name   string
		access api.Access
		info   credentials.AuthInfo
		want   api.Role
		// hint, if set, is in the reason given.
		hint string
	}{
		{"root", access, api.PeerCred{UID: 0, GID: 0, PID: self}, api.RoleWrite, ""},
		{"root in no group", noAdmin, api.PeerCred{UID: 0, GID: 9999, PID: -1}, api.RoleWrite, ""},
		{"daemon user", access, api.PeerCred{UID: 1234, GID: 9999, PID: self}, api.RoleWrite, ""},
		{"admin primary group", access, api.PeerCred{UID: 4321, GID: 4242, PID: self}, api.RoleWrite, ""},
		{"admin supplementary group", access, api.PeerCred{UID: 4321, GID: 9999, PID: child}, api.RoleWrite, ""},
		{"read primary group", access, api.PeerCred{UID: 4321, GID: 5555, PID: self}, api.RoleRead, "membership of group mptcp-admin"},
		{"read supplementary group", noAdmin, api.PeerCred{UID: 4321, GID: 9999, PID: child}, api.RoleRead, "needs root"},
		{"anyone reads", anyReader, api.PeerCred{UID: 4321, GID: 9999, PID: self}, api.RoleRead, "needs root"},
		{"stranger", access, api.PeerCred{UID: 4321, GID: 9999, PID: self}, api.RoleNone, "uid 4321 is not in the socket's group"},
		{"stranger, process gone", access, api.PeerCred{UID: 4321, GID: 9999, PID: -1}, api.RoleNone, "not in the socket's group"},
		{"admin group none", noAdmin, api.PeerCred{UID: 4321, GID: 9999, PID: self}, api.RoleNone, "not in the socket's group"},
		{"verified client certificate", access, credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}}, api.RoleWrite, ""},
		{"unverified client certificate", access, credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}}, api.RoleNone, "no verified client certificate"},
		{"plaintext TCP", access, nil, api.RoleRead, "insecure TCP listener is read-only"},
		{"unknown credentials", access, otherAuth{}, api.RoleNone, "unknown credentials"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, ok := tc.info.(api.PeerCred); ok && c.PID == 0 && noChild != "" {
				t.Skip(noChild)
			}
			role, why := tc.access.RoleOf(tc.info)
			if role != tc.want {
				t.Errorf("RoleOf = %v (%q), want %v", role, why, tc.want)
			}
			if tc.want == api.RoleWrite && why != "" {
				t.Errorf("a writer is given a reason: %q", why)
			}
			if !strings.Contains(why, tc.hint) {
				t.Errorf("reason %q does not say %q", why, tc.hint)
			}
		})
	}
}

// writePrefixes are the verbs of the RPCs that change something.
var writePrefixes = []string{"Create", "Update", "Delete", "Flush", "Set", "Apply", "Announce", "Withdraw", "Destroy"}

func isWriteName(name string) bool {
	for _, p := range writePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func fullMethod(name string) string {
	return "/" + pb.MptcpdService_ServiceDesc.ServiceName + "/" + name
}

// TestIsWriteCoversEveryMutation: the write methods are exactly the RPCs
// whose names say they change something.
func TestIsWriteCoversEveryMutation(t *testing.T) {
	writes := 0
	for _, name := range rpcNames() {
		if got, want := api.IsWrite(fullMethod(name)), isWriteName(name); got != want {
			t.Errorf("IsWrite(%s) = %v, want %v", name, got, want)
		}
		if isWriteName(name) {
			writes++
		}
	}
	if writes != 11 {
		t.Errorf("%d write methods, want 11", writes)
	}
	for _, m := range []string{"", "/grpc.health.v1.Health/Check", "CreateEndpoint", "/other.v1.MptcpdService/CreateEndpoint"} {
		if api.IsWrite(m) {
			t.Errorf("IsWrite(%q) = true", m)
		}
	}
}

// serverStream is a grpc.ServerStream with a context and nothing else.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s serverStream) Context() context.Context    { return s.ctx }
func (s serverStream) SetHeader(metadata.MD) error { return nil }

// TestInterceptorReadOnlyCaller: a caller with read access (uid 65534 in
// the read group) may call every read method and no write method: writes
// are refused with PERMISSION_DENIED before the handler runs, and the
// error says what would be needed.
func TestInterceptorReadOnlyCaller(t *testing.T) {
	access := api.Access{DaemonUID: -2, AdminGID: -1, AdminGroup: "mptcp-admin", ReadGID: os.Getgid()}
	// Our own pid: the caller is in our primary group, which is the read
	// group, through /proc/PID/status or the GID alike.
	cred := api.PeerCred{UID: 65534, GID: uint32(os.Getgid()), PID: int32(os.Getpid())}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: cred})

	for _, name := range rpcNames() {
		t.Run(name, func(t *testing.T) {
			called := false
			var err error
			if name == "Watch" {
				err = access.StreamInterceptor(nil, serverStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: fullMethod(name), IsServerStream: true},
					func(any, grpc.ServerStream) error { called = true; return nil })
			} else {
				_, err = access.UnaryInterceptor(ctx, nil, &grpc.UnaryServerInfo{FullMethod: fullMethod(name)},
					func(context.Context, any) (any, error) { called = true; return "ok", nil })
			}
			if isWriteName(name) {
				if status.Code(err) != codes.PermissionDenied || called {
					t.Errorf("write by a reader: %v, handler called %v; want PERMISSION_DENIED and no call", err, called)
				}
				if !strings.Contains(status.Convert(err).Message(), "mptcp-admin") {
					t.Errorf("refusal %q does not name the admin group", status.Convert(err).Message())
				}
				if fe := api.FromStatus(err); !errors.Is(fe, os.ErrPermission) || !errors.Is(fe, genl.ErrPermission) {
					t.Errorf("client side, the refusal %v does not match os.ErrPermission", fe)
				}
				return
			}
			if err != nil || !called {
				t.Errorf("read by a reader: %v, handler called %v; want it served", err, called)
			}
		})
	}

	// A stranger may do nothing; no peer at all is unauthenticated.
	stranger := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: api.PeerCred{UID: 65534, GID: 65534, PID: int32(os.Getpid())}})
	strict := api.Access{DaemonUID: -2, AdminGID: -1, ReadGID: 54321}
	handler := func(context.Context, any) (any, error) { t.Error("handler called"); return nil, nil }
	if _, err := strict.UnaryInterceptor(stranger, nil, &grpc.UnaryServerInfo{FullMethod: fullMethod("GetStatus")}, handler); status.Code(err) != codes.PermissionDenied {
		t.Errorf("read by a stranger: %v, want PERMISSION_DENIED", err)
	}
	if _, err := strict.UnaryInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: fullMethod("GetStatus")}, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("call without peer: %v, want UNAUTHENTICATED", err)
	}

	// A handler's error leaves the interceptor as a status.
	root := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: api.PeerCred{UID: 0, PID: int32(os.Getpid())}})
	_, err := access.UnaryInterceptor(root, nil, &grpc.UnaryServerInfo{FullMethod: fullMethod("DeleteEndpoint")},
		func(context.Context, any) (any, error) { return nil, genl.ErrNotFound })
	if status.Code(err) != codes.NotFound {
		t.Errorf("handler error through the interceptor: %v, want NOT_FOUND", err)
	}
	err = access.StreamInterceptor(nil, serverStream{ctx: root}, &grpc.StreamServerInfo{FullMethod: fullMethod("Watch")},
		func(any, grpc.ServerStream) error { return genl.ErrUnavailable })
	if status.Code(err) != codes.Unavailable {
		t.Errorf("stream handler error through the interceptor: %v, want UNAVAILABLE", err)
	}
}

// TestUnixSocketPeerCred: on the unix socket the caller's identity is its
// SO_PEERCRED: this process, which (as the daemon's user) may write.
func TestUnixSocketPeerCred(t *testing.T) {
	backend := newFakeBackend()
	seen := make(chan credentials.AuthInfo, 1)
	socket := socketPath(t)
	svc := listen(t, backend, api.Options{
		Socket: socket, SocketGID: -1, Access: rootAccess(),
		Unary: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if p, ok := peer.FromContext(ctx); ok {
				select {
				case seen <- p.AuthInfo:
				default:
				}
			}
			return handler(ctx, req)
		}},
	})
	serve(t, svc)
	_, client := dial(t, socket, nil, false)
	if _, err := client.CreateEndpoint(callCtx(t), &pb.CreateEndpointRequest{Address: "192.0.2.1", Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}}); err != nil {
		t.Fatalf("write by the daemon's user: %v", err)
	}
	cred, ok := (<-seen).(api.PeerCred)
	if !ok || int(cred.UID) != os.Getuid() || int(cred.GID) != os.Getgid() || int(cred.PID) != os.Getpid() {
		t.Errorf("caller %+v, want this process's uid %d gid %d pid %d", cred, os.Getuid(), os.Getgid(), os.Getpid())
	}
	if cred.AuthType() != "peercred" {
		t.Errorf("AuthType %q", cred.AuthType())
	}
}
