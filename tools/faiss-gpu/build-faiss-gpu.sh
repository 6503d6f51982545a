#!/usr/bin/env bash
# Builds a GPU-enabled Faiss 1.7.3 (sm_90) from Debian's source package, with recforge's patches
# (tools/faiss-gpu/patches/), into a cache directory outside the source tree. recforge uses it
# when configured with -DRECFORGE_FAISS_GPU=ON (docs/export.md, "GPU Faiss").
#
#   tools/faiss-gpu/build-faiss-gpu.sh [--cache DIR] [--jobs N] [--march ARCH] [--configure-only]
#
#   --cache DIR        where everything goes (default
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/recforge/faiss-gpu-1.7.3-sm90):
#                      apt/ (private apt lists), download/ (the source package), src/ (unpacked,
#                      patched), build/, install/ (what recforge links; -DRECFORGE_FAISS_GPU_DIR=DIR
#                      when not the default)
#   --jobs N           parallel compile jobs (default: all cores; about 20 minutes on 2 cores)
#   --march ARCH       -march of Faiss's host code (default x86-64-v3, as recforge's
#                      RECFORGE_ARCH; "" for the compiler's default)
#   --configure-only   stop after the CMake configure step (fetch, unpack, patch, configure)
#
# The system's apt configuration is not touched: the deb-src entry lives in a private source list,
# and apt's lists and caches in private directories, all passed as apt options. Every step is
# skipped when already done; when the install is complete (a stamp records Faiss's version, the
# CUDA version, the architecture and the patches) the script only says so. Changing a patch
# unpacks and builds afresh. Needs: apt-get, dpkg-source (dpkg-dev), patch, cmake, ninja, nvcc
# (CUDA 12 or 13; PATH, $CUDACXX or /usr/local/cuda), OpenBLAS/LAPACK headers (tools/setup.sh).
set -euo pipefail

readonly FAISS_VERSION=1.7.3
readonly CUDA_ARCH=90
readonly DEB_SRC_LINE="deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"

say() { echo "build-faiss-gpu: $*"; }
die() { echo "build-faiss-gpu: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

cache="${XDG_CACHE_HOME:-$HOME/.cache}/recforge/faiss-gpu-${FAISS_VERSION}-sm${CUDA_ARCH}"
jobs=$(nproc)
march="x86-64-v3"
configure_only=0
while (($#)); do
  case "$1" in
    --cache) [[ $# -ge 2 ]] || die "--cache needs a directory"; cache="$2"; shift 2 ;;
    --cache=*) cache="${1#--cache=}"; shift ;;
    --jobs|-j) [[ $# -ge 2 ]] || die "--jobs needs a number"; jobs="$2"; shift 2 ;;
    --jobs=*) jobs="${1#--jobs=}"; shift ;;
    --march) [[ $# -ge 2 ]] || die "--march needs a value"; march="$2"; shift 2 ;;
    --march=*) march="${1#--march=}"; shift ;;
    --configure-only) configure_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs $jobs: expected a positive integer"
[[ -n "$cache" ]] || die "--cache: expected a directory"

root=$(cd "$(dirname "$0")/../.." && pwd)
patch_dir="$root/tools/faiss-gpu/patches"
cache=$(realpath -m "$cache")
case "$cache/" in
  "$root"/*) die "--cache $cache is inside the source tree $root; choose a directory outside it" ;;
esac
mkdir -p "$cache"

# ---- Tools -----------------------------------------------------------------------------------
for tool in apt-get dpkg-source patch cmake ninja strip sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool not found (install it: dpkg-source is in dpkg-dev, flock in util-linux)"
done
nvcc="${CUDACXX:-}"
[[ -n "$nvcc" ]] || nvcc=$(command -v nvcc || true)
[[ -n "$nvcc" ]] || { [[ -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc; }
[[ -n "$nvcc" && -x "$nvcc" ]] || die "nvcc not found (put the CUDA toolkit's bin on PATH or set CUDACXX)"
cuda_version=$("$nvcc" --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
[[ -n "$cuda_version" ]] || die "cannot read the CUDA version from $nvcc --version"

shopt -s nullglob
patches=("$patch_dir"/*.patch)
shopt -u nullglob
((${#patches[@]})) || die "no patches in $patch_dir"
patch_sum=$(cat "${patches[@]}" | sha256sum | cut -d' ' -f1)

# One build at a time per cache directory.
exec 9>"$cache/.lock"
flock -n 9 || die "another build-faiss-gpu.sh is running on $cache"

install_dir="$cache/install"
stamp="$install_dir/.recforge-stamp"
want_stamp="faiss $FAISS_VERSION sm_$CUDA_ARCH cuda $cuda_version march '$march' patches $patch_sum"
lib_size() { du -hL "$install_dir/lib/libfaiss.so" | cut -f1; }
if ((!configure_only)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" && -f "$install_dir/lib/libfaiss.so" ]]; then
  say "up to date: $install_dir (libfaiss.so $(lib_size), CUDA $cuda_version, sm_$CUDA_ARCH); nothing to do"
  exit 0
fi
start=$(date +%s)

# ---- 1. The source package, through a private apt configuration -----------------------------
download="$cache/download"
shopt -s nullglob
dscs=("$download"/faiss_"$FAISS_VERSION"-*.dsc)
shopt -u nullglob
if ((${#dscs[@]} == 0)); then
  apt_dir="$cache/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$download"
  echo "$DEB_SRC_LINE" > "$apt_dir/src.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/src.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  # As root, apt downloads as the user _apt, who cannot write into a private cache under $HOME.
  [[ $(id -u) -ne 0 ]] || apt_opts+=(-o "APT::Sandbox::User=root")
  say "fetching the Debian source index (private list $apt_dir/src.list; system apt untouched)"
  apt-get "${apt_opts[@]}" -qq update || die "apt-get update with the private source list failed (network? see above)"
  say "downloading the faiss source package into $download"
  (cd "$download" && apt-get "${apt_opts[@]}" -qq source --download-only faiss) \
    || die "apt-get source faiss failed (see above)"
  shopt -s nullglob
  dscs=("$download"/faiss_"$FAISS_VERSION"-*.dsc)
  shopt -u nullglob
  ((${#dscs[@]})) || die "Debian's faiss source package is not version $FAISS_VERSION any more (found: $(ls "$download")); these patches were written for $FAISS_VERSION"
else
  say "source package present: ${dscs[-1]##*/}"
fi
dsc="${dscs[-1]}"

# ---- 2. Unpack (Debian's own patches applied) and apply ours ---------------------------------
src="$cache/src"
build="$cache/build"
if [[ ! -f "$src/.recforge-patches" || "$(cat "$src/.recforge-patches")" != "$patch_sum" ]]; then
  say "unpacking ${dsc##*/} into $src"
  rm -rf "$src" "$src.tmp" "$build"  # a fresh tree: objects of another patch set must not survive
  # apt-get verified the files against Debian's signed index and dpkg-source checks their
  # checksums; its warning that it cannot verify the uploader's signature (without the
  # debian-keyring package) is expected.
  dpkg-source -x "$dsc" "$src.tmp" >/dev/null \
    || die "dpkg-source -x ${dsc##*/} failed"
  for p in "${patches[@]}"; do
    say "applying ${p##*/}"
    patch -d "$src.tmp" -p1 --forward --batch --quiet < "$p" \
      || die "${p##*/} does not apply to ${dsc##*/} (was the source package updated?)"
  done
  echo "$patch_sum" > "$src.tmp/.recforge-patches"
  mv "$src.tmp" "$src"
else
  say "source unpacked and patched: $src"
fi

# ---- 3. Configure ----------------------------------------------------------------------------
cmake_args=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=Release
  -DFAISS_ENABLE_GPU=ON
  -DFAISS_ENABLE_PYTHON=OFF
  -DFAISS_ENABLE_C_API=OFF
  -DBUILD_TESTING=OFF
  -DBUILD_SHARED_LIBS=ON
  -DFAISS_OPT_LEVEL=generic
  "-DCMAKE_CXX_FLAGS=${march:+-march=$march}"
  "-DCMAKE_CUDA_COMPILER=$nvcc"
  "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH"
  -DBLA_VENDOR=OpenBLAS
  "-DCMAKE_INSTALL_PREFIX=$install_dir"
  -DCMAKE_INSTALL_LIBDIR=lib
  -DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON  # libfaiss.so finds libcudart/libcublas where it was linked
)
args_sum=$(printf '%s\n' "${cmake_args[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -f "$build/build.ninja" || ! -f "$build/.recforge-args" || "$(cat "$build/.recforge-args")" != "$args_sum" ]]; then
  say "configuring (CUDA $cuda_version, sm_$CUDA_ARCH, OpenBLAS) in $build"
  rm -f "$build/CMakeCache.txt"
  cmake -S "$src" -B "$build" "${cmake_args[@]}" || die "CMake could not configure Faiss (see above)"
  echo "$args_sum" > "$build/.recforge-args"
else
  say "already configured: $build"
fi
if ((configure_only)); then
  say "configured in $(( $(date +%s) - start )) s; stopping here (--configure-only)"
  say "compile one file to check: ninja -C $build -j1 faiss/CMakeFiles/faiss.dir/gpu/impl/L2Norm.cu.o"
  exit 0
fi

# ---- 4. Build, install, strip ----------------------------------------------------------------
say "building libfaiss.so with $jobs job(s) (about 20 minutes on 2 cores)"
cmake --build "$build" --target faiss -j "$jobs" || die "the Faiss build failed (see above)"
rm -f "$stamp"
cmake --install "$build" >/dev/null || die "cmake --install failed"
[[ -f "$install_dir/lib/libfaiss.so" ]] || die "no libfaiss.so in $install_dir/lib after installing"
for f in "$install_dir"/lib/libfaiss*.so*; do
  if [[ -f "$f" && ! -L "$f" ]]; then strip --strip-unneeded "$f"; fi
done
echo "$want_stamp" > "$stamp"
elapsed=$(( $(date +%s) - start ))
say "done in $((elapsed / 60)) min $((elapsed % 60)) s: $install_dir/lib/libfaiss.so ($(lib_size), stripped)"
say "use it: cmake --preset release -DRECFORGE_FAISS_GPU=ON$( [[ "$cache" == "${XDG_CACHE_HOME:-$HOME/.cache}/recforge/faiss-gpu-${FAISS_VERSION}-sm${CUDA_ARCH}" ]] || echo " -DRECFORGE_FAISS_GPU_DIR=$cache")"
