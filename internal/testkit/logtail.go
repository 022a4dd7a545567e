package testkit

import (
	"os"
	"strings"
	"testing"
)

// logTail writes the last lines of a server's log file to t.
func logTail(t testing.TB, name, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s log %s: %v", name, path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > mosqLogTailLines {
		lines = lines[len(lines)-mosqLogTailLines:]
	}
	t.Logf("%s log tail (%s):\n%s", name, path, strings.Join(lines, "\n"))
}
