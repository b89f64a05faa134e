#!/bin/sh
# check-compose.sh — `docker compose config` accepts docker/compose.yaml
# (with and without the produce profile).  Needs only the docker client and
# its compose plugin, no engine.  Run from the repository root.
# Exit 0 pass, 1 fail, 77 skip (no compose plugin).
set -eu
if command -v docker >/dev/null 2>&1 &&
   docker compose version >/dev/null 2>&1; then
  compose="docker compose"
elif command -v docker-compose >/dev/null 2>&1 &&
     docker-compose version --short 2>/dev/null | grep -q '^v\{0,1\}[2-9]'
then
  compose=docker-compose  # the standalone v2 binary; v1 lacks `name:`
else
  echo "skip: no docker compose plugin (docker client:" \
    "$(command -v docker || echo none)); compose.yaml checked by the test" \
    "binary only"
  exit 77
fi
fail=0
for profile in "" produce; do
  set -- -f docker/compose.yaml
  [ -z "$profile" ] || set -- "$@" --profile "$profile"
  if out=$($compose "$@" config --quiet 2>&1); then
    echo "ok   $compose $* config"
  else
    echo "FAIL $compose $* config"
    printf '%s\n' "$out" | sed 's/^/     /'
    fail=1
  fi
done
exit "$fail"
