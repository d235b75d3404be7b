#!/bin/sh
# Fuzz smoke for CI: builds the cargo-fuzz targets of tests/fuzz and runs each one for
# FUZZ_SECONDS (default 20) from its committed seed corpus, in a throw-away work corpus.
# FUZZ_RUNS=N instead runs each target for exactly N executions (the campaign recorded in
# tests/fuzz/README.md: FUZZ_RUNS=1000000).
# Exits non-zero if a target crashes (panic, sanitizer report, timeout, out-of-memory); the
# crashing input is kept in tests/fuzz/artifacts/<target>/.
#
# Needs only stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly flags. Set
# FUZZ_SANITIZER=none where the address sanitizer runtime is missing.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-20}
if [ -n "${FUZZ_RUNS:-}" ]; then
    limit="-runs=$FUZZ_RUNS"
else
    limit="-max_total_time=$secs"
fi
san=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    nice -n 19 cargo install cargo-fuzz --locked
fi
nice -n 19 cargo fuzz build --fuzz-dir tests/fuzz -s "$san"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in $(cargo fuzz list --fuzz-dir tests/fuzz); do
    mkdir -p "$work/$t"
    if nice -n 19 cargo fuzz run --fuzz-dir tests/fuzz -s "$san" "$t" "$work/$t" \
        "tests/fuzz/corpus/$t" -- "$limit" -timeout=10 >"$work/$t.log" 2>&1; then
        echo "fuzz $t: ok, $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$work/$t.log"), $(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$work/$t.log" | tail -n 1)"
    else
        echo "fuzz $t: FAILED (input saved under tests/fuzz/artifacts/$t/)"
        tail -n 80 "$work/$t.log"
        status=1
    fi
done
exit "$status"
