#!/bin/sh
# Runs test binaries one by one, each under a time limit, and prints one
# closing line "N passed, N failed".  A binary passes when it exits 0; under
# the sanitizer build any ASan/UBSan/LSan report makes it exit non-zero.
#   tests/run-tests.sh BUILD_DIR TEST_BINARY...
set -u
build=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
export KCLD_ROOT="$root"
export KCLD_BIN="$root/$build/kcld"
export KCLD_SHARED="${KCLD_SHARED:-$root/../shared}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24"
limit=${KCLD_TEST_TIMEOUT:-300}
pass=0; fail=0; failed=""
for t in "$@"; do
  name=${t#"$build"/tests/}
  start=$(date +%s)
  if timeout -k 10 "$limit" "$t" >"$t.log" 2>&1; then
    pass=$((pass + 1))
    printf 'ok   %-40s %ss\n' "$name" "$(( $(date +%s) - start ))"
  else
    rc=$?
    fail=$((fail + 1)); failed="$failed $name"
    printf 'FAIL %-40s (exit %s) — log follows\n' "$name" "$rc"
    # The failed assertions first (cmocka's file:line), then the tail.
    grep -E '^\[ +(ERROR|LINE|FAILED) +\]' "$t.log" | head -n 20 | sed 's/^/  ! /'
    sed 's/^/    /' "$t.log" | tail -n 80
  fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "== $build"
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
