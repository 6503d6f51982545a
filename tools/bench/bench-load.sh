#!/usr/bin/env bash
# Benchmark: synthetic data generation and loading speed of a ~1M-line CSV (parse, cache write,
# cache read). Prints a Markdown table. Usage: tools/bench/bench-load.sh [BUILD_DIR] [DRAWS]
set -euo pipefail
build=${1:-build/release}
draws=${2:-1700000}
bin="$PWD/$build/recforge"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

t0=$(date +%s.%N)
"$bin" datagen --out syn.csv --users 50000 --items 20000 --interactions "$draws" --seed 7 2>/dev/null
t1=$(date +%s.%N)
lines=$(($(wc -l < syn.csv) - 1))

cat > load.yaml <<YAML
run: {progress: off, dir: runs}
data:
  path: syn.csv
  header: true
  user_col: user
  item_col: item
  weight_col: weight
  time_col: timestamp
  cache_dir: cache
split: {method: none}
model: {type: none}
YAML

stage() {  # one train run; prints wall seconds
  local s e
  s=$(date +%s.%N)
  "$bin" train load.yaml "$@" > /dev/null 2> last.log
  e=$(date +%s.%N)
  awk -v a="$s" -v b="$e" 'BEGIN{print b - a}'
}
parse=$(stage --set data.cache=false)
rate=$(grep -o 'parsed [0-9]* line(s) in [0-9.]* s ([0-9.]*[kM]* lines/s)' last.log | head -1)
first=$(stage)
cached=$(stage)

printf '| what | figure |\n|---|---|\n'
printf '| datagen: %s draws → %s lines (CSV written) | %.2f s |\n' "$draws" "$lines" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')"
printf '| loader parse (from the log) | %s |\n' "$rate"
printf '| train run, cache off (parse + clean + stats) | %.2f s |\n' "$parse"
printf '| train run, first with cache (parse + cache write) | %.2f s |\n' "$first"
printf '| train run, cache hit (hash + read) | %.2f s |\n' "$cached"
