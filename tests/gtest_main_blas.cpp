// Test main: the same OpenBLAS kernel choice as the recforge binary, then GoogleTest.
// Under OPENBLAS_CORETYPE (the coretype.<family>.<binary> tests of tests/CMakeLists.txt) it
// first checks that the family can run here and is the one OpenBLAS loaded; if not, it says why
// and exits 77, which ctest reports as skipped.
#include <gtest/gtest.h>
#include <strings.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/blas.h"

int main(int argc, char** argv) {
  if (const char* core = std::getenv("OPENBLAS_CORETYPE")) {
    const std::string why = recforge::blas_core_unsupported(core);
    if (!why.empty()) {
      std::printf("skipped: %s\n", why.c_str());
      return 77;
    }
    if (strcasecmp(core, recforge::blas_core_name()) != 0) {
      std::printf("skipped: OPENBLAS_CORETYPE=%s, but OpenBLAS loaded its %s kernels (a build "
                  "without that family?)\n",
                  core, recforge::blas_core_name());
      return 77;
    }
  }
  recforge::ensure_blas_kernels(argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
