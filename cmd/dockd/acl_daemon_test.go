package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dockd/dockd/internal/allowlist"
	"github.com/dockd/dockd/internal/command"
	"github.com/dockd/dockd/internal/dock"
	"github.com/dockd/dockd/internal/testkit"
	"github.com/dockd/dockd/uplink/contract"
)

// The real daemon as station dc-east/door-07 behind the shipped broker
// config and ACL (firmware-config/, only paths and ports moved), with its
// client certificate's CN as its username: its status, events, command
// replies and allowlist acks reach central, central's commands and list
// updates reach it, and its offline status arrives when it stops. (Issue
// 12: with the old ACL the replies and acks were denied while the station
// logged success.)
func TestDaemonThroughShippedACL(t *testing.T) {
	conf, err := os.ReadFile("../../firmware-config/mosquitto-dockd.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile("../../firmware-config/mosquitto-acl.example")
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pki := testkit.NewPKI(t, "site-ca")
	srvCert, srvKey := pki.Server(t, "broker", []string{"127.0.0.1"})
	st := contract.ExampleStations[0]
	cert, key := pki.Client(t, st.Username())
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	testkit.WriteMosquittoPasswd(t, pw, map[string]string{contract.ACLCentralUser: "central-pw"})
	b := testkit.StartDeployedMosquitto(t, string(conf), map[string][]byte{
		"/etc/mosquitto/dockd.acl": acl, "/etc/mosquitto/dockd.passwd": read(pw), "/etc/mosquitto/ca/dockd-ca.pem": read(pki.CAFile),
		"/etc/mosquitto/certs/broker.crt": read(srvCert), "/etc/mosquitto/certs/broker.key": read(srvKey),
	})

	// Central: password over the shipped central listener.
	var mu sync.Mutex
	var got []testkit.Message
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(read(pki.CAFile))
	cli := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.PortURL(8884)).SetClientID("central").
		SetUsername(contract.ACLCentralUser).SetPassword("central-pw").SetTLSConfig(&tls.Config{RootCAs: pool}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			mu.Lock()
			got = append(got, testkit.Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...)})
			mu.Unlock()
		}))
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("central: %v", tok.Error())
	}
	defer cli.Disconnect(100)
	tp := contract.Topics{Site: st.Site, Door: st.Door}
	for _, f := range []string{"dockd/v1/+/+/events", "dockd/v1/+/+/status", "dockd/v1/+/+/cmd-reply/+", "dockd/v1/+/+/allowlist/ack"} {
		if tok := cli.Subscribe(f, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	waitFor := func(what string, ok func(m testkit.Message) bool) testkit.Message {
		t.Helper()
		var hit testkit.Message
		waitUntil(t, 20*time.Second, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range got {
				if ok(m) {
					hit = m
					return true
				}
			}
			return false
		})
		return hit
	}

	// The station, configured as deployed: mTLS with its certificate.
	pty := testkit.NewPTY(t)
	importSample(t, dir)
	y := stationConfig(dir, pty.Path(), b.PortURL(8883), "virtual")
	y = strings.Replace(y, "  site: test-site\n  door: door-9\n", fmt.Sprintf("  site: %s\n  door: %s\n", st.Site, st.Door), 1)
	y = strings.Replace(y, "  in_flight: 16\n", fmt.Sprintf("  in_flight: 16\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n", pki.CAFile, cert, key), 1)
	path := filepath.Join(dir, "dockd.yaml")
	os.WriteFile(path, []byte(y), 0o600)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := openDaemon(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), daemonOptions{ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	waitFor("online status at central", func(m testkit.Message) bool {
		return m.Topic == tp.Status() && strings.Contains(string(m.Payload), `"state":"online"`)
	})
	pty.Write([]byte(gs1Scan("LOT42", "ACL1")))
	waitFor("the scan's event at central", func(m testkit.Message) bool {
		return m.Topic == tp.Events() && strings.Contains(string(m.Payload), `"serial":"ACL1"`)
	})
	pub := func(topic, payload string) {
		t.Helper()
		if tok := cli.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	pub(tp.Command("set-direction"), cmdJSON("acl-1", `{"direction":"shipping"}`))
	rm := waitFor("the command reply at central", func(m testkit.Message) bool { return m.Topic == tp.Reply("acl-1") })
	var r command.Reply
	json.Unmarshal(rm.Payload, &r)
	if !r.OK || d.station.Direction() != dock.Shipping {
		t.Fatalf("reply %s", rm.Payload)
	}
	pub("dockd/v1/dc-east/allowlist/delta/5", `{"schema":"dockd.allowlist-delta/1","version":"v5","seq":5,"base_seq":4,"sha256":"`+strings.Repeat("0", 64)+`"}`+"\n")
	am := waitFor("the allowlist ack at central", func(m testkit.Message) bool { return m.Topic == tp.Base()+"/allowlist/ack" })
	var a allowlist.Ack
	json.Unmarshal(am.Payload, &a)
	if a.Seq != 5 || a.Status != allowlist.StatusRejected {
		t.Fatalf("ack %s", am.Payload)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	waitFor("offline status at central", func(m testkit.Message) bool {
		return m.Topic == tp.Status() && strings.Contains(string(m.Payload), `"state":"offline"`)
	})
}
