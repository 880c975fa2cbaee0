package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mptcpd/mptcpd/api"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
	"github.com/mptcpd/mptcpd/tests/testbed"
)

// testPKI is a certificate authority for a test; its certificate and the
// certificates it issues are PEM files in dir.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T, dir, name string) *testPKI {
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
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, ca: ca, caKey: key, caFile: filepath.Join(dir, name+".pem")}
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue returns the paths of a new certificate and key signed by the CA:
// a server's for 127.0.0.1, or a client's.
func (p *testPKI) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

// TestAPIMutualTLS runs the daemon with a TCP listener that requires
// client certificates: a client without one, or with one from another
// CA, gets nowhere (and changes nothing); a client with a certificate
// from the configured CA may read and write.
func TestAPIMutualTLS(t *testing.T) {
	t.Parallel()
	bin := buildDaemon(t)
	bed := testbed.New(t)
	h := bed.Host("h")
	bed.Paths(h, bed.Host("srv"), 1)
	dir := t.TempDir()
	pki := newPKI(t, dir, "ca")
	srvCert, srvKey := pki.issue(t, "server", true)
	cliCert, cliKey := pki.issue(t, "client", false)
	other := newPKI(t, dir, "other-ca")
	strangerCert, strangerKey := other.issue(t, "stranger", false)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startAPIDaemon(t, bin, h, apiConfig(t.TempDir(), fmt.Sprintf("[api.tcp]\nlisten = %q\ncert = %q\nkey = %q\nclient_ca = %q\n",
		addr, srvCert, srvKey, pki.caFile)))
	before := endpointSet(t, h, true)

	dial := func(cert, key string) pb.MptcpdServiceClient {
		t.Helper()
		conf, err := api.ClientTLS(cert, key, pki.caFile)
		if err != nil {
			t.Fatal(err)
		}
		conn, c, err := api.Dial(addr, conf, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return c
	}
	for name, c := range map[string]pb.MptcpdServiceClient{
		"no certificate":              dial("", ""),
		"a certificate of another CA": dial(strangerCert, strangerKey),
	} {
		_, err := c.ListEndpoints(ctxT(t), &pb.ListEndpointsRequest{})
		wantCode(t, name+": a read", err, codes.Unavailable, nil)
		_, err = c.FlushEndpoints(ctxT(t), &pb.FlushEndpointsRequest{})
		wantCode(t, name+": a write", err, codes.Unavailable, nil)
	}
	if got := endpointSet(t, h, true); !slices.Equal(got, before) {
		t.Fatalf("refused clients changed the endpoints from %q to %q", before, got)
	}

	c := dial(cliCert, cliKey)
	if _, err := c.ListEndpoints(ctxT(t), &pb.ListEndpointsRequest{}); err != nil {
		t.Fatalf("a read with the client certificate: %v", err)
	}
	if _, err := c.CreateEndpoint(ctxT(t), &pb.CreateEndpointRequest{Address: "198.51.100.42",
		Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL}}); err != nil {
		t.Fatalf("a write with the client certificate: %v", err)
	}
	if !slices.Contains(endpointSet(t, h, false), "198.51.100.42 signal") {
		t.Fatalf("the endpoint created over mutual TLS is not in the kernel: %q", endpointSet(t, h, false))
	}
}
