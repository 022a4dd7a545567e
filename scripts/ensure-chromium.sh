#!/usr/bin/env bash
# Installs headless Chromium (Debian package chromium) for the status page's
# browser test when it is missing and the machine allows it. Best effort:
# without it the browser test skips, except under CI, where it fails.
set -uo pipefail
for p in chromium chromium-browser google-chrome; do
  if command -v "$p" >/dev/null 2>&1; then exit 0; fi
done
. "$(dirname "$0")/apt-install.sh"
apt_install ensure-chromium "the status page browser test will skip (apt-get install chromium to run it)" chromium ||
  echo "ensure-chromium: the browser test will skip" >&2
exit 0
