#!/bin/sh
# make run: the reference pipeline on this machine.
#
# Starts kinesalite, dynalite and fauxqs on ephemeral loopback ports, creates
# a 4-shard stream, a results table and a dead-letter queue, then runs
# `kcld produce` (sample events, ~1% deliberately malformed) and `kcld` with
# conf/local.yaml (DynamoDB sink, bisect on error, DLQ), its metrics server
# on a free port too.  One status line refreshes every second.  When the
# producer is done (DURATION, or Ctrl-C), it waits until kcld has handled or
# dead-lettered every record produced (at most DRAIN_TIMEOUT), stops kcld
# and prints a summary: produced = items in the table + records in the
# dead-letter queue.  The emulators, kcld and the producer run in sessions
# of their own, so a Ctrl-C reaches this script only, which stops them in
# that order.
#
# Environment: RATE (records/s, default 200), SHARDS (default 4),
# POISON (share of malformed records, default 0.01), DURATION (default 30s;
# 0: until Ctrl-C), DRAIN_TIMEOUT (seconds, default 60);
# KCLD_BIN (default build/kcld) and KCLD_RUN_DIR (logs, default build/run),
# which `make run` sets from BUILD.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
abs() { case $1 in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
kcld=$(abs "${KCLD_BIN:-build/kcld}")
run=$(abs "${KCLD_RUN_DIR:-build/run}")
rate=${RATE:-200}
shards=${SHARDS:-4}
poison=${POISON:-0.01}
drain=${DRAIN_TIMEOUT:-60}
duration=${DURATION:-30s}
[ "$duration" = 0 ] && duration=""
[ -x "$kcld" ] || { echo "make run: no kcld at $kcld" >&2; exit 1; }
rm -rf "$run"
mkdir -p "$run"

emu_pid=""; kcld_pid=""; prod_pid=""
cleanup() {
  for p in $prod_pid $kcld_pid; do kill -TERM "$p" 2>/dev/null || true; done
  if [ -n "$emu_pid" ]; then kill -TERM "$emu_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Seconds since the epoch, with a fraction.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- emulators: they exit when our end of their stdin closes -------------
mkfifo "$run/emu.in"
setsid node tests/emulators/emulators.js --ttl 86400 kinesis dynamodb sqs \
  < "$run/emu.in" > "$run/emu.out" 2> "$run/emu.err" &
emu_pid=$!
exec 3> "$run/emu.in"
i=0
while [ ! -s "$run/emu.out" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 "$emu_pid" 2>/dev/null; then
    echo "make run: the emulators did not start:" >&2
    cat "$run/emu.err" >&2
    exit 1
  fi
  sleep 0.1
done
url() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$run/emu.out"; }
KCLD_KINESIS_ENDPOINT=$(url kinesis)
KCLD_DYNAMODB_ENDPOINT=$(url dynamodb)
KCLD_SQS_ENDPOINT=$(url sqs)
# Port 0: the kernel picks a free one, and kcld logs which.
KCLD_METRICS_LISTEN=127.0.0.1:0
export KCLD_KINESIS_ENDPOINT KCLD_DYNAMODB_ENDPOINT KCLD_SQS_ENDPOINT \
  KCLD_METRICS_LISTEN

# --- resources ------------------------------------------------------------
KCLD_DLQ_URL=$(node tests/emulators/local-aws.js init kcld-local "$shards" \
  kcld-local-results kcld-local-dlq)
export KCLD_DLQ_URL
echo "make run: kinesis $KCLD_KINESIS_ENDPOINT, dynamodb $KCLD_DYNAMODB_ENDPOINT, sqs $KCLD_SQS_ENDPOINT"
echo "make run: stream kcld-local ($shards shards), table kcld-local-results, queue $KCLD_DLQ_URL"

# --- kcld and the producer -------------------------------------------------
setsid "$kcld" --config conf/local.yaml 2> "$run/kcld.log" &
kcld_pid=$!
# The metrics address kcld bound: its "metrics server listening" line.
metrics=""
i=0
while [ -z "$metrics" ]; do
  metrics=$(sed -n 's/.*metrics server listening.*address[=":]*\([0-9.]*:[0-9]*\).*/\1/p' \
              "$run/kcld.log" | head -n 1)
  [ -n "$metrics" ] && break
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 "$kcld_pid" 2>/dev/null; then
    echo "make run: kcld did not start its metrics server; its log:" >&2
    tail -n 30 "$run/kcld.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "make run: kcld metrics on http://$metrics/metrics; logs in $run/"
if [ -n "$duration" ]; then
  echo "make run: producing for $duration (DURATION); Ctrl-C stops sooner and prints the summary"
else
  echo "make run: producing until Ctrl-C, which prints the summary"
fi
set -- --config conf/local.yaml --rate "$rate" --poison-rate "$poison"
[ -n "$duration" ] && set -- "$@" --duration "$duration"
setsid "$kcld" produce "$@" > "$run/produce.out" 2> "$run/produce.err" &
prod_pid=$!

metric() { # sum of a metric's samples
  awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d", s }' "$run/metrics"
}
metric_max() {
  awk -v m="$1" 'index($1, m "{") == 1 || $1 == m { if ($NF > s) s = $NF } END { printf "%d", s }' "$run/metrics"
}
produced() {
  tail -n 1 "$run/produce.err" 2>/dev/null | tr '\r' '\n' | tail -n 1 |
    sed -n 's/^produce: \([0-9]*\) produced.*/\1/p'
}
# Scrapes kcld's metrics into $run/metrics; sets h (handled) and d
# (dead-lettered).
scrape() {
  curl -s -m 1 "http://$metrics/metrics" > "$run/metrics" 2>/dev/null ||
    : > "$run/metrics"
  h=$(metric kcld_records_handled_total)
  d=$(metric kcld_dlq_records_total)
}
status_line() {
  scrape
  p=${1:-$(produced)}; p=${p:-0}
  printf '\rproduced %-8s handled %-8s (%s/s)  lag %sms  leases %s  dlq %s    ' \
    "$p" "$h" "$((h - ${last_h:-0}))" "$(metric_max kcld_millis_behind_latest)" \
    "$(metric kcld_leases_held)" "$d"
  last_h=$h
}

stop=0
trap 'stop=1' INT TERM
while [ $stop = 0 ]; do
  if ! kill -0 "$kcld_pid" 2>/dev/null; then
    echo; echo "make run: kcld exited; its log:" >&2; tail -n 30 "$run/kcld.log" >&2
    exit 1
  fi
  if ! kill -0 "$prod_pid" 2>/dev/null; then
    [ -n "$duration" ] && break
  fi
  status_line
  sleep 1 || true # a Ctrl-C ends the sleep too
done
trap - INT TERM
echo
echo "make run: stopping the producer"
kill -INT "$prod_pid" 2>/dev/null || true
wait "$prod_pid" 2>/dev/null || true
prod_pid=""
total=$(sed -n 's/^produced=\([0-9]*\).*/\1/p' "$run/produce.out" | tail -n 1)
total=${total:-0}

# --- until every record is handled or dead-lettered -------------------------
echo "make run: waiting for kcld to handle or dead-letter all $total records (at most $drain s)"
t0=$(now)
caught=0
while :; do
  status_line "$total"
  if [ $((h + d)) -ge "$total" ]; then caught=1; break; fi
  if ! kill -0 "$kcld_pid" 2>/dev/null; then break; fi
  if awk -v a="$t0" -v b="$(now)" -v m="$drain" 'BEGIN { exit !(b - a >= m) }'
  then break; fi
  sleep 0.2 || true
done
echo
if [ $caught = 1 ]; then
  echo "make run: all $total records dealt with ($h handled, $d dead-lettered)" \
    "$(since "$t0") s after the producer stopped"
elif ! kill -0 "$kcld_pid" 2>/dev/null; then
  echo "make run: kcld exited with $((total - h - d)) of $total records" \
    "neither handled nor dead-lettered; its log:" >&2
  tail -n 30 "$run/kcld.log" >&2
  exit 1
else
  echo "make run: after $drain s kcld has handled $h and dead-lettered $d" \
    "of $total records; $((total - h - d)) are missing (see $run/kcld.log;" \
    "DRAIN_TIMEOUT=seconds waits longer)" >&2
fi
echo "make run: kcld status (before the stop)"
"$kcld" status --config conf/local.yaml --no-lag || true
echo "make run: stopping kcld (graceful: checkpoints, leases released)"
kill -TERM "$kcld_pid" 2>/dev/null || true
wait "$kcld_pid" 2>/dev/null || true
kcld_pid=""
counts=$(node tests/emulators/local-aws.js counts kcld-local-results "$KCLD_DLQ_URL")
items=$(echo "$counts" | sed -n 's/.*items=\([0-9]*\).*/\1/p')
dlq_msgs=$(echo "$counts" | sed -n 's/.*dlq_messages=\([0-9]*\).*/\1/p')
dlq_recs=$(echo "$counts" | sed -n 's/.*dlq_records=\([0-9]*\).*/\1/p')
poisoned=$(sed -n 's/.*poison=\([0-9]*\).*/\1/p' "$run/produce.out" | tail -n 1)
echo
echo "summary"
echo "  produced:             $total (of which malformed on purpose: ${poisoned:-0})"
echo "  items in the table:   $items"
echo "  records in the DLQ:   $dlq_recs (in $dlq_msgs messages)"
if [ "$((items + dlq_recs))" -eq "$total" ]; then
  echo "  check:                $items + $dlq_recs = $total  ✓ nothing lost"
else
  echo "  check:                $items + $dlq_recs != $total  ✗ see $run/kcld.log"
  exit 1
fi
# Late, though nothing was lost: still a failed run.
[ $caught = 1 ]
