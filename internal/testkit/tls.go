package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PKI is a throw-away certificate authority for tests: an ECDSA P-256 CA
// whose certificate is written to CAFile, issuing server and client
// certificates as PEM files in the test's temp dir (keys mode 0600). Not
// safe for concurrent use.
type PKI struct {
	Name   string
	Dir    string
	CAFile string // PEM CA certificate

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// CertOption adjusts an issued certificate.
type CertOption func(*x509.Certificate)

// Expired makes the certificate's validity end a day ago (it started two
// days ago).
func Expired() CertOption {
	return func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-24 * time.Hour)
	}
}

// NotYetValid makes the certificate valid only from tomorrow.
func NotYetValid() CertOption {
	return func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(24 * time.Hour)
		c.NotAfter = time.Now().Add(48 * time.Hour)
	}
}

// NewPKI creates a CA named name (its certificate's CN) for t, failing t on
// any error.
func NewPKI(t testing.TB, name string) *PKI {
	t.Helper()
	p := &PKI{Name: name, Dir: t.TempDir()}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          certSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"dockd test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("pki %s: create CA certificate: %v", name, err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatalf("pki %s: parse CA certificate: %v", name, err)
	}
	p.caKey = key
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", der, 0o644)
	return p
}

// Server issues a server certificate for hosts (IP addresses or DNS names)
// and returns the certificate and key file paths.
func (p *PKI) Server(t testing.TB, name string, hosts []string, opts ...CertOption) (certFile, keyFile string) {
	t.Helper()
	tmpl := p.leaf(t, name, x509.ExtKeyUsageServerAuth)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return p.issue(t, name, tmpl, opts)
}

// Client issues a client certificate with CommonName cn (a station id) and
// returns the certificate and key file paths.
func (p *PKI) Client(t testing.TB, cn string, opts ...CertOption) (certFile, keyFile string) {
	t.Helper()
	return p.issue(t, cn, p.leaf(t, cn, x509.ExtKeyUsageClientAuth), opts)
}

func (p *PKI) leaf(t testing.TB, cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: certSerial(t),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"dockd test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (p *PKI) issue(t testing.TB, name string, tmpl *x509.Certificate, opts []CertOption) (string, string) {
	t.Helper()
	for _, o := range opts {
		o(tmpl)
	}
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("pki %s: issue certificate %s: %v", p.Name, name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("pki %s: marshal key of %s: %v", p.Name, name, err)
	}
	file := strings.ReplaceAll(name, "/", "_") // a CN may be SITE/DOOR
	certFile := filepath.Join(p.Dir, file+".crt")
	keyFile := filepath.Join(p.Dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", kder, 0o600)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("pki: generate key: %v", err)
	}
	return k
}

func certSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("pki: serial number: %v", err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatalf("pki: write %s: %v", path, err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatalf("pki: chmod %s: %v", path, err)
	}
}

// Mosquitto 2 password-file hash parameters ($7$: PBKDF2-SHA512).
const (
	mosqPwIterations = 101
	mosqPwSaltLen    = 12
)

// WriteMosquittoPasswd writes a mosquitto password file (mode 0600) with
// the given users and passwords, hashed the way mosquitto_passwd 2.x does:
// user:$7$ITERATIONS$base64(salt)$base64(PBKDF2-SHA512(password, salt)).
func WriteMosquittoPasswd(t testing.TB, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for user, pw := range users {
		salt := make([]byte, mosqPwSaltLen)
		if _, err := rand.Read(salt); err != nil {
			t.Fatalf("password file: salt: %v", err)
		}
		hash, err := pbkdf2.Key(sha512.New, pw, salt, mosqPwIterations, sha512.Size)
		if err != nil {
			t.Fatalf("password file: hash for %s: %v", user, err)
		}
		fmt.Fprintf(&b, "%s:$7$%d$%s$%s\n", user, mosqPwIterations,
			base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(hash))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("password file: write %s: %v", path, err)
	}
}
