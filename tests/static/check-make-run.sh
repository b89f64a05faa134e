#!/bin/sh
# check-make-run.sh — `make run` as a new user starts it: from a build tree
# that does not exist yet (the build runs after `make deps`, in a sub-make),
# for DURATION=3s with 5% malformed records.  It must
#   - finish, exit 0, and say every record was handled or dead-lettered
#     within KCLD_MAX_CATCHUP seconds (default 10) of the producer's end
#     (dead-lettered records count: the wait used to last its full 60 s);
#   - have dead-lettered at least one record, and print a summary where
#     items in the table + records in the dead-letter queue = produced;
#   - scrape the metrics port kcld itself reported (port 0, a free one);
#   - and, run again with DURATION=0, stop at a Ctrl-C with the summary.
# And a bare `make` builds kcld: its default goal is `all` (a rule put above
# `all` once made it a silent no-op).
# -O0 keeps the build short.  Run from the repository root.
# Exit 0 pass, 1 fail.
set -eu
max=${KCLD_MAX_CATCHUP:-10}
# Not the outer make's jobserver or flags.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES || true

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() {
  echo "FAIL $*"
  fail=1
}

goal=$(make -pq -f Makefile 2>/dev/null | sed -n 's/^\.DEFAULT_GOAL := //p')
[ "$goal" = all ] || bad "a bare make runs '$goal', not all"

start=$(date +%s)
rc=0
DURATION=3s RATE=200 POISON=0.05 DRAIN_TIMEOUT=60 \
  make --no-print-directory -j2 run BUILD="$tmp/build" CFLAGS="-O0 -g" \
  > "$tmp/out" 2>&1 || rc=$?
echo "make run took $(( $(date +%s) - start )) s (build included), exit $rc"
tr '\r' '\n' < "$tmp/out" | grep -v '^\(cc\|ar\) ' > "$tmp/log"
[ "$rc" -eq 0 ] || bad "make run exited $rc"
[ -x "$tmp/build/kcld" ] || bad "no kcld built in BUILD=$tmp/build"

# make run: all N records dealt with (H handled, D dead-lettered) S s after ...
fields=$(sed -n 's/^make run: all \([0-9]*\) records dealt with (\([0-9]*\) handled, \([0-9]*\) dead-lettered) \([0-9.]*\) s after.*/\1 \2 \3 \4/p' \
           "$tmp/log")
total=""
if [ -z "$fields" ]; then
  bad "no 'all N records dealt with' line"
else
  read -r total handled dead secs <<EOF
$fields
EOF
  [ "$total" -gt 0 ] || bad "nothing produced"
  [ "$dead" -gt 0 ] || bad "no record dead-lettered with POISON=0.05"
  [ $((handled + dead)) -ge "$total" ] ||
    bad "handled $handled + dead-lettered $dead < produced $total"
  if awk -v s="$secs" -v m="$max" 'BEGIN { exit !(s > m) }'; then
    bad "caught up $secs s after the producer stopped (limit $max s)"
  else
    echo "ok   $total records: $handled handled, $dead dead-lettered," \
      "caught up $secs s after the producer stopped"
  fi
fi

# summary: produced = items + DLQ records, and the check line says so.
produced=$(sed -n 's/^  produced: *\([0-9]*\).*/\1/p' "$tmp/log")
items=$(sed -n 's/^  items in the table: *\([0-9]*\).*/\1/p' "$tmp/log")
dlq=$(sed -n 's/^  records in the DLQ: *\([0-9]*\).*/\1/p' "$tmp/log")
if [ -z "$produced" ] || [ -z "$items" ] || [ -z "$dlq" ]; then
  bad "no summary"
elif [ $((items + dlq)) -ne "$produced" ] || [ "$produced" != "${total:-}" ] ||
     ! grep -q "check: *$items + $dlq = $produced .*nothing lost" "$tmp/log"
then
  bad "summary does not add up: $items + $dlq vs $produced (dealt with: ${total:-?})"
else
  echo "ok   summary: $items + $dlq = $produced"
fi

# The metrics address is the one kcld logged for metrics.listen port 0.
url=$(sed -n 's|^make run: kcld metrics on http://\([0-9.]*:[0-9]*\)/metrics.*|\1|p' \
        "$tmp/log")
logged=$(grep -o 'metrics server listening.*' "$tmp/build/run/kcld.log" |
         grep -o '127\.0\.0\.1:[0-9]*' | head -n 1 || true)
if [ -z "$url" ] || [ "$url" != "$logged" ] || [ "${url#*:}" = 0 ]; then
  bad "metrics address '$url', kcld logged '$logged'"
else
  echo "ok   metrics scraped at $url, the port kcld bound"
fi
[ "$fail" -eq 0 ] || sed 's/^/     /' "$tmp/log" | tail -n 40

# Ctrl-C, as a terminal sends it: SIGINT to the whole process group, while
# DURATION=0 produces for ever.  The script alone gets it (the emulators,
# kcld and the producer run in sessions of their own), so kcld still
# catches up and the summary adds up.
if [ -x "$tmp/build/kcld" ]; then
  ( # the "terminal": SIGINT once records were produced (at most 60 s in),
    # then (a hang) SIGTERM after 120 s more
    i=0
    until tr '\r' '\n' < "$tmp/ctrlc.out" 2>/dev/null |
          grep -q '^produced [1-9]'; do
      i=$((i + 1))
      if [ "$i" -gt 600 ]; then break; fi
      sleep 0.1
    done
    pid=$(cat "$tmp/ctrlc.pid")
    kill -INT "-$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 1200 ]; do
      i=$((i + 1))
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "-$pid" || true; fi
  ) &
  killer=$!
  rc=0
  # Its own process group, SIGINT not ignored (a background job's is).
  # shellcheck disable=SC2016
  KCLD_BIN="$tmp/build/kcld" KCLD_RUN_DIR="$tmp/ctrlc" DURATION=0 RATE=200 \
    POISON=0.05 setsid env --default-signal=INT \
    sh -c 'echo $$ > "$1" && exec scripts/run-local.sh' sh "$tmp/ctrlc.pid" \
    > "$tmp/ctrlc.out" 2>&1 || rc=$?
  wait "$killer" || true
  tr '\r' '\n' < "$tmp/ctrlc.out" > "$tmp/ctrlc.log"
  if [ "$rc" -eq 0 ] &&
     grep -q '^make run: all [0-9]* records dealt with' "$tmp/ctrlc.log" &&
     grep -q 'check: .* nothing lost' "$tmp/ctrlc.log"; then
    echo "ok   Ctrl-C: $(grep -o 'all [0-9]* records dealt with' "$tmp/ctrlc.log"), summary adds up"
  else
    bad "Ctrl-C: exit $rc, no catch-up or no summary"
    grep -v '^produced' "$tmp/ctrlc.log" | sed 's/^/     /' | tail -n 20
  fi
fi
exit "$fail"
