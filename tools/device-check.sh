#!/usr/bin/env bash
# The device check: ONE call on the lent H200 machine (CUDA 13 toolkit, CMake, ninja and the
# torch venv there; nothing of recforge's) that runs, from the bundle of tools/device-bundle.sh:
#   1. the GPU tests (tests/gpu, every device instance),
#   2. compute-sanitizer memcheck and racecheck on a few small GPU tests (when the tool works),
#   3. an end-to-end training run (configs/quickstart.yaml on cuda, float16 factors),
#   4. the benchmark (tools/bench_gpu.cpp) on the ML-20M shape and top-k, then the 10× data set
#      when at least 150 s are left (--large: always; --no-large: never),
# and prints a short table last. Designed for under 6 minutes; each step has its own timeout.
# Logs and bench.json go to $OUT (the device tool brings them back).
#
#   here:   tools/device-bundle.sh
#   device: run(command="bash tools/device-check.sh", carry=[".device"], timeout_s=420)
set -uo pipefail
cd "$(dirname "$0")/.."
B=.device                   # what tools/device-bundle.sh left (carried)
D=/tmp/recforge-device      # the unpacked executables and libraries
LOG=${OUT:-/tmp/recforge-device-check}
mkdir -p "$LOG"
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
LARGE=auto
[ "${1:-}" = "--large" ] && LARGE=yes
[ "${1:-}" = "--no-large" ] && LARGE=no

if [ ! -f "$B/bundle.tar.gz" ]; then
  echo "device-check: no $B/bundle.tar.gz; run tools/device-bundle.sh here and carry .device" >&2
  exit 2
fi
rm -rf "$D" && mkdir -p "$D" && tar -xzf "$B/bundle.tar.gz" -C "$D" || exit 2

# cuBLAS / cuRAND: the venv's copies first (the brief of this check), then the toolkit's.
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
  echo "device-check: libraries not found:" >&2
  echo "$missing" >&2
  exit 2
fi
cat "$B/commit.txt" 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$LOG/gpu.txt"
"$D/recforge" info 2>&1 | grep -iE "cuda|gpu" | head -5

# 1. GPU tests.
echo "== 1. GPU tests ($(elapsed) s)"
timeout 120 "$D/test_gpu" --gtest_brief=1 >"$LOG/tests.log" 2>&1
tests_rc=$?
tail -25 "$LOG/tests.log"
tests_line=$(grep -E "^\[  PASSED  \]|^\[  FAILED  \]" "$LOG/tests.log" | tr '\n' ' ')
[ $tests_rc -eq 124 ] && tests_line="TIMEOUT after 120 s; $tests_line"

# 2. compute-sanitizer on small tests (out-of-bounds accesses, shared-memory races).
echo "== 2. compute-sanitizer ($(elapsed) s)"
san_line="not run"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$CS" ]; then
  filter='*RowsWithout*cuda0:*FoldIn*cuda0:*SmallMaskedLists*cuda0:*MetricsMatch*cuda0:*Csr*cuda0:*StreamingEquals*'
  timeout 50 "$CS" --tool memcheck --error-exitcode 99 "$D/test_gpu" --gtest_brief=1 \
    --gtest_filter="$filter" >"$LOG/memcheck.log" 2>&1
  mc=$?
  timeout 40 "$CS" --tool racecheck --error-exitcode 99 "$D/test_gpu" --gtest_brief=1 \
    --gtest_filter='*SmallMaskedLists*cuda0:*FoldIn*cuda0:*RowsWithout*cuda0' \
    >"$LOG/racecheck.log" 2>&1
  rc=$?
  tail -5 "$LOG/memcheck.log" "$LOG/racecheck.log"
  san_line="memcheck rc=$mc, racecheck rc=$rc (0 clean, 99 errors, 124 timeout)"
fi

# 3. An end-to-end run on the GPU.
echo "== 3. recforge train on cuda ($(elapsed) s)"
rm -rf /tmp/rf-runs
timeout 60 "$D/recforge" train configs/quickstart.yaml --device cuda \
  --set run.dir=/tmp/rf-runs --set run.progress=lines --set model.dtype=float16 \
  >"$LOG/train.log" 2>&1
train_rc=$?
tail -8 "$LOG/train.log"
train_line="rc=$train_rc; $(grep -E "iALS on|^.*test \(" "$LOG/train.log" | sed 's/^.*\] //' | tr '\n' ' ' | cut -c1-300)"

# 3b. BPR and sampled softmax on cuda, 128 factors, on a synthetic set of ~16M training
# interactions: samples (positives) per second from run.json's epoch times.
echo "== 3b. BPR / softmax on cuda ($(elapsed) s)"
batch_line=""
for m in "bpr --set model.optimizer=sgd --set model.learning_rate=0.05" \
         "bpr --set model.optimizer=adam --set model.hard_negatives=32" \
         "softmax --set model.normalize=true --set model.temperature=0.1 --set model.negatives=1024"; do
  rm -rf /tmp/rf-batch
  timeout 60 "$D/recforge" train configs/quickstart.yaml --device cuda \
    --set run.dir=/tmp/rf-batch --set run.name=b --set run.progress=lines --set export.enabled=false \
    --set synthetic.users=500000 --set synthetic.items=200000 --set synthetic.interactions=20000000 \
    --set model.factors=128 --set model.iterations=3 --set model.type=$m \
    >>"$LOG/batch.log" 2>&1
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
  batch_line="$batch_line
  ${m%% *} $(echo "$m" | grep -oE "(sgd|adam|hard_negatives=[0-9]+|normalize=true)" | tr '\n' ' '): rc=$rc ${rate:-no figure}"
done
tail -5 "$LOG/batch.log"

# 4. The benchmark: ML-20M shape and top-k; then the 10x data set when at least 150 s are left.
echo "== 4. benchmark ($(elapsed) s)"
remaining=$((340 - $(elapsed)))
[ $remaining -lt 90 ] && remaining=90
timeout $remaining "$D/bench-gpu" --out "$LOG/bench.json" >"$LOG/bench.log" 2>&1
bench_rc=$?
cat "$LOG/bench.log" | grep -v "^  iALS"
large_rc="skipped"
remaining=$((345 - $(elapsed)))
if [ "$LARGE" = yes ] || { [ "$LARGE" = auto ] && [ $remaining -ge 150 ]; }; then
  echo "== 5. benchmark, 10x data ($(elapsed) s)"
  [ $remaining -lt 150 ] && remaining=150
  timeout $remaining "$D/bench-gpu" --data 10x --no-topk --out "$LOG/bench-10x.json" \
    >"$LOG/bench-10x.log" 2>&1
  large_rc=$?
fi

echo
echo "================ recforge device check ($(elapsed) s) ================"
echo "gpu:       $(tail -1 "$LOG/gpu.txt")"
echo "tests:     rc=$tests_rc $tests_line"
grep -E "^\[  FAILED  \] [A-Za-z]" "$LOG/tests.log" | head -12
echo "sanitizer: $san_line"
echo "train:     $train_line"
echo "bpr/softmax (128 factors):$batch_line"
echo "bench:     rc=$bench_rc; 10x data: rc=$large_rc (124: out of time)"
[ $bench_rc -ne 0 ] && tail -4 "$LOG/bench.log"
sed -n '/^data  *factors/,$p' "$LOG/bench.log"
[ -f "$LOG/bench-10x.log" ] && { grep "^data 10x" "$LOG/bench-10x.log"; grep "^10x " "$LOG/bench-10x.log"; }
