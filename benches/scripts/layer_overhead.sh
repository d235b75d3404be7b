#!/usr/bin/env bash
# Throughput and p99 of the shop example with diag_core::layer() vs without (`shop --bare`),
# side by side: two release processes (same binary, same DiagAlloc and diag listener; only the
# layer differs), wrk against each in interleaved rounds, medians reported. By default each
# server is pinned to CPU 0 with one tokio worker and wrk to CPU 1: unpinned, two identical
# servers differ by up to +-10 % on these 2-core machines (where the kernel puts the workers
# relative to wrk, which worker the connections land on), which hides a 2 % effect; pinned,
# bare vs bare (CALIBRATE=1) still differed by 7-11 % in session 3 (see BENCHMARKS.md). PROCESSES=1 serves both sides from one
# process on two ports (`shop --pair`); that layout showed a bias of its own between the two
# ports (bare vs bare -21 % pinned), so it is not the default. PROCESSES=paths: one process,
# one port, one set of connections (`shop --ab`): bare is `/a$PATH`, the layer `/b$PATH`, and
# CALIBRATE=1 compares `/a` with `/c` (bare too). Also the server's
# CPU time per request (user+sys from /proc/PID/stat over each wrk run), which is far less
# noisy than throughput on a shared 2-core VM where wrk and the server compete for the cores.
#
# Usage: benches/scripts/layer_overhead.sh [ROUNDS=7] [SECS=5] [PATH=/items/1]
# Env: WRK_THREADS (1), WRK_CONNS (16); PIN (1: server on CPU 0 with one worker, wrk on
# CPU 1; 0: unpinned, the runtime's default workers); CALIBRATE=1 runs bare against bare (the noise floor:
# the "layer" figures then come from a second bare process); PROCESSES=1: one process, two ports;
# PROCESSES=paths: one process, one port, the sides told apart by path prefix.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-7}
SECS=${2:-5}
ROUTE=${3:-/items/1}
THREADS=${WRK_THREADS:-1}
CONNS=${WRK_CONNS:-16}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 2; }
cargo build --release -q -p diag-examples --bin shop
BIN=target/release/shop

source benches/scripts/lib.sh
pin_setup

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

declare -A PID
start() { # name flag port diagport [second address]
  local log; log=$(mktemp)
  DIAG_ADDR=127.0.0.1:$4 $SERVER_PIN "$BIN" $2 127.0.0.1:$3 ${5:-} >"$log" 2>&1 &
  pids+=($!); PID[$3]=$!
  for _ in $(seq 100); do grep -q "app listening" "$log" && return; sleep 0.05; done
  echo "$1 did not start: $(cat "$log")" >&2; exit 2
}
# Each side: a port and a path.
L_PORT=18181; B_PORT=18182; L_PATH=$ROUTE; B_PATH=$ROUTE
if [ "${PROCESSES:-2}" = paths ]; then
  start ab --ab 18181 16161
  B_PORT=18181; B_PATH=/a$ROUTE
  if [ "${CALIBRATE:-0}" = 1 ]; then L_PATH=/c$ROUTE; else L_PATH=/b$ROUTE; fi
elif [ "${PROCESSES:-2}" = 2 ]; then
  if [ "${CALIBRATE:-0}" = 1 ]; then start layer --bare 18181 16161; else start layer "" 18181 16161; fi
  start bare --bare 18182 16162
else
  # One process, two ports: PID[18181] and PID[18182] are the same process.
  if [ "${CALIBRATE:-0}" = 1 ]; then pair=--pair-bare; else pair=--pair; fi
  start pair "$pair" 18181 16161 "127.0.0.1:18182"
  PID[18182]=${PID[18181]}
fi

run() { # port path -> "rps p99_ms cpu_us_per_request"
  local a b out
  a=$(cpu_ticks "${PID[$1]}")
  out=$($WRK_PIN wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$1$2")
  b=$(cpu_ticks "${PID[$1]}")
  echo "$out" | wrk_summary $((b - a))
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm up both.
run $L_PORT "$L_PATH" >/dev/null; run $B_PORT "$B_PATH" >/dev/null
L_RPS=(); L_P99=(); B_RPS=(); B_P99=(); L_CPU=(); B_CPU=()
for i in $(seq "$ROUNDS"); do
  # Alternate the order each round.
  if (( i % 2 )); then order="L B"; else order="B L"; fi
  for side in $order; do
    if [ "$side" = L ]; then port=$L_PORT; path=$L_PATH; else port=$B_PORT; path=$B_PATH; fi
    read -r rps p99 cpu < <(run "$port" "$path")
    if [ "$side" = L ]; then L_RPS+=("$rps"); L_P99+=("$p99"); L_CPU+=("$cpu"); else B_RPS+=("$rps"); B_P99+=("$p99"); B_CPU+=("$cpu"); fi
    echo "round $i port $port path $path ($([ "$side" = L ] && echo layer || echo bare)): $rps req/s, p99 $p99 ms, server CPU $cpu us/request"
  done
done
lr=$(median "${L_RPS[@]}"); br=$(median "${B_RPS[@]}")
lp=$(median "${L_P99[@]}"); bp=$(median "${B_P99[@]}")
lc=$(median "${L_CPU[@]}"); bc=$(median "${B_CPU[@]}")
echo
echo "route $ROUTE, wrk -t$THREADS -c$CONNS -d${SECS}s x $ROUNDS interleaved rounds, $(case "${PROCESSES:-2}" in 2) echo "two processes";; paths) echo "one process, one port, sides by path prefix";; *) echo "one process, two ports";; esac)$([ -n "$SERVER_PIN" ] && echo ", server pinned to CPU 0 with 1 worker, wrk to CPU 1")$([ "${CALIBRATE:-0}" = 1 ] && echo ", CALIBRATE (bare vs bare)"), medians:"
printf '  without layer: %10.0f req/s   p99 %7.3f ms   server CPU %6.2f us/request\n' "$br" "$bp" "$bc"
printf '  with layer:    %10.0f req/s   p99 %7.3f ms   server CPU %6.2f us/request\n' "$lr" "$lp" "$lc"
awk -v l="$lr" -v b="$br" 'BEGIN {printf "  throughput change with layer: %+.2f %%\n", 100*(l-b)/b}'
# Paired: each round's layer/bare ratio, then the median (robust to load drifting between rounds).
ratios=(); for i in "${!L_RPS[@]}"; do ratios+=("$(awk -v l="${L_RPS[$i]}" -v b="${B_RPS[$i]}" 'BEGIN {print l/b}')"); done
awk -v r="$(median "${ratios[@]}")" 'BEGIN {printf "  median of per-round layer/bare ratios: %.4f (%+.2f %%)\n", r, 100*(r-1)}'
awk -v l="$lc" -v b="$bc" 'BEGIN {printf "  server CPU per request with layer: %+.2f %%\n", 100*(l-b)/b}'
cratios=(); for i in "${!L_CPU[@]}"; do cratios+=("$(awk -v l="${L_CPU[$i]}" -v b="${B_CPU[$i]}" 'BEGIN {print l/b}')"); done
awk -v r="$(median "${cratios[@]}")" 'BEGIN {printf "  median of per-round layer/bare CPU-per-request ratios: %.4f (%+.2f %%)\n", r, 100*(r-1)}'
echo "  load average before/after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  machine: $(machine)"
