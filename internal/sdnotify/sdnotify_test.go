package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a real unixgram socket like systemd's notify socket and
// returns its path and a channel of received datagrams.
func listen(t *testing.T, name string) (string, <-chan string) {
	t.Helper()
	path := name
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	if name == "" {
		path = filepath.Join(t.TempDir(), "notify.sock")
		addr.Name = path
	} else if name[0] == '@' {
		addr.Name = "\x00" + name[1:]
	}
	conn, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", path, err)
	}
	ch := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return path, ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram within 5s")
		return ""
	}
}

func TestMessages(t *testing.T) {
	path, ch := listen(t, "")
	n := New(path, 0)
	tests := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", n.Ready, "READY=1"},
		{"stopping", n.Stopping, "STOPPING=1"},
		{"watchdog", n.Watchdog, "WATCHDOG=1"},
		{"status", func() error { return n.Status("3 readers up") }, "STATUS=3 readers up"},
		{"status one line", func() error { return n.Status("a\nb\r") }, "STATUS=a b "},
		{"raw", func() error { return n.Send("READY=1\nSTATUS=x") }, "READY=1\nSTATUS=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, ch); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@dockd-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	_, ch := listen(t, name)
	if err := New(name, 0).Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	var nilN *Notifier
	for _, n := range []*Notifier{nilN, New("", 0)} {
		if n.Enabled() {
			t.Fatal("enabled without a socket")
		}
		if err := n.Ready(); err != nil {
			t.Fatalf("Ready without socket: %v", err)
		}
		if _, ok := n.WatchdogInterval(); ok {
			t.Fatal("watchdog on without WATCHDOG_USEC")
		}
	}
}

func TestMissingSocketIsError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone.sock")
	err := New(path, 0).Ready()
	if err == nil {
		t.Fatal("no error sending to a missing socket")
	}
}

func TestWatchdogFromEnv(t *testing.T) {
	self := 4242
	tests := []struct {
		usec, pid string
		want      time.Duration
		bad       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", "4242", 30 * time.Second, false},
		{"30000000", "1", 0, false}, // meant for another process
		{"0", "", 0, true},
		{"abc", "", 0, true},
		{"-5", "", 0, true},
		{"1000", "x", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.usec+"/"+tt.pid, func(t *testing.T) {
			d, err := watchdogFromEnv(tt.usec, tt.pid, self)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want bad=%v", err, tt.bad)
			}
			if err != nil && !errors.Is(err, ErrBadEnvironment) {
				t.Fatalf("err %v does not wrap ErrBadEnvironment", err)
			}
			if d != tt.want {
				t.Fatalf("interval %v, want %v", d, tt.want)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	path, ch := listen(t, "")
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := n.WatchdogInterval(); !ok || d != 2*time.Second {
		t.Fatalf("WatchdogInterval = %v, %v", d, ok)
	}
	if err := n.Watchdog(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
}

// TestRunWatchdog drives the loop with a probe that fails on calls 3–5:
// keep-alives stop while it fails (one status line says why) and resume
// after.
func TestRunWatchdog(t *testing.T) {
	path, ch := listen(t, "")
	n := New(path, 60*time.Millisecond)
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	alive := func(pctx context.Context) error {
		if _, ok := pctx.Deadline(); !ok {
			t.Error("probe context has no deadline")
		}
		c := calls.Add(1)
		if c >= 3 && c <= 5 {
			return errors.New("pipeline stuck")
		}
		if c >= 7 {
			cancel()
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- n.RunWatchdog(ctx, alive, nil) }()
	want := []string{"WATCHDOG=1", "WATCHDOG=1", "STATUS=not alive: pipeline stuck", "STATUS=running", "WATCHDOG=1"}
	for i, w := range want {
		if got := recv(t, ch); got != w {
			t.Fatalf("message %d: got %q, want %q", i, got, w)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog did not return after cancel")
	}
	// Call 7 cancelled ctx: its result is not turned into a keep-alive.
	select {
	case m := <-ch:
		t.Fatalf("message after cancel: %q", m)
	default:
	}
}

func TestRunWatchdogOff(t *testing.T) {
	called := false
	err := New("", 0).RunWatchdog(context.Background(), func(context.Context) error { called = true; return nil }, nil)
	if err != nil || called {
		t.Fatalf("watchdog off: err %v, probe called %v", err, called)
	}
}
