package testkit

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

const selfChildEnv = "TESTKIT_SELF_CHILD"

// TestSelfCommandChild is the child of TestSelfCommandRunsThisBinary; it does
// nothing unless that test started it.
func TestSelfCommandChild(t *testing.T) {
	if os.Getenv(selfChildEnv) != "1" {
		return
	}
	fmt.Printf("child %s/%s emulator=%q\n", runtime.GOOS, runtime.GOARCH, Emulator())
}

// The re-executed binary must be this one, on this architecture, and under
// an emulator the child must see the same emulator (so a grandchild works).
func TestSelfCommandRunsThisBinary(t *testing.T) {
	cmd := SelfCommand("-test.run=^TestSelfCommandChild$", "-test.v")
	cmd.Env = append(os.Environ(), selfChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("re-executing %v (emulator %q): %v\n%s", cmd.Args, Emulator(), err, out)
	}
	want := fmt.Sprintf("child %s/%s emulator=%q\n", runtime.GOOS, runtime.GOARCH, Emulator())
	if !strings.Contains(string(out), want) {
		t.Errorf("child said:\n%s\nwant a line %q", out, want)
	}
}
