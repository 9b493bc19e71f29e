#!/usr/bin/env bash
# Creates or refreshes the git-ignored Python virtual environments the tests use, from the pinned
# requirement files beside this script. Idempotent and quick when nothing changed (a stamp holds the
# hash of the requirement file). Prints nothing on the fast path.
#
# usage: scripts/venv.sh [test|checkov|all]   (default: test)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
# The installer of the requirement files (uv, from PyPI), pinned like them.
UV_VERSION=0.13.8

ensure() {
    local dir="$1" req="$2"
    # One installer at a time: parallel test binaries may call this together.
    exec 9>"$dir.lock"
    flock 9
    local stamp="$dir/.requirements.sha256"
    local want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        exec 9>&-
        return 0
    fi
    echo "venv: installing $(basename "$req") into ${dir#"$root"/} (pinned; once per change)" >&2
    if ! "$python" -m venv "$dir"; then
        echo "venv: cannot create a virtual environment with $python; install python3-venv" >&2
        exit 1
    fi
    # uv installs the requirement file (about 5 s for the test tools, where pip took about 50 s):
    # it downloads and unpacks in parallel. uv itself comes pinned from PyPI, through pip.
    if [[ "$("$dir/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION "* ]] &&
        ! "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"; then
        echo "venv: pip could not install uv $UV_VERSION; is the package registry reachable?" >&2
        exit 1
    fi
    if ! "$dir/bin/uv" pip install --quiet --python "$dir/bin/python" -r "$req"; then
        echo "venv: uv could not install $req; is the package registry reachable?" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
    exec 9>&-
}

case "${1:-test}" in
    test) ensure "$root/.venv" "$root/scripts/requirements-test.txt" ;;
    checkov) ensure "$root/.venv-checkov" "$root/scripts/requirements-checkov.txt" ;;
    all)
        ensure "$root/.venv" "$root/scripts/requirements-test.txt"
        ensure "$root/.venv-checkov" "$root/scripts/requirements-checkov.txt"
        ;;
    *) echo "usage: scripts/venv.sh [test|checkov|all]" >&2; exit 2 ;;
esac
