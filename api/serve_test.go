package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// pki is a CA and the files of certificates it signed.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// caFile is the CA certificate in PEM.
	caFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), cert: cert, key: key}
	p.caFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for name (a server's for ip, if set, else a
// client's) and returns its certificate and key files.
func (p *pki) issue(t *testing.T, name string, ip net.IP) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if ip != nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func tcpAddr(t *testing.T, svc *api.Service) string {
	t.Helper()
	for _, a := range svc.Addrs() {
		if a.Network() == "tcp" {
			return a.String()
		}
	}
	t.Fatalf("no TCP listener in %v", svc.Addrs())
	return ""
}

var createReq = &pb.CreateEndpointRequest{Address: "192.0.2.1", Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}}

// TestTCPMutualTLS: the TCP listener with TLS serves only clients with a
// certificate from its CA, and those may write; the others fail the
// handshake, and nothing of theirs reaches the backend. (What the client
// reads when the server refuses its certificate depends on timing — the
// alert, or a broken pipe — so only the code is checked.)
func TestTCPMutualTLS(t *testing.T) {
	ca := newPKI(t, "mptcpd-test")
	serverCert, serverKey := ca.issue(t, "server", net.IPv4(127, 0, 0, 1))
	clientCert, clientKey := ca.issue(t, "client", nil)
	other := newPKI(t, "intruder")
	otherCert, otherKey := other.issue(t, "intruder-client", nil)

	serverTLS, err := api.ServerTLS(serverCert, serverKey, ca.caFile)
	if err != nil {
		t.Fatal(err)
	}
	backend := newFakeBackend()
	svc := listen(t, backend, api.Options{TCP: "127.0.0.1:0", TLS: serverTLS, Access: rootAccess()})
	serve(t, svc)
	addr := tcpAddr(t, svc)

	t.Run("no client certificate", func(t *testing.T) {
		conf, err := api.ClientTLS("", "", ca.caFile)
		if err != nil {
			t.Fatal(err)
		}
		_, client := dial(t, addr, conf, false)
		_, err = client.GetStatus(callCtx(t), &pb.GetStatusRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("GetStatus without a client certificate: %v, want UNAVAILABLE", err)
		}
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		conf, err := api.ClientTLS(otherCert, otherKey, ca.caFile)
		if err != nil {
			t.Fatal(err)
		}
		_, client := dial(t, addr, conf, false)
		_, err = client.CreateEndpoint(callCtx(t), createReq)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("CreateEndpoint with another CA's certificate: %v, want UNAVAILABLE", err)
		}
	})
	t.Run("server not trusted", func(t *testing.T) {
		conf, err := api.ClientTLS(clientCert, clientKey, other.caFile)
		if err != nil {
			t.Fatal(err)
		}
		_, client := dial(t, addr, conf, false)
		_, err = client.GetStatus(callCtx(t), &pb.GetStatusRequest{})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("GetStatus from a server another CA signed: %v, want UNAVAILABLE from the certificate check", err)
		}
	})
	if calls := backend.Calls(); len(calls) != 0 {
		t.Fatalf("calls without a valid certificate reached the backend: %v", calls)
	}

	t.Run("certificate of the CA", func(t *testing.T) {
		conf, err := api.ClientTLS(clientCert, clientKey, ca.caFile)
		if err != nil {
			t.Fatal(err)
		}
		_, client := dial(t, addr, conf, false)
		if _, err := client.GetStatus(callCtx(t), &pb.GetStatusRequest{}); err != nil {
			t.Errorf("GetStatus: %v", err)
		}
		resp, err := client.CreateEndpoint(callCtx(t), createReq)
		if err != nil {
			t.Fatalf("CreateEndpoint: %v", err)
		}
		if resp.GetEndpoint().GetAddress() != "192.0.2.1" || resp.GetEndpoint().GetOwner() != pb.Owner_OWNER_API {
			t.Errorf("created %v", resp.GetEndpoint())
		}
		if calls := backend.Calls(); !slices.Equal(calls, []string{"Status", "AddEndpoint"}) {
			t.Errorf("backend saw %v, want [Status AddEndpoint]", calls)
		}
	})
}

// TestTCPInsecureIsReadOnly: a plaintext listener on loopback serves reads
// and refuses writes with PERMISSION_DENIED, which the client matches as
// os.ErrPermission.
func TestTCPInsecureIsReadOnly(t *testing.T) {
	backend := newFakeBackend()
	svc := listen(t, backend, api.Options{TCP: "127.0.0.1:0", Insecure: true, Access: rootAccess()})
	serve(t, svc)
	_, client := dial(t, tcpAddr(t, svc), nil, true)
	if _, err := client.ListEndpoints(callCtx(t), &pb.ListEndpointsRequest{}); err != nil {
		t.Errorf("read over insecure TCP: %v", err)
	}
	_, err := client.CreateEndpoint(callCtx(t), createReq)
	if status.Code(err) != codes.PermissionDenied || !errors.Is(err, os.ErrPermission) || !errors.Is(err, genl.ErrPermission) {
		t.Errorf("write over insecure TCP: %v, want PERMISSION_DENIED matching os.ErrPermission", err)
	}
	if !strings.Contains(err.Error(), "read-only") {
		t.Errorf("refusal %q does not say the listener is read-only", err)
	}
	if calls := backend.Calls(); !slices.Equal(calls, []string{"Endpoints"}) {
		t.Errorf("backend saw %v, want only the read", calls)
	}
}

// TestListenRefuses: Listen refuses an insecure listener off loopback, TLS
// that does not require client certificates, and TCP with neither; it
// then leaves no listener behind, not even the unix socket it opened.
func TestListenRefuses(t *testing.T) {
	noClientCerts := &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven}
	cases := []struct {
		name string
		opts api.Options
		want string
	}{
		{"insecure on any address", api.Options{TCP: "0.0.0.0:0", Insecure: true}, "may only listen on 127.0.0.1 or ::1"},
		{"insecure on all of IPv6", api.Options{TCP: "[::]:0", Insecure: true}, "may only listen on 127.0.0.1 or ::1"},
		{"insecure without host", api.Options{TCP: ":0", Insecure: true}, "may only listen on 127.0.0.1 or ::1"},
		{"insecure on a LAN address", api.Options{TCP: "192.0.2.1:50051", Insecure: true}, "may only listen on 127.0.0.1 or ::1"},
		{"insecure on a name", api.Options{TCP: "example.com:50051", Insecure: true}, "may only listen on 127.0.0.1 or ::1"},
		{"TLS without client certificates", api.Options{TCP: "127.0.0.1:0", TLS: noClientCerts}, "client certificates"},
		{"TLS with optional client certificates", api.Options{TCP: "127.0.0.1:0", TLS: &tls.Config{ClientAuth: tls.RequireAnyClientCert}}, "client certificates"},
		{"neither", api.Options{TCP: "127.0.0.1:0"}, "without TLS"},
		{"bad address", api.Options{TCP: "127.0.0.1", Insecure: true}, "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			socket := socketPath(t)
			tc.opts.Socket, tc.opts.SocketGID, tc.opts.Access = socket, -1, rootAccess()
			svc, err := api.Listen(tc.opts, newFakeBackend())
			if err == nil {
				svc.Close()
				t.Fatalf("Listen(%s) succeeded", tc.opts.TCP)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if _, err := os.Lstat(socket); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the unix socket is left behind: %v", err)
			}
		})
	}
}

// TestUnixSocket: the socket has mode 0660 and the group asked for; a
// stale socket is replaced, a live one (another server) is refused and
// left working.
func TestUnixSocket(t *testing.T) {
	socket := socketPath(t)

	// A stale socket: its listener is gone, its file is not.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	if err := stale.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(socket); err != nil {
		t.Fatalf("stale socket not left: %v", err)
	}

	gid := -1
	if os.Getuid() == 0 {
		gid = 65534 // giving the socket to another group needs root
	}
	backend := newFakeBackend()
	svc := listen(t, backend, api.Options{Socket: socket, SocketGID: gid})
	serve(t, svc)
	fi, err := os.Lstat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && int(st.Gid) != gid {
		t.Errorf("socket group %d, want %d", st.Gid, gid)
	}
	_, client := dial(t, socket, nil, false)
	if _, err := client.GetStatus(callCtx(t), &pb.GetStatusRequest{}); err != nil {
		t.Fatalf("GetStatus on the replaced socket: %v", err)
	}

	// A second daemon on the same socket is refused, and the first one
	// keeps its socket.
	if second, err := api.Listen(api.Options{Socket: socket, SocketGID: -1, Access: rootAccess()}, newFakeBackend()); err == nil {
		second.Close()
		t.Fatal("Listen on a live socket succeeded")
	} else if !strings.Contains(err.Error(), "another process serves") {
		t.Errorf("error %q does not say another process serves there", err)
	}
	if _, err := client.GetStatus(callCtx(t), &pb.GetStatusRequest{}); err != nil {
		t.Errorf("the first server after the refused second: %v", err)
	}
	if calls := backend.Calls(); len(calls) != 2 {
		t.Errorf("the first backend saw %v, want both calls", calls)
	}

	// A unix:// target reaches the same socket.
	_, client = dial(t, "unix://"+socket, nil, false)
	if _, err := client.GetStatus(callCtx(t), &pb.GetStatusRequest{}); err != nil {
		t.Errorf("GetStatus through unix://: %v", err)
	}
}

// TestDialRefusesPlainTCP: Dial will not talk to a TCP address without
// TLS unless told plaintext.
func TestDialRefusesPlainTCP(t *testing.T) {
	if _, _, err := api.Dial("127.0.0.1:50051", nil, false); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("Dial to TCP without TLS: %v, want a refusal naming plaintext", err)
	}
}

// TestHealthAndReflection: the health service says NOT_SERVING until
// SetServing(true), both overall and for the API service; reflection lists
// the API service.
func TestHealthAndReflection(t *testing.T) {
	socket := socketPath(t)
	svc, err := api.Listen(api.Options{Socket: socket, SocketGID: -1, Access: rootAccess()}, newFakeBackend())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, svc)
	conn, _ := dial(t, socket, nil, false)
	health := healthpb.NewHealthClient(conn)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return resp.GetStatus()
	}
	name := pb.MptcpdService_ServiceDesc.ServiceName
	for _, s := range []string{"", name} {
		if got := check(s); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health of %q before SetServing(true): %v, want NOT_SERVING", s, got)
		}
	}
	svc.SetServing(true)
	for _, s := range []string{"", name} {
		if got := check(s); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q after SetServing(true): %v, want SERVING", s, got)
		}
	}
	svc.SetServing(false)
	if got := check(name); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after SetServing(false): %v, want NOT_SERVING", got)
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !slices.Contains(services, "mptcpd.v1.MptcpdService") || !slices.Contains(services, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %v, want mptcpd.v1.MptcpdService and grpc.health.v1.Health", services)
	}
	_ = stream.CloseSend()
}

// TestStatusConverted: GetStatus carries the backend's status.
func TestStatusConverted(t *testing.T) {
	_, client := startUnix(t, newFakeBackend())
	resp, err := client.GetStatus(callCtx(t), &pb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.GetStatus()
	if st.GetMode() != pb.Mode_MODE_KERNEL || st.GetVersion() != "test" || !st.GetReady() || st.GetStarted().AsTime().Unix() != 1700000000 {
		t.Errorf("status %v", st)
	}
}
