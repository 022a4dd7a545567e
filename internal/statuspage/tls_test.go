package statuspage

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testPKI is a throwaway CA with a server and a client certificate.
type testPKI struct {
	caPEM               []byte
	certFile, keyFile   string
	caFile              string
	client, otherClient tls.Certificate
	pool                *x509.CertPool
}

func newCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key, der
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func tlsPair(t *testing.T, der []byte, key *ecdsa.PrivateKey) tls.Certificate {
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", kd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func makePKI(t *testing.T) *testPKI {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey, caDER := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dockd test CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, srvKey, srvDER := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "station"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	_, cliKey, cliDER := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "tech-anna"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	// A client certificate from a CA the station does not trust.
	other, otherKey, _ := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "other CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, evilKey, evilDER := newCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "mallory"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, other, otherKey)

	p := &testPKI{caPEM: pemOf("CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = filepath.Join(dir, "ca.pem")
	p.certFile = filepath.Join(dir, "server.pem")
	p.keyFile = filepath.Join(dir, "server.key")
	kd, _ := x509.MarshalECPrivateKey(srvKey)
	os.WriteFile(p.caFile, p.caPEM, 0o600)
	os.WriteFile(p.certFile, pemOf("CERTIFICATE", srvDER), 0o600)
	os.WriteFile(p.keyFile, pemOf("EC PRIVATE KEY", kd), 0o600)
	p.client = tlsPair(t, cliDER, cliKey)
	p.otherClient = tlsPair(t, evilDER, evilKey)
	return p
}

// With client certificates configured, a technician with a certificate from
// the station's CA may press buttons from the LAN and is logged by name;
// one without, or with a foreign certificate, does not get past TLS.
func TestClientCertificates(t *testing.T) {
	pki, src, addr := serveClientCA(t)
	url := "https://" + addr + "/api/light-test"

	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: certs}}}
	}
	post := func(c *http.Client) (*http.Response, error) {
		return c.Post(url, "application/json", strings.NewReader("{}"))
	}

	resp, err := post(client(pki.client))
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body["by"] != "cert:tech-anna" || src.lightTests() != 1 {
		t.Fatalf("with certificate: %d %v (tests %d)", resp.StatusCode, body, src.lightTests())
	}
	for name, c := range map[string]*http.Client{"no certificate": client(), "foreign certificate": client(pki.otherClient)} {
		if resp, err := post(c); err == nil {
			resp.Body.Close()
			t.Fatalf("%s: got HTTP %d, want a TLS failure", name, resp.StatusCode)
		}
	}
	if src.lightTests() != 1 {
		t.Fatalf("light tests %d after refused clients", src.lightTests())
	}
}

// A browser presenting a client certificate sends it along on cross-site
// requests too: with an Origin (a browser) a certificate alone is not
// enough, the page's session and its CSRF token are needed.
func TestClientCertificateBrowserNeedsCSRF(t *testing.T) {
	pki, src, addr := serveClientCA(t)
	base := "https://" + addr
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}}}
	req, _ := http.NewRequest("POST", base+"/api/light-test", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || src.lightTests() != 0 {
		t.Fatalf("browser with a certificate, no CSRF token: %d (tests %d)", resp.StatusCode, src.lightTests())
	}
	// Loading the page signs the certificate's holder in: a secure session
	// cookie and the token in the page.
	resp, err = c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf-token" content="([0-9a-f]{64})"`).FindSubmatch(page)
	if m == nil || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("page for a certificate holder: token %q cookies %v", m, resp.Cookies())
	}
	req, _ = http.NewRequest("POST", base+"/api/light-test", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	req.Header.Set(csrfHeader, string(m[1]))
	req.AddCookie(resp.Cookies()[0])
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || src.lightTests() != 1 || src.actors[0].Who != "cert:tech-anna" || src.actors[0].Via != ViaPage {
		t.Fatalf("with the session: %d %+v", resp.StatusCode, src.actors)
	}
}

func TestHostAndOriginPolicy(t *testing.T) {
	p, err := newHostPolicy([]string{"Dock-7.example.net", "box:8443"}, "0.0.0.0:8443")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "10.2.3.4": true, "localhost:9000": true, "LOCALHOST": true,
		"dock-7.example.net:8443": true, "DOCK-7.EXAMPLE.NET": true, "box": true,
		"attacker.example:8080": false, "": false, "127.0.0.1.attacker.example": false, "localhost.attacker.example:80": false,
		"dock-7.example.net.attacker.example": false, "::1": true, "fe80::1:zz": false,
	} {
		if got := p.allowed(host); got != want {
			t.Errorf("Host %q allowed %v, want %v", host, got, want)
		}
	}
	r := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/x", nil)
	for origin, want := range map[string]bool{
		"http://127.0.0.1:8080": true, "HTTP://127.0.0.1:8080": true, "https://127.0.0.1:8080": false,
		"http://127.0.0.1:8081": false, "http://127.0.0.1": false, "null": false, "http://127.0.0.1:8080/x": false,
		"http://user@127.0.0.1:8080": false, "": false,
	} {
		if got := sameOrigin(origin, r); got != want {
			t.Errorf("Origin %q same-origin %v, want %v", origin, got, want)
		}
	}
	if _, err := newHostPolicy([]string{"*.example"}, ""); !errors.Is(err, ErrConfig) {
		t.Errorf("wildcard allowed host: %v", err)
	}
}

// serveClientCA serves a page with TLS and client certificates from a
// fresh test PKI on a loopback port until the test ends; it returns the
// PKI, the page's source and the address.
func serveClientCA(t *testing.T) (*testPKI, *fakeSource, string) {
	t.Helper()
	pki := makePKI(t)
	src := newFakeSource()
	s, err := New(Config{TLSCertFile: pki.certFile, TLSKeyFile: pki.keyFile, ClientCAFile: pki.caFile}, src, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return pki, src, ln.Addr().String()
}
