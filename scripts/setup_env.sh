#!/usr/bin/env bash
# Set up everything pianosynth needs on a Debian (or Ubuntu) machine, idempotently:
#   1. system libraries with apt, only those missing (as root, or through sudo);
#   2. a virtual environment in .venv (Python 3.11 or newer);
#   3. the project in editable mode with its test and GUI extras.
# Used by scripts/run_demo.sh and scripts/run_tests.sh; safe to run again (fast when done).
# Environment: PYTHON=/path/to/python3.x picks the interpreter; SKIP_APT=1 skips step 1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

say() { printf 'setup_env: %s\n' "$*" >&2; }

# ------------------------------------------------------------------ 1. system packages
# python3-venv: venv + ensurepip; libportaudio2: sounddevice (live audio); jackd2: JACK
# server for live audio/MIDI without a sound card; libsndfile1: soundfile (WAV/FLAC);
# libgl1 ... libdbus-1-3: what the Qt wheels (PySide6) load, even offscreen; libgomp1:
# numba's OpenMP threading layer (the two-thread offline render; without it, one thread).
APT_PACKAGES=(python3 python3-venv libportaudio2 jackd2 libsndfile1
              libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3 libgomp1)

install_apt_packages() {
    if [[ "${SKIP_APT:-0}" == 1 ]]; then
        say "SKIP_APT=1: not checking system packages"
        return
    fi
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        say "warning: no apt/dpkg here; install by hand: ${APT_PACKAGES[*]}"
        return
    fi
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            say "warning: not root and no sudo; install by hand: ${missing[*]}"
            return
        fi
    fi
    say "installing system packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------- 2. interpreter
version_ok() {   # python is 3.11+ and can create a venv with pip
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

find_python() {
    local c
    for c in ${PYTHON:-} python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        if command -v "$c" >/dev/null && version_ok "$c"; then
            command -v "$c"
            return
        fi
    done
    say "error: no Python 3.11+ with the venv module found (Debian: apt-get install python3-venv)"
    exit 1
}

# ------------------------------------------------------------------------------ main
install_apt_packages

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c \
        'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    :   # reuse the existing environment
else
    PY="$(find_python)"
    say "creating $VENV with $PY ($("$PY" --version 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

# ------------------------------------------------------------------ 3. the project
# Reinstall only when pyproject.toml or the interpreter changed (the install is editable,
# so source changes need nothing).
STAMP="$VENV/.pianosynth-installed"
WANT="$(cat pyproject.toml "$VENV/pyvenv.cfg" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
        && "$VENV/bin/python" -c 'import pianosynth' 2>/dev/null; then
    exit 0
fi
say "installing pianosynth and its dependencies into $VENV (first time: a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,gui]"
echo "$WANT" > "$STAMP"
say "ready: $VENV/bin/pianosynth"
