// The CPU exact top-k (eval::topk) against the GEMM tiles alone, on random factors of a chosen
// shape: milliseconds per query for batches of queries (a server's batches, an evaluation's
// blocks) and several k. The difference is the selection, the exact scores of the candidates
// and the per-query norms (docs/metrics.md, "Top-k retrieval"), less what topk saves by scoring
// blocks of 1-3 queries with one GEMV per query where the baseline runs a GEMM (so the overhead
// is negative there). The header also gives the time of max_row_norm, which a caller that does
// not pass the items' largest norm pays on every call. Built with the CPU tool:
//   build/cpu/bench-topk [--items 40981] [--dim 256] [--batches 1,16,64,1024] [--ks 20,50,200,1000]
//                        [--seconds 1.5]
// Prints one line per (batch, k): batch, k, GEMM-only ms/query, top-k ms/query, overhead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/blas.h"
#include "core/log.h"
#include "eval/topk.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<int64_t> list_of(const char* s) {
  std::vector<int64_t> v;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) v.push_back(std::atoll(part.c_str()));
  return v;
}

/// Seconds per call of f, repeated for at least `seconds` (after one warm-up call).
template <class F>
double per_call(F f, double seconds) {
  f();
  int reps = 0;
  const auto t0 = Clock::now();
  double s = 0;
  do {
    f();
    ++reps;
    s = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (s < seconds);
  return s / reps;
}

/// The GEMM tiles eval::topk computes for n queries, without the selection: 128 queries × 2048
/// items per tile, the item tiles shared across the threads when there are fewer query blocks
/// than threads, else one block per thread. Every block is a GEMM here, where topk scores
/// blocks of 1-3 queries by GEMVs; and topk uses smaller query blocks when k is in the tens of
/// thousands (its candidate memory bound), which this baseline does not follow.
void gemm_tiles(const float* q, int64_t n, const float* items, int64_t n_items, int d) {
  constexpr int64_t kQb = 128, kTw = 2048;
  const int64_t blocks = (n + kQb - 1) / kQb;
  const int64_t tiles = (n_items + kTw - 1) / kTw;
#ifdef _OPENMP
  const int64_t threads = omp_get_max_threads();
#else
  const int64_t threads = 1;
#endif
  recforge::BlasThreads one(1);
  auto tiles_of = [&](int64_t q0, int64_t nb, int64_t t_begin, int64_t t_end, float* tile) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t t0 = t * kTw, w = std::min(kTw, n_items - t0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nb),
                  static_cast<int>(w), d, 1.0f, q + q0 * d, d, items + t0 * d, d, 0.0f, tile,
                  static_cast<int>(w));
    }
  };
  if (blocks < threads && tiles > 1) {
    const int64_t parts = std::min(threads, tiles);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t q0 = b * kQb, nb = std::min(kQb, n - q0);
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
      for (int64_t p = 0; p < parts; ++p) {
        std::vector<float> tile(static_cast<size_t>(nb * kTw));
        tiles_of(q0, nb, tiles * p / parts, tiles * (p + 1) / parts, tile.data());
      }
    }
    return;
  }
#pragma omp parallel
  {
    std::vector<float> tile(static_cast<size_t>(kQb * kTw));
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b)
      tiles_of(b * kQb, std::min(kQb, n - b * kQb), 0, tiles, tile.data());
  }
}

}  // namespace

int main(int argc, char** argv) {
  recforge::ensure_blas_kernels(argv);
  recforge::set_log_level("warn");
  int64_t n_items = 40981;
  int d = 256;
  std::vector<int64_t> batches = {1, 16, 64, 1024}, ks = {20, 50, 200, 1000};
  double seconds = 1.5;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 == argc) {
      std::fprintf(stderr, "bench-topk: %s needs a value\n", argv[i]);
      return 2;
    }
    if (!std::strcmp(argv[i], "--items")) n_items = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dim")) d = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batches")) batches = list_of(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--ks")) ks = list_of(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench-topk: unknown option %s; expected --items, --dim, --batches, "
                           "--ks or --seconds\n", argv[i]);
      return 2;
    }
  }
  const auto positive = [](const std::vector<int64_t>& v) {
    return !v.empty() && *std::min_element(v.begin(), v.end()) >= 1;
  };
  if (n_items < 1 || d < 1 || !positive(batches) || !positive(ks) || !(seconds > 0)) {
    std::fprintf(stderr, "bench-topk: expected --items >= 1, --dim >= 1, --seconds > 0 and "
                         "lists of batch sizes and ks >= 1\n");
    return 2;
  }
  const int64_t most = *std::max_element(batches.begin(), batches.end());
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<float> items(static_cast<size_t>(n_items * d)), queries(static_cast<size_t>(most * d));
  for (float& x : items) x = normal(gen);
  for (float& x : queries) x = normal(gen);
  const double norm = recforge::eval::max_row_norm(items.data(), n_items, d);
  const double norm_seconds =
      per_call([&] { (void)recforge::eval::max_row_norm(items.data(), n_items, d); }, seconds);
  std::printf("# %lld items × %d factors, normal(0, 0.1); BLAS kernels %s; max_row_norm %.4f ms\n",
              static_cast<long long>(n_items), d, recforge::blas_core_name(), 1e3 * norm_seconds);
  std::printf("%8s %6s %16s %16s %9s\n", "batch", "k", "gemm ms/query", "top-k ms/query",
              "overhead");
  for (int64_t n : batches) {
    const double gemm =
        per_call([&] { gemm_tiles(queries.data(), n, items.data(), n_items, d); }, seconds);
    for (int64_t k : ks) {
      const double topk = per_call(
          [&] {
            recforge::eval::topk(queries.data(), n, items.data(), n_items, d,
                                 static_cast<int>(k), nullptr, {}, nullptr, norm);
          },
          seconds);
      std::printf("%8lld %6lld %16.4f %16.4f %8.1f%%\n", static_cast<long long>(n),
                  static_cast<long long>(k), 1e3 * gemm / n, 1e3 * topk / n,
                  100 * (topk / gemm - 1));
      std::fflush(stdout);
    }
  }
  return 0;
}
