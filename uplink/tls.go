package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"time"
)

// ErrInsecureKeyFile is wrapped (via *KeyFileError) when a private key file
// can be read or written by anyone but its owner.
var ErrInsecureKeyFile = errors.New("private key file is accessible by group or other")

// ErrNoCACertificates means the CA file held no usable PEM certificate.
var ErrNoCACertificates = errors.New("no PEM certificate found")

// KeyFileError reports a private key whose permissions are too open. Its
// message carries the fix (a chmod command); errors.Is(err,
// ErrInsecureKeyFile) holds.
type KeyFileError struct {
	Path string      // the key file as configured
	Mode fs.FileMode // its permission bits (of the symlink target)
}

func (e *KeyFileError) Error() string {
	return fmt.Sprintf("uplink: private key %s has mode %04o, readable or writable by group/other; refusing to use it: run `chmod 600 %s` (owned by the user dockd runs as)",
		e.Path, e.Mode.Perm(), e.Path)
}

// Unwrap makes errors.Is(err, ErrInsecureKeyFile) true.
func (e *KeyFileError) Unwrap() error { return ErrInsecureKeyFile }

// TLSConfig builds the client TLS configuration for the uplink from PEM
// files, for Config.TLS:
//
//   - ca: the CA bundle that must have signed the broker's certificate;
//     empty uses the system roots. The broker is always verified (there is
//     no way to turn verification off here).
//   - cert, key: the station's client certificate and private key for
//     mutual TLS; both or neither. The key file must not be accessible by
//     group or other (mode 0600 or stricter); otherwise a *KeyFileError
//     wrapping ErrInsecureKeyFile is returned, with the chmod fix in its
//     message. The check follows symlinks.
//   - serverName: the name checked against the broker's certificate; empty
//     means the broker URL's host (set by the Client when it dials).
//
// TLS 1.2 is the minimum. The files are read once, here; rotate a
// certificate by restarting the daemon. Errors name the file and wrap the
// cause. The returned config holds the private key: never log it (Config's
// String and LogValue leave it out).
func TLSConfig(ca, cert, key, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("uplink: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink: CA file %s: %w", ca, ErrNoCACertificates)
		}
		cfg.RootCAs = pool
	}
	switch {
	case cert == "" && key == "":
		return cfg, nil
	case cert == "":
		return nil, fmt.Errorf("%w: key file %s given without a certificate file", ErrInvalidConfig, key)
	case key == "":
		return nil, fmt.Errorf("%w: certificate file %s given without a key file", ErrInvalidConfig, cert)
	}
	if err := CheckKeyFile(key); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		// The tls package's message never includes key material.
		return nil, fmt.Errorf("uplink: loading client certificate %s with key %s: %w", cert, key, err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// CheckKeyFile returns a *KeyFileError if path (after symlinks) grants any
// permission to group or other, and a wrapped fs error if it cannot be
// inspected. It reads no key material.
func CheckKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("uplink: checking key file: %w", err)
	}
	if fi.IsDir() {
		return fmt.Errorf("uplink: key file %s is a directory", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &KeyFileError{Path: path, Mode: fi.Mode().Perm()}
	}
	return nil
}

// CertificateExpiry returns the NotAfter of the client certificate in cfg
// (zero if there is none or it cannot be parsed), for a status field or an
// early warning before the broker starts refusing the station.
func CertificateExpiry(cfg *tls.Config) time.Time {
	if cfg == nil || len(cfg.Certificates) == 0 {
		return time.Time{}
	}
	c := cfg.Certificates[0]
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return time.Time{}
		}
	}
	if leaf == nil {
		return time.Time{}
	}
	return leaf.NotAfter
}

// String describes the Config for humans and logs without its secrets: the
// password is shown only as set or not, and of the TLS configuration only
// whether it is present and which server name it checks. %v and %+v use
// it, so logging a Config by accident leaks nothing.
func (c Config) String() string {
	pw := "unset"
	if c.Password != "" {
		pw = "set"
	}
	tlsDesc := "none"
	if c.TLS != nil {
		tlsDesc = fmt.Sprintf("{server_name:%q client_cert:%t}", c.TLS.ServerName, len(c.TLS.Certificates) > 0)
	}
	return fmt.Sprintf("uplink.Config{broker:%q client_id:%q username:%q password:%s tls:%s events:%q status:%q in_flight:%d}",
		redactURL(c.Broker), c.ClientID, c.Username, pw, tlsDesc, c.EventsTopic, c.StatusTopic, c.InFlight)
}

// GoString is String, so %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// LogValue renders the Config for slog without its secrets (see String).
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("broker", redactURL(c.Broker)),
		slog.String("client_id", c.ClientID),
		slog.String("username", c.Username),
		slog.Bool("password_set", c.Password != ""),
		slog.Bool("tls", c.TLS != nil),
		slog.String("events_topic", c.EventsTopic),
		slog.String("status_topic", c.StatusTopic),
	}
	if c.TLS != nil {
		attrs = append(attrs, slog.Bool("client_cert", len(c.TLS.Certificates) > 0))
	}
	return slog.GroupValue(attrs...)
}

// redactURL hides a password embedded in a broker URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable broker URL)"
	}
	return u.Redacted()
}
