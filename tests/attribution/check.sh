#!/usr/bin/env bash
# Checks what run.sh wrote for one debug setting: every leak's top site in `diag diff --json`
# is this crate's function (the documented exception aside), no site is the allocator shim,
# std, alloc or a dependency, and the blocking site is the function that blocks.
#   usage: check.sh PROFILE OUT_DIR
set -euo pipefail
profile=$1
out=$2
diff="$out/diff.json"
fail=0
# The sites that together hold at least 1 % of the growth: the leaks (each ~15 %).
sites=$(jq -r '.sites[] | select(.share >= 1) | .function' "$diff")

expect() { # NAME: a site named exactly NAME must hold at least 8 % of the growth
  local share
  share=$(jq -r --arg f "$1" '[.sites[] | select(.function == $f) | .share] | add // 0' "$diff")
  if ! awk -v s="$share" 'BEGIN { exit !(s >= 8) }'; then
    echo "$profile: no site $1 with >= 8 % of the growth (has ${share} %)"
    fail=1
  fi
}

expect attrib_fixture::leaks::plain_vec
expect attrib_fixture::leaks::copy_bytes
expect attrib_fixture::leaks::encode_json
# A method inlined into its caller: with line tables only, the debug info has no type for it
# (`remember`), and the symbol table has no copy of it; `limited` and `false` builds name it
# from the type's path.
case $profile in
  linetables) expect attrib_fixture::leaks::remember ;;
  *) expect attrib_fixture::leaks::Registry::remember ;;
esac
# The async handler's body, and the spawned task's body: named by their enclosing function
# (`debug = false` has only the symbol table, where a body inlined into tokio's poll is gone:
# the spawned task's allocation has no application frame, and says so).
case $profile in
  linetables | limited)
    expect 'attrib_fixture::handlers::leak_in_handler::{async_fn#0}'
    ;;
  nodebug)
    expect 'attrib_fixture::handlers::leak_in_handler::{{closure}}'
    ;;
esac
spawned=$(jq -r '.sites[] | select(.share >= 8) | .short' "$diff" | grep -c '^attrib_fixture::handlers::spawn$' || true)
marked=$(jq -r '.sites[] | select(.share >= 8) | .function' "$diff" | grep -c '^\[no application frame\] tokio::' || true)
if [ "$profile" = nodebug ]; then
  [ "$spawned" = 1 ] || [ "$marked" -ge 1 ] \
    || { echo "$profile: the spawned task's leak is neither named nor marked"; fail=1; }
else
  [ "$spawned" = 1 ] || { echo "$profile: the spawned task's leak is not attrib_fixture::handlers::spawn"; fail=1; }
fi

# No runtime or dependency frame as a site, marked sites aside.
bad=$(echo "$sites" | grep -v '^attrib_fixture::' | grep -v '^\[no application frame\] ' || true)
if [ -n "$bad" ]; then
  echo "$profile: sites that are not the application's functions:"
  echo "$bad" | sed 's/^/  /'
  fail=1
fi
if echo "$sites" | grep -q '__rust_alloc\|__rdl_\|__rg_'; then
  echo "$profile: the allocator shim is a site"
  fail=1
fi

# Blocking: the function the handler called, which sleeps.
block=$(jq -r '[.blocking_sites[] | select(.count >= 1) | .site] | join("\n")' "$out/tasks.json")
echo "$block" | grep -qx 'attrib_fixture::leaks::block_for' \
  || { echo "$profile: blocking sites are [$block], not attrib_fixture::leaks::block_for"; fail=1; }

if [ $fail = 0 ]; then
  echo "$profile: ok"
  jq -r '.sites[] | select(.share >= 1) | "  \(.share | floor)%  \(.function)"' "$diff"
else
  echo "$profile: top sites were:"
  jq -r '.sites[:12][] | "  \(.share | floor)%  \(.function)"' "$diff"
fi
exit $fail
