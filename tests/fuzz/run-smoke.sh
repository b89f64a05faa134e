#!/bin/sh
# Runs the libFuzzer targets built in $FUZZ_BUILD/fuzz (default build-fuzz).
#
#   tests/fuzz/run-smoke.sh                  smoke: every target over its
#                                            corpus, then a short mutation run
#   tests/fuzz/run-smoke.sh --long SECONDS   every target for SECONDS
#   tests/fuzz/run-smoke.sh [...] TARGET...  only these (fuzz_deagg ...)
#
# Smoke budget per target: FUZZ_SMOKE_RUNS mutated inputs (default 20000),
# cut at FUZZ_SMOKE_SECONDS (default 8), from seed FUZZ_SEED (default 1:
# make test tries the same inputs each time, unless a slow machine hits the
# time cap first; FUZZ_SEED=0 picks a random seed).
# Each input has FUZZ_TIMEOUT seconds (default 5).  Leaks, sanitizer
# reports, CHECK failures, timeouts and out-of-memory all fail the run; the
# input is saved as $FUZZ_BUILD/artifacts/<target>/crash-* (or timeout-*,
# leak-*, oom-*) and the script exits 1 - except, in the smoke run, for
# targets listed in tests/fuzz/known-failures (bugs reported, not yet
# fixed), whose failures are shown but not counted.
#
# New inputs found while fuzzing go to $FUZZ_BUILD/corpus/<target> (long
# runs; kept, so that the next long run goes on from there) or
# $FUZZ_BUILD/smoke-corpus/<target> (smoke; emptied each time), never
# into the committed seed corpus tests/fuzz/corpus/<target>.  To keep an
# input there (a fixed crash, as crash-<what>), copy it by hand.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
build=${FUZZ_BUILD:-build-fuzz}
mode=smoke
seconds=0
if [ "${1:-}" = --long ]; then
  mode=long
  seconds=${2:?--long needs a number of seconds}
  shift 2
fi
runs=${FUZZ_SMOKE_RUNS:-20000}
smoke_seconds=${FUZZ_SMOKE_SECONDS:-8}
seed=${FUZZ_SEED:-1}
timeout=${FUZZ_TIMEOUT:-5}

if [ $# -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do
    f=${f##*/}
    set -- "$@" "${f%.c}"
  done
fi

# Leaks on (also the libFuzzer default), every sanitizer report fatal.
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export ASAN_OPTIONS="$ASAN_OPTIONS:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# Per target: the longest input worth trying and a dictionary, if any.
max_len()
{
  case $1 in
    fuzz_getrecords) echo 16384 ;;
    fuzz_config) echo 8192 ;;
    fuzz_filter) echo 8192 ;; # a pattern (Lambda's limit: 4096) and a payload
    *) echo 4096 ;;
  esac
}

fail=0
nknown=0
failed=""
for t in "$@"; do
  bin=$build/fuzz/$t
  seeds=tests/fuzz/corpus/$t
  work=$build/corpus/$t
  art=$build/artifacts/$t
  log=$build/fuzz/$t.$mode.log
  # The smoke run's scratch corpus is its own, so that make test during a
  # long run does not disturb it.
  [ "$mode" = smoke ] && work=$build/smoke-corpus/$t
  if [ ! -x "$bin" ]; then
    echo "FAIL $t: $bin is not built (make fuzz-build)"
    fail=$((fail + 1)); failed="$failed $t"
    continue
  fi
  if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
    echo "FAIL $t: no seed corpus in $seeds"
    fail=$((fail + 1)); failed="$failed $t"
    continue
  fi
  mkdir -p "$work" "$art"
  dict=""
  name=${t#fuzz_}
  [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
  common="-timeout=$timeout -error_exitcode=77 -timeout_exitcode=78 \
-rss_limit_mb=2048 -malloc_limit_mb=1024 -detect_leaks=1 \
-max_len=$(max_len "$t") -artifact_prefix=$art/ -print_final_stats=1 $dict"
  start=$(date +%s)
  rc=0
  if [ "$mode" = smoke ]; then
    # 1. Every committed input once, as a regression test (crash-* inputs
    #    of fixed bugs included).  2. A short mutation run from them; the
    #    scratch corpus starts empty so that the run is repeatable.
    rm -rf "$work" && mkdir -p "$work"
    # shellcheck disable=SC2086
    "$bin" $common "$seeds"/* >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      # shellcheck disable=SC2086
      "$bin" $common -seed="$seed" -runs="$runs" \
        -max_total_time="$smoke_seconds" "$work" "$seeds" >>"$log" 2>&1 ||
        rc=$?
    fi
  else
    # shellcheck disable=SC2086
    "$bin" $common -max_total_time="$seconds" "$work" "$seeds" \
      >"$log" 2>&1 || rc=$?
  fi
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  known=""
  if [ "$mode" = smoke ] && [ -f tests/fuzz/known-failures ]; then
    known=$(sed -n "s/^${t}[[:space:]][[:space:]]*//p" \
      tests/fuzz/known-failures)
  fi
  if [ "$rc" -eq 0 ]; then
    printf 'ok   %-18s %ss, %s execs, %s, corpus %s\n' "$t" "$secs" \
      "${execs:-?}" "${cov:-cov: ?}" "$(find "$work" -type f | wc -l)"
    [ -n "$known" ] && echo "     $t passes now: remove it from" \
      "tests/fuzz/known-failures"
  elif [ -n "$known" ]; then
    nknown=$((nknown + 1))
    printf 'KNOWN %-17s (exit %s), not counted: %s\n' "$t" "$rc" "$known"
    grep -m 3 'runtime error\|ERROR:\|check failed' "$log" | sed 's/^/    /'
  else
    fail=$((fail + 1)); failed="$failed $t"
    printf 'FAIL %-18s (exit %s) — log %s, inputs in %s\n' "$t" "$rc" \
      "$log" "$art"
    grep -v '^#\|^INFO:\|^Running:\|^Executed' "$log" | tail -n 40 |
      sed 's/^/    /'
  fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "fuzz ($mode): $(($# - fail - nknown)) passed, $fail failed," \
  "$nknown known failures (tests/fuzz/known-failures)"
[ "$fail" -eq 0 ]
