#!/bin/sh
# check-shell.sh — shellcheck on the shell scripts of docker/, scripts/ and
# tests/static/ (POSIX sh).  Run from the repository root.
# Exit 0 pass, 1 fail, 77 skip (shellcheck missing: Debian package shellcheck).
set -eu
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "skip: shellcheck is not installed (Debian package: shellcheck)"
  exit 77
fi
n=0
fail=0
for f in docker/init/*.sh tests/static/*.sh scripts/*.sh; do
  [ -e "$f" ] || continue
  n=$((n + 1))
  if out=$(shellcheck --shell=sh --severity=style "$f" 2>&1); then
    echo "ok   $f"
  else
    echo "FAIL $f"
    printf '%s\n' "$out" | sed 's/^/     /'
    fail=1
  fi
  # LocalStack runs hooks only when they are executable.
  [ -x "$f" ] || { echo "FAIL $f is not executable"; fail=1; }
done
[ "$n" -gt 0 ] || { echo "FAIL no shell scripts found"; exit 1; }
echo "$n scripts, $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
exit "$fail"
