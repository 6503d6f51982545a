// Sampled softmax and CCL on the GPU, the kernels around the three cuBLAS GEMMs of a step
// (models/batch/batch_cuda_trainer.cpp): Philox draws of the batch's positives and shared negatives with
// each candidate's log expected count (logq), the gather of factor rows, the row softmax that
// turns the B × C score matrix into the loss and G = (P − Y)/B in place, and the sparse
// optimiser update. Rows touched more than once in a step (a user twice in the batch, an item
// among the positives and the negatives) are deduplicated by sorting (row id, position) pairs
// with a CUB radix sort: one warp per run of equal ids sums its gradient rows in position order
// and applies the optimiser once, so every touched row gets exactly one update per step, without
// atomics and the same in every run.
#include <cub/device/device_radix_sort.cuh>
#include <curand_kernel.h>

#include "backend/cuda/launch.h"
#include "models/batch/batch_sampling.cuh"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

using backend::OptimizerStep;
using backend::cuda::BatchDataView;
using backend::cuda::PhiloxPlan;


__global__ void sample(BatchDataView d, PhiloxPlan rng, int64_t batch, int negatives,
                       const float* __restrict__ pos_rate, const float* __restrict__ neg_prob,
                       int32_t* __restrict__ users, int32_t* __restrict__ cands,
                       float* __restrict__ log_expected) {
  RF_GRID_STRIDE(k, batch + negatives) {
    curandStatePhilox4_32_10_t st;
    curand_init(rng.seed, rng.step * rng.stride + static_cast<uint64_t>(k), 0, &st);
    int32_t item;
    if (k < batch) {
      const int64_t e = draw_below(&st, static_cast<uint64_t>(d.nnz));
      users[k] = d.row_of[e];
      item = d.indices[e];
    } else {
      item = draw_item(d, &st);
    }
    cands[k] = item;
    if (log_expected) {
      float e = static_cast<float>(negatives) * neg_prob[item];
      if (pos_rate) e += static_cast<float>(batch) * pos_rate[item];
      log_expected[k] = e > 0.f ? logf(e) : 0.f;
    }
  }
}

__global__ void gather(const float* __restrict__ src, int dim, const int32_t* __restrict__ ids,
                       int64_t n, float* __restrict__ dst) {
  RF_GRID_STRIDE(e, n * dim) {
    const int64_t r = e / dim;
    const int c = static_cast<int>(e % dim);
    dst[e] = src[static_cast<int64_t>(ids[r]) * dim + c];
  }
}

// Maximum over a block of kThreads threads; every thread gets it.
__device__ __forceinline__ float block_max(float v, float* scratch) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m = fmaxf(m, scratch[w]);
  __syncthreads();
  return m;
}

// A block per row b of the batch × cands matrix.
__global__ void __launch_bounds__(kThreads)
    softmax_rows(float* __restrict__ s, int64_t batch, int64_t cands,
                 const int32_t* __restrict__ cand, const float* __restrict__ log_expected,
                 bool in_batch, double* loss_sum) {
  __shared__ float scratch[kWarps];
  const float inv_batch = 1.f / static_cast<float>(batch);
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    float* row = s + b * cands;
    const int32_t pos = cand[b];
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < cands; c += kThreads) {
      // Own column b always counts; among the others, the positives of other rows when
      // !in_batch and every accidental hit (the row's positive again) are left out.
      const bool masked = c != b && ((!in_batch && c < batch) || cand[c] == pos);
      const float z = masked ? -INFINITY : row[c] - (log_expected ? log_expected[c] : 0.f);
      row[c] = z;
      mx = fmaxf(mx, z);
    }
    mx = block_max(mx, scratch);  // ends with __syncthreads: row is complete
    const float own = row[b];     // finite: column b is never masked
    float sum = 0.f;
    for (int64_t c = threadIdx.x; c < cands; c += kThreads) sum += expf(row[c] - mx);
    sum = block_sum<kThreads>(sum, scratch);  // its barriers order the reads of own before the writes
    const float inv_sum = 1.f / sum;
    for (int64_t c = threadIdx.x; c < cands; c += kThreads) {
      float g = expf(row[c] - mx) * inv_sum;  // 0 where masked (exp(−inf))
      if (c == b) g -= 1.f;
      row[c] = g * inv_batch;
    }
    if (threadIdx.x == 0)
      atomicAdd(loss_sum, static_cast<double>(mx) + log(static_cast<double>(sum)) -
                              static_cast<double>(own));
  }
}

// CCL: a block per row b of the batch × cands cosine matrix s. Row b's positive scores
// ub_b · vp_b, every candidate other than its positive is a negative. (The rows are unit
// length, so the scores are cosines; with dropout ub_b is the masked row and they are products
// of it, as on the CPU.) Adds row b's loss (1 − cos⁺) + weight · mean over its negatives of
// max(0, cos − margin) to *loss_sum and leaves in s the gradient of the batch's mean loss with
// respect to each negative's score.
__global__ void __launch_bounds__(kThreads)
    ccl_rows(float* __restrict__ s, int64_t batch, int64_t cands, const int32_t* __restrict__ cand,
             const int32_t* __restrict__ positives, const float* __restrict__ ub,
             const float* __restrict__ vp, int dim, float margin, float weight,
             double* loss_sum) {
  __shared__ float scratch[kWarps];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    float* row = s + b * cands;
    const int32_t pos = positives[b];
    float own = 0.f;
    for (int c = threadIdx.x; c < dim; c += kThreads)
      own += ub[b * dim + c] * vp[b * dim + c];
    own = block_sum<kThreads>(own, scratch);
    float kept = 0.f, above = 0.f;
    for (int64_t c = threadIdx.x; c < cands; c += kThreads) {
      if (cand[c] == pos) continue;
      kept += 1.f;
      if (row[c] > margin) above += row[c] - margin;
    }
    kept = block_sum<kThreads>(kept, scratch);
    above = block_sum<kThreads>(above, scratch);
    const float scale = kept > 0.f ? weight / kept / static_cast<float>(batch) : 0.f;
    for (int64_t c = threadIdx.x; c < cands; c += kThreads)
      row[c] = cand[c] != pos && row[c] > margin ? scale : 0.f;
    if (threadIdx.x == 0)
      atomicAdd(loss_sum, 1.0 - static_cast<double>(own) +
                              (kept > 0.f ? static_cast<double>(weight) * above / kept : 0.0));
  }
}

// CCL: the positives' terms of the gradient, d mean-loss / d cos⁺ = g for every row:
// du_b += g · vp_b and dvp_b = g · ub_b; with dropout (mask not null) du_b then goes back
// through the mask, du_b *= mask_b (ub holds the masked vectors).
__global__ void ccl_positive_grads(const float* __restrict__ ub, const float* __restrict__ vp,
                                   const float* __restrict__ mask, int64_t n, float g,
                                   float* __restrict__ du, float* __restrict__ dvp) {
  RF_GRID_STRIDE(e, n) {
    const float d = du[e] + g * vp[e];
    du[e] = mask ? d * mask[e] : d;
    dvp[e] = g * ub[e];
  }
}

// CCL's dropout on the user vector: mask[e] = 0 with probability p, else 1/(1 − p), from a
// Philox stream of its own (the step's seed, mixed, subsequence = the step, offset = e, so no
// draw is shared with the sampler's), and ub[e] *= mask[e].
__global__ void ccl_dropout(PhiloxPlan rng, int64_t n, float p, float keep,
                            float* __restrict__ mask, float* __restrict__ ub) {
  RF_GRID_STRIDE(e, n) {
    curandStatePhilox4_32_10_t st;
    curand_init(rng.seed ^ 0xd1b54a32d192ed03ULL, rng.step, static_cast<uint64_t>(e), &st);
    const float m = curand_uniform(&st) <= p ? 0.f : keep;  // uniform in (0, 1]
    mask[e] = m;
    ub[e] *= m;
  }
}

__global__ void iota(int32_t* __restrict__ p, int64_t n) {
  RF_GRID_STRIDE(e, n) p[e] = static_cast<int32_t>(e);
}

// A warp per sorted position; the first position of each run of equal ids updates that row.
// With `sphere` > 0 the first `sphere` columns are a unit vector (as the CPU's apply_rows): the
// summed gradient projected onto its tangent space (the radial L2 term drops out), the step,
// then those columns rescaled to norm 1. Later columns (the item bias) take a plain L2 step.
__global__ void __launch_bounds__(kThreads)
    apply_rows(float* w, float* m, float* v, int dim, int update_cols,
               const int32_t* __restrict__ ids, const int32_t* __restrict__ pos, int64_t n,
               const float* __restrict__ grad, float reg, int sphere, OptimizerStep s) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / kWarp; k < n;
       k += warps) {
    const int32_t id = ids[k];
    if (k > 0 && ids[k - 1] == id) continue;  // not the head of its run (warp-uniform)
    int64_t end = k + 1;
    while (end < n && ids[end] == id) ++end;
    const int64_t base = static_cast<int64_t>(id) * dim;
    if (sphere > 0) {
      float dot = 0.f;
      for (int c = lane; c < sphere; c += kWarp) {
        float g = 0.f;
        for (int64_t q = k; q < end; ++q) g += grad[static_cast<int64_t>(pos[q]) * dim + c];
        dot += g * w[base + c];
      }
      dot = warp_sum(dot);
      float norm = 0.f;
      for (int c = lane; c < sphere; c += kWarp) {
        float g = -dot * w[base + c];
        for (int64_t q = k; q < end; ++q) g += grad[static_cast<int64_t>(pos[q]) * dim + c];
        if (c < update_cols) apply_one(w, m, v, base + c, g, s);
        norm += w[base + c] * w[base + c];
      }
      norm = warp_sum(norm);
      const float inv = norm > 0.f ? rsqrtf(norm) : 0.f;
      for (int c = lane; c < sphere; c += kWarp) w[base + c] *= inv;
    }
    for (int c = sphere + lane; c < update_cols; c += kWarp) {
      float g = reg * w[base + c];  // L2 once per touched row
      for (int64_t q = k; q < end; ++q) g += grad[static_cast<int64_t>(pos[q]) * dim + c];
      apply_one(w, m, v, base + c, g, s);
    }
  }
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

using kernels::grid_for;

void launch_softmax_sample(const BatchDataView& d, const PhiloxPlan& rng, int64_t batch,
                           int negatives, const float* pos_rate, const float* neg_prob,
                           int32_t* users, int32_t* candidates, float* log_expected,
                           cudaStream_t stream) {
  const int64_t n = batch + negatives;
  if (n <= 0) return;
  kernels::sample<<<grid_for(n, kernels::kThreads), kernels::kThreads, 0, stream>>>(
      d, rng, batch, negatives, pos_rate, neg_prob, users, candidates, log_expected);
  RF_CHECK_LAUNCH();
}

void launch_gather_rows(const float* src, int dim, const int32_t* ids, int64_t n, float* dst,
                        cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  kernels::gather<<<grid_for(n * dim, kernels::kThreads), kernels::kThreads, 0, stream>>>(
      src, dim, ids, n, dst);
  RF_CHECK_LAUNCH();
}

void launch_softmax_rows(float* s, int64_t batch, int64_t cands, const int32_t* candidates,
                         const float* log_expected, bool in_batch, double* loss_sum,
                         cudaStream_t stream) {
  if (batch <= 0) return;
  kernels::softmax_rows<<<grid_for(batch, 1), kernels::kThreads, 0, stream>>>(
      s, batch, cands, candidates, log_expected, in_batch, loss_sum);
  RF_CHECK_LAUNCH();
}

void launch_ccl_rows(float* s, int64_t batch, int64_t cands, const int32_t* candidates,
                     const int32_t* positives, const float* ub, const float* vp, int dim,
                     float margin, float weight, double* loss_sum, cudaStream_t stream) {
  if (batch <= 0) return;
  kernels::ccl_rows<<<grid_for(batch, 1), kernels::kThreads, 0, stream>>>(
      s, batch, cands, candidates, positives, ub, vp, dim, margin, weight, loss_sum);
  RF_CHECK_LAUNCH();
}

void launch_ccl_positive_grads(const float* ub, const float* vp, const float* mask, int64_t batch,
                               int dim, float g, float* du, float* dvp, cudaStream_t stream) {
  const int64_t n = batch * dim;
  if (n <= 0) return;
  kernels::ccl_positive_grads<<<grid_for(n, kernels::kThreads), kernels::kThreads, 0, stream>>>(
      ub, vp, mask, n, g, du, dvp);
  RF_CHECK_LAUNCH();
}

void launch_ccl_dropout(const PhiloxPlan& rng, int64_t batch, int dim, double p, float* mask,
                        float* ub, cudaStream_t stream) {
  const int64_t n = batch * dim;
  if (n <= 0) return;
  kernels::ccl_dropout<<<grid_for(n, kernels::kThreads), kernels::kThreads, 0, stream>>>(
      rng, n, static_cast<float>(p), static_cast<float>(1.0 / (1.0 - p)), mask, ub);
  RF_CHECK_LAUNCH();
}

size_t sort_row_ids_temp_bytes(int64_t n, int end_bit) {
  size_t bytes = 0;
  RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0, end_bit));
  return bytes;
}

void sort_row_ids(void* temp, size_t temp_bytes, const int32_t* ids_in, int32_t* ids_out,
                  const int32_t* pos_in, int32_t* pos_out, int64_t n, int end_bit,
                  cudaStream_t stream) {
  if (n <= 0) return;
  // Row ids are non-negative, so their unsigned bits sort the same way.
  RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(
      temp, temp_bytes, reinterpret_cast<const uint32_t*>(ids_in),
      reinterpret_cast<uint32_t*>(ids_out), pos_in, pos_out, n, 0, end_bit, stream));
  RF_CHECK_LAUNCH();
}

void launch_iota(int32_t* p, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  kernels::iota<<<grid_for(n, kernels::kThreads), kernels::kThreads, 0, stream>>>(p, n);
  RF_CHECK_LAUNCH();
}

void launch_apply_rows(float* w, float* m, float* v, int dim, int update_cols,
                       const int32_t* sorted_ids, const int32_t* sorted_pos, int64_t n,
                       const float* grad, float regularization, int sphere,
                       const OptimizerStep& step, cudaStream_t stream) {
  if (n <= 0 || update_cols <= 0) return;
  kernels::apply_rows<<<grid_for(n, kernels::kWarps), kernels::kThreads, 0, stream>>>(
      w, m, v, dim, update_cols, sorted_ids, sorted_pos, n, grad, regularization, sphere, step);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
