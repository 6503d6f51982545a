// Test main: the same OpenBLAS kernel choice as the recforge binary, then GoogleTest.
#include <gtest/gtest.h>

#include "core/blas.h"

int main(int argc, char** argv) {
  recforge::ensure_blas_kernels(argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
