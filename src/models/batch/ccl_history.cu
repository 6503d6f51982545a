// SimpleX's user-side aggregation on the GPU (CCL with model.history_weight h > 0), the kernels
// around the three cuBLAS GEMMs that models/batch/batch_cuda_trainer.cpp runs with the history
// map W. Row b of a batch scores with u'_b = z_b / ‖z_b‖, z_b = (1 − h)·e_b + h·W·m_b, e_b the
// user's own row and m_b the mean of the item rows of the user's training history, as
// backend::cpu::BatchTrainerCpu::step does; the history items' gradient rows are not copied out
// per item: each history entry points, through its sort position, at its batch row's gradient
// row (scaled by 1/n_b once), so the sort-by-id update of softmax.cu sums them with the
// candidates' and positives' rows and applies one optimiser step per distinct item.
#include <cub/block/block_scan.cuh>

#include "backend/cuda/common.cuh"
#include "backend/cuda/launch.h"
#include "models/batch/batch_sampling.cuh"

namespace recforge::kernels {
namespace {

// off[b] = Σ_{b' < b} n_{users[b']} for b ≤ batch (off[batch] is the total): one block.
__global__ void __launch_bounds__(kThreads)
    history_sizes(const int64_t* __restrict__ indptr, const int32_t* __restrict__ users,
                  int64_t batch, int64_t* __restrict__ off) {
  using Scan = cub::BlockScan<long long, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  long long carry = 0;
  for (int64_t r0 = 0; r0 < batch; r0 += kThreads) {
    const int64_t b = r0 + threadIdx.x;
    const long long n = b < batch ? static_cast<long long>(indptr[users[b] + 1] - indptr[users[b]]) : 0;
    long long before = 0, total = 0;
    Scan(temp).ExclusiveSum(n, before, total);
    if (b < batch) off[b] = carry + before;
    carry += total;
    __syncthreads();  // temp is reused by the next chunk
  }
  if (threadIdx.x == 0) off[batch] = carry;
}

// hm_b = mean of the item rows of users[b]'s history (0 for an empty one); a block per row,
// threads over columns, the entries added in their stored order (the CPU's order per column).
__global__ void __launch_bounds__(kThreads)
    history_means(const float* __restrict__ items, int dim, const int64_t* __restrict__ indptr,
                  const int32_t* __restrict__ indices, const int32_t* __restrict__ users,
                  int64_t batch, float* __restrict__ hm) {
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const int64_t e0 = indptr[users[b]], e1 = indptr[users[b] + 1];
    const float inv_n = e1 > e0 ? 1.f / static_cast<float>(e1 - e0) : 0.f;
    for (int c = threadIdx.x; c < dim; c += kThreads) {
      float s = 0.f;
      for (int64_t e = e0; e < e1; ++e) s += items[static_cast<int64_t>(indices[e]) * dim + c];
      hm[b * dim + c] = s * inv_n;
    }
  }
}

// z_b += (1 − h)·e_b (e_b: the user's own row, in ub), then ub_b = z_b / ‖z_b‖ (0 when z_b = 0)
// and znorm[b] = ‖z_b‖; a block per row.
__global__ void __launch_bounds__(kThreads)
    aggregate(float* __restrict__ z, float* __restrict__ ub, float* __restrict__ znorm,
              int64_t batch, int dim, float h) {
  __shared__ double scratch[kWarps];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    float* zb = z + b * dim;
    float* ubb = ub + b * dim;
    double sq = 0;
    for (int c = threadIdx.x; c < dim; c += kThreads) {
      const float v = zb[c] + (1.f - h) * ubb[c];
      zb[c] = v;
      sq += static_cast<double>(v) * v;
    }
    const float len = static_cast<float>(sqrt(block_sum<kThreads>(sq, scratch)));
    const float inv = len > 0.f ? 1.f / len : 0.f;
    for (int c = threadIdx.x; c < dim; c += kThreads) ubb[c] = zb[c] * inv;
    if (threadIdx.x == 0) znorm[b] = len;
  }
}

// Back through u' = z / ‖z‖: dz = (du − (du·u') u') / ‖z‖, written over z; du becomes the own
// row's share (1 − h)·dz. A block per row.
__global__ void __launch_bounds__(kThreads)
    aggregate_backprop(float* __restrict__ du, float* __restrict__ z,
                       const float* __restrict__ znorm, int64_t batch, int dim, float h) {
  __shared__ double scratch[kWarps];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    float* dub = du + b * dim;
    float* zb = z + b * dim;
    const float inv = znorm[b] > 0.f ? 1.f / znorm[b] : 0.f;
    double dot = 0;
    for (int c = threadIdx.x; c < dim; c += kThreads) dot += static_cast<double>(dub[c]) * zb[c];
    const float radial = static_cast<float>(block_sum<kThreads>(dot, scratch)) * inv;
    for (int c = threadIdx.x; c < dim; c += kThreads) {
      const float dz = (dub[c] - radial * zb[c] * inv) * inv;
      zb[c] = dz;
      dub[c] = (1.f - h) * dz;
    }
  }
}

// Row b's history entries: ids[off[b] + e] = its e-th history item and pos[off[b] + e] =
// first_pos + b (its gradient row, gm row b); gm row b is divided by n_b here, once.
__global__ void __launch_bounds__(kThreads)
    history_entries(const int64_t* __restrict__ indptr, const int32_t* __restrict__ indices,
                    const int32_t* __restrict__ users, int64_t batch,
                    const int64_t* __restrict__ off, int32_t first_pos, float* __restrict__ gm,
                    int dim, int32_t* __restrict__ ids, int32_t* __restrict__ pos) {
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const int64_t e0 = indptr[users[b]], n = indptr[users[b] + 1] - e0;
    if (n == 0) continue;
    const float inv_n = 1.f / static_cast<float>(n);
    for (int c = threadIdx.x; c < dim; c += kThreads) gm[b * dim + c] *= inv_n;
    const int64_t o = off[b];
    for (int64_t e = threadIdx.x; e < n; e += kThreads) {
      ids[o + e] = indices[e0 + e];
      pos[o + e] = first_pos + static_cast<int32_t>(b);
    }
  }
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

using kernels::grid_for;

void launch_ccl_history_sizes(const int64_t* indptr, const int32_t* users, int64_t batch,
                              int64_t* off, cudaStream_t stream) {
  static_assert(sizeof(long long) == sizeof(int64_t), "offsets are 64-bit");
  kernels::history_sizes<<<1, kernels::kThreads, 0, stream>>>(indptr, users, batch, off);
  RF_CHECK_LAUNCH();
}

void launch_ccl_history_means(const float* items, int dim, const int64_t* indptr,
                              const int32_t* indices, const int32_t* users, int64_t batch,
                              float* hm, cudaStream_t stream) {
  if (batch <= 0) return;
  kernels::history_means<<<grid_for(batch, 1), kernels::kThreads, 0, stream>>>(
      items, dim, indptr, indices, users, batch, hm);
  RF_CHECK_LAUNCH();
}

void launch_ccl_aggregate(float* z, float* ub, float* znorm, int64_t batch, int dim, float h,
                          cudaStream_t stream) {
  if (batch <= 0) return;
  kernels::aggregate<<<grid_for(batch, 1), kernels::kThreads, 0, stream>>>(z, ub, znorm, batch,
                                                                          dim, h);
  RF_CHECK_LAUNCH();
}

void launch_ccl_aggregate_backprop(float* du, float* z, const float* znorm, int64_t batch,
                                   int dim, float h, cudaStream_t stream) {
  if (batch <= 0) return;
  kernels::aggregate_backprop<<<grid_for(batch, 1), kernels::kThreads, 0, stream>>>(
      du, z, znorm, batch, dim, h);
  RF_CHECK_LAUNCH();
}

void launch_ccl_history_entries(const int64_t* indptr, const int32_t* indices,
                                const int32_t* users, int64_t batch, const int64_t* off,
                                int32_t first_pos, float* gm, int dim, int32_t* ids, int32_t* pos,
                                cudaStream_t stream) {
  if (batch <= 0) return;
  kernels::history_entries<<<grid_for(batch, 1), kernels::kThreads, 0, stream>>>(
      indptr, indices, users, batch, off, first_pos, gm, dim, ids, pos);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
