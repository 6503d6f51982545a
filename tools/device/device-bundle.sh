#!/usr/bin/env bash
# Prepares what tools/device/device-check.sh runs on the lent GPU machine, which has the CUDA 13
# toolkit, CMake, ninja and a Python venv but none of recforge's libraries: builds recforge, the
# GPU test executable (tests/gpu) and bench-gpu for sm_90 (cudart linked statically) and copies
# them into .device/bundle.tar.gz (git-ignored) with every shared library they need that such a
# machine lacks.
# cuBLAS and cuRAND are not copied (libcublasLt alone is ~540 MB, far over the 64 MiB that a
# device call may carry): device-check.sh finds the copies of the device's venv
# (/opt/torch/.venv/.../nvidia/*/lib) or its toolkit at run time. The bundle must stay under
# 64 MiB with the working tree; its size is printed last.
#
#   tools/device/device-bundle.sh                        # build in build/device (JOBS=1 by default)
#   BUILD=build/release tools/device/device-bundle.sh    # reuse an sm_90 CUDA build (release preset)
#
# Then, through the device tool, one call (docs/cuda.md, "The device check"):
#   run(command="bash tools/device/device-check.sh", carry=[".device"], timeout_s=330)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/device}
JOBS=${JOBS:-1}
OUT=.device
export PATH=/usr/local/cuda/bin:$PATH

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECFORGE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_EXE_LINKER_FLAGS="-Wl,--as-needed" >/dev/null
fi
# A CUDA build: RECFORGE_CUDA=ON, or AUTO where configure found nvcc (the release preset here).
grep -q '^RECFORGE_CUDA:STRING=ON$' "$BUILD/CMakeCache.txt" ||
  { grep -q '^RECFORGE_CUDA:STRING=AUTO$' "$BUILD/CMakeCache.txt" &&
    grep -qE '^CMAKE_CUDA_COMPILER:[A-Z]+=.+' "$BUILD/CMakeCache.txt"; } ||
  { echo "device-bundle: $BUILD is not a CUDA build (RECFORGE_CUDA=ON, or AUTO with nvcc found)" >&2; exit 1; }
# sm_90: CMakeLists.txt's default when CMAKE_CUDA_ARCHITECTURES is not in the cache.
if grep -qE '^CMAKE_CUDA_ARCHITECTURES:' "$BUILD/CMakeCache.txt" &&
   ! grep -qE '^CMAKE_CUDA_ARCHITECTURES:[A-Z]+=90$' "$BUILD/CMakeCache.txt"; then
  echo "device-bundle: warning: $BUILD is not built for sm_90 only" >&2
fi
cmake --build "$BUILD" -j "$JOBS" --target recforge test_gpu bench-gpu

# The Python package for the device's python3 (3.12 there): its module built in a build
# directory of its own ($PY_BUILD, CUDA, sm_90) with a local Python 3.12 ($PY_DEVICE, default:
# python3.12 on PATH or pyenv's) and this .venv's pybind11; ccache makes the engine's objects
# the release build's. Skipped, with a line saying so, where no Python 3.12 is found.
# The first candidate that runs as Python 3.12 (a pyenv shim on PATH may exist and refuse to run
# when 3.12 is not pyenv's selected version).
find_py312() {
  local p
  for p in ${PY_DEVICE:-} $(command -v python3.12 || true) /root/.pyenv/versions/3.12*/bin/python3.12; do
    if [ -x "$p" ] && "$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}
PY_DEVICE=$(find_py312)
PY_BUILD=${PY_BUILD:-build/py312}
py_module=""
if [ -n "$PY_DEVICE" ] && [ -x .venv/bin/python ]; then
  if [ ! -f "$PY_BUILD/CMakeCache.txt" ]; then
    cmake -S . -B "$PY_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECFORGE_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DBUILD_TESTING=OFF -DRECFORGE_PYTHON=ON \
      -DPython_EXECUTABLE="$PY_DEVICE" -Dpybind11_DIR="$(.venv/bin/python -m pybind11 --cmakedir)" >/dev/null
  fi
  cmake --build "$PY_BUILD" -j "$JOBS" --target _recforge
  py_module=$(ls "$PY_BUILD"/python/recforge/_recforge.cpython-312-*.so)
else
  echo "device-bundle: no Python 3.12 here (PY_DEVICE): the bundle has no Python package"
fi

rm -rf "$OUT"
mkdir -p "$OUT/lib"
cp "$BUILD/recforge" "$BUILD/tests/test_gpu" "$BUILD/bench-gpu" "$OUT/"
strip --strip-unneeded "$OUT/recforge" "$OUT/test_gpu" "$OUT/bench-gpu"
if [ -n "$py_module" ]; then
  mkdir -p "$OUT/python/recforge"
  cp python/recforge/*.py "$OUT/python/recforge/"
  cp "$py_module" "$OUT/python/recforge/"
  strip --strip-unneeded "$OUT"/python/recforge/*.so
fi

# Shared libraries: everything ldd resolves except the C runtime, the C++ runtime (libstdc++ and
# libgcc_s are on every such machine, newer there, and a carried older libstdc++ on
# LD_LIBRARY_PATH would be forced on the device's own C++ tools such as compute-sanitizer), the
# driver (libcuda comes with the device's driver) and the CUDA math libraries found there.
needed=$(for e in "$OUT/recforge" "$OUT/test_gpu" "$OUT/bench-gpu" ${py_module:+"$OUT"/python/recforge/*.so}; do ldd "$e"; done |
  awk '/=> \// {print $1 " " $3}' | sort -u)
device_side=""
while read -r soname path; do
  [ -n "$soname" ] || continue
  case "$soname" in
    linux-vdso*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*) ;;
    libstdc++.so*|libgcc_s.so*) ;;
    libcublas.so*|libcublasLt.so*|libcurand.so*|libcusolver.so*|libcusparse.so*|libnvJitLink.so*|libnccl.so*)
      device_side="$device_side $soname" ;;
    *) cp -L "$path" "$OUT/lib/$soname" ;;
  esac
done <<<"$needed"
strip --strip-unneeded "$OUT"/lib/*.so* 2>/dev/null || true
echo "$device_side" | tr ' ' '\n' | sed '/^$/d' | sort -u >"$OUT/device-libs.txt"

# The sonames the build expects must be CUDA 13's (what the device's venv and toolkit carry).
for lib in $(cat "$OUT/device-libs.txt"); do
  ls /usr/local/cuda/lib64/"$lib" >/dev/null 2>&1 ||
    { echo "device-bundle: $lib is not in this toolkit's lib64 (soname mismatch?)" >&2; exit 1; }
done
git rev-parse HEAD >"$OUT/commit.txt" 2>/dev/null || true
date -u +%Y-%m-%dT%H:%M:%SZ >>"$OUT/commit.txt"

echo "device libraries (found on the device at run time): $(tr '\n' ' ' <"$OUT/device-libs.txt")"
ls -la "$OUT" "$OUT/lib"
echo "uncompressed: $(($(du -sb "$OUT" | cut -f1) / 1048576)) MiB"
# OpenBLAS alone is ~36 MB: the executables and libraries travel as one gzip tarball (gzip is on
# every machine) that device-check.sh unpacks to /tmp.
tar -czf "$OUT/bundle.tar.gz" -C "$OUT" recforge test_gpu bench-gpu lib ${py_module:+python}
rm -rf "$OUT/recforge" "$OUT/test_gpu" "$OUT/bench-gpu" "$OUT/lib" "$OUT/python"
ls -la "$OUT"
bytes=$(du -sb "$OUT" | cut -f1)
echo "bundle: $OUT, $((bytes / 1048576)) MiB ($bytes bytes; the device call carries at most 64 MiB with the tree)"
if [ "$bytes" -gt $((60 * 1048576)) ]; then
  echo "device-bundle: the bundle is over 60 MiB; it will not travel" >&2
  exit 1
fi
