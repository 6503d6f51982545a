#include "core/blas.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <strings.h>
#include <vector>
#include <algorithm>
#include <mutex>

extern "C" {
char* openblas_get_corename(void);
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotrs_(const char* uplo, const int* n, const int* nrhs, const float* a, const int* lda,
             float* b, const int* ldb, int* info);
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda,
             double* b, const int* ldb, int* info);
void ssyevd_(const char* jobz, const char* uplo, const int* n, float* a, const int* lda, float* w,
             float* work, const int* lwork, int* iwork, const int* liwork, int* info);
}

namespace recforge {

const char* blas_core_name() { return openblas_get_corename(); }

std::string blas_core_unsupported(const std::string& core) {
  // The instruction sets of OpenBLAS's x86-64 kernel families (its driver/others/dynamic.c).
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  struct Family {
    const char* name;
    bool runs;
    const char* needs;
  };
  const Family families[] = {
      {"SkylakeX", avx512, "AVX-512 (F, CD, BW, DQ, VL)"},
      {"Haswell", avx2, "AVX2 and FMA"},
      {"Zen", avx2, "AVX2 and FMA"},
      {"Sandybridge", __builtin_cpu_supports("avx") != 0, "AVX"},
      {"Nehalem", __builtin_cpu_supports("sse4.2") != 0, "SSE4.2"},
      {"Prescott", __builtin_cpu_supports("sse3") != 0, "SSE3"},
  };
  for (const Family& f : families)
    if (strcasecmp(f.name, core.c_str()) == 0 && !f.runs)
      return "OPENBLAS_CORETYPE=" + core + " needs " + f.needs + ", which this CPU lacks";
  return "";
}

void ensure_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("RECFORGE_KEEP_BLAS")) return;
  const char* core = openblas_get_corename();
  if (!core || std::strcmp(core, "Prescott") != 0) return;
  __builtin_cpu_init();
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
  if (!want) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv);  // only returns on failure: keep running with Prescott
}

namespace {
// OpenBLAS's thread count is one global. Objects alive at once (nested, or on several threads
// that query concurrently) share it: the first saves it, the last restores it. Restoring what
// each one saw would leave 1 behind when they end out of order (B saw A's 1).
std::mutex g_blas_threads_mutex;
int g_blas_threads_alive = 0;
int g_blas_threads_saved = 0;
}  // namespace

BlasThreads::BlasThreads(int n) {
  std::lock_guard<std::mutex> lock(g_blas_threads_mutex);
  if (g_blas_threads_alive++ == 0) g_blas_threads_saved = openblas_get_num_threads();
  previous_ = g_blas_threads_saved;
  openblas_set_num_threads(n);
}

BlasThreads::~BlasThreads() {
  std::lock_guard<std::mutex> lock(g_blas_threads_mutex);
  if (--g_blas_threads_alive == 0) openblas_set_num_threads(g_blas_threads_saved);
}

namespace {

// LAPACK's xPOTRF then xPOTRS on the row-major lower triangle (column-major upper).
template <class T, class Potrf, class Potrs>
bool potrf_potrs(T* a, T* b, int k, Potrf potrf, Potrs potrs) {
  const char uplo = 'U';  // row-major lower == column-major upper
  const int one = 1;
  int info = 0;
  potrf(&uplo, &k, a, &k, &info);
  if (info != 0) return false;
  potrs(&uplo, &k, &one, a, &k, b, &k, &info);
  return info == 0;
}

}  // namespace

bool cholesky_solve(float* a, float* b, int k) { return potrf_potrs(a, b, k, spotrf_, spotrs_); }

bool cholesky_solve(double* a, double* b, int k) { return potrf_potrs(a, b, k, dpotrf_, dpotrs_); }

bool symmetric_eigen(float* a, float* eigenvalues, int k) {
  // Column-major LAPACK sees the transpose, which is the same symmetric matrix; it returns the
  // eigenvectors as columns, i.e. as rows of the row-major array.
  const char jobz = 'V', uplo = 'U';
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  float work_query = 0;
  ssyevd_(&jobz, &uplo, &k, a, &k, eigenvalues, &work_query, &lwork, &iwork_query, &liwork, &info);
  if (info != 0) return false;
  lwork = static_cast<int>(work_query) + 1;
  liwork = iwork_query;
  std::vector<float> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(std::max(liwork, 1)));
  ssyevd_(&jobz, &uplo, &k, a, &k, eigenvalues, work.data(), &lwork, iwork.data(), &liwork, &info);
  return info == 0;
}

}  // namespace recforge
