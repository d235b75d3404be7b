#!/usr/bin/env bash
# Embedding into an existing service's lockfile: a tokio service whose Cargo.lock was made
# before it added diag-core pins older versions that its own manifest allows (bytes 1.5.0,
# tokio 1.47.0, serde_json 1.0.100). Adding diag-core (and axum) as the README says must
# resolve and compile without the user touching the lockfile: diag-core's floors update what
# its dependencies under-declare. (bytes 1.5.0 kept would fail inside axum: `BytesMut:
# From<Bytes>`.)
#   usage: embed.sh   (uses this fixture's manifest and sources in a scratch copy)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
core=$(cd "$here/../../diag-core" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/src"
cp -r "$here/src" "$scratch/"
# Before: the service without diag-core and axum.
grep -v '^diag-core\|^axum' "$here/Cargo.toml" > "$scratch/Cargo.toml"
cd "$scratch"
echo 'fn main() {}' > src/main.rs
cargo generate-lockfile -q
cargo update -q -p bytes --precise 1.5.0
cargo update -q -p tokio --precise 1.47.0
cargo update -q -p serde_json --precise 1.0.100
# After: diag-core and axum added, the sources that use them back.
sed "s#^diag-core = .*#diag-core = { path = \"$core\" }#" "$here/Cargo.toml" > Cargo.toml
cp "$here/src/main.rs" src/main.rs
CARGO_TARGET_DIR="${FIXTURE_TARGET_DIR:-$here/target}" cargo check -q
bytes=$(grep -A1 '^name = "bytes"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
echo "embedding: builds; Cargo.lock's bytes went from 1.5.0 to $bytes"
