#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/test_app_browser.py drives it with Playwright's
# executable_path; `playwright install` is never needed). Idempotent: does nothing when it is there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no chromium and no apt-get; install Chromium yourself (the browser tests skip without /usr/bin/chromium)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
