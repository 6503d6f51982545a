#!/usr/bin/env bash
# ctest `client.check_artifact` (label client): a real client of the export artifact.
# Trains a tiny synthetic run, exports it with several index kinds and metrics, and runs
# tools/client/check_artifact.py in .venv (NumPy + faiss-cpu from PyPI): it verifies the manifest's
# checksums, opens the files with numpy.load and faiss.read_index, and compares every user's
# top-k with `recforge recommend` (index and exact). Then plots an index-bench CSV.
#   usage: check_artifact_test.sh RECFORGE_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
py="$src/.venv/bin/python"
if [[ ! -x "$py" ]]; then
  echo "client test: $py is missing; run tools/setup.sh (it creates .venv with NumPy, faiss-cpu" \
       "and matplotlib from tools/requirements.txt)" >&2
  exit 1
fi
if ! "$py" -c "import numpy, faiss, matplotlib" 2>/dev/null; then
  echo "client test: .venv lacks NumPy, faiss-cpu or matplotlib; run tools/setup.sh to update it" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat > small.yaml <<'YAML'
run:
  name: small
  progress: off
data:
  format: synthetic
  cache: false
synthetic:
  users: 400
  items: 300
  interactions: 12000
split:
  method: leave_last
model:
  factors: 16
  iterations: 4
YAML
"$bin" train small.yaml >/dev/null 2>train.log || { cat train.log >&2; exit 1; }

check() {  # name, then --set overrides
  local name=$1
  shift
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  "$bin" export runs/small --out "$name" "${sets[@]}" >/dev/null 2>export.log ||
    { cat export.log >&2; exit 1; }
  "$py" "$src/tools/client/check_artifact.py" "$name" --recforge "$bin" --k 10
}
check exp-flat
check exp-ivf index.type=ivf_flat index.nlist=16 index.nprobe=3
check exp-cosine index.type=ivf_flat index.nlist=16 index.nprobe=4 index.metric=cosine
check exp-pq index.type=ivf_pq index.nlist=8 index.nprobe=2
check exp-hnsw index.type=hnsw index.hnsw_m=8 index.ef_search=32
# A second export into the same directory: the client reads the new version through `current`.
check exp-flat index.type=ivf_flat index.nlist=16 index.nprobe=5
[[ "$(readlink exp-flat/current)" == v-2 ]] || { echo "client test: exp-flat/current is not v-2" >&2; exit 1; }

# The plot of an nprobe sweep.
"$bin" index-bench runs/small --k 10 --set index.type=ivf_flat --set index.nlist=16 \
  --nprobe 1,2,4,8,16 --out bench.csv >/dev/null 2>bench.log || { cat bench.log >&2; exit 1; }
"$py" "$src/tools/plot/plot_index_bench.py" bench.csv --out bench.png
if [[ "$(head -c 8 bench.png | od -An -tx1 | tr -d ' \n')" != "89504e470d0a1a0a" ]]; then
  echo "client test: bench.png is not a PNG" >&2
  exit 1
fi
echo "client test: all checks passed"
