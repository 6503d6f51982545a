#!/usr/bin/env bash
# The one mpirun command line of recforge's tests: tests/dist/mpirun.sh -np P PROGRAM [ARGS...]
# runs P processes of PROGRAM on this machine, e.g.
#   tests/dist/mpirun.sh -np 3 build/cpu/recforge train CONFIG
# ctest runs the MPI tests through it (tests/CMakeLists.txt: RECFORGE_MPIRUN, and
# RECFORGE_MPIRUN_ENVIRONMENT for the test's environment); so should any later test that
# launches processes. Open MPI (4.1, Debian's) settings, each needed to run reliably in a
# container on a small machine:
#   --oversubscribe           more ranks than cores (the tests run 3 ranks on 2 cores)
#   --bind-to none            no pinning: oversubscribed ranks pinned to one core would starve
#   --mca pml ob1 --mca btl self,vader
#                             shared memory and loopback only: no network, InfiniBand or UCX
#                             device probing (warnings, or hangs where a device is half-present)
#   --mca btl_vader_single_copy_mechanism none
#                             copy through the shared segment: the default, CMA
#                             (process_vm_readv), fails where the container forbids ptrace
#   --mca odls_base_sigkill_timeout 3
#                             when a rank fails, mpirun sends the others SIGTERM and, by default
#                             1 s later, SIGKILL; rank 0 removes its staging directory on SIGTERM,
#                             which on a loaded 2-core machine can take longer than 1 s (mpirun waits this
#                             long also when the ranks end at once: 3 s, not more)
#   --mca orte_tmpdir_base DIR
#                             each job keeps its session directory under its own new directory,
#                             removed when the job ends: jobs started side by side (ctest -j) all
#                             use Open MPI's shared top one, /tmp/ompi.HOST.UID, which the first to
#                             end removes while another is creating it; that one's mpirun then fails
#                             ("A call to mkdir was unable to create the desired directory ...
#                             File exists", once in 1800 runs of six loops of `-np 1 /bin/true`)
# This script runs mpirun as its child, not in its place: it waits for it, passes on TERM, INT
# and HUP, removes the session directory and exits with mpirun's status (128 + N where a signal
# N ended it). The ranks are mpirun's children, the grandchildren of this script.
# RECFORGE_MPIEXEC names the launcher (CMake's MPIEXEC_EXECUTABLE; default: mpirun on PATH).
# Open MPI refuses to run as root unless told; containers often run as root.
set -euo pipefail
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
  export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
fi
session=$(mktemp -d "${TMPDIR:-/tmp}/recforge-mpirun.XXXXXX")
# Without job control a command started with & reads /dev/null; <&0 keeps this script's input.
"${RECFORGE_MPIEXEC:-mpirun}" --oversubscribe --bind-to none \
  --mca pml ob1 --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
  --mca odls_base_sigkill_timeout 3 --mca orte_tmpdir_base "$session" "$@" <&0 &
job=$!
trap 'kill -s TERM "$job" 2>/dev/null || true' TERM
trap 'kill -s INT "$job" 2>/dev/null || true' INT
trap 'kill -s HUP "$job" 2>/dev/null || true' HUP
# wait returns early (above 128) when a trapped signal arrives; wait again until mpirun has ended.
while true; do
  rc=0
  wait "$job" || rc=$?
  kill -0 "$job" 2>/dev/null || break
done
rm -rf -- "$session"
exit "$rc"
