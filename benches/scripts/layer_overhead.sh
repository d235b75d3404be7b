#!/usr/bin/env bash
# Throughput and p99 of the shop example with diag_core::layer() vs without (`shop --bare`),
# side by side: two release processes (same binary, same DiagAlloc and diag listener; only the
# layer differs), wrk against each in interleaved rounds, medians reported.
#
# Usage: benches/scripts/layer_overhead.sh [ROUNDS=7] [SECS=5] [PATH=/items/1]
# Env: WRK_THREADS (1), WRK_CONNS (16).
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

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() { # name flag port diagport
  local log; log=$(mktemp)
  DIAG_ADDR=127.0.0.1:$4 "$BIN" $2 127.0.0.1:$3 >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "app listening" "$log" && return; sleep 0.05; done
  echo "$1 did not start: $(cat "$log")" >&2; exit 2
}
start layer "" 18181 16161
start bare --bare 18182 16162

run() { # port -> "rps p99_ms"
  wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$1$ROUTE" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; p99=v}
    END {print rps, p99}'
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm up both.
run 18181 >/dev/null; run 18182 >/dev/null
L_RPS=(); L_P99=(); B_RPS=(); B_P99=()
for i in $(seq "$ROUNDS"); do
  # Alternate the order each round.
  if (( i % 2 )); then order="18181 18182"; else order="18182 18181"; fi
  for port in $order; do
    read -r rps p99 < <(run "$port")
    if [ "$port" = 18181 ]; then L_RPS+=("$rps"); L_P99+=("$p99"); else B_RPS+=("$rps"); B_P99+=("$p99"); fi
    echo "round $i port $port ($([ "$port" = 18181 ] && echo layer || echo bare)): $rps req/s, p99 $p99 ms"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
lr=$(median "${L_RPS[@]}"); br=$(median "${B_RPS[@]}")
lp=$(median "${L_P99[@]}"); bp=$(median "${B_P99[@]}")
echo
echo "route $ROUTE, wrk -t$THREADS -c$CONNS -d${SECS}s x $ROUNDS interleaved rounds, medians:"
printf '  without layer: %10.0f req/s   p99 %7.3f ms\n' "$br" "$bp"
printf '  with layer:    %10.0f req/s   p99 %7.3f ms\n' "$lr" "$lp"
awk -v l="$lr" -v b="$br" 'BEGIN {printf "  throughput change with layer: %+.2f %%\n", 100*(l-b)/b}'
# Paired: each round's layer/bare ratio, then the median (robust to load drifting between rounds).
ratios=(); for i in "${!L_RPS[@]}"; do ratios+=("$(awk -v l="${L_RPS[$i]}" -v b="${B_RPS[$i]}" 'BEGIN {print l/b}')"); done
awk -v r="$(median "${ratios[@]}")" 'BEGIN {printf "  median of per-round layer/bare ratios: %.4f (%+.2f %%)\n", r, 100*(r-1)}'
echo "  load average before/after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
