#!/usr/bin/env bash
# Debian's libgl1, for the libGL.so.1 that opencv-python's cv2 loads (the CenterFace face detector
# runs on cv2.dnn). Idempotent: does nothing when the library is there.
set -euo pipefail
if /sbin/ldconfig -p 2>/dev/null | grep -q 'libGL\.so\.1 '; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_libgl.sh: no libGL.so.1 and no apt-get; install your system's libGL (Debian/Ubuntu: libgl1) yourself, or 'import cv2' fails" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y libgl1
