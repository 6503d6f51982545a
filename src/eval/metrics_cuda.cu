// Ranking metrics from top-k lists on the GPU, as eval::compute_metrics: per query (one thread
// each) the hits of its list against its sorted truth row give recall, precision, NDCG, MAP and
// hit rate at every cutoff, written to a per-query row; column sums over queries run in a fixed
// order (deterministic), and coverage counts the items whose best rank is below each cutoff.
#include "backend/cuda/launch.h"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    metrics_users(const int32_t* __restrict__ lists, int64_t nq, int k,
                  const int64_t* __restrict__ truth_indptr, const int32_t* __restrict__ truth_indices,
                  const int32_t* __restrict__ truth_rows, int nk, const int* __restrict__ ks_sorted,
                  int max_k, int32_t* __restrict__ first_rank, double* __restrict__ values) {
  const int ncols = 1 + 5 * nk;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < nq;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double* out = values + q * ncols;
    const int64_t row = truth_rows ? truth_rows[q] : q;
    const int32_t* tb = truth_indices + truth_indptr[row];
    const int32_t* te = truth_indices + truth_indptr[row + 1];
    int64_t n_truth = 0;  // distinct items of the sorted row
    for (const int32_t* p = tb; p != te; ++p)
      if (p == tb || *p != p[-1]) ++n_truth;
    if (n_truth == 0) {
      for (int c = 0; c < ncols; ++c) out[c] = 0.0;
      continue;
    }
    out[0] = 1.0;
    const int32_t* list = lists + q * k;
    int64_t hits = 0;
    double dcg = 0, idcg = 0, ap = 0;
    int next = 0;  // next cutoff (ascending)
    for (int j = 0; j < max_k; ++j) {
      const int32_t item = list[j];
      const double disc = 1.0 / log2(j + 2.0);
      if (j < n_truth) idcg += disc;
      if (item >= 0) {
        atomicMin(&first_rank[item], j);
        // Lower bound in the sorted truth row.
        const int32_t* b = tb;
        const int32_t* e = te;
        while (b < e) {
          const int32_t* m = b + (e - b) / 2;
          if (*m < item)
            b = m + 1;
          else
            e = m;
        }
        if (b != te && *b == item) {
          ++hits;
          dcg += disc;
          ap += static_cast<double>(hits) / (j + 1);
        }
      }
      while (next < nk && ks_sorted[next] == j + 1) {
        const int K = ks_sorted[next];
        double* o = out + 1 + 5 * next;
        o[0] = static_cast<double>(hits) / static_cast<double>(n_truth);
        o[1] = static_cast<double>(hits) / K;
        o[2] = dcg / idcg;
        o[3] = ap / static_cast<double>(n_truth < K ? n_truth : K);
        o[4] = hits > 0 ? 1.0 : 0.0;
        ++next;
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    column_sums(const double* __restrict__ values, int64_t n, int ncols, double* partials) {
  __shared__ double scratch[kThreads / kWarp];
  const int c = blockIdx.y;
  double acc = 0;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; q < n;
       q += static_cast<int64_t>(gridDim.x) * kThreads)
    acc += values[q * ncols + c];
  const double total = block_sum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) partials[static_cast<int64_t>(c) * gridDim.x + blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads)
    coverage(const int32_t* __restrict__ first_rank, int64_t n_items, const int* __restrict__ ks,
             long long* partials) {
  __shared__ long long scratch[kThreads / kWarp];
  const int c = blockIdx.y;
  const int K = ks[c];
  long long acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < n_items;
       i += static_cast<int64_t>(gridDim.x) * kThreads)
    acc += first_rank[i] < K ? 1 : 0;
  const long long total = block_sum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) partials[static_cast<int64_t>(c) * gridDim.x + blockIdx.x] = total;
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

void launch_metrics_users(const int32_t* lists, int64_t nq, int k, const int64_t* truth_indptr,
                          const int32_t* truth_indices, const int32_t* truth_rows, int nk,
                          const int* ks_sorted, int max_k, int32_t* first_rank, double* values,
                          cudaStream_t stream) {
  if (nq == 0) return;
  kernels::metrics_users<<<kernels::grid_for(nq, kernels::kThreads), kernels::kThreads, 0,
                           stream>>>(lists, nq, k, truth_indptr, truth_indices, truth_rows, nk,
                                     ks_sorted, max_k, first_rank, values);
  RF_CHECK_LAUNCH();
}

void launch_column_sums(const double* values, int64_t n, int ncols, double* partials, int blocks,
                        cudaStream_t stream) {
  kernels::column_sums<<<dim3(blocks, ncols), kernels::kThreads, 0, stream>>>(values, n, ncols,
                                                                             partials);
  RF_CHECK_LAUNCH();
}

void launch_coverage(const int32_t* first_rank, int64_t n_items, int nk, const int* ks,
                     long long* partials, int blocks, cudaStream_t stream) {
  kernels::coverage<<<dim3(blocks, nk), kernels::kThreads, 0, stream>>>(first_rank, n_items, ks,
                                                                       partials);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
