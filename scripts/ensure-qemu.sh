#!/usr/bin/env bash
# Makes sure the user-mode emulators that `make test-arm` runs the ARM test
# binaries through are installed: qemu-arm-static (linux/arm, GOARM=7) and
# qemu-aarch64-static (linux/arm64), from Debian's qemu-user-static. The
# tests are started as `go test -exec qemu-...-static`, so binfmt_misc need
# not be registered (CI's sandbox may not allow it). On Debian/Ubuntu as root
# (or with passwordless sudo) it installs the package; otherwise it says what
# to install and fails.
set -euo pipefail
have() { command -v qemu-arm-static >/dev/null 2>&1 && command -v qemu-aarch64-static >/dev/null 2>&1; }
if have; then exit 0; fi
echo "ensure-qemu: make test-arm needs qemu-arm-static and qemu-aarch64-static; installing the Debian package 'qemu-user-static'" >&2
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "ensure-qemu: not root and no passwordless sudo: install it yourself: sudo apt-get install qemu-user-static" >&2; exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-qemu: no apt-get here: install QEMU's user-mode emulators so that qemu-arm-static and qemu-aarch64-static are on PATH" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
have || { echo "ensure-qemu: installed qemu-user-static but qemu-arm-static/qemu-aarch64-static are still not on PATH" >&2; exit 1; }
