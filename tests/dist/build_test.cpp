// Whether this build has MPI. Without it the mpirun tests (dist.mpi.*) are not registered, and
// this test says so instead of letting the distributed layer pass untested.
#include <gtest/gtest.h>

#include "dist/comm.h"

namespace recforge::dist {
namespace {

TEST(DistBuild, MpiIsBuilt) {
#ifdef RECFORGE_WITH_MPI
  EXPECT_TRUE(mpi_available());
#else
  EXPECT_FALSE(mpi_available());
  GTEST_SKIP() << "MPI was not built (RECFORGE_MPI=OFF, or CMake found no MPI: tools/setup.sh "
                  "installs Open MPI), so the mpirun tests dist.mpi.* are not registered";
#endif
}

}  // namespace
}  // namespace recforge::dist
