#!/usr/bin/env bash
# Benchmark: recforge's CPU BPR against implicit's CPU BPR (seconds per epoch, samples/s, Recall@20),
# on Gowalla (../shared/data) and a synthetic set of ~10M training interactions, at factors
# 64, 128 and 256. Prints Markdown tables for docs/benchmarks.md.
#   tools/bench-bpr.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build/release}
"$root/tools/setup.sh" --python >/dev/null
py="$root/.venv/bin/python"
bin="$root/$build/recforge"
cd "$root"
if [[ -d ../shared/data/gowalla ]]; then
  "$py" tools/bench_bpr.py --recforge "$bin" --dataset gowalla --factors 64 128 256
else
  echo "(Gowalla skipped: ../shared/data/gowalla is absent)"
fi
"$py" tools/bench_bpr.py --recforge "$bin" --dataset synthetic --factors 64 128 256 --epochs 5
