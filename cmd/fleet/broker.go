package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// broker is a mosquitto process the fleet run owns: a free 127.0.0.1 port
// (never 1883), persistence on (so a clean restart keeps the consumers'
// sessions and their queued messages), no queue limits, logs in dir.
// Not safe for concurrent use.
type broker struct {
	bin, dir, conf string
	port           int
	cmd            *exec.Cmd
	exited         chan struct{}
}

var errBrokerExited = errors.New("mosquitto exited during start-up")

func startBroker(bin, dir string) (*broker, error) {
	b := &broker{bin: bin, dir: dir, conf: filepath.Join(dir, "mosquitto.conf")}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if b.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = b.writeConfig(); err != nil {
			return nil, err
		}
		if err = b.start(); err == nil || !errors.Is(err, errBrokerExited) {
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
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Dir = b.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s -c %s: %w", b.bin, b.conf, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.cmd, b.exited = cmd, exited
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("%w on %s: %s", errBrokerExited, addr, strings.TrimSpace(out.String()))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("mosquitto on %s did not accept connections within 10s", addr)
		}
		time.Sleep(20 * time.Millisecond) // bounded poll until the listener is up
	}
}

// stop ends mosquitto with SIGTERM (it saves its persistence file) and waits,
// with SIGKILL after 10 s.
func (b *broker) stop() {
	if b.cmd == nil {
		return
	}
	select {
	case <-b.exited:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// restart stops the broker cleanly and starts it again on the same port,
// retrying while the port is still held.
func (b *broker) restart() error {
	b.stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.start()
		if err == nil || !errors.Is(err, errBrokerExited) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (int, error) {
	for i := 0; i < 10; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if p != 1883 {
			return p, nil
		}
	}
	return 0, errors.New("finding a free port: only 1883 offered")
}
