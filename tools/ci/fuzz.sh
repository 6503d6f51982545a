#!/usr/bin/env bash
# Fuzzing: builds the libFuzzer targets (preset `debug`: clang, ASan + UBSan, in build/debug) and
# runs each one for a bounded time on a copy of its committed seed corpus fuzz/corpus/<target>/
# (plus fuzz/regressions/<target>/), so the repository is never modified.
#   tools/ci/fuzz.sh [--seconds N] [--jobs J] [TARGET...]
#     N seconds per target (default 45); all targets (fuzz/*_fuzz.cpp) unless some are named; J
#     targets at a time (default: the number of usable CPUs), each on one CPU (libFuzzer runs one
#     input at a time), so each target gets its N seconds of one CPU whatever J is
# A recforge::Error on bad input is the expected answer; a crash, sanitizer report, other
# exception, leak, input slower than 10 s or heavier than 2 GB is a finding. Exit status 0: no
# finding; 1: a finding (the reproducer and the log are kept under the printed directory; copy
# the reproducer to fuzz/regressions/<target>/ once fixed, and ctest replays it as fuzz.<target>);
# 2: usage or build error. The last line is a one-line summary.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

seconds=45
parallel=$(nproc 2>/dev/null || echo 1)
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --seconds=*) seconds=${1#--seconds=}; shift ;;
    --jobs) parallel=${2:?--jobs needs a number}; shift 2 ;;
    --jobs=*) parallel=${1#--jobs=}; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1 (usage: tools/ci/fuzz.sh [--seconds N] [--jobs J] [TARGET...])" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: --seconds $seconds is not a positive whole number of seconds" >&2
  exit 2
fi
if ! [[ "$parallel" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: --jobs $parallel is not a positive whole number" >&2
  exit 2
fi
all=()
for src in fuzz/*_fuzz.cpp; do n=$(basename "$src" _fuzz.cpp); all+=("$n"); done
if ((${#targets[@]} == 0)); then targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
  if [[ ! -f "fuzz/${t}_fuzz.cpp" ]]; then
    echo "fuzz: no target \"$t\" (fuzz/${t}_fuzz.cpp); the targets are: ${all[*]}" >&2
    exit 2
  fi
done

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found; run tools/setup.sh (it installs clang and libFuzzer)" >&2
  exit 2
fi
echo "fuzz: building the fuzz targets of the debug preset (build/debug)"
if ! { cmake --preset debug >/dev/null && cmake --build --preset debug --target fuzz-targets; }; then
  echo "fuzz: the build failed" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/recforge-fuzz.XXXXXX")
keep=0
trap '((keep)) || rm -rf "$work"' EXIT
# Sanitizer settings: stop at the first report; the LeakSanitizer suppressions cover only
# system libraries (see the file).
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/tools/ci/sanitizer-lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1  # inputs are tiny; threads only add noise

# fuzz_one TARGET: runs one target in $work/TARGET and prints its one-line result; the exit
# status says whether it found something.
fuzz_one() {
  local t=$1 dir="$work/$1" status=0 runs cov found f
  mkdir -p "$dir/corpus" "$dir/findings"
  cp -R "fuzz/corpus/$t/." "$dir/corpus/"
  if [[ -d "fuzz/regressions/$t" ]]; then cp -R "fuzz/regressions/$t/." "$dir/corpus/"; fi
  local dict=()
  if [[ -f "fuzz/$t.dict" ]]; then dict=("-dict=$root/fuzz/$t.dict"); fi
  # timeout: a last guard should libFuzzer itself hang (it stops at -max_total_time). TMPDIR:
  # the target's scratch directory goes under $dir, so that a crash (which skips the target's
  # own clean-up at exit) leaves nothing outside the work directory.
  TMPDIR="$dir" timeout $((seconds + 300)) "build/debug/fuzz/fuzz-$t" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/findings/" "${dict[@]}" "$dir/corpus" >"$dir/log" 2>&1 || status=$?
  runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$dir/log" | grep -oE "[0-9]+$" | tail -n 1 || true)
  cov=$(grep -oE "cov: [0-9]+" "$dir/log" | tail -n 1 || true)
  found=$(find "$dir/findings" -type f | sort)
  if ((status != 0)) || [[ -n "$found" ]]; then
    # Gathered first and printed by one printf, so that the report stays in one piece when
    # another target finishes at the same time.
    local report
    report=$(
      echo "fuzz: $t: FINDING (exit status $status) after ${runs:-?} runs; log: $dir/log"
      grep -E "ERROR: |runtime error|SUMMARY|terminate called|what\(\)" "$dir/log" | head -n 8 | sed 's/^/  /' || true
      for f in $found; do echo "  reproducer: $f (replay: build/debug/fuzz/fuzz-$t $f)"; done
    )
    printf '%s\n' "$report"
    return 1
  fi
  echo "fuzz: $t: no finding in ${seconds} s (${runs:-?} runs, ${cov:-cov: ?})"
}

# Up to $parallel targets at a time; each result line is printed as its target finishes.
pids=()
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
  fuzz_one "$t" &
  pids+=("$!")
done
failed=()
for k in "${!targets[@]}"; do
  wait "${pids[$k]}" || failed+=("${targets[$k]}")
done

if ((${#failed[@]})); then
  keep=1
  echo "fuzz: FAILED: findings in ${failed[*]} (kept under $work)"
  exit 1
fi
echo "fuzz: passed: ${#targets[@]} target(s), ${seconds} s each, $parallel at a time, no finding"
