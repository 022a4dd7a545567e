package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"
)

func loadPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", file)
	}
	return p
}

func leafOf(t *testing.T, cert, key string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("load %s/%s: %v", cert, key, err)
	}
	l, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPKIIssuesVerifiableCertificates(t *testing.T) {
	p := NewPKI(t, "site-ca")
	other := NewPKI(t, "other-ca")
	srvCert, srvKey := p.Server(t, "broker", []string{"127.0.0.1", "localhost"})
	cliCert, cliKey := p.Client(t, "dc-east-door-07")
	oldCert, oldKey := p.Client(t, "old", Expired())
	strangerCert, strangerKey := other.Client(t, "stranger")

	for _, f := range []string{srvKey, cliKey, oldKey} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	pool := loadPool(t, p.CAFile)
	srv := leafOf(t, srvCert, srvKey)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("server cert for %s: %v", host, err)
		}
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "broker.example"}); err == nil {
		t.Error("server cert verified for a name it does not carry")
	}
	cases := []struct {
		name   string
		cert   *x509.Certificate
		roots  *x509.CertPool
		wantOK bool
		wantCN string
	}{
		{"station client", leafOf(t, cliCert, cliKey), pool, true, "dc-east-door-07"},
		{"expired client", leafOf(t, oldCert, oldKey), pool, false, "old"},
		{"other CA", leafOf(t, strangerCert, strangerKey), pool, false, "stranger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cert.Verify(x509.VerifyOptions{Roots: tc.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: time.Now()})
			if (err == nil) != tc.wantOK {
				t.Errorf("verify: err=%v, want ok=%v", err, tc.wantOK)
			}
			if tc.cert.Subject.CommonName != tc.wantCN {
				t.Errorf("CN %q, want %q", tc.cert.Subject.CommonName, tc.wantCN)
			}
		})
	}
}
