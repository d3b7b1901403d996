#!/bin/sh
# Headless Chromium for the server's real-browser tests (CORS preflight, SSE with a
# session cookie): tests/server/test_browser.py. Idempotent and unattended; needs root.
set -eu
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-chromium.sh: run as root to install chromium (apt)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
