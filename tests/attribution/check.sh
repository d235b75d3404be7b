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

share_of() { # FIELD NAME: the growth share (%) of the sites whose FIELD is NAME
  jq -r --arg k "$1" --arg f "$2" '[.sites[] | select(.[$k] == $f) | .share] | add // 0' "$diff"
}
at_least_8() { awk -v s="$1" 'BEGIN { exit !(s >= 8) }'; }
expect() { # FIELD NAME: the site(s) whose FIELD is NAME hold at least 8 % of the growth
  local share
  share=$(share_of "$1" "$2")
  at_least_8 "$share" || { echo "$profile: no site $1=$2 with >= 8 % of the growth (${share} %)"; fail=1; }
}
# With `debug = false` only the symbol table names frames: an application function inlined into
# a dependency's generic code (an axum handler's body, and what it inlined) is not on the stack,
# and its allocations must get a marked site instead of a dependency's name.
named_or_marked() { # NAME (short)
  local share marked
  share=$(share_of short "$1")
  marked=$(jq -r '[.sites[] | select(.function | startswith("[no application frame] ")) | .share] | add // 0' "$diff")
  at_least_8 "$share" || at_least_8 "$marked" \
    || { echo "$profile: $1 is neither a site nor in a marked one (${share} %, marked ${marked} %)"; fail=1; }
}

expect function attrib_fixture::leaks::plain_vec
expect function attrib_fixture::leaks::copy_bytes
expect function attrib_fixture::leaks::encode_json
# The method `Registry::remember`, under each debug setting's name for it.
expect_either() { # NAME NAME: the sites named either hold at least 8 % of the growth together
  local share
  share=$(awk -v a="$(share_of function "$1")" -v b="$(share_of function "$2")" 'BEGIN { print a + b }')
  at_least_8 "$share" || { echo "$profile: no site $1 or $2 with >= 8 % of the growth (${share} %)"; fail=1; }
}
case $profile in
  # Inlined into its caller, line tables have no type for it (`remember`), and the symbol
  # table no copy of it; whether it is inlined is the compiler's call (it was, until the
  # allocator's fast path changed, with the same fixture code), and a copy of its own is named
  # in full by the symbol table.
  linetables) expect_either attrib_fixture::leaks::remember attrib_fixture::leaks::Registry::remember ;;
  limited) expect function attrib_fixture::leaks::Registry::remember ;;
  nodebug) named_or_marked attrib_fixture::leaks::Registry::remember ;;
esac
# The async handler's body and the spawned task's body, by their enclosing functions.
case $profile in
  linetables | limited)
    expect short attrib_fixture::handlers::leak_in_handler
    expect short attrib_fixture::handlers::spawn
    ;;
  nodebug)
    named_or_marked attrib_fixture::handlers::leak_in_handler
    named_or_marked attrib_fixture::handlers::spawn
    ;;
esac

# Labels, whatever the debug info: the task started with diag_core::spawn("ingest", ..) holds
# its leak (one route's worth of 7, ~12 %) under its name, and each route its own. (/spawn's
# leak is in a plain tokio::spawn'ed task: labels do not follow tokio::spawn, so it is under
# no route.)
group_share() { # FILE VALUE: the group's share (%) of the growth
  jq -r --arg v "$2" '[.groups[] | select(.value == $v) | .share] | add // 0' "$1"
}
share=$(group_share "$out/by_task.json" ingest)
at_least_8 "$share" || { echo "$profile: --by task: ingest holds ${share} % of the growth"; fail=1; }
for route in /vec /map /bytes /json /handler; do
  share=$(group_share "$out/by_route.json" "$route")
  at_least_8 "$share" || { echo "$profile: --by route: $route holds ${share} % of the growth"; fail=1; }
done

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

# Blocking: the function the handler called, which sleeps (with `debug = false` it is inlined
# into the handler's body, itself inlined into axum's code: a marked site). For a binary
# without names (production.sh), `diag tasks` asked for addresses and named them from files.
block=$(jq -r '[.blocking_sites[] | select(.count >= 1) | .site] | join("\n")' "$out/tasks.json")
if ! echo "$block" | grep -qx 'attrib_fixture::leaks::block_for'; then
  if [ "$profile" != nodebug ] || ! echo "$block" | grep -q '^\[no application frame\] <F as axum::handler::Handler'; then
    echo "$profile: blocking sites are [$block], not attrib_fixture::leaks::block_for"
    fail=1
  fi
fi
if jq -e '.raw' "$out/tasks.json" > /dev/null; then
  echo "$profile: diag tasks printed unnamed stacks (raw is set)"
  fail=1
fi

if [ $fail = 0 ]; then
  echo "$profile: ok"
  jq -r '.sites[] | select(.share >= 1) | "  \(.share | floor)%  \(.function)"' "$diff"
else
  echo "$profile: top sites were:"
  jq -r '.sites[:12][] | "  \(.share | floor)%  \(.function)"' "$diff"
fi
exit $fail
