// BPR on the GPU: one fused kernel per batch step. A warp takes one positive at a time (lanes
// over the factor columns): lane 0 draws the interaction and the negatives (cuRAND Philox, one
// subsequence per sample, so the draws do not depend on the launch shape) and broadcasts them;
// a negative equal to the positive (or, with reject_seen, one the user has seen) is redrawn, up
// to 16 draws, after which the triple is skipped as on the CPU. The warp computes x = u·(p − n),
// the loss term and the gradients, and applies the optimiser to the user row and both item rows
// in place. Warps of a step update shared rows without locks (Hogwild, as the CPU threads do);
// the triples of one positive run one after the other.
// Also: the user of every interaction (row_of) and the non-finite check of the factors.
#include <curand_kernel.h>

#include "backend/cuda/launch.h"
#include "models/batch/batch_sampling.cuh"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

using backend::OptimizerStep;
using backend::cuda::BatchDataView;
using backend::cuda::BatchFactorsView;
using backend::cuda::PhiloxPlan;


__global__ void row_of_kernel(const int64_t* __restrict__ indptr, int64_t rows,
                              int32_t* __restrict__ row_of) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / kWarp; r < rows;
       r += warps) {
    const int64_t end = indptr[r + 1];
    for (int64_t e = indptr[r] + lane; e < end; e += kWarp) row_of[e] = static_cast<int32_t>(r);
  }
}

// A negative for the positive (u, i), drawn by lane 0 (whose `st` is the sample's stream) and
// broadcast: not i and, with reject_seen, not in u's row; -1 after kMaxDraws failed draws.
__device__ __forceinline__ int32_t warp_negative(const BatchDataView& d,
                                                 curandStatePhilox4_32_10_t* st, int lane,
                                                 int32_t u, int32_t i, bool reject_seen) {
  int32_t j = -1;
  if (lane == 0) {
    for (int attempt = 0; attempt < kMaxDraws; ++attempt) {
      const int32_t draw = draw_item(d, st);
      if (draw == i || (reject_seen && is_seen(d, u, draw))) continue;
      j = draw;
      break;
    }
  }
  return __shfl_sync(0xffffffffu, j, 0);
}

// a · b over dim columns, lanes over the columns; every lane gets the sum.
__device__ __forceinline__ float warp_dot(const float* a, const float* b, int dim, int lane) {
  float x = 0.f;
  for (int c = lane; c < dim; c += kWarp) x += a[c] * b[c];
  return warp_sum(x);
}

// Factor pointers are not __restrict__: the three rows of a triple are written through the same
// pointers, and other warps of the step write them too (Hogwild).
__global__ void __launch_bounds__(kThreads)
    bpr_step(BatchFactorsView f, BatchDataView d, PhiloxPlan rng, int64_t samples, int negatives,
             int hard_negatives, bool reject_seen, float reg, OptimizerStep s, double* sums) {
  __shared__ double scratch[kWarps];
  const int lane = threadIdx.x % kWarp;
  const int dim = f.dim;
  const int user_cols = f.item_bias ? dim - 1 : dim;  // the users' bias column stays 1
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  double acc = 0, triples = 0;  // lane 0's loss sum and triple count
  for (int64_t smp = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / kWarp;
       smp < samples; smp += warps) {  // warp-uniform loop: every lane takes part in shuffles
    curandStatePhilox4_32_10_t st;
    int32_t u = 0, i = 0;
    if (lane == 0) {
      curand_init(rng.seed, rng.step * rng.stride + static_cast<uint64_t>(smp), 0, &st);
      const int64_t e = draw_below(&st, static_cast<uint64_t>(d.nnz));
      u = d.row_of[e];
      i = d.indices[e];
    }
    u = __shfl_sync(0xffffffffu, u, 0);
    i = __shfl_sync(0xffffffffu, i, 0);
    float* ur = f.users + static_cast<int64_t>(u) * dim;
    float* pr = f.items + static_cast<int64_t>(i) * dim;
    for (int t = 0; t < negatives; ++t) {
      int32_t j = warp_negative(d, &st, lane, u, i, reject_seen);
      if (j < 0) continue;  // 16 draws failed (a user who has seen nearly every item): skipped
      if (hard_negatives > 1) {
        // Dynamic negative sampling: of hard_negatives draws, the one the user scores highest
        // (warp-uniform: every lane takes part in the dot products).
        float best = warp_dot(ur, f.items + static_cast<int64_t>(j) * dim, dim, lane);
        for (int h = 1; h < hard_negatives; ++h) {
          const int32_t other = warp_negative(d, &st, lane, u, i, reject_seen);
          if (other < 0) continue;
          const float score = warp_dot(ur, f.items + static_cast<int64_t>(other) * dim, dim, lane);
          if (score > best) {  // the same on every lane (warp_sum broadcasts)
            best = score;
            j = other;
          }
        }
      }
      float* nr = f.items + static_cast<int64_t>(j) * dim;
      float x = 0.f;
      for (int c = lane; c < dim; c += kWarp) x += ur[c] * (pr[c] - nr[c]);
      x = warp_sum(x);
      if (lane == 0) {
        acc += static_cast<double>(backend::neg_log_sigmoid(x));
        triples += 1;
      }
      const float gx = -backend::sigmoid(-x);  // d(−log σ(x))/dx
      for (int c = lane; c < dim; c += kWarp) {
        const float uc = ur[c], pc = pr[c], nc = nr[c];
        const float gu = gx * (pc - nc) + reg * uc;
        const float gp = gx * uc + reg * pc;
        const float gn = -gx * uc + reg * nc;
        if (c < user_cols) apply_one(f.users, f.user_m, f.user_v, static_cast<int64_t>(u) * dim + c, gu, s);
        apply_one(f.items, f.item_m, f.item_v, static_cast<int64_t>(i) * dim + c, gp, s);
        apply_one(f.items, f.item_m, f.item_v, static_cast<int64_t>(j) * dim + c, gn, s);
      }
    }
  }
  const double total = block_sum<kThreads>(acc, scratch);
  const double count = block_sum<kThreads>(triples, scratch);
  if (threadIdx.x == 0 && count != 0) {
    atomicAdd(sums, total);
    atomicAdd(sums + 1, count);
  }
}

__global__ void count_nonfinite(const float* __restrict__ x, int64_t n, int* flag) {
  RF_GRID_STRIDE(e, n) {
    if (!isfinite(x[e])) *flag = 1;  // every writer stores the same value
  }
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

using kernels::grid_for;

void launch_row_of(const int64_t* indptr, int64_t rows, int32_t* row_of, cudaStream_t stream) {
  if (rows <= 0) return;
  kernels::row_of_kernel<<<grid_for(rows, kernels::kWarps), kernels::kThreads, 0, stream>>>(
      indptr, rows, row_of);
  RF_CHECK_LAUNCH();
}

void launch_bpr_step(const BatchFactorsView& f, const BatchDataView& d, const PhiloxPlan& rng,
                     int64_t samples, int negatives, int hard_negatives, bool reject_seen,
                     float regularization, const OptimizerStep& step, double* sums,
                     cudaStream_t stream) {
  if (samples <= 0 || negatives <= 0 || d.nnz <= 0) return;
  kernels::bpr_step<<<grid_for(samples, kernels::kWarps), kernels::kThreads, 0, stream>>>(
      f, d, rng, samples, negatives, hard_negatives, reject_seen, regularization, step, sums);
  RF_CHECK_LAUNCH();
}

void launch_count_nonfinite(const float* x, int64_t n, int* flag, cudaStream_t stream) {
  if (n <= 0) return;
  kernels::count_nonfinite<<<grid_for(n, kernels::kThreads), kernels::kThreads, 0, stream>>>(
      x, n, flag);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
