#!/usr/bin/env bash
# Prepare this checkout: scripts/setup.sh [demo|test]   (default: test)
#   demo: .venv with `pip install -e .`
#   test: .venv with `pip install -e .[test]`, npm packages of tests/oidc, and (via apt-get)
#         Debian's chromium and PostgreSQL when missing.
# Idempotent: each step is skipped when its inputs did not change since it last ran.
set -euo pipefail

mode="${1:-test}"
case "$mode" in
  demo | test) ;;
  *) echo "usage: scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

sudo_cmd=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
  sudo_cmd=(sudo)
fi

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself"
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    "${sudo_cmd[@]}" apt-get update -q >/dev/null
    apt_updated=1
  fi
  say "apt-get install $* (may take a minute)"
  "${sudo_cmd[@]}" apt-get install -y -q "$@" >/dev/null
}

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- Python ------------------------------------------------------------------------------------
pick_python() {
  if command -v python3.11 >/dev/null 2>&1; then
    echo python3.11
    return
  fi
  for candidate in python3 python3.13 python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  die "Python 3.11+ not found (need python3.11 or a python3 >= 3.11)"
}

if [ ! -x .venv/bin/python ]; then
  py="$(pick_python)"
  say "creating .venv with $py ($("$py" --version 2>&1))"
  if ! "$py" -m venv .venv >/dev/null 2>&1; then
    # Debian ships venv/ensurepip separately.
    rm -rf .venv
    ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt_install "python${ver}-venv" || apt_install python3-venv
    "$py" -m venv .venv || die "could not create .venv with $py"
  fi
fi

py_hash="$(hash_of pyproject.toml)"
stamp_test=".venv/.alloy-setup-test"
stamp_demo=".venv/.alloy-setup-demo"
installed() { [ -f "$1" ] && [ "$(cat "$1")" = "$py_hash" ]; }

if [ "$mode" = test ]; then
  if ! installed "$stamp_test"; then
    say "pip install -e .[test]"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
    echo "$py_hash" >"$stamp_test"
    echo "$py_hash" >"$stamp_demo"
  fi
else
  if ! installed "$stamp_demo" && ! installed "$stamp_test"; then
    say "pip install -e ."
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    echo "$py_hash" >"$stamp_demo"
  fi
fi

if [ "$mode" = demo ]; then
  say "ready (demo)"
  exit 0
fi

# --- Node packages of the OIDC test provider ----------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found: the tests need Node.js 20+ (and npm)"
command -v npm >/dev/null 2>&1 || die "npm not found: the tests need Node.js 20+ with npm"
oidc_dir="$root/tests/oidc"
lock_hash="$(hash_of "$oidc_dir/package.json" "$oidc_dir/package-lock.json")"
npm_stamp="$oidc_dir/node_modules/.alloy-lock-hash"
if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$lock_hash" ]; then
  say "npm ci in tests/oidc"
  (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_hash" >"$npm_stamp"
fi

# --- System packages ------------------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  apt_install postgresql
fi

say "ready (test)"
