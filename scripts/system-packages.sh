#!/usr/bin/env bash
# Installs the Debian packages the test suite drives, when missing (idempotent; silent when all are
# present). Needs root (or sudo) and Debian's package registry on first use; fails with a clear
# message otherwise — a test that needs a tool never skips.
#
# usage: scripts/system-packages.sh PACKAGE...
set -euo pipefail

missing=()
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
((${#missing[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: ${missing[*]} needed, and this is not a Debian-based system: install them by hand" >&2
    exit 1
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "system-packages: ${missing[*]} needed; run as root or install sudo" >&2
        exit 1
    }
    sudo=(sudo)
fi
echo "system-packages: installing ${missing[*]} (Debian)" >&2
# One installer at a time: dpkg takes its own lock, but a parallel `apt-get update` would race.
exec 9>/tmp/stripe-webhook-system-packages.lock
flock 9
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null || {
        echo "system-packages: apt-get could not install ${missing[*]}; is Debian's package registry reachable?" >&2
        exit 1
    }
fi
