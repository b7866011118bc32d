#!/usr/bin/env bash
# The gamma-run benchmark: one command, rerunnable anywhere.
#   bench/run.sh            full run on real model shapes (Qwen3-4B: 8 GB of synthetic shards, built once, reused)
#   bench/run.sh --smoke    the same cases on tiny shapes, in seconds (checks the harness, not the speed)
#   bench/run.sh --runs 9   more runs per case (default 5, after one warm-up)
# Needs: a Rust toolchain, python3, curl, openssl, dd, cp, sync. Prints a markdown table (also written to
# bench/data*/results.md) with medians, min–max, ratios against the baseline measured in the same run, peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in python3 curl openssl dd; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (Debian: apt-get install $tool)" >&2; exit 1; }
done
cargo build --release --quiet
exec python3 bench/bench.py --bin "$PWD/target/release/gamma-run" "$@"
