package mpx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"
)

// testCA issues certificates for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string, client bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMutualTLS runs sessions whose subflows are TLS with client
// certificates: a client with a certificate of the converter's CA gets
// through, with a second subflow joined; one without a certificate, or
// with one of another CA, does not reach the destination.
func TestMutualTLS(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	conv := startConverter(t, func(s *Server) {
		s.Key = nil
		s.TLS = &tls.Config{
			Certificates: []tls.Certificate{ca.issue(t, "converter", false)},
			ClientCAs:    ca.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
		}
	})
	echo := echoServer(t)
	dial := func(cert *tls.Certificate) (*Conn, error) {
		cfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		cl := &Client{Converter: conv.addr, TLS: cfg}
		cl.SetPaths([]Path{{ID: 1, Addr: netip.MustParseAddr("127.0.0.1")}, {ID: 2, Addr: netip.MustParseAddr("127.0.0.2")}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cl.Dial(ctx, AddrFromAddrPort(echo))
	}
	good := ca.issue(t, "laptop", true)
	c, err := dial(&good)
	if err != nil {
		t.Fatalf("client with a good certificate: %v", err)
	}
	waitSubflows(t, c, 2)
	roundTrip(t, c, 2<<20)
	_ = c.Close()

	if _, err := dial(nil); err == nil {
		t.Error("a client without a certificate opened a session")
	}
	stranger := other.issue(t, "stranger", true)
	if _, err := dial(&stranger); err == nil {
		t.Error("a client with a certificate of another CA opened a session")
	}
}
