#!/usr/bin/env bash
# Instructions per request with diag_core::layer() vs without, counted exactly by valgrind
# (callgrind) instead of timed: on a shared 2-core VM, back-to-back wrk runs against the very
# same server differ by +-15 % in req/s (see BENCHMARKS.md), which hides a 2 % effect, while
# an instruction count is the same from run to run.
#
# One `shop --ab` process (one port; `/a/...` and `/c/...` without the layer, `/b/...` with it,
# `/n/...` with a no-op tower layer: what axum's `Router::layer` costs for any layer)
# runs under `valgrind --tool=callgrind` with instrumentation on and its counters zeroed
# before, and dumped after, each phase: an idle phase (the background threads alone: the
# watchdog's scans, the lag probe, tokio's timers), then ROUNDS rounds of `/a`, `/n`, `/b`,
# `/c` (order rotated) under `wrk -c4`. Per side: (instructions of the phase - the idle rate x its
# duration) / requests answered. `/c` against `/a` is the calibration (expected within a
# fraction of a percent). Instructions are not time (a cache miss costs more than an add),
# but they are what a wrapper adds in a CPU-bound server, without the VM's noise.
#
# The heap sampler is off in the server (DIAG_HEAP_SAMPLE_BYTES=0; env HEAP_SAMPLE_BYTES to
# change): at the default rate its stack captures (~58k instructions each, one per ~47
# requests of this route) add a Poisson-noisy ~1.2k instructions per request to every side.
#
# Usage: benches/scripts/layer_instructions.sh [ROUNDS=3] [SECS=5] [PATH=/items/1]
# ACTIX=1: the same four sides on the actix-web example (`actix_shop --ab`, one worker,
# `diag_core::actix::Diag` on `/b`, a no-op `wrap_fn` on `/n`); use PATH=/users/1.
# Env: HEAP_SAMPLE_BYTES (0); KEEP_TMP=1 keeps the callgrind dumps (cg.out.N, one per phase:
# 1 is the idle phase) and wrk outputs for callgrind_annotate, and prints where they are.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-5}
ROUTE=${3:-/items/1}
for t in wrk valgrind callgrind_control; do
  command -v $t >/dev/null || { echo "$t not found (apt-get install wrk valgrind)" >&2; exit 2; }
done
source benches/scripts/lib.sh
BIN=shop
FEATURES=()
if [ -n "${ACTIX:-}" ]; then BIN=actix_shop; FEATURES=(--features actix); fi
cargo build --release -q -p diag-examples --bin "$BIN" "${FEATURES[@]}"
TMP=$(mktemp -d)
vpid=""
cleanup() {
  [ -n "$vpid" ] && kill "$vpid" 2>/dev/null
  if [ -n "${KEEP_TMP:-}" ]; then echo "callgrind dumps kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

PORT=18177
DIAG_HEAP_SAMPLE_BYTES=${HEAP_SAMPLE_BYTES:-0} DIAG_ADDR=127.0.0.1:16177 TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$TMP/cg.out" "${CARGO_TARGET_DIR:-target}/release/$BIN" --ab 127.0.0.1:$PORT >"$TMP/log" 2>&1 &
vpid=$!
for _ in $(seq 600); do grep -q "app listening" "$TMP/log" && break; sleep 0.1; done
grep -q "app listening" "$TMP/log" || { echo "shop did not start: $(cat "$TMP/log")" >&2; exit 2; }
callgrind_control -i on "$vpid" >/dev/null 2>&1
# Warm-up under instrumentation: every side's route entry, caches and connections.
for side in a n b c; do wrk -t1 -c4 -d2s "http://127.0.0.1:$PORT/$side$ROUTE" >/dev/null; done

# Runs "$@" as one phase; prints "instructions seconds".
phase() {
  local t0 t1 ir
  callgrind_control -z "$vpid" >/dev/null 2>&1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  callgrind_control -d "$vpid" >/dev/null 2>&1
  # (phase runs in a subshell: the dump count lives in a file.)
  local dumps=$(( $(cat "$TMP/dumps" 2>/dev/null || echo 0) + 1 ))
  echo "$dumps" >"$TMP/dumps"
  # The dump is written by the server's process: wait for the new file to be complete.
  local f="$TMP/cg.out.$dumps"
  for _ in $(seq 300); do grep -q '^totals:' "$f" 2>/dev/null && break; sleep 0.1; done
  ir=$(awk '/^totals:/ {print $2}' "$f")
  echo "$ir $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
}
read -r idle_ir idle_s < <(phase sleep "$SECS")
idle_rate=$(awk -v i="$idle_ir" -v s="$idle_s" 'BEGIN {print i / s}')
echo "idle: $idle_ir instructions in ${idle_s}s ($(awk -v r="$idle_rate" 'BEGIN {printf "%.0f", r}') per second)"
declare -A PER
for i in $(seq "$ROUNDS"); do
  sides=(a n b c)
  for k in 0 1 2 3; do
    side=${sides[$(( (k + i) % 4 ))]}
    wrk_out="$TMP/wrk.$i.$side"
    read -r ir secs < <(phase sh -c "wrk -t1 -c4 -d${SECS}s http://127.0.0.1:$PORT/$side$ROUTE >$wrk_out")
    n=$(awk '/ requests in / {print $1}' "$wrk_out")
    per=$(awk -v ir="$ir" -v s="$secs" -v r="$idle_rate" -v n="$n" 'BEGIN {printf "%.0f", (ir - r * s) / n}')
    PER[$side]+="$per "
    echo "round $i /$side$ROUTE: $n requests, $ir instructions, $per per request"
  done
done
a=$(median ${PER[a]}); b=$(median ${PER[b]}); c=$(median ${PER[c]}); n=$(median ${PER[n]})
echo
echo "instructions per request, median of $ROUNDS rounds (callgrind; one $BIN --ab process, 1 worker, heap sampling ${HEAP_SAMPLE_BYTES:-0}, wrk -t1 -c4 -d${SECS}s):"
pct() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%+.2f", 100 * (x - y) / y}'; }
printf '  /a (bare):          %8.0f\n' "$a"
printf '  /n (no-op layer):   %8.0f   %s %% vs /a (axum, any layer)\n' "$n" "$(pct "$n" "$a")"
printf '  /b (with layer()):  %8.0f   %s %% vs /a, %s %% vs /n (diag itself: %+.0f per request)\n' "$b" "$(pct "$b" "$a")" "$(pct "$b" "$n")" "$(awk -v x="$b" -v y="$n" 'BEGIN {print x - y}')"
printf '  /c (bare again):    %8.0f   %s %% vs /a (calibration)\n' "$c" "$(pct "$c" "$a")"
echo "  $(valgrind --version), machine: $(machine)"
