// iALS conjugate-gradient kernels: the observed-interaction part of A·v for each segment of a
// row's interactions, and the per-row CG update. With G = α0 Σ c_j y_j y_jᵀ from cuBLAS, row u's
// system is (s_u G + λ_u I + Σ_i w_ui y_i y_iᵀ) x = Σ_i w_ui y_i (models/ials/ials_cpu.h), and
// the host runs, per chunk of rows:
//
//   AX = X·G (cuBLAS)          observed(residual)   update(residual)     r = p = b − A x
//   steps × { AP = P·G (cuBLAS)   observed(step)   update(step) }        x, r, p, rs
//
// Any factor count: padded counts 32, 64, 128 and 256 keep a warp lane's share of a factor row
// in registers (cg_observed_small); above 256 the row is walked in 256-column tiles through
// shared memory (cg_observed_large). Determinism: every sum has a fixed order (no atomics).
#include "backend/cuda/launch.h"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

using backend::cuda::CgBuffers;
using backend::cuda::kSegmentItems;
using backend::cuda::RowsView;
using backend::cuda::Segments;
using backend::cuda::SolveArgs;

constexpr int kCgThreads = 256;
constexpr int kCgWarps = kCgThreads / kWarp;
constexpr int kLargeBatch = 64;  // interactions per phase of cg_observed_large
constexpr float kConverged = 1e-20f;

// The end of segment s (absolute interaction offset).
__device__ __forceinline__ int64_t segment_end(const RowsView& rows, const Segments& seg,
                                               int64_t s) {
  const int64_t e = seg.begin[s] + kSegmentItems;
  const int64_t row_end = rows.indptr[seg.row[s] + 1];
  return e < row_end ? e : row_end;
}

// One block per segment, kp = 32·VPT ≤ 256: each warp takes every kCgWarps-th interaction (two
// at a time, so two factor rows are in flight), holding its lane's VPT values of the row's
// vector v (x or p), of y_i and of its running Σ c_i y_i in registers.
template <typename T, int VPT, bool kResidual>
__global__ void __launch_bounds__(kCgThreads, 4)
    cg_observed_small(RowsView rows, Segments seg, const T* __restrict__ y, CgBuffers b,
                      float alpha) {
  constexpr int kp = VPT * kWarp;
  using Map = LaneMap<T, VPT>;
  __shared__ __align__(16) float s_acc[kCgWarps][kp];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t s = seg.seg0 + blockIdx.x;
  const int64_t r = seg.row[s];
  const int64_t lr = r - rows.row0;
  if (!kResidual && b.rs[lr] < kConverged) return;  // the same for the whole block
  const int64_t begin = seg.begin[s], end = segment_end(rows, seg, s);

  float v[VPT];
  Map::load((kResidual ? b.x : b.p) + lr * kp, lane, v);
  float acc[VPT];
#pragma unroll
  for (int c = 0; c < VPT; ++c) acc[c] = 0.f;

  for (int64_t q = begin + warp; q < end; q += 2 * kCgWarps) {
    const int64_t q2 = q + kCgWarps;
    const int i0 = rows.indices[q - rows.base];
    const float w0 = alpha * rows.values[q - rows.base];
    if (q2 < end) {  // warp-uniform
      const int i1 = rows.indices[q2 - rows.base];
      const float w1 = alpha * rows.values[q2 - rows.base];
      float y0[VPT], y1[VPT];
      Map::load(y + static_cast<int64_t>(i0) * kp, lane, y0);
      Map::load(y + static_cast<int64_t>(i1) * kp, lane, y1);
      float d0 = 0.f, d1 = 0.f;
#pragma unroll
      for (int c = 0; c < VPT; ++c) {
        d0 += y0[c] * v[c];
        d1 += y1[c] * v[c];
      }
      d0 = warp_sum(d0);
      d1 = warp_sum(d1);
      const float c0 = kResidual ? w0 * (1.f - d0) : w0 * d0;
      const float c1 = kResidual ? w1 * (1.f - d1) : w1 * d1;
#pragma unroll
      for (int c = 0; c < VPT; ++c) acc[c] += c0 * y0[c] + c1 * y1[c];
    } else {
      float y0[VPT];
      Map::load(y + static_cast<int64_t>(i0) * kp, lane, y0);
      float d0 = 0.f;
#pragma unroll
      for (int c = 0; c < VPT; ++c) d0 += y0[c] * v[c];
      d0 = warp_sum(d0);
      const float c0 = kResidual ? w0 * (1.f - d0) : w0 * d0;
#pragma unroll
      for (int c = 0; c < VPT; ++c) acc[c] += c0 * y0[c];
    }
  }
  // Warps' partial sums, added in warp order.
#pragma unroll
  for (int j = 0; j < VPT / Map::kVW; ++j)
#pragma unroll
    for (int c = 0; c < Map::kVW; ++c) s_acc[warp][Map::col(j, c, lane)] = acc[j * Map::kVW + c];
  __syncthreads();
  float* out = b.seg_obs + (s - seg.seg0) * kp;
  for (int col = threadIdx.x; col < kp; col += kCgThreads) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kCgWarps; ++w) sum += s_acc[w][col];
    out[col] = sum;
  }
}

// One block per segment, kp a multiple of 256: the row's vector v and the running Σ c_i y_i
// live in shared memory; per batch of interactions, warps compute the coefficients c_i (dot
// products over 256-column tiles), then threads own columns and add Σ c_i y_i[col].
template <typename T, bool kResidual>
__global__ void __launch_bounds__(kCgThreads)
    cg_observed_large(RowsView rows, Segments seg, const T* __restrict__ y, CgBuffers b,
                      float alpha) {
  extern __shared__ __align__(16) float smem[];
  const int kp = b.kp;
  float* v_s = smem;                // kp
  float* obs_s = smem + kp;         // kp
  float* coef = smem + 2 * kp;      // kLargeBatch
  int* item = reinterpret_cast<int*>(coef + kLargeBatch);  // kLargeBatch
  using Map = LaneMap<T, 8>;        // a warp covers 256 columns per step
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t s = seg.seg0 + blockIdx.x;
  const int64_t r = seg.row[s];
  const int64_t lr = r - rows.row0;
  if (!kResidual && b.rs[lr] < kConverged) return;
  const int64_t begin = seg.begin[s], end = segment_end(rows, seg, s);

  const float* v = (kResidual ? b.x : b.p) + lr * kp;
  for (int col = threadIdx.x; col < kp; col += kCgThreads) {
    v_s[col] = v[col];
    obs_s[col] = 0.f;
  }
  __syncthreads();
  for (int64_t q0 = begin; q0 < end; q0 += kLargeBatch) {
    const int nb = static_cast<int>(end - q0 < kLargeBatch ? end - q0 : kLargeBatch);
    for (int j = warp; j < nb; j += kCgWarps) {
      const int64_t q = q0 + j;
      const int i = rows.indices[q - rows.base];
      const float w = alpha * rows.values[q - rows.base];
      const T* yi = y + static_cast<int64_t>(i) * kp;
      float d = 0.f;
      for (int t = 0; t < kp; t += 8 * kWarp) {
        float yv[8], vv[8];
        Map::load(yi + t, lane, yv);
        Map::load(v_s + t, lane, vv);
#pragma unroll
        for (int c = 0; c < 8; ++c) d += yv[c] * vv[c];
      }
      d = warp_sum(d);
      if (lane == 0) {
        coef[j] = kResidual ? w * (1.f - d) : w * d;
        item[j] = i;
      }
    }
    __syncthreads();
    for (int col = threadIdx.x; col < kp; col += kCgThreads) {
      float sum = 0.f;
#pragma unroll 4
      for (int j = 0; j < nb; ++j) sum += coef[j] * to_float(y[static_cast<int64_t>(item[j]) * kp + col]);
      obs_s[col] += sum;
    }
    __syncthreads();
  }
  float* out = b.seg_obs + (s - seg.seg0) * kp;
  for (int col = threadIdx.x; col < kp; col += kCgThreads) out[col] = obs_s[col];
}

// One block per chunk row. Residual: r = p = s·(−G x) − λ x + Σ w (1 − y·x) y, rs = r·r.
// Step: Ap = s·(G p) + λ p + Σ w (y·p) y; α = rs / p·Ap; x += α p; r −= α Ap; β = r·r / rs;
// p = r + β p. As models/ials/ials_cpu.cpp: converged rows (rs < 1e-20) are skipped and a row
// whose p·Ap is not positive stops (rs = 0).
// Only the first k columns are computed: the padding columns of x, r and p stay exactly zero
// (written here in residual mode), so that the GEMMs never meet uninitialised or non-finite
// padding, and p·Ap sees exactly the CPU's columns.
template <bool kResidual>
__global__ void __launch_bounds__(kCgThreads)
    cg_update(RowsView rows, Segments seg, CgBuffers b, SolveArgs a) {
  __shared__ float scratch[kCgWarps];
  const int kp = b.kp, k = b.k;
  const int64_t lr = blockIdx.x;
  const int64_t r = rows.row0 + lr;
  const int64_t n = rows.indptr[r + 1] - rows.indptr[r];
  float* x = b.x + lr * kp;
  float* rr = b.r + lr * kp;
  float* p = b.p + lr * kp;
  float* ap = b.ap + lr * kp;
  if (kResidual && n == 0) {  // no interactions: the optimum is exactly zero
    for (int col = threadIdx.x; col < kp; col += kCgThreads) x[col] = rr[col] = p[col] = 0.f;
    if (threadIdx.x == 0) b.rs[lr] = 0.f;
    return;
  }
  float rs_old = 0.f;
  if (!kResidual) {
    rs_old = b.rs[lr];
    if (rs_old < kConverged) return;
  }
  const float lam = row_lambda(a.reg, a.reg_exp, a.reg_offset, n);
  const float gs = a.row_scale ? a.row_scale[r] : 1.f;
  const int64_t s0 = seg.ptr[r] - seg.seg0, s1 = seg.ptr[r + 1] - seg.seg0;
  if (kResidual)
    for (int col = k + threadIdx.x; col < kp; col += kCgThreads) rr[col] = p[col] = 0.f;
  float local = 0.f;
  for (int col = threadIdx.x; col < k; col += kCgThreads) {
    float obs = 0.f;
    for (int64_t s = s0; s < s1; ++s) obs += b.seg_obs[s * kp + col];
    if (kResidual) {
      const float rv = -gs * ap[col] - lam * x[col] + obs;
      rr[col] = rv;
      p[col] = rv;
      local += rv * rv;
    } else {
      const float apv = gs * ap[col] + lam * p[col] + obs;
      ap[col] = apv;
      local += p[col] * apv;
    }
  }
  const float sum = block_sum<kCgThreads>(local, scratch);
  if (kResidual) {
    if (threadIdx.x == 0) b.rs[lr] = sum;
    return;
  }
  if (!(sum > 0.f)) {
    if (threadIdx.x == 0) b.rs[lr] = 0.f;
    return;
  }
  const float step = rs_old / sum;
  local = 0.f;
  for (int col = threadIdx.x; col < k; col += kCgThreads) {
    x[col] += step * p[col];
    const float rn = rr[col] - step * ap[col];
    rr[col] = rn;
    local += rn * rn;
  }
  const float rs_new = block_sum<kCgThreads>(local, scratch);
  const float beta = rs_new / rs_old;
  for (int col = threadIdx.x; col < k; col += kCgThreads) p[col] = rr[col] + beta * p[col];
  if (threadIdx.x == 0) b.rs[lr] = rs_new;
}

template <typename T>
__global__ void load_rows(const T* __restrict__ x, float* __restrict__ x32, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x32[e] = to_float(x[e]);
}

template <typename T>
__global__ void store_rows(const float* __restrict__ x32, T* __restrict__ x, int64_t n, bool write,
                           int* flag) {
  bool bad = false;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T v = from_float<T>(x32[e]);
    bad |= !isfinite(to_float(v));
    if (write) x[e] = v;
  }
  if (__any_sync(0xffffffffu, bad) && threadIdx.x % kWarp == 0) atomicExch(flag, 1);
}

template <typename T, int VPT, bool kResidual>
void launch_small(const RowsView& rows, const Segments& seg, const void* y, const CgBuffers& b,
                  float alpha, cudaStream_t stream) {
  cg_observed_small<T, VPT, kResidual><<<static_cast<unsigned>(seg.nseg), kCgThreads, 0, stream>>>(
      rows, seg, static_cast<const T*>(y), b, alpha);
  RF_CHECK_LAUNCH();
}

template <typename T, bool kResidual>
void launch_observed_kp(const RowsView& rows, const Segments& seg, const void* y,
                        const CgBuffers& b, float alpha, cudaStream_t stream) {
  switch (b.kp) {
    case 32: return launch_small<T, 1, kResidual>(rows, seg, y, b, alpha, stream);
    case 64: return launch_small<T, 2, kResidual>(rows, seg, y, b, alpha, stream);
    case 128: return launch_small<T, 4, kResidual>(rows, seg, y, b, alpha, stream);
    case 256: return launch_small<T, 8, kResidual>(rows, seg, y, b, alpha, stream);
    default: break;
  }
  RF_ASSERT(b.kp > 256 && b.kp % 256 == 0, "cg_observed: padded factor count must be 32, 64, "
                                           "128, 256 or a multiple of 256");
  const size_t smem = (2 * static_cast<size_t>(b.kp) + 2 * kLargeBatch) * sizeof(float);
  auto kernel = cg_observed_large<T, kResidual>;
  if (smem > 48 * 1024)
    RF_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  kernel<<<static_cast<unsigned>(seg.nseg), kCgThreads, smem, stream>>>(
      rows, seg, static_cast<const T*>(y), b, alpha);
  RF_CHECK_LAUNCH();
}

template <typename T>
void launch_observed_t(bool residual, const RowsView& rows, const Segments& seg, const void* y,
                       const CgBuffers& b, float alpha, cudaStream_t stream) {
  if (residual)
    launch_observed_kp<T, true>(rows, seg, y, b, alpha, stream);
  else
    launch_observed_kp<T, false>(rows, seg, y, b, alpha, stream);
}

template <typename T>
void launch_load_t(const void* x, float* x32, int64_t n, cudaStream_t stream) {
  load_rows<T><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const T*>(x), x32, n);
  RF_CHECK_LAUNCH();
}

template <typename T>
void launch_store_t(const float* x32, void* x, int64_t n, bool write, int* flag,
                    cudaStream_t stream) {
  store_rows<T><<<grid_for(n, 256), 256, 0, stream>>>(x32, static_cast<T*>(x), n, write, flag);
  RF_CHECK_LAUNCH();
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

void launch_cg_observed(Storage st, bool residual, const RowsView& rows, const Segments& seg,
                        const void* y, const CgBuffers& b, float alpha, cudaStream_t stream) {
  if (seg.nseg == 0) return;
  RF_DISPATCH_STORAGE(st, kernels::launch_observed_t, residual, rows, seg, y, b, alpha, stream);
}

void launch_cg_update(bool residual, const RowsView& rows, const Segments& seg, const CgBuffers& b,
                      const SolveArgs& args, cudaStream_t stream) {
  if (rows.nrows == 0) return;
  const unsigned grid = static_cast<unsigned>(rows.nrows);
  if (residual)
    kernels::cg_update<true><<<grid, kernels::kCgThreads, 0, stream>>>(rows, seg, b, args);
  else
    kernels::cg_update<false><<<grid, kernels::kCgThreads, 0, stream>>>(rows, seg, b, args);
  RF_CHECK_LAUNCH();
}

void launch_load_rows(Storage st, const void* x, float* x32, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  RF_DISPATCH_STORAGE(st, kernels::launch_load_t, x, x32, n, stream);
}

void launch_store_rows(Storage st, const float* x32, void* x, int64_t n, bool write, int* flag,
                       cudaStream_t stream) {
  if (n == 0) return;
  RF_DISPATCH_STORAGE(st, kernels::launch_store_t, x32, x, n, write, flag, stream);
}

}  // namespace recforge::backend::cuda
