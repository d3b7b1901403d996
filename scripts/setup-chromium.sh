#!/bin/sh
# Headless Chromium for the browser tests (tests/observe/test_ui_browser.py: the live page;
# tests/server/test_browser.py: CORS preflight and SSE with a session cookie).
#
# Idempotent and unattended (the Makefile's `test` target runs every scripts/setup-*.sh):
# installs Debian's `chromium` if /usr/bin/chromium is missing. Needs root and the Debian
# mirrors. No browser download of its own: the tests drive Debian's binary directly over
# the DevTools protocol.
set -eu

say() { echo "setup-chromium: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
say "installing chromium"
as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || { say "chromium did not install"; exit 1; }
say "$(chromium --version 2>/dev/null || echo chromium installed)"
