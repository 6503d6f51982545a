#pragma once
// Device helpers of the batch models (bpr.cu, softmax.cu): Philox draws of interactions and
// negatives (Walker's alias table, as backend::cpu::ItemSampler), the seen-item test of
// reject_seen, and one optimiser step on one stored weight with its optional state.
#include <curand_kernel.h>

#include <cstdint>

#include "models/batch/batch_math.h"
#include "backend/cuda/launch.h"

namespace recforge::kernels {

/// Threads per block of the batch-model kernels (a warp per sample, row or run of ids).
constexpr int kThreads = 256;
/// Warps per block.
constexpr int kWarps = kThreads / 32;

/// Grid-stride loop over [0, n) with 64-bit indices.
#define RF_GRID_STRIDE(e, n)                                                          \
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < (n); \
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)

/// Draws of a BPR negative (one that is not the positive and, with reject_seen, not in the
/// user's row) before the triple is skipped, as on the CPU.
constexpr int kMaxDraws = 16;

/// 64 random bits.
__device__ __forceinline__ uint64_t draw_bits(curandStatePhilox4_32_10_t* st) {
  const uint64_t hi = curand(st);
  const uint64_t lo = curand(st);
  return (hi << 32) | lo;
}

/// Uniform integer in [0, n): the high word of a 64 × 64-bit product (bias at most n / 2^64).
__device__ __forceinline__ int64_t draw_below(curandStatePhilox4_32_10_t* st, uint64_t n) {
  return static_cast<int64_t>(__umul64hi(draw_bits(st), n));
}

/// Uniform float in [0, 1) with 24 random bits.
__device__ __forceinline__ float draw_unit(curandStatePhilox4_32_10_t* st) {
  return static_cast<float>(curand(st) >> 8) * (1.f / 16777216.f);
}

/// One negative: a uniform column j, kept with probability accept[j], else alias[j]
/// (no table: uniform).
__device__ __forceinline__ int32_t draw_item(const backend::cuda::BatchDataView& d,
                                             curandStatePhilox4_32_10_t* st) {
  const int32_t j = static_cast<int32_t>(draw_below(st, static_cast<uint64_t>(d.n_items)));
  if (d.alias == nullptr) return j;
  return draw_unit(st) < d.accept[j] ? j : d.alias[j];
}

/// Whether user u has interacted with item j (binary search of its sorted CSR row).
__device__ __forceinline__ bool is_seen(const backend::cuda::BatchDataView& d, int64_t u,
                                        int32_t j) {
  int64_t lo = d.indptr[u], hi = d.indptr[u + 1];
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    const int32_t c = d.indices[mid];
    if (c == j) return true;
    if (c < j)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

/// Gradient g on weight w[o] with its state m[o], v[o] (either may be null: no state).
__device__ __forceinline__ void apply_one(float* w, float* m, float* v, int64_t o, float g,
                                          const backend::OptimizerStep& s) {
  float wv = w[o];
  float mv = m ? m[o] : 0.f;
  float vv = v ? v[o] : 0.f;
  backend::optimizer_update(wv, g, mv, vv, s);
  w[o] = wv;
  if (m) m[o] = mv;
  if (v) v[o] = vv;
}

}  // namespace recforge::kernels
