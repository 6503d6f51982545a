// The stand-in of builds without MPI (src/dist/comm_nompi.cpp, compiled into test_dist_nompi in
// every build): it refuses to be one of several processes of an mpirun job.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "dist/comm.h"

namespace recforge::dist {
namespace {

TEST(StandIn, RefusesToRunAsOneOfSeveralProcesses) {
  EXPECT_FALSE(mpi_available());
  unsetenv("PMIX_RANK");
  unsetenv("PMI_RANK");
  setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  std::string message;
  try {
    init(nullptr, nullptr);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_EQ(message,
            "this recforge was built without MPI, so it cannot be one of the 3 processes that an "
            "MPI launcher (mpirun) started (each would train the whole model alone); install "
            "Open MPI (tools/setup.sh) and rebuild, or run without mpirun");
  EXPECT_EQ(world().size(), 1);
  // `mpirun -np 1` is a world of one, which the stand-in runs.
  setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
  EXPECT_NO_THROW(init(nullptr, nullptr));
  EXPECT_EQ(world().size(), 1);
  EXPECT_EQ(world().rank(), 0);
  unsetenv("OMPI_COMM_WORLD_SIZE");
}

}  // namespace
}  // namespace recforge::dist
