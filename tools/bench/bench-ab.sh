#!/usr/bin/env bash
# A/B speed check of two recforge binaries on Gowalla: alternates OLD and NEW, three rounds of
# iALS (configs/gowalla-ials.yaml) and BPR (configs/gowalla-bpr.yaml, 3 epochs), training only,
# and prints one line per run: round, binary, model, seconds of each iteration as logged.
#   tools/bench/bench-ab.sh OLD_BINARY NEW_BINARY [RUN_DIR]
set -euo pipefail
old=$1 new=$2 dir=${3:-$(mktemp -d)}
cd "$(dirname "$0")/../.."
for round in 1 2 3; do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    for model in ials bpr; do
      extra=()
      [ "$model" = bpr ] && extra=(--set model.iterations=3 --set model.eval_every=0 --set model.patience=0)
      out=$("$bin" train "configs/gowalla-$model.yaml" --set "run.dir=$dir" --set "run.name=ab-$which-$model" \
            --set run.exists=overwrite --set export.enabled=false --set eval.test=false "${extra[@]}" 2>&1)
      echo "$round $which $model $(grep -oE 'iteration [0-9]+/[0-9]+: loss [^,]+, [0-9.]+ s' <<<"$out" |
                                     awk '{print $(NF-1)}' | tr '\n' ' ')"
    done
  done
done
