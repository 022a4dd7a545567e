package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// EmulatorEnv names the environment variable through which `make test-arm`
// tells a test binary which user-mode emulator runs it (qemu-arm-static,
// qemu-aarch64-static). `go test -exec` itself sets nothing in the child.
const EmulatorEnv = "DOCKD_TEST_EMULATOR"

// Emulator returns the program that runs this process under user-mode
// emulation, or "" when the process runs natively.
//
// EmulatorEnv wins when set. Otherwise it compares /proc/self/exe with
// /proc/thread-self/exe: qemu-user answers the first with the guest binary
// but passes the second through to the kernel, which names qemu itself. A
// native process sees the same file in both.
func Emulator() string { return emulator() }

var emulator = sync.OnceValue(detectEmulator)

func detectEmulator() string {
	if e := os.Getenv(EmulatorEnv); e != "" {
		return e
	}
	self, err := filepath.EvalSymlinks("/proc/self/exe")
	if err != nil {
		return ""
	}
	thread, err := filepath.EvalSymlinks("/proc/thread-self/exe")
	if err != nil || thread == self {
		return ""
	}
	return thread
}

// SelfCommand returns a command that runs this test binary (os.Args[0])
// again with args. Under user-mode emulation the binary is started through
// the same emulator, because a foreign-architecture executable only runs
// directly when binfmt_misc has it registered, which CI's sandbox may not.
// Tests that re-execute themselves (crash children, SIGKILL targets) use it
// instead of exec.Command(os.Args[0], ...), so they run under `make test-arm`.
func SelfCommand(args ...string) *exec.Cmd {
	if emu := Emulator(); emu != "" {
		return exec.Command(emu, append([]string{os.Args[0]}, args...)...)
	}
	return exec.Command(os.Args[0], args...)
}

// EmulationSlowdown is the factor by which Slow stretches a wall-clock
// allowance under user-mode emulation. qemu-user runs the tests several
// times slower, and on a loaded 2-core host the emulated process was seen
// descheduled for up to a second (a 900 ms lamp hold ending at 1.96 s, a
// 300 ms command timeout missed).
const EmulationSlowdown = 5

// Slow returns d natively and d×EmulationSlowdown under user-mode emulation.
// Tests wrap in it the allowances that only absorb scheduling delay — a
// timeout waiting for an emulated device, the late side of a timing
// tolerance — never the values whose exactness is under test (timers never
// fire early, so early-side bounds stay as they are).
func Slow(d time.Duration) time.Duration {
	if Emulator() != "" {
		return d * EmulationSlowdown
	}
	return d
}
