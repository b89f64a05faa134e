#!/bin/sh
# Installs what building and testing kcld needs on a Debian machine:
# the Debian -dev packages (apt-get, when root) and the test emulators
# (npm ci in tests/emulators).  Quiet and quick when nothing is missing.
# python3: the tests run their Python record processors with Debian's
# /usr/bin/python3 (a version manager's shim on PATH can take seconds to
# start one under load).
# With --bench, also what only the benchmarks need (`make bench`): the boto3
# peer's python3-boto3 (used as /usr/bin/python3), and openssl, which makes
# the fan-out benchmark's TLS certificate.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config libuv1-dev libcurl4-openssl-dev libssl-dev libnghttp2-dev \
libjansson-dev libyaml-dev libdeflate-dev libexpat1-dev libcmocka-dev clang libclang-rt-14-dev nodejs npm \
ca-certificates shellcheck systemd groff-base man-db python3"
case "${1:-}" in
  --bench) PKGS="$PKGS python3-boto3 openssl" ;;
  "") ;;
  *) echo "usage: bootstrap.sh [--bench]" >&2; exit 2 ;;
esac

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # A tool already on PATH (a node or clang not from Debian) is good enough.
    case "$p" in
      nodejs) command -v node >/dev/null 2>&1 && continue ;;
      npm) command -v npm >/dev/null 2>&1 && continue ;;
      clang) command -v clang >/dev/null 2>&1 && continue ;;
    esac
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "bootstrap: missing Debian packages:$missing" >&2
    echo "bootstrap: run: sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

# npm ci only when the lock file changed since the last install.
stamp=tests/emulators/node_modules/.kcld-lock
if ! cmp -s tests/emulators/package-lock.json "$stamp" 2>/dev/null; then
  echo "bootstrap: npm ci in tests/emulators"
  (cd tests/emulators && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp tests/emulators/package-lock.json "$stamp"
fi
