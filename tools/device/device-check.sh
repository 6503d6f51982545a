#!/usr/bin/env bash
# The device check: ONE call on the lent H200 machine (CUDA 13 toolkit, CMake, ninja and the
# torch venv there; nothing of recforge's) that runs, from the bundle of
# tools/device/device-bundle.sh:
#   1. the GPU tests (tests/gpu, every device instance) with RECFORGE_REQUIRE_GPU=1, so that a
#      machine where no GPU answers (a driver too old for CUDA 13) fails instead of skipping,
#   2. compute-sanitizer memcheck and racecheck on a few small GPU tests (when the tool works),
#   3. an end-to-end training run (configs/quickstart.yaml on cuda, float16 factors) and BPR /
#      sampled softmax / CCL on a synthetic set (samples per second),
#   4. the benchmark (tools/bench/bench_gpu.cpp) on the ML-20M shape, with top-k,
#   5. the Python package on cuda and cpu (tools/device/python_check.py) when the bundle has it,
#   6. distributed iALS on the GPU through NCCL as one process (--distributed) against the
#      single-GPU model (train.log; summary line "dist"),
# and writes one line per step to $OUT/summary.txt as each step ends (a call cut short still
# brings back the steps done), then prints the summary. Every step has a cap (CAP_* below, in
# seconds); the caps add up to 465 s, so the whole check fits in 9 minutes with slack:
#
#   here:   tools/device/device-bundle.sh      (or BUILD=build/release tools/device/device-bundle.sh)
#   device: run(command="bash tools/device/device-check.sh", carry=[".device"], timeout_s=540)
#
# `--large` adds the 10x data set to the benchmark (another 150 s: timeout_s=600). The files
# under $OUT stay within the device tool's 8: summary.txt, tests.log, sanitizer.log, train.log,
# bench.log, bench.json, python.log (and bench-10x.log with --large); the GPU's nvidia-smi line
# is in the summary.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=.device                   # what tools/device/device-bundle.sh left (carried)
D=/tmp/recforge-device      # the unpacked executables and libraries
LOG=${OUT:-/tmp/recforge-device-check}
mkdir -p "$LOG"
SUMMARY="$LOG/summary.txt"
: >"$SUMMARY"
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
# One line of the summary, written at once.
note() { printf '%-10s %s\n' "$1" "$2" | tee -a "$SUMMARY"; }

# Step caps (seconds). Setup 10 + tests 120 + memcheck 40 + racecheck 20 + train 20
# + 6 × batch 15 + bench 45 + python 60 + 2 × dist 30 = 465 (the run of 2026-12-04 took 78 s in
# all). The tests take the most: every GPU instance computes its CPU reference on the host too
# (about 35 s of CPU instances on a shared 2-core machine here).
CAP_SETUP=10
CAP_TESTS=120
CAP_MEMCHECK=40
CAP_RACECHECK=20
CAP_TRAIN=20
CAP_BATCH=15
CAP_BENCH=45
CAP_LARGE=150
CAP_PYTHON=60
CAP_DIST=30
LARGE=no
[ "${1:-}" = "--large" ] && LARGE=yes

if [ ! -f "$B/bundle.tar.gz" ]; then
  echo "device-check: no $B/bundle.tar.gz; run tools/device/device-bundle.sh here and carry .device" >&2
  exit 2
fi
rm -rf "$D" && mkdir -p "$D" && timeout $CAP_SETUP tar -xzf "$B/bundle.tar.gz" -C "$D" || {
  note setup "the bundle did not unpack within ${CAP_SETUP} s"
  exit 2
}

# cuBLAS / cuRAND: the venv's copies first, then the toolkit's.
libdirs=""
for lib in $(cat "$B/device-libs.txt" 2>/dev/null); do
  f=$(find /opt/torch/.venv -name "$lib" 2>/dev/null | head -1)
  [ -n "$f" ] || f=$(find /usr/local/cuda/ -name "$lib" 2>/dev/null | head -1)
  [ -n "$f" ] && libdirs="$libdirs:$(dirname "$f")"
done
export LD_LIBRARY_PATH="$D/lib$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
missing=$(ldd "$D/test_gpu" "$D/recforge" "$D/bench-gpu" | grep "not found" | sort -u)
if [ -n "$missing" ]; then
  note setup "libraries not found: $(echo "$missing" | tr '\n' ' ')"
  exit 2
fi
note commit "$(tr '\n' ' ' <"$B/commit.txt" 2>/dev/null)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 |
  tee /tmp/recforge-gpu.txt
note gpu "$(tail -1 /tmp/recforge-gpu.txt)"
note recforge "$("$D/recforge" info 2>&1 | grep -iE "cuda|gpu" | head -2 | tr '\n' ' ')"
export RECFORGE_REQUIRE_GPU=1  # every "no GPU answers" skip is a failure from here on

# 1. GPU tests. No --gtest_brief: a timeout leaves the test that was running in the log.
echo "== 1. GPU tests ($(elapsed) s)"
timeout $CAP_TESTS "$D/test_gpu" >"$LOG/tests.log" 2>&1
rc=$?
tail -25 "$LOG/tests.log"
line=$(grep -E "^\[  PASSED  \]|^\[  FAILED  \] [0-9]+ test|^\[  SKIPPED \] [0-9]+ test" "$LOG/tests.log" | tr '\n' ' ')
if [ $rc -eq 124 ]; then
  running=$(grep -E "^\[ RUN      \]" "$LOG/tests.log" | tail -1 | sed 's/^\[ RUN      \] //')
  line="TIMEOUT after ${CAP_TESTS} s while running $running; $line"
fi
note tests "rc=$rc $line"
tests_rc=$rc
grep -E "^\[  FAILED  \] [A-Za-z]" "$LOG/tests.log" | grep -vE "\([0-9]+ ms\)$" | sort -u | head -12 |
  tee -a "$SUMMARY"

# 2. compute-sanitizer on small tests (out-of-bounds accesses, shared-memory races).
echo "== 2. compute-sanitizer ($(elapsed) s)"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$CS" ]; then
  filter='*RowsWithout*cuda0:*FoldIn*cuda0:*SmallMaskedLists*cuda0:*MetricsMatch*cuda0:*Csr*cuda0:*StreamingEquals*cuda0:CclStepOnGpu*'
  echo "== memcheck" >"$LOG/sanitizer.log"
  timeout $CAP_MEMCHECK "$CS" --tool memcheck --error-exitcode 99 "$D/test_gpu" \
    --gtest_filter="$filter" >>"$LOG/sanitizer.log" 2>&1
  mc=$?
  echo "== racecheck" >>"$LOG/sanitizer.log"
  timeout $CAP_RACECHECK "$CS" --tool racecheck --error-exitcode 99 "$D/test_gpu" \
    --gtest_filter='*SmallMaskedLists*cuda0:*FoldIn*cuda0:*RowsWithout*cuda0:CclStepOnGpu*' \
    >>"$LOG/sanitizer.log" 2>&1
  rc=$?
  tail -8 "$LOG/sanitizer.log"
  unsupported=""
  # On gVisor machines compute-sanitizer refuses the device (KINDS.md): no finding, no check.
  grep -q "Device not supported" "$LOG/sanitizer.log" && unsupported="; the tool says: Device not supported (no check)"
  note sanitizer "memcheck rc=$mc, racecheck rc=$rc (0 clean, 99 errors, 124 out of time)$unsupported"
else
  note sanitizer "not run: no compute-sanitizer"
fi

# 3. An end-to-end run on the GPU, then BPR, sampled softmax and CCL (also with the shipped Gowalla
# config's 2,000 negatives and dropout, and with SimpleX's user-side aggregation) at 128 factors
# on a synthetic set: samples (positives) per second from run.json's epoch times.
echo "== 3. recforge train on cuda ($(elapsed) s)"
rm -rf /tmp/rf-runs
echo "== quickstart, float16" >"$LOG/train.log"
timeout $CAP_TRAIN "$D/recforge" train configs/quickstart.yaml --device cuda \
  --set run.dir=/tmp/rf-runs --set run.progress=lines --set model.dtype=float16 \
  >>"$LOG/train.log" 2>&1
rc=$?
tail -8 "$LOG/train.log"
note train "rc=$rc; $(grep -E "iALS on|^.*test \(" "$LOG/train.log" | sed 's/^.*\] //' | tr '\n' ' ' | cut -c1-300)"
for m in "bpr --set model.optimizer=sgd --set model.learning_rate=0.05" \
         "bpr --set model.optimizer=adam --set model.hard_negatives=32" \
         "softmax --set model.normalize=true --set model.temperature=0.1 --set model.negatives=1024" \
         "ccl --set model.negatives=1024 --set model.in_batch=false --set model.margin=0.9 --set model.negative_weight=150" \
         "ccl --set model.negatives=2000 --set model.in_batch=false --set model.margin=0.7 --set model.negative_weight=150 --set model.dropout=0.2" \
         "ccl --set model.negatives=1024 --set model.in_batch=false --set model.margin=0.9 --set model.negative_weight=150 --set model.history_weight=0.5"; do
  rm -rf /tmp/rf-batch
  echo "== $m" >>"$LOG/train.log"
  timeout $CAP_BATCH "$D/recforge" train configs/quickstart.yaml --device cuda \
    --set run.dir=/tmp/rf-batch --set run.name=b --set run.progress=lines --set export.enabled=false \
    --set synthetic.users=200000 --set synthetic.items=100000 --set synthetic.interactions=4000000 \
    --set model.factors=128 --set model.iterations=3 --set model.type=$m \
    >>"$LOG/train.log" 2>&1
  rc=$?
  rate=$(python3 - /tmp/rf-batch/b <<'PY' 2>/dev/null
import json, sys
d = sys.argv[1]
run = json.load(open(d + "/run.json")); stats = json.load(open(d + "/stats.json"))
nnz = stats["train"]["interactions"]
secs = sorted(h["seconds"] for h in run["history"])[len(run["history"]) // 2]
print(f"{nnz / secs / 1e6:.1f}M samples/s ({secs:.3f} s/epoch, {nnz:,} train)")
PY
)
  note "${m%% *}" "$(echo "$m" | grep -oE "(sgd|adam|hard_negatives=[0-9]+|normalize=true|negatives=[0-9]+|dropout=[0-9.]+|history_weight=[0-9.]+)" | tr '\n' ' ')rc=$rc ${rate:-no figure}"
done

# 4. The benchmark: ML-20M shape and top-k (one timed iteration after the warm-up).
echo "== 4. benchmark ($(elapsed) s)"
timeout $CAP_BENCH "$D/bench-gpu" --iters 1 --out "$LOG/bench.json" >"$LOG/bench.log" 2>&1
rc=$?
grep -v "^  iALS" "$LOG/bench.log"
note bench "rc=$rc (124: out of time; the log has the rows measured until then)"
sed -n '/^data  *factors/,$p' "$LOG/bench.log" | tee -a "$SUMMARY"
if [ "$LARGE" = yes ]; then
  echo "== 5. benchmark, 10x data ($(elapsed) s)"
  timeout $CAP_LARGE "$D/bench-gpu" --data 10x --no-topk --iters 1 >"$LOG/bench-10x.log" 2>&1
  rc=$?
  note bench-10x "rc=$rc"
  { grep "^data 10x" "$LOG/bench-10x.log"; grep "^10x " "$LOG/bench-10x.log"; } | tee -a "$SUMMARY"
fi

# 5. The Python package on cuda and cpu (tools/device/python_check.py), when the bundle has it.
if [ -d "$D/python/recforge" ]; then
  echo "== 5. Python package ($(elapsed) s)"
  PYTHONPATH="$D/python" PYTHONUNBUFFERED=1 timeout $CAP_PYTHON python3 tools/device/python_check.py \
    >"$LOG/python.log" 2>&1
  rc=$?
  cat "$LOG/python.log"
  note python "rc=$rc; $(tail -1 "$LOG/python.log")"
  grep -E "^(als|bpr|softmax) " "$LOG/python.log" | tee -a "$SUMMARY"
else
  note python "not in the bundle (no Python 3.12 where it was made)"
fi

# 6. Distributed iALS on the GPU through NCCL as one process (`train --distributed`): the NCCL
# communicator of one rank, the GPU shard solver, the Gram all-reduce and the row all-gather,
# against the single-GPU model on the same data (the same dense-Gram CG: the losses agree to
# float rounding). Appended to train.log (the files under $OUT stay within 8).
{
  "$D/recforge" datagen --users 20000 --items 5000 --interactions 600000 --seed 3 \
    --out /tmp/recforge-dist.csv
  cat >/tmp/recforge-dist.yaml <<'YAML'
run:
  dir: /tmp/recforge-dist-runs
  exists: overwrite
  progress: off
data:
  format: delimited
  path: /tmp/recforge-dist.csv
  header: true
  user_col: user
  item_col: item
  weight_col: weight
split:
  method: random
  test_fraction: 0.2
model:
  type: ials
  factors: 64
  iterations: 5
eval:
  ks: [20]
YAML
  timeout $CAP_DIST "$D/recforge" train /tmp/recforge-dist.yaml --device cuda --set run.name=one
  timeout $CAP_DIST "$D/recforge" train /tmp/recforge-dist.yaml --device cuda --distributed \
    --set run.name=nccl
} >>"$LOG/train.log" 2>&1
rc=$?
note dist "rc=$rc; $(python3 - <<'PY' 2>&1
import json
try:
    a = json.load(open("/tmp/recforge-dist-runs/one/run.json"))
    b = json.load(open("/tmp/recforge-dist-runs/nccl/run.json"))
    la = [h["loss"] for h in a["history"]]
    lb = [h["loss"] for h in b["history"]]
    rel = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
    ma = json.load(open("/tmp/recforge-dist-runs/one/metrics.json"))["test"]["recall@20"]
    mb = json.load(open("/tmp/recforge-dist-runs/nccl/metrics.json"))["test"]["recall@20"]
    print(f"device {b['device']}; losses {la[-1]:.6g} vs {lb[-1]:.6g} (max relative difference {rel:.2e}); "
          f"recall@20 {ma:.4f} vs {mb:.4f}; s/iteration {a['history'][-1]['seconds']:.4f} vs {b['history'][-1]['seconds']:.4f}; "
          + ("PASS" if rel < 1e-3 and abs(ma - mb) < 1e-3 else "FAIL"))
except Exception as e:
    print(f"no comparison: {e}")
PY
)"

note total "$(elapsed) s"
echo
echo "================ recforge device check ================"
cat "$SUMMARY"
# The call's exit status: 1 when the GPU tests did not all pass (the rest are measurements).
[ "$tests_rc" -eq 0 ] || exit 1
