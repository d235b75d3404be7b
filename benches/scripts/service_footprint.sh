#!/usr/bin/env bash
# diag's footprint on any service that embeds diag-core, as a user would measure it: RssAnon
# (anonymous resident memory: heaps, arenas, diag's caches; not the file-backed pages of the
# mapped debug info) of the warmed-up service, then after a heap snapshot, a 3 s CPU profile
# under load, /debug/tasks and a second snapshot, 1 s later and LATER s later, and the peak
# during the sequence (sampled every 20 ms).
#
#   usage: benches/scripts/service_footprint.sh LOAD_URL DIAG_URL -- SERVICE_COMMAND...
#          ATTACH=PID benches/scripts/service_footprint.sh LOAD_URL DIAG_URL
#   env:   LATER=60 (seconds), Q='?symbolize=0' (query for the profiles), and the service's
#          own (DIAG_SYMBOLIZE=off, ...) as usual. ATTACH measures a service already running
#          (e.g. one that has built an hour of heap history) instead of starting one; the
#          warm-up load is then skipped too.
# The service must serve LOAD_URL (wrk drives it) and its diag listener at DIAG_URL.
set -euo pipefail
load=$1; dbg=$2; shift 2
tmp=$(mktemp -d)
if [ -n "${ATTACH:-}" ]; then
  pid=$ATTACH
  trap 'touch "$tmp/stop"' EXIT
else
  [ "${1:-}" = "--" ] && shift
  "$@" > /tmp/service_footprint.log 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; touch "$tmp/stop"' EXIT
  for _ in $(seq 100); do curl -sf -o /dev/null "$dbg/debug/heap/stats" && break; sleep 0.1; done
fi
anon() { awk '/RssAnon/{print $2}' "/proc/$pid/status"; }
if [ -z "${ATTACH:-}" ]; then
  wrk -t2 -c16 -d4s "$load" > /dev/null
  sleep 1 # workload: let the warm-up's connections close
fi
a0=$(anon)
( peak=0; while [ ! -f "$tmp/stop" ] && kill -0 $pid 2>/dev/null; do
    v=$(anon); [ "${v:-0}" -gt "$peak" ] && peak=$v; echo "$peak" > "$tmp/peak"; sleep 0.02
  done ) &
q=${Q:-}
t0=$(date +%s%N)
curl -sf -o "$tmp/h1.pb.gz" "$dbg/debug/pprof/heap$q"
cold_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
a1=$(anon)
curl -sf -o "$tmp/cpu.pb.gz" "$dbg/debug/pprof/profile?seconds=3${q:+&${q#?}}" &
cpid=$!
wrk -t2 -c16 -d3s "$load" > /dev/null
wait $cpid
a2=$(anon)
curl -sf -o /dev/null "$dbg/debug/tasks"
curl -sf -o "$tmp/h2.pb.gz" "$dbg/debug/pprof/heap$q"
a3=$(anon)
sleep 1 # measuring: 1 s after the last request
a4=$(anon)
touch "$tmp/stop"; sleep 0.1
peak=$(cat "$tmp/peak")
stats=$(curl -sf "$dbg/debug/heap/stats")
history=$(curl -sf "$dbg/debug/heap/history" | jq -c '{points_held, memory_bytes, age_memory_bytes}')
sleep "${LATER:-60}" # measuring: after the symbolizer's idle time
a5=$(anon)
mib() { awk -v k="$1" 'BEGIN { printf "%+.1f", k / 1024 }'; }
echo "warm RssAnon $(( a0 / 1024 )) MiB; snapshot $(mib $((a1 - a0))) (cold ${cold_ms} ms), CPU profile $(mib $((a2 - a0))), tasks + snapshot $(mib $((a3 - a0))), 1 s later $(mib $((a4 - a0))), ${LATER:-60} s later $(mib $((a5 - a0))); peak $(mib $((peak - a0))) MiB; diag's live heap $(echo "$stats" | jq .self_live_bytes) B, symbolizer cache $(echo "$stats" | jq .symbolizer_cache_bytes) B; heap history $history"
