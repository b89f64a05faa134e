#!/bin/sh
# check-dockerfile.sh — docker/Dockerfile passes lint-dockerfile.sh, and the
# lint itself catches what it should: each fixture in fixtures/dockerfile
# names on its first line ("# expect: RULE") the one rule it breaks, and the
# lint must report exactly that rule (nothing for "# expect:").
# Run from the repository root.  Exit 0 pass, 1 fail.
set -eu
here=$(dirname "$0")
lint="$here/lint-dockerfile.sh"
fail=0

if out=$("$lint" docker/Dockerfile 2>&1); then
  echo "ok   docker/Dockerfile"
else
  echo "FAIL docker/Dockerfile"
  echo "$out"
  fail=1
fi

n=0
for f in "$here"/fixtures/dockerfile/*.Dockerfile; do
  n=$((n + 1))
  want=$(sed -n '1s/^# expect:[[:space:]]*//p' "$f" | tr -d '[:space:]')
  out=$("$lint" "$f" 2>&1) && rc=0 || rc=$?
  got=$(printf '%s\n' "$out" | sed -n 's/^[^:]*:[0-9]*: \([a-z-]*\): .*/\1/p' |
        sort -u | tr -d '\n')
  if [ -z "$want" ]; then
    wrc=0
  else
    wrc=1
  fi
  if [ "$rc" -eq "$wrc" ] && [ "$got" = "$want" ]; then
    echo "ok   $(basename "$f") (${want:-clean})"
  else
    echo "FAIL $(basename "$f"): want '${want:-clean}' (exit $wrc), got" \
      "'${got:-clean}' (exit $rc)"
    printf '%s\n' "$out" | sed 's/^/     /'
    fail=1
  fi
done
[ "$n" -gt 0 ] || { echo "FAIL no fixtures in $here/fixtures/dockerfile"; exit 1; }
echo "$n lint fixtures"
exit "$fail"
