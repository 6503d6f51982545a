#include "core/blas.h"

extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotrs_(const char* uplo, const int* n, const int* nrhs, const float* a, const int* lda,
             float* b, const int* ldb, int* info);
}

namespace recforge {

BlasThreads::BlasThreads(int n) : previous_(openblas_get_num_threads()) {
  openblas_set_num_threads(n);
}

BlasThreads::~BlasThreads() { openblas_set_num_threads(previous_); }

bool cholesky_solve(float* a, float* b, int k) {
  const char uplo = 'U';  // row-major lower == column-major upper
  const int one = 1;
  int info = 0;
  spotrf_(&uplo, &k, a, &k, &info);
  if (info != 0) return false;
  spotrs_(&uplo, &k, &one, a, &k, b, &k, &info);
  return info == 0;
}

}  // namespace recforge
