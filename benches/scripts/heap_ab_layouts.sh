#!/usr/bin/env bash
# heap_ab over random code layouts: the heap profiler's overhead with the build's layout
# averaged out.
#
# On these machines a build's code layout alone moves heap_ab's ratios by 1-4 points (two
# builds of the same allocator code, or the same source linked as PIE or not), more than
# the 1-2 % being judged, and one build is one draw of that layout effect. This script links
# the bench LAYOUTS times, each with lld's `--shuffle-sections` on `.text.*` under its own
# seed (every function at another address; the code is the same), runs heap_ab on one
# workload with each build, and reports per arm the mean over layouts of the per-build
# median CPU-time ratio with a 95 % t interval, and its range: the figure a user should
# expect from some build, not from this one (the idea of Curtsinger and Berger's
# "Stabilizer", done at link time).
#
# Usage: benches/scripts/heap_ab_layouts.sh [LAYOUTS=8] [ROUNDS=101] [WORKLOAD=json]
# Env: HEAP_AB_ARMS, HEAP_AB_RATE, HEAP_AB_THREADS, PHASE_MS as for heap_ab; FIRST_SEED (1);
# KEEP_TMP=1 keeps each build's report; ANCHORS=1 builds with the `anchors` feature (the
# jemalloc arms, the paired `diag-512k` over `jemalloc-prof` lines, and every jemalloc-based
# arm over `jemalloc`, paired per round).
set -euo pipefail
cd "$(dirname "$0")/../.."
LAYOUTS=${1:-8}
ROUNDS=${2:-101}
WORKLOAD=${3:-json}
FIRST=${FIRST_SEED:-1}
[[ $LAYOUTS =~ ^[0-9]+$ ]] && (( LAYOUTS >= 2 && LAYOUTS <= 30 )) \
  || { echo "LAYOUTS must be 2 to 30" >&2; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ ]] && (( ROUNDS >= 3 )) || { echo "ROUNDS must be 3 or more" >&2; exit 2; }
TMP=$(mktemp -d)
[ "${KEEP_TMP:-0}" = 1 ] && echo "reports kept in $TMP" || trap 'rm -rf "$TMP"' EXIT

# One link per seed: only the bench crate is rebuilt (`cargo rustc` passes the flag to it
# alone), in a few seconds each.
for i in $(seq 0 $((LAYOUTS - 1))); do
  seed=$((FIRST + i))
  exe=$(cargo rustc -q --profile bench -p diag-benches --bench heap_ab --message-format=json \
          ${ANCHORS:+--features anchors} \
          -- -C "link-arg=-Wl,--shuffle-sections=.text.*=$seed" \
        | grep '"name":"heap_ab"' | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
  [ -x "$exe" ] || { echo "no heap_ab executable for seed $seed" >&2; exit 1; }
  cp "$exe" "$TMP/heap_ab.$seed"
done

echo "heap_ab_layouts: $LAYOUTS layouts (seeds $FIRST..$((FIRST + LAYOUTS - 1))), ROUNDS=$ROUNDS, workload $WORKLOAD, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 0 $((LAYOUTS - 1))); do
  seed=$((FIRST + i))
  ROUNDS=$ROUNDS "$TMP/heap_ab.$seed" --bench "$WORKLOAD" > "$TMP/report.$seed"
  # Per arm: the CPU-time ratio (column 6 of the table); the paired samples' cost line.
  # With ANCHORS, the paired guard rail too (`diag-512k` over `jemalloc-prof`, not over system).
  awk -F'|' -v s="$seed" '/^\| (system|diag|jemalloc)/ && $6 ~ /[0-9]/ {gsub(/ /,"",$2); gsub(/ /,"",$6); print s, $2, $6}
       /samples. own cost/ {for (k = 1; k <= NF; k++) if ($k ~ /time:/) {split($k, a, ": "); split(a[2], b, " "); print s, "samples(paired)", b[1]}}
       /^diag-512k over jemalloc-prof per round/ {split($0, a, "time: "); split(a[2], b, " "); print s, "512k/jemalloc-prof(paired)", b[1]}
       /^On one inner allocator/ {split($0, a, "jemalloc-prof "); split(a[2], b, " "); print s, "512k-jemalloc/jemalloc-prof(paired)", b[1]}
       /^Over jemalloc, per round/ {sub(/^[^:]*time: /, ""); n = split($0, parts, "; "); for (k = 1; k <= n; k++) {split(parts[k], b, " "); print s, b[1] "/jemalloc(paired)", b[2]}}' \
    "$TMP/report.$seed" >> "$TMP/ratios"
  printf '  layout %s: %s\n' "$seed" "$(awk -v s="$seed" '$1 == s && $2 != "system" {printf "%s %s  ", $2, $3}' "$TMP/ratios")"
done

echo
echo "| arm | mean CPU time vs system | 95 % CI of the mean | min | max | layouts |"
echo "|---|---:|---|---:|---:|---:|"
# Student t quantiles (two-sided 95 %) for 1-29 degrees of freedom.
awk 'BEGIN {
       split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045", t, " ")
     }
     $2 != "system" {
       if (!($2 in n)) order[++arms] = $2
       n[$2]++; sum[$2] += $3; sq[$2] += $3 * $3
       if (!($2 in lo) || $3 < lo[$2]) lo[$2] = $3
       if (!($2 in hi) || $3 > hi[$2]) hi[$2] = $3
     }
     END {
       for (k = 1; k <= arms; k++) {
         a = order[k]; m = sum[a] / n[a]
         v = n[a] > 1 ? (sq[a] - n[a] * m * m) / (n[a] - 1) : 0
         h = n[a] > 1 ? t[n[a] - 1] * sqrt(v > 0 ? v : 0) / sqrt(n[a]) : 0
         printf "| %s | %.4f | %.4f .. %.4f | %.3f | %.3f | %d |\n", a, m, m - h, m + h, lo[a], hi[a], n[a]
       }
     }' "$TMP/ratios"
