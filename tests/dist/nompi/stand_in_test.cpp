// The stand-in of builds without MPI (src/dist/comm_nompi.cpp, compiled into test_dist_nompi in
// every build): it refuses to be one of several processes of an mpirun job.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "dist/comm.h"

namespace recforge::dist {
namespace {

// init runs once per process (a later call returns at once), and the WorldOfOne tests of this
// binary call it first when the whole binary runs: so the refusal is checked in a fresh process
// (a threadsafe death test runs this test again, alone, in a new process), which exits 0 when
// every check holds and names the first that fails.
TEST(StandIn, RefusesToRunAsOneOfSeveralProcesses) {
  EXPECT_FALSE(mpi_available());
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        unsetenv("PMIX_RANK");
        unsetenv("PMI_RANK");
        setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
        std::string message;
        try {
          init(nullptr, nullptr);
        } catch (const Error& e) {
          message = e.what();
        }
        const std::string want =
            "this recforge was built without MPI, so it cannot be one of the 3 processes that an "
            "MPI launcher (mpirun) started (each would train the whole model alone); install "
            "Open MPI (tools/setup.sh) and rebuild, or run without mpirun";
        if (message != want) {
          std::fprintf(stderr, "init said \"%s\"\n", message.c_str());
          std::_Exit(1);
        }
        if (world().size() != 1) std::_Exit(2);
        // `mpirun -np 1` is a world of one, which the stand-in runs.
        setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
        try {
          init(nullptr, nullptr);
        } catch (const Error& e) {
          std::fprintf(stderr, "init under mpirun -np 1 said \"%s\"\n", e.what());
          std::_Exit(3);
        }
        std::_Exit(world().size() == 1 && world().rank() == 0 ? 0 : 4);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace recforge::dist
