#!/usr/bin/env bash
# Builds this fixture service with one debug setting (a profile of its Cargo.toml: nodebug,
# linetables or limited), runs it, leaks through every route, and writes
# `diag diff --json` of the heap and `diag tasks --json` into OUT_DIR; then checks.sh checks
# the names. DIAG is the `diag` binary to use.
#   usage: DIAG=path/to/diag run.sh PROFILE OUT_DIR
# Production builds (production.sh): BIN runs that binary instead of the profile's build, and
# DIAG_ARGS (e.g. `--debug-dir DIR`) go to every diag command.
set -euo pipefail
profile=$1
out=$2
cd "$(dirname "$0")"
mkdir -p "$out"
export CARGO_TARGET_DIR="${FIXTURE_TARGET_DIR:-$PWD/target}"
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build -q --locked --profile "$profile"
  bin="$CARGO_TARGET_DIR/$profile/attrib-fixture"
fi
read -r -a dargs <<< "${DIAG_ARGS:-}"

# Every 16 KiB allocation of the routes is sampled about once in a while: 4 KiB mean.
DIAG_ADDR=127.0.0.1:0 FIXTURE_ADDR=127.0.0.1:0 DIAG_HEAP_SAMPLE_BYTES=4096 \
  DIAG_SNAPSHOT_MIN_INTERVAL_MS=0 "$bin" > "$out/stdout" 2> "$out/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ "$(grep -c 'listening on' "$out/stdout" || true)" = 2 ] && break
  sleep 0.1 # the poll interval of this wait for both lines (at most 10 s)
done
app=$(sed -n 's/^app listening on //p' "$out/stdout")
dbg=$(sed -n 's/^diag listening on //p' "$out/stdout")
[ -n "$app" ] && [ -n "$dbg" ] || { echo "fixture did not start"; cat "$out"/std*; exit 1; }

"$DIAG" snapshot "$dbg" -o "$out/before.pb.gz" "${dargs[@]}" 2>"$out/snapshot.err"
for route in vec map bytes json handler spawn named; do
  urls=()
  for _ in $(seq 200); do urls+=("$app/$route"); done
  curl -sf "${urls[@]}" > /dev/null
done
for _ in 1 2 3; do curl -sf "$app/block" > /dev/null; done
"$DIAG" snapshot "$dbg" -o "$out/after.pb.gz" "${dargs[@]}" 2>>"$out/snapshot.err"
# The service's own unsymbolized answer, for peers that name it from the binary.
curl -sf "$dbg/debug/pprof/heap?symbolize=0" -o "$out/raw.pb.gz"
"$DIAG" diff "$out/before.pb.gz" "$out/after.pb.gz" --json "${dargs[@]}" > "$out/diff.json"
"$DIAG" diff "$out/before.pb.gz" "$out/after.pb.gz" --by task --json "${dargs[@]}" > "$out/by_task.json"
"$DIAG" diff "$out/before.pb.gz" "$out/after.pb.gz" --by route --json "${dargs[@]}" > "$out/by_route.json"
"$DIAG" tasks "$dbg" --json "${dargs[@]}" > "$out/tasks.json"
