#pragma once
// Launching recforge as several processes in tests: the one mpirun command line of the tests
// (tests/dist/mpirun.sh: local ranks over shared memory, oversubscribed, root allowed).

#include <string>

#include "test_util.h"

namespace recforge::test {

/// Whether this build was linked with MPI (recforge_dist's RECFORGE_WITH_MPI).
inline bool mpi_built() {
#ifdef RECFORGE_WITH_MPI
  return true;
#else
  return false;
#endif
}

/// Why a test that needs several processes is skipped in a build without MPI.
inline std::string mpi_skip_reason() {
  return "this build has no MPI (RECFORGE_MPI=OFF, or Open MPI was not found: tools/setup.sh "
         "installs it), so recforge cannot run as several processes";
}

/// The shell words that start `np` processes of a program given after them. In a sanitizer
/// build (preset debug), Open MPI's allocations that live until exit are suppressed by library
/// (tools/ci/sanitizer-lsan.supp).
inline std::string mpirun_command(int np) {
  std::string env;
  if (kAddressSanitizer)
    env = std::string("env OMPI_MCA_mca_base_component_disable_dlclose=1 LSAN_OPTIONS=suppressions=") +
          RECFORGE_SOURCE_DIR + "/tools/ci/sanitizer-lsan.supp:fast_unwind_on_malloc=0 ";
  return env + "bash '" + RECFORGE_SOURCE_DIR + "/tests/dist/mpirun.sh' -np " +
         std::to_string(np);
}

}  // namespace recforge::test
