#pragma once
/// @file blas.h
/// BLAS/LAPACK access (OpenBLAS). OpenBLAS keeps its own thread pool; code that calls BLAS from
/// inside OpenMP regions pins it to one thread with `BlasThreads` so the two pools do not
/// oversubscribe the cores.

#include <cblas.h>

namespace recforge {

/// Sets OpenBLAS's thread count for the lifetime of the object, restoring it afterwards.
class BlasThreads {
 public:
  /// `n` threads for BLAS calls made while this object lives (1 inside OpenMP regions).
  explicit BlasThreads(int n);
  ~BlasThreads();
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int previous_;
};

/// LAPACK Cholesky solve of the symmetric positive definite k×k system A x = b, reading only
/// the lower triangle of the row-major `a` (what cblas_ssyrk(CblasRowMajor, CblasLower, ...)
/// fills). `a` is overwritten by its factor and `b` by x. Returns false when A is not positive
/// definite.
bool cholesky_solve(float* a, float* b, int k);

}  // namespace recforge
