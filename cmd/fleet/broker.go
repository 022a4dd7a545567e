package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dockd/dockd/internal/serverproc"
)

// broker is a mosquitto process the fleet run owns: a free 127.0.0.1 port
// (never 1883), persistence on (so a clean restart keeps the consumers'
// sessions and their queued messages), no queue limits, logs in dir.
// Not safe for concurrent use.
type broker struct {
	bin, dir, conf string
	port           int
	proc           *serverproc.Proc
}

func startBroker(bin, dir string) (*broker, error) {
	b := &broker{bin: bin, dir: dir, conf: filepath.Join(dir, "mosquitto.conf")}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if b.port, err = serverproc.FreePort(1883); err != nil {
			return nil, err
		}
		if err = b.writeConfig(); err != nil {
			return nil, err
		}
		if err = b.start(); err == nil || !errors.Is(err, serverproc.ErrExited) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *broker) URL() string { return "tcp://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

func (b *broker) writeConfig() error {
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", b.port)
	c.WriteString("allow_anonymous true\n")
	c.WriteString("persistence true\n")
	fmt.Fprintf(&c, "persistence_location %s/\n", b.dir)
	c.WriteString("max_queued_messages 0\nmax_inflight_messages 0\n")
	fmt.Fprintf(&c, "log_dest file %s\n", filepath.Join(b.dir, "mosquitto.log"))
	c.WriteString("log_type error\nlog_type warning\nlog_type notice\nlog_timestamp true\n")
	if os.Geteuid() == 0 {
		name := "root"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		fmt.Fprintf(&c, "user %s\n", name)
	}
	if err := os.WriteFile(b.conf, []byte(c.String()), 0o600); err != nil {
		return fmt.Errorf("writing broker config %s: %w", b.conf, err)
	}
	return nil
}

// start launches mosquitto and waits (at most 10 s) until its port accepts.
func (b *broker) start() error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	p, err := serverproc.Launch(b.bin, []string{"-c", b.conf}, b.dir, addr, 10*time.Second)
	if err != nil {
		return err
	}
	b.proc = p
	return nil
}

// stop ends mosquitto with SIGTERM (it saves its persistence file) and waits,
// with SIGKILL after 10 s.
func (b *broker) stop() { b.proc.Terminate(10 * time.Second) }

// restart stops the broker cleanly and starts it again on the same port,
// retrying while the port is still held.
func (b *broker) restart() error {
	b.stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.start()
		if err == nil || !errors.Is(err, serverproc.ErrExited) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killAndStart kills the broker with SIGKILL (no save: sessions and queued
// messages since its last autosave are gone) and starts it again on the
// same port.
func (b *broker) killAndStart() error {
	b.proc.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.start()
		if err == nil || !errors.Is(err, serverproc.ErrExited) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
