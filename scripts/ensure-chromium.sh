#!/usr/bin/env bash
# Installs headless Chromium (Debian package chromium) for the status page's
# browser test when it is missing and the machine allows it. Best effort:
# without it the browser test skips, except under CI, where it fails.
set -uo pipefail
for p in chromium chromium-browser google-chrome; do
  if command -v "$p" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "ensure-chromium: not root: the status page browser test will skip (sudo apt-get install chromium to run it)" >&2; exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "ensure-chromium: no apt-get: the browser test will skip" >&2; exit 0; }
echo "ensure-chromium: installing the Debian package chromium for the status page browser test" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null 2>&1
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || echo "ensure-chromium: install failed: the browser test will skip" >&2
exit 0
