package testkit

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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

// Every test that re-executes its own binary does so through SelfCommand;
// exec.Command(os.Args[0], ...) fails under `make test-arm` wherever
// binfmt_misc is not registered (CI's sandbox).
func TestNoDirectSelfExec(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from the testkit directory: %v", err)
	}
	direct := regexp.MustCompile(`exec\.Command(Context)?\((ctx, )?os\.Args\[0\]`)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if direct.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d re-executes os.Args[0] directly; use testkit.SelfCommand so it runs under qemu too", rel, i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
