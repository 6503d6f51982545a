#pragma once
/// @file blas.h
/// BLAS/LAPACK access (OpenBLAS). OpenBLAS keeps its own thread pool; code that calls BLAS from
/// inside OpenMP regions pins it to one thread with `BlasThreads` so the two pools do not
/// oversubscribe the cores.

#include <cblas.h>

#include <string>

namespace recforge {

/// Sets OpenBLAS's thread count for the lifetime of the object. Objects alive at the same time
/// (nested, or on concurrent threads) share OpenBLAS's one global count: the last to end
/// restores the count from before the first, whatever order they end in.
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

/// OpenBLAS picks its kernels from the CPU model at load time; a build older than the CPU (for
/// example Debian 12's 0.3.21 on Emerald Rapids) falls back to SSE3 "Prescott" kernels that are
/// 4–5× slower. When OPENBLAS_CORETYPE is unset and that fallback happened on a CPU with AVX2,
/// this re-executes the program with OPENBLAS_CORETYPE set to SkylakeX (AVX-512) or Haswell
/// (AVX2) — the variable is only read at load time. Call first thing in main(); returns normally
/// when nothing needs to change. RECFORGE_KEEP_BLAS=1 disables it.
void ensure_blas_kernels(char** argv);

/// The OpenBLAS kernel family in use ("SkylakeX", "Haswell", ...).
const char* blas_core_name();

/// Why this CPU cannot run OpenBLAS's kernel family `core` (an OPENBLAS_CORETYPE value such as
/// "SkylakeX", "Haswell", "Zen", "Sandybridge", "Prescott"): "OPENBLAS_CORETYPE=SkylakeX needs
/// AVX-512 (F, CD, BW, DQ, VL), which this CPU lacks", or "" when it can (unknown names: "").
/// Forcing a family whose instructions the CPU lacks ends in SIGILL; the tests registered once
/// per kernel family skip instead (tests/gtest_main_blas.cpp).
std::string blas_core_unsupported(const std::string& core);

/// LAPACK Cholesky solve of the symmetric positive definite k×k system A x = b, reading only
/// the lower triangle of the row-major `a` (what cblas_ssyrk(CblasRowMajor, CblasLower, ...)
/// fills). `a` is overwritten by its factor and `b` by x. Returns false when A is not positive
/// definite.
bool cholesky_solve(float* a, float* b, int k);
/// The same in double (dpotrf/dpotrs).
bool cholesky_solve(double* a, double* b, int k);

/// LAPACK eigendecomposition of the symmetric k×k row-major matrix `a` (both triangles set):
/// on return `eigenvalues` holds the k eigenvalues in ascending order and row j of `a` the
/// unit eigenvector of eigenvalue j, so that A = aᵀ · diag(eigenvalues) · a. Returns false when
/// LAPACK does not converge.
bool symmetric_eigen(float* a, float* eigenvalues, int k);

}  // namespace recforge
