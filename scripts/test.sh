#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what the tests need, build every binary the tests start
# (they run the real raftcd and etcdctl-rs processes), then run all unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TERM_COLOR=never
# A raftcd with the failpoints compiled in, for the jepsen failpoint faults (kept next to the normal one).
cargo build -p raftcd --bin raftcd --features failpoints
cp target/debug/raftcd target/debug/raftcd-failpoints
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads 2
