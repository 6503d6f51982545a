#!/usr/bin/env bash
# Benchmark: recforge's CPU BPR against implicit's CPU BPR (seconds per epoch, samples/s, Recall@20),
# on Gowalla (../shared/data) and a synthetic set of ~10M training interactions, at factors
# 64, 128 and 256 (5 epochs on the synthetic set). Prints Markdown tables for docs/benchmarks.md.
#   tools/bench/bench-bpr.sh [BUILD_DIR]
exec "$(dirname "$0")/bench-vs-implicit.sh" bpr "$@"
