#!/bin/sh
# Tests of diag-core's `console` and `taskdump` features. They need tokio's unstable API, so
# this crate is built with RUSTFLAGS="--cfg tokio_unstable" in its own target directory (the
# flag rebuilds every crate; keeping it out of the main target dir keeps that build warm).
# `--without-unstable` builds it without the flag instead and checks that diag refuses the
# features with clear errors.
set -eu
cd "$(dirname "$0")"
if [ "${1:-}" = "--without-unstable" ]; then
  CARGO_TARGET_DIR=target/stable RUSTFLAGS="" cargo test -q --no-run
  CARGO_TARGET_DIR=target/stable RUSTFLAGS="" timeout 300 cargo test -q
else
  CARGO_TARGET_DIR=target/unstable RUSTFLAGS="--cfg tokio_unstable" cargo test -q --no-run
  # A hang (a task dump that never ends) fails the run instead of stalling CI.
  CARGO_TARGET_DIR=target/unstable RUSTFLAGS="--cfg tokio_unstable" timeout 300 cargo test -q
fi
