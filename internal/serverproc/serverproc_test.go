package serverproc

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestLaunchExitReadyTerminate(t *testing.T) {
	// A process that dies at once: ErrExited, with its output.
	_, err := Launch("sh", []string{"-c", "echo port taken; exit 3"}, t.TempDir(), "127.0.0.1:1", 5*time.Second)
	if !errors.Is(err, ErrExited) {
		t.Fatalf("early exit: %v, want ErrExited", err)
	}
	// A process that listens: ready once the port accepts; Terminate reaps it.
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := Launch("python3", []string{"-c", "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1'," + strconv.Itoa(port) + "))\ns.listen()\ntime.sleep(60)"}, t.TempDir(), addr, 10*time.Second)
	if err != nil {
		t.Skipf("python3 not usable here: %v", err)
	}
	if !p.Running() {
		t.Fatal("not running after Launch")
	}
	if killed := p.Terminate(5 * time.Second); killed {
		t.Fatal("SIGTERM was not enough for a process that does not trap it")
	}
	if p.Running() {
		t.Fatal("still running after Terminate")
	}
	var nilProc *Proc
	if nilProc.Running() {
		t.Fatal("a nil Proc runs")
	}
}

func TestFreePortAvoids(t *testing.T) {
	first, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		p, err := FreePort(first)
		if err != nil {
			t.Fatal(err)
		}
		if p == first {
			t.Fatalf("FreePort returned the avoided port %d", p)
		}
	}
}
