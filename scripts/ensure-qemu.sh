#!/usr/bin/env bash
# Makes sure the user-mode emulators that `make test-arm` runs the ARM test
# binaries through are installed: qemu-arm-static (linux/arm, GOARM=7) and
# qemu-aarch64-static (linux/arm64), from Debian's qemu-user-static. The
# tests are started as `go test -exec qemu-...-static`, so binfmt_misc need
# not be registered (CI's sandbox may not allow it).
set -euo pipefail
have() { command -v qemu-arm-static >/dev/null 2>&1 && command -v qemu-aarch64-static >/dev/null 2>&1; }
if have; then exit 0; fi
. "$(dirname "$0")/apt-install.sh"
apt_install ensure-qemu "install QEMU's user-mode emulators so that qemu-arm-static and qemu-aarch64-static are on PATH (Debian: apt-get install qemu-user-static)" qemu-user-static
have || { echo "ensure-qemu: installed qemu-user-static but qemu-arm-static/qemu-aarch64-static are still not on PATH" >&2; exit 1; }
