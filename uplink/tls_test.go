package uplink

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockd/dockd/internal/testkit"
)

func TestTLSConfigFiles(t *testing.T) {
	pki := testkit.NewPKI(t, "unit-ca")
	cert, key := pki.Client(t, "dc-east-door-07")
	otherCert, _ := pki.Client(t, "someone-else")
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	keyMode := func(mode os.FileMode) string { return write(fmt.Sprintf("key-%04o.pem", mode), keyPEM, mode) }
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(keyMode(0o644), link); err != nil {
		t.Fatal(err)
	}
	notPEM := write("ca-garbage.pem", []byte("not a certificate\n"), 0o644)

	cases := []struct {
		name          string
		ca, cert, key string
		wantErr       error  // errors.Is target, nil for success
		wantMsg       string // substring of the error
		wantCert      bool
		wantPerm      os.FileMode
	}{
		{name: "server verification only", ca: pki.CAFile},
		{name: "system roots", ca: ""},
		{name: "mutual TLS 0600", ca: pki.CAFile, cert: cert, key: key, wantCert: true},
		{name: "mutual TLS 0400", ca: pki.CAFile, cert: cert, key: keyMode(0o400), wantCert: true},
		{name: "key readable by group", ca: pki.CAFile, cert: cert, key: keyMode(0o640), wantErr: ErrInsecureKeyFile, wantMsg: "chmod 600", wantPerm: 0o640},
		{name: "key readable by other", ca: pki.CAFile, cert: cert, key: keyMode(0o604), wantErr: ErrInsecureKeyFile, wantMsg: "chmod 600", wantPerm: 0o604},
		{name: "key writable by group", ca: pki.CAFile, cert: cert, key: keyMode(0o620), wantErr: ErrInsecureKeyFile, wantPerm: 0o620},
		{name: "symlink to a world-readable key", ca: pki.CAFile, cert: cert, key: link, wantErr: ErrInsecureKeyFile, wantMsg: "chmod 600 " + link, wantPerm: 0o644},
		{name: "missing key", ca: pki.CAFile, cert: cert, key: filepath.Join(dir, "nope.key"), wantErr: fs.ErrNotExist},
		{name: "missing CA", ca: filepath.Join(dir, "nope.pem"), wantErr: fs.ErrNotExist},
		{name: "CA file without certificates", ca: notPEM, wantErr: ErrNoCACertificates, wantMsg: notPEM},
		{name: "cert without key", ca: pki.CAFile, cert: cert, wantErr: ErrInvalidConfig},
		{name: "key without cert", ca: pki.CAFile, key: key, wantErr: ErrInvalidConfig},
		{name: "key does not match cert", ca: pki.CAFile, cert: otherCert, key: key, wantMsg: "loading client certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := TLSConfig(tc.ca, tc.cert, tc.key, "broker.example")
			if tc.wantErr == nil && tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("TLSConfig: %v", err)
				}
				if cfg.ServerName != "broker.example" || cfg.MinVersion < 0x0303 || cfg.InsecureSkipVerify {
					t.Errorf("config %+v: want ServerName broker.example, TLS >= 1.2, verification on", cfg)
				}
				if (tc.ca != "") != (cfg.RootCAs != nil) {
					t.Errorf("RootCAs set=%v for ca %q", cfg.RootCAs != nil, tc.ca)
				}
				if got := len(cfg.Certificates) > 0; got != tc.wantCert {
					t.Errorf("client certificate present=%v, want %v", got, tc.wantCert)
				}
				if tc.wantCert && time.Until(CertificateExpiry(cfg)) < time.Hour {
					t.Errorf("CertificateExpiry %v, want about a day ahead", CertificateExpiry(cfg))
				}
				return
			}
			if err == nil {
				t.Fatalf("TLSConfig succeeded, want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want errors.Is %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			var kfe *KeyFileError
			if errors.As(err, &kfe) != (tc.wantPerm != 0) {
				t.Errorf("errors.As *KeyFileError = %v, want %v", kfe != nil, tc.wantPerm != 0)
			} else if kfe != nil && kfe.Mode != tc.wantPerm {
				t.Errorf("KeyFileError.Mode %04o, want %04o", kfe.Mode, tc.wantPerm)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error contains key material: %v", err)
			}
		})
	}
}

func TestConfigPrintingHidesSecrets(t *testing.T) {
	pki := testkit.NewPKI(t, "unit-ca")
	cert, key := pki.Client(t, "dc-east-door-07")
	tlsCfg, err := TLSConfig(pki.CAFile, cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "hunter2-very-secret"
	cfg := Config{Broker: "ssl://station:" + secret + "@broker:8883", ClientID: "dockd-x", Username: "station",
		Password: secret, TLS: tlsCfg, EventsTopic: "e", StatusTopic: "s"}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("cfg", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("cfg", "cfg", cfg)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		sb.WriteString(fmt.Sprintf(verb, cfg) + "\n")
	}
	sb.WriteString(fmt.Sprintf("%v %+v\n", &cfg, []Config{cfg}))
	out := sb.String()
	if strings.Contains(out, secret) {
		t.Fatalf("secret printed:\n%s", out)
	}
	for _, want := range []string{"password:set", "password_set=true", "client_cert:true", "dockd-x"} {
		if !strings.Contains(out, want) {
			t.Errorf("printed config lacks %q:\n%s", want, out)
		}
	}
}
