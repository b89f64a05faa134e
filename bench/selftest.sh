#!/bin/sh
# bench/selftest.sh [BUILD] - checks that every process `make bench` starts
# ends with it when it is killed: starts a short `make bench` marked by an
# environment variable that every process it starts inherits, waits until
# the processes of interest run, kills the driver (SIGKILL, then SIGTERM) or
# make itself (SIGKILL, as `timeout -s KILL` would), and fails when any
# marked process is still alive 15 s later.  `make bench-selftest` runs it
# (about a minute; not part of `make test`).
set -u
cd "$(dirname "$0")/.." || exit 2
BUILD=${1:-build}
run=kcld-bench-selftest-$$
log=$(mktemp -d "${TMPDIR:-/tmp}/kcld-bench-selftest.XXXXXX")
failed=0

# The live (not zombie) processes marked MARK, one "PID CMDLINE" a line.
marked() {
  grep -l -s -z -x "KCLD_BENCH_SELFTEST=$1" /proc/[0-9]*/environ |
  while read -r f; do
    d=${f%/environ}
    state=$(sed 's/.*) //' "$d/stat" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$state" ] && [ "$state" != Z ]; then
      echo "${d#/proc/} $({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)"
    fi
  done
}

# The pid of the marked process whose command line matches the ERE, or "".
find_pid() {
  marked "$1" | grep -E -- "$2" | head -n 1 | cut -d' ' -f1
}

# check NAME BENCH WAIT_FOR VICTIM SIGNAL [VAR=VALUE...]: runs `make bench
# BENCH=BENCH` with the variables, waits (120 s at most) for a process
# matching WAIT_FOR, sends SIGNAL to the one matching VICTIM, and checks that
# every marked process is gone within 15 s.
check() {
  name=$1 bench=$2 wait_for=$3 victim=$4 sig=$5
  shift 5
  mark=$run-$name
  setsid env KCLD_BENCH_SELFTEST="$mark" "$@" \
    make --no-print-directory bench BENCH="$bench" BUILD="$BUILD" \
    >"$log/$name.log" 2>&1 </dev/null &
  i=0
  while [ -z "$(find_pid "$mark" "$wait_for")" ]; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then
      echo "FAIL $name: no process matching '$wait_for' within 120 s (log: $log/$name.log)"
      marked "$mark" | cut -d' ' -f1 | xargs -r kill -9 2>/dev/null
      failed=1
      return
    fi
    sleep 0.2
  done
  sleep 1   # Let everything the benchmark starts at that point start.
  before=$(marked "$mark" | wc -l)
  pid=$(find_pid "$mark" "$victim")
  if [ -z "$pid" ]; then
    echo "FAIL $name: no process matching '$victim'"
    failed=1
    return
  fi
  kill "-$sig" "$pid"
  i=0
  while [ -n "$(marked "$mark")" ] && [ $i -lt 75 ]; do
    i=$((i + 1))
    sleep 0.2
  done
  left=$(marked "$mark")
  if [ -n "$left" ]; then
    echo "FAIL $name: $sig to '$victim' left running:"
    echo "$left" | sed 's/^/    /'
    echo "$left" | cut -d' ' -f1 | xargs -r kill -9 2>/dev/null
    failed=1
  else
    echo "ok   $name: $sig to '$victim' ended all $before processes it had started"
  fi
  wait 2>/dev/null
}

KCLD='/kcld --config'
DRIVER='node bench/node/run.mjs'
check scale-kill-driver scale "$KCLD" "$DRIVER" KILL \
  BENCH_LEASES=64 BENCH_WINDOW=60
check latency-kill-driver latency 'bench/python/peer.py' "$DRIVER" KILL \
  BENCH_LATENCY_SECONDS=60
check throughput-kill-driver throughput 'floor http|peer|/kcld --config' "$DRIVER" KILL \
  BENCH_RECORDS=400000 BENCH_SHARDS=4 BENCH_REPS=3
check scale-term-driver scale "$KCLD" "$DRIVER" TERM \
  BENCH_LEASES=64 BENCH_WINDOW=60
check scale-kill-make scale "$KCLD" '^[0-9]+ make ' KILL \
  BENCH_LEASES=64 BENCH_WINDOW=60
if [ $failed = 0 ]; then
  rm -rf "$log"
  echo "bench-selftest: every process ended with the benchmark"
else
  echo "bench-selftest: FAILED (logs in $log)"
fi
exit $failed
