package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/testkit"
)

func probeConfig(broker string) ProbeConfig {
	return ProbeConfig{
		Broker: broker, ClientID: "probe-test", Topic: "dockd/v1/s/d/doctor",
		StatusTopic: "dockd/v1/s/d/status", Timeout: 5 * time.Second,
	}
}

// retain publishes a retained message as the station would.
func retain(t *testing.T, broker, topic, payload string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("retainer"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func TestProbeRoundTrip(t *testing.T) {
	b := testkit.StartMosquitto(t)
	retain(t, b.URL(), "dockd/v1/s/d/status", `{"state":"online"}`)
	res, err := Probe(context.Background(), probeConfig(b.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reachable || !res.Connected || !res.Acked || !res.Echoed || res.TLS {
		t.Errorf("result %+v", res)
	}
	if res.RoundTrip <= 0 || res.RoundTrip > 5*time.Second {
		t.Errorf("round trip %v", res.RoundTrip)
	}
	if string(res.Status) != `{"state":"online"}` {
		t.Errorf("retained status %q", res.Status)
	}
}

func TestProbeFailures(t *testing.T) {
	stopped := testkit.StartMosquitto(t)
	stopped.Stop()

	pw := filepath.Join(t.TempDir(), "passwd")
	testkit.WriteMosquittoPasswd(t, pw, map[string]string{"door7": "right-horse-battery"})
	authed := testkit.StartMosquitto(t, testkit.WithMosqAuth(pw, ""))

	acl := filepath.Join(t.TempDir(), "acl")
	os.WriteFile(acl, []byte("user door7\ntopic read dockd/v1/s/d/#\n"), 0o600) // may not publish
	readOnly := testkit.StartMosquitto(t, testkit.WithMosqAuth(pw, acl))

	tests := []struct {
		name     string
		cfg      func() ProbeConfig
		want     error
		progress func(ProbeResult) bool
	}{
		{"stopped broker", func() ProbeConfig { return probeConfig(stopped.URL()) }, ErrProbeDial,
			func(r ProbeResult) bool { return !r.Reachable }},
		{"bad password", func() ProbeConfig {
			c := probeConfig(authed.URL())
			c.Username, c.Password = "door7", "wrong-horse"
			return c
		}, ErrProbeAuth, func(r ProbeResult) bool { return r.Reachable && !r.Connected }},
		{"no credentials", func() ProbeConfig { return probeConfig(authed.URL()) }, ErrProbeAuth, nil},
		{"acl drops publish", func() ProbeConfig {
			c := probeConfig(readOnly.URL())
			c.Username, c.Password, c.Timeout = "door7", "right-horse-battery", 1500*time.Millisecond
			return c
		}, ErrProbeRoundTrip, func(r ProbeResult) bool { return r.Connected && !r.Echoed }},
		{"bad url", func() ProbeConfig { return probeConfig("127.0.0.1:1") }, ErrProbeConfig, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Probe(context.Background(), tt.cfg())
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "horse") {
				t.Errorf("error reveals the password: %v", err)
			}
			if tt.progress != nil && !tt.progress(res) {
				t.Errorf("result %+v", res)
			}
		})
	}

	ok := probeConfig(authed.URL())
	ok.Username, ok.Password = "door7", "right-horse-battery"
	if _, err := Probe(context.Background(), ok); err != nil {
		t.Errorf("right password: %v", err)
	}
}

func TestProbeTLS(t *testing.T) {
	pki := testkit.NewPKI(t, "dockd-test-ca")
	cert, key := pki.Server(t, "broker", []string{"127.0.0.1"})
	b := testkit.StartMosquitto(t, testkit.WithMosqTLS(testkit.MosqTLS{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}))

	pem, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	c := probeConfig(b.TLSURL())
	c.TLS = &tls.Config{RootCAs: pool}
	res, err := Probe(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !res.TLS || res.TLSVersion == "" || !strings.Contains(res.ServerCert, "broker") || res.ServerCertExpiry.Before(time.Now()) || !res.Echoed {
		t.Errorf("result %+v", res)
	}

	// Without the CA (system roots only) the handshake must fail.
	c.TLS = nil
	res, err = Probe(context.Background(), c)
	if !errors.Is(err, ErrProbeTLS) || !res.Reachable || res.Connected {
		t.Fatalf("unknown CA: err %v, result %+v", err, res)
	}
}
