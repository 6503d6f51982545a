#!/usr/bin/env bash
# Installs what recforge needs to build and test on Debian/Ubuntu. Idempotent: packages already
# present are not touched, and apt is not even updated when nothing is missing.
#   tools/setup.sh            build dependencies (compiler, CMake, Ninja, libraries), then the
#                             Python virtual environment .venv from tools/requirements.txt
#                             (pinned: NumPy, faiss-cpu and matplotlib for the artifact client
#                             test and plots, implicit for peer benchmarks); pip runs only when
#                             the requirements changed since the last setup
#   tools/setup.sh --python   the same (accepted for older instructions)
# Last, the Python package (python/, docs/python.md) is built and installed into .venv, in the
# release preset's build directory build/release, so that the CLI and the package share one
# compiled engine (the README's next command builds the rest there); only when a file it is
# built from changed since the last install.
# The CUDA toolkit is optional and not installed here: with nvcc on PATH (or in /usr/local/cuda)
# the CUDA backend is built too (RECFORGE_CUDA=AUTO).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config python3 python3-venv
  python3-dev            # Python headers for the package's extension module (python/)
  libyaml-cpp-dev        # YAML configs
  libfaiss-dev           # Faiss indices (CPU; GPU Faiss comes from tools/faiss-gpu/build-faiss-gpu.sh)
  libopenblas-dev liblapack-dev  # BLAS/LAPACK
  libgtest-dev libgmock-dev      # tests
  libcli11-dev           # command line
  libfmt-dev libspdlog-dev       # formatting, logging
  nlohmann-json3-dev     # JSON (run metadata, manifests)
  libboost-dev           # Boost.Math headers: Student's t for the paired test (recforge compare --paired)
  libssl-dev             # SHA-256 (data cache keys, artifact checksums)
  clang libclang-rt-dev libomp-dev lld  # sanitizer and fuzzing build (preset debug): clang, libFuzzer + sanitizer runtimes, OpenMP, linker
  libcpp-httplib-dev     # HTTP server (recforge serve)
  wrk                    # HTTP load generator (tools/bench/bench-serve.sh)
  curl                   # HTTP client of tools/bench/bench-serve.sh (readiness, reloads, metrics)
  iproute2               # ss: the server test reads the listening socket's backlog
  openmpi-bin libopenmpi-dev  # MPI: mpirun and the collectives of distributed training (src/dist/)
)

missing=()
for p in "${packages[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all build dependencies present"
fi

# nvcc is often installed outside PATH; CMake finds it through CUDACXX.
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: CUDA found at /usr/local/cuda (add /usr/local/cuda/bin to PATH to build the CUDA backend)"
fi

# The Python virtual environment, brought up to date only when tools/requirements.txt changed
# (the test suite's `client` test runs tools/client/check_artifact.py with .venv/bin/python). Updated in
# place, so that a helper running from .venv meanwhile keeps its files.
for arg in "$@"; do
  case "$arg" in
    --python) ;;  # the default now; kept so that older instructions still work
    *) echo "setup: unknown option $arg (usage: tools/setup.sh [--python])" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/tools/requirements.txt"
stamp="$root/.venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x "$root/.venv/bin/python" ]] || ! "$root/.venv/bin/python" -c "" 2>/dev/null; then
  echo "setup: creating $root/.venv"
  rm -rf "$root/.venv"
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --upgrade pip
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "setup: installing tools/requirements.txt into $root/.venv"
  "$root/.venv/bin/pip" install -q -r "$req"
  echo "$want" > "$stamp"
else
  echo "setup: .venv is up to date"
fi

# The Python package: scikit-build-core (pinned in tools/requirements.txt, hence no build
# isolation) configures the whole repository in build/release like `cmake --preset release`,
# builds the target _recforge and installs it with the package's Python files into .venv.
pkg_stamp="$root/.venv/.recforge-package.sha256"
pkg_want=$(cd "$root" && find CMakeLists.txt CMakePresets.json src python -type f \
             ! -name '*.pyc' ! -path 'python/build/*' -print0 | sort -z | xargs -0 sha256sum |
             sha256sum | cut -d' ' -f1)
if [[ ! -f "$pkg_stamp" || "$(cat "$pkg_stamp")" != "$pkg_want" ]] ||
   ! (cd / && "$root/.venv/bin/python" -c "import recforge" 2>/dev/null); then
  echo "setup: building the Python package (python/) in $root/build/release and installing it into .venv"
  rm -f "$pkg_stamp"
  CMAKE_GENERATOR=Ninja "$root/.venv/bin/pip" install -q --no-build-isolation --no-deps \
    --config-settings=build-dir="$root/build/release" "$root/python"
  echo "$pkg_want" > "$pkg_stamp"
else
  echo "setup: the Python package in .venv is up to date"
fi
