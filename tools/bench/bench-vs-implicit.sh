#!/usr/bin/env bash
# Runs one of the benchmarks against implicit (tools/bench/bench_ials.py or
# tools/bench/bench_bpr.py) on Gowalla (../shared/data) and on the synthetic set of ~10M training
# interactions, at factors 64, 128 and 256, in the project's .venv. Called by
# tools/bench/bench-ials.sh and tools/bench/bench-bpr.sh.
#   tools/bench/bench-vs-implicit.sh ials|bpr [BUILD_DIR]
set -euo pipefail
model=${1:?usage: tools/bench/bench-vs-implicit.sh ials|bpr [BUILD_DIR]}
case "$model" in
  ials) synthetic_length=(--iterations 10) ;;
  bpr) synthetic_length=(--epochs 5) ;;
  *) echo "tools/bench/bench-vs-implicit.sh: unknown model '$model' (expected ials or bpr)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-build/release}
"$root/tools/setup.sh" --python >/dev/null
py="$root/.venv/bin/python"
bin="$root/$build/recforge"
cd "$root"
if [[ -d ../shared/data/gowalla ]]; then
  "$py" "tools/bench/bench_$model.py" --recforge "$bin" --dataset gowalla --factors 64 128 256
else
  echo "(Gowalla skipped: ../shared/data/gowalla is absent)"
fi
"$py" "tools/bench/bench_$model.py" --recforge "$bin" --dataset synthetic --factors 64 128 256 "${synthetic_length[@]}"
