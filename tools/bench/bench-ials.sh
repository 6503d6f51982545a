#!/usr/bin/env bash
# Benchmark: recforge's CPU iALS against implicit's CPU ALS (seconds per iteration, Recall@20),
# on Gowalla (../shared/data) and a synthetic set of ~10M training interactions, at factors
# 64, 128 and 256 (10 iterations on the synthetic set). Prints Markdown tables for
# docs/benchmarks.md.
#   tools/bench/bench-ials.sh [BUILD_DIR]
exec "$(dirname "$0")/bench-vs-implicit.sh" ials "$@"
