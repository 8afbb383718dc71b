#!/usr/bin/env bash
# Install one Debian package when what it provides is missing; idempotent.
#
#   bash scripts/apt_install.sh PACKAGE 'CHECK COMMAND' 'WHAT IT IS FOR'
#
# chromium: the browser tests drive Debian's Chromium through Playwright's executable_path
#   (`playwright install` is never needed);
# libgl1: opencv-python's cv2, on which the CenterFace face detector runs, loads libGL.so.1.
# python3.X-venv: Debian's python3.X has no ensurepip without it, so no venv (tests/test_pythons.py).
set -euo pipefail
package=$1 check=$2 purpose=$3
if bash -c "$check" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt_install.sh: $package is missing and there is no apt-get; install it yourself ($purpose)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "$package"
