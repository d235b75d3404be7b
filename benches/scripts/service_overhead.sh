#!/usr/bin/env bash
# Service level, "requests/s and p99 under wrk, bare vs everything on", in one run. Three
# release processes serve the shop example's routes; wrk drives each in interleaved rounds
# (order rotated every round); medians and per-round ratios against bare are reported.
#
#   bare     `shop_plain`: the same routes with no diag at all (std System allocator, no
#            diag_core::init, no layer, no diag_core::timed).
#   on       `shop`: DiagAlloc sampling at the default 512 KiB, diag's listener, the route
#            layer (metrics + blocking watchdog + event-loop lag probe), timed("db.query");
#            during each of its wrk runs a client scrapes its `/metrics` every second and takes
#            a `/debug/pprof/heap` snapshot every 10 s (the tick counter carries over from run
#            to run, so the rates hold however long SECS is).
#   on+cpu   another `shop` with the same scrapes, plus a 99 Hz CPU profile
#            (`/debug/pprof/profile?seconds=SECS+1&frequency=99`) started just before each
#            wrk run and outlasting it: continuous CPU profiling. Its CPU figure includes the
#            profile's set-up, stop, symbolization and encoding (the script waits for the
#            profile to come back before reading the server's CPU time).
#
# Per mode: req/s and p99 (wrk --latency), and the server's user+sys CPU time per request
# (from /proc/PID/stat around each run, including the scrapes and profiles it serves),
# which is far steadier than throughput when wrk and the server share 2 cores.
#
# Usage: benches/scripts/service_overhead.sh [ROUNDS=7] [SECS=5] [PATH=/items/1]
# Env: WRK_THREADS (1), WRK_CONNS (16), CPU_PROFILE=0 leaves out the on+cpu mode, PIN (1:
# servers on CPU 0 with one worker, wrk on CPU 1; 0: unpinned).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-7}
SECS=${2:-5}
ROUTE=${3:-/items/1}
THREADS=${WRK_THREADS:-1}
CONNS=${WRK_CONNS:-16}
for t in wrk curl; do
  command -v $t >/dev/null || { echo "$t not found (apt-get install $t)" >&2; exit 2; }
done
# The profile asks for SECS+1 seconds; diag caps profiles at DIAG_MAX_PROFILE_SECONDS (120).
[[ $SECS =~ ^[0-9]+$ ]] && (( SECS >= 1 && SECS < 120 )) || { echo "SECS must be a whole number of seconds, 1 to 119" >&2; exit 2; }
cargo build --release -q -p diag-examples --bin shop --bin shop_plain
TMP=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

MODES=(bare on)
[ "${CPU_PROFILE:-1}" = 0 ] || MODES+=(on+cpu)
declare -A APP=([bare]=18191 [on]=18192 [on+cpu]=18193)
declare -A DIAG=([bare]=16191 [on]=16192 [on+cpu]=16193)
declare -A PID

source benches/scripts/lib.sh
pin_setup

start() { # mode binary
  local log="$TMP/$1.log"
  DIAG_ADDR=127.0.0.1:${DIAG[$1]} $SERVER_PIN "target/release/$2" "127.0.0.1:${APP[$1]}" >"$log" 2>&1 &
  pids+=($!); PID[$1]=$!
  for _ in $(seq 100); do grep -q "app listening" "$log" && return; sleep 0.05; done
  echo "$1 did not start: $(cat "$log")" >&2; exit 2
}
start bare shop_plain
start on shop
[ "${CPU_PROFILE:-1}" = 0 ] || start on+cpu shop

# The production-like client of diag's listener: /metrics every second, a heap snapshot every
# tenth tick. Each request's HTTP status and size go to $TMP/$mode.scrapes.
scraper() { # mode
  local port=${DIAG[$1]} tickfile="$TMP/$1.tick" out="$TMP/$1.scrapes" n next now d stop=0
  # SIGTERM ends the loop after the request in flight (bash runs the trap once curl returns)
  # or at once during the sleep (wait returns on a trapped signal).
  trap 'stop=1; kill "$sleeper" 2>/dev/null' TERM
  # Ticks at 0.5 s, 1.5 s, ... after the start: SECS ticks in a SECS-second run.
  next=$(( $(date +%s%N) + 500000000 ))
  while :; do
    now=$(date +%s%N); d=$(( (next - now) / 1000000 ))
    (( d > 0 )) || d=0
    sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))" & sleeper=$!
    wait "$sleeper" || true
    (( !stop )) || break
    next=$(( next + 1000000000 ))
    n=$(( $(cat "$tickfile" 2>/dev/null || echo 0) + 1 )); echo "$n" >"$tickfile"
    curl -s -o /dev/null -w 'metrics %{http_code} %{size_download}\n' --max-time 10 \
      "http://127.0.0.1:$port/metrics" >>"$out" || echo "metrics fail 0" >>"$out"
    if (( n % 10 == 1 )); then
      curl -s -o /dev/null -w 'heap %{http_code} %{size_download}\n' --max-time 10 \
        "http://127.0.0.1:$port/debug/pprof/heap" >>"$out" || echo "heap fail 0" >>"$out"
    fi
  done
}

run() { # mode -> "rps p99_ms cpu_us_per_request"
  local mode=$1 a b out spid="" ppid=""
  a=$(cpu_ticks "${PID[$mode]}")
  if [ "$mode" != bare ]; then (scraper "$mode") & spid=$!; fi
  if [ "$mode" = on+cpu ]; then
    curl -s -o "$TMP/profile.pb.gz" -w 'profile %{http_code} %{size_download}\n' \
      --max-time $((SECS + 60)) \
      "http://127.0.0.1:${DIAG[$mode]}/debug/pprof/profile?seconds=$((SECS + 1))&frequency=99" \
      >>"$TMP/$mode.scrapes" & ppid=$!
    sleep 0.05
  fi
  out=$($WRK_PIN wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:${APP[$mode]}$ROUTE")
  if [ -n "$spid" ]; then kill -TERM "$spid" 2>/dev/null || true; wait "$spid" || true; fi
  if [ -n "$ppid" ]; then wait "$ppid" || echo "profile fail 0" >>"$TMP/$mode.scrapes"; fi
  b=$(cpu_ticks "${PID[$mode]}")
  echo "$out" | wrk_summary $((b - a))
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm up each (with its scrapes and profile), then forget the warm-up's scrape log.
for m in "${MODES[@]}"; do run "$m" >/dev/null; done
for m in "${MODES[@]}"; do : >"$TMP/$m.scrapes"; done

declare -A RPS P99 CPU
for i in $(seq "$ROUNDS"); do
  n=${#MODES[@]}
  for k in $(seq 0 $((n - 1))); do
    m=${MODES[$(( (k + i) % n ))]}
    read -r rps p99 cpu < <(run "$m")
    RPS[$m]+="$rps "; P99[$m]+="$p99 "; CPU[$m]+="$cpu "
    printf 'round %d %-7s %10s req/s   p99 %8s ms   server CPU %7s us/request\n' "$i" "$m" "$rps" "$p99" "$cpu"
  done
done

# Median over rounds of mode/bare for one metric (paired: robust to load drifting).
ratio() { # mode metric-array-name
  local -n arr=$2
  local -a x=(${arr[$1]}) y=(${arr[bare]}) r=()
  for j in "${!x[@]}"; do r+=("$(awk -v a="${x[$j]}" -v b="${y[$j]}" 'BEGIN {print a/b}')"); done
  median "${r[@]}"
}

echo
echo "route $ROUTE, wrk -t$THREADS -c$CONNS -d${SECS}s x $ROUNDS interleaved rounds (order rotated)$([ -n "$SERVER_PIN" ] && echo ", servers pinned to CPU 0 with 1 worker, wrk to CPU 1"), medians;"
echo "ratios are medians of the per-round mode/bare ratios."
echo "on, on+cpu: /metrics scraped every 1 s and /debug/pprof/heap snapshot every 10 s during their runs;"
echo "on+cpu: plus a 99 Hz CPU profile covering each wrk run (its CPU/request includes symbolizing it)."
echo
printf '| %-7s | %9s | %8s | %10s | %11s | %10s | %12s |\n' mode "req/s" "p99 ms" "CPU us/req" "req/s ratio" "p99 ratio" "CPU/req ratio"
printf '|%s|\n' "---|---:|---:|---:|---:|---:|---:"
for m in "${MODES[@]}"; do
  r=$(median ${RPS[$m]}); p=$(median ${P99[$m]}); c=$(median ${CPU[$m]})
  if [ "$m" = bare ]; then rr=1; pr=1; cr=1; else rr=$(ratio "$m" RPS); pr=$(ratio "$m" P99); cr=$(ratio "$m" CPU); fi
  printf '| %-7s | %9.0f | %8.3f | %10.2f | %11.4f | %10.3f | %12.4f |\n' "$m" "$r" "$p" "$c" "$rr" "$pr" "$cr"
done
echo
for m in "${MODES[@]}"; do
  [ "$m" = bare ] && continue
  kinds="metrics heap"; [ "$m" = on+cpu ] && kinds+=" profile"
  awk -v m="$m" -v kinds="$kinds" '{k=$1; n[k]++; if ($2 != 200) bad[k]++; bytes[k]+=$3}
    END {printf "  %s, diag requests served during the measured runs:", m; split(kinds, ks, " ");
         for (i = 1; i in ks; i++) {k = ks[i]; printf " %s %d (%d not 200, %.0f KiB each);", k, n[k], bad[k], n[k] ? bytes[k]/n[k]/1024 : 0}
         print ""}' "$TMP/$m.scrapes"
done
stats=$(curl -s "http://127.0.0.1:${DIAG[on]}/debug/heap/stats" | tr -d '\n' | grep -o '"sample[a-z_]*": *[0-9a-z]*' | tr '\n' ' ' || true)
reqs=$(curl -s "http://127.0.0.1:${DIAG[on]}/metrics" | grep -c '^http_requests_total{' || true)
echo "  check, on: heap sampler $stats; http_requests_total series: $reqs"
echo "  load average before/after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  machine: $(machine)"
