// iALS exact row solves: per row u, A = s_u G + λ_u I + Σ_i w_ui y_i y_iᵀ and b = Σ_i w_ui y_i
// are formed, A is factored A = L Lᵀ in place (right-looking), and L Lᵀ x = b is solved by two
// triangular sweeps — models/ials/ials_cpu.cpp's cholesky_row on a GPU block. The matrix lives
// in shared memory for k ≤ kSharedMax, else in a per-block slot of global memory. Rows are taken
// longest first (`order`) so that the longest rows do not finish last.
#include "backend/cuda/launch.h"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

using backend::cuda::RowsView;
using backend::cuda::SolveArgs;

constexpr int kCholThreads = 256;
constexpr int kSharedMax = 90;  // k × k floats ≤ 32 KB

// Interactions whose factor rows are staged in shared memory at a time (≤ 4096 floats).
__host__ __device__ __forceinline__ int batch_items(int k) {
  const int b = 4096 / k;
  return b < 1 ? 1 : (b > 32 ? 32 : b);
}

template <typename T, bool kShared>
__global__ void __launch_bounds__(kCholThreads)
    cholesky_rows(RowsView rows, const int32_t* __restrict__ order, const T* __restrict__ y,
                  const float* __restrict__ g, int kp, int k, SolveArgs a, T* __restrict__ x,
                  float* slots, int* flags) {
  extern __shared__ __align__(16) float smem[];
  __shared__ int s_fail;
  __shared__ float s_piv;
  const int nbatch = batch_items(k);
  const int64_t kk = static_cast<int64_t>(k) * k;
  float* A = kShared ? smem : slots + blockIdx.x * kk;
  float* bv = smem + (kShared ? kk : 0);  // k
  float* ys = bv + k;                     // nbatch × k
  float* ws = ys + nbatch * k;            // nbatch
  const int tid = threadIdx.x;

  for (int64_t t = blockIdx.x; t < rows.nrows; t += gridDim.x) {
    const int64_t lr = order ? order[t] : t;
    const int64_t r = rows.row0 + lr;
    T* xr = x + r * kp;
    const int64_t b0 = rows.indptr[r], b1 = rows.indptr[r + 1];
    if (b1 == b0) {  // no interactions: the optimum is exactly zero
      for (int c = tid; c < kp; c += kCholThreads) xr[c] = from_float<T>(0.f);
      continue;  // the same for the whole block
    }
    const float lam = row_lambda(a.reg, a.reg_exp, a.reg_offset, b1 - b0);
    const float gs = a.row_scale ? a.row_scale[r] : 1.f;
    for (int64_t e = tid; e < kk; e += kCholThreads) {
      const int s = static_cast<int>(e / k), c = static_cast<int>(e % k);
      A[e] = gs * g[static_cast<int64_t>(s) * kp + c] + (s == c ? lam : 0.f);
    }
    for (int c = tid; c < k; c += kCholThreads) bv[c] = 0.f;
    if (tid == 0) s_fail = 0;
    __syncthreads();

    // A += Σ w y yᵀ (lower triangle), b += Σ w y, a batch of interactions at a time.
    for (int64_t q0 = b0; q0 < b1; q0 += nbatch) {
      const int nb = static_cast<int>(b1 - q0 < nbatch ? b1 - q0 : nbatch);
      for (int e = tid; e < nb * k; e += kCholThreads) {
        const int j = e / k, c = e % k;
        const int i = rows.indices[q0 + j - rows.base];
        ys[e] = to_float(y[static_cast<int64_t>(i) * kp + c]);
      }
      for (int j = tid; j < nb; j += kCholThreads) ws[j] = a.alpha * rows.values[q0 + j - rows.base];
      __syncthreads();
      for (int64_t e = tid; e < kk; e += kCholThreads) {
        const int s = static_cast<int>(e / k), c = static_cast<int>(e % k);
        if (c > s) continue;
        float acc = 0.f;
        for (int j = 0; j < nb; ++j) acc += ws[j] * ys[j * k + s] * ys[j * k + c];
        A[e] += acc;
      }
      for (int c = tid; c < k; c += kCholThreads) {
        float acc = 0.f;
        for (int j = 0; j < nb; ++j) acc += ws[j] * ys[j * k + c];
        bv[c] += acc;
      }
      __syncthreads();
    }

    // A = L Lᵀ, L in the lower triangle.
    for (int j = 0; j < k; ++j) {
      if (tid == 0) {
        const float d = A[static_cast<int64_t>(j) * k + j];
        if (!isfinite(d)) {  // non-finite inputs: reported as non-finite factors
          s_fail = 2;
          s_piv = 1.f;
        } else if (!(d > 0.f)) {  // not positive definite
          s_fail = 1;
          s_piv = 1.f;
        } else {
          s_piv = sqrtf(d);
        }
        A[static_cast<int64_t>(j) * k + j] = s_piv;
      }
      __syncthreads();
      if (s_fail) break;  // read after the barrier: the same for the whole block
      const float piv = s_piv;
      for (int i = j + 1 + tid; i < k; i += kCholThreads) A[static_cast<int64_t>(i) * k + j] /= piv;
      __syncthreads();
      const int m = k - j - 1;
      for (int64_t e = tid; e < static_cast<int64_t>(m) * m; e += kCholThreads) {
        const int s = j + 1 + static_cast<int>(e / m), c = j + 1 + static_cast<int>(e % m);
        if (c <= s)
          A[static_cast<int64_t>(s) * k + c] -=
              A[static_cast<int64_t>(s) * k + j] * A[static_cast<int64_t>(c) * k + j];
      }
      __syncthreads();
    }
    if (s_fail) {
      if (tid == 0) atomicExch(&flags[s_fail == 2 ? 0 : 1], 1);
      for (int c = tid; c < kp; c += kCholThreads) xr[c] = from_float<T>(0.f);
      __syncthreads();
      continue;
    }
    // L z = b, then Lᵀ x = z (in bv).
    for (int j = 0; j < k; ++j) {
      if (tid == 0) bv[j] /= A[static_cast<int64_t>(j) * k + j];
      __syncthreads();
      const float z = bv[j];
      for (int i = j + 1 + tid; i < k; i += kCholThreads) bv[i] -= A[static_cast<int64_t>(i) * k + j] * z;
      __syncthreads();
    }
    for (int j = k - 1; j >= 0; --j) {
      if (tid == 0) bv[j] /= A[static_cast<int64_t>(j) * k + j];
      __syncthreads();
      const float v = bv[j];
      for (int i = tid; i < j; i += kCholThreads) bv[i] -= A[static_cast<int64_t>(j) * k + i] * v;
      __syncthreads();
    }
    bool bad = false;
    for (int c = tid; c < kp; c += kCholThreads) {
      const T v = from_float<T>(c < k ? bv[c] : 0.f);
      bad |= !isfinite(to_float(v));
      xr[c] = v;
    }
    if (bad) atomicExch(&flags[0], 1);
    __syncthreads();  // bv, ys, A and s_fail are reused by the next row
  }
}

template <typename T>
void launch_cholesky_t(const RowsView& rows, const int32_t* order, const void* y, const float* g,
                       int kp, int k, const SolveArgs& args, void* x, float* slots, int nslots,
                       int* flags, cudaStream_t stream) {
  const bool shared = k <= kSharedMax;
  const int nb = batch_items(k);
  const size_t smem =
      ((shared ? static_cast<size_t>(k) * k : 0) + k + static_cast<size_t>(nb) * k + nb) *
      sizeof(float);
  RF_ASSERT(smem <= 48 * 1024, "cholesky: shared memory above 48 KB");
  RF_ASSERT(shared || slots != nullptr, "cholesky: no global slots for a large matrix");
  const unsigned grid = static_cast<unsigned>(nslots);
  if (shared)
    cholesky_rows<T, true><<<grid, kCholThreads, smem, stream>>>(
        rows, order, static_cast<const T*>(y), g, kp, k, args, static_cast<T*>(x), slots, flags);
  else
    cholesky_rows<T, false><<<grid, kCholThreads, smem, stream>>>(
        rows, order, static_cast<const T*>(y), g, kp, k, args, static_cast<T*>(x), slots, flags);
  RF_CHECK_LAUNCH();
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

int64_t cholesky_slot_floats(int k) {
  return k <= kernels::kSharedMax ? 0 : static_cast<int64_t>(k) * k;
}

void launch_cholesky(Storage st, const RowsView& rows, const int32_t* order, const void* y,
                     const float* g, int kp, int k, const SolveArgs& args, void* x, float* slots,
                     int nslots, int* flags, cudaStream_t stream) {
  if (rows.nrows == 0) return;
  RF_ASSERT(nslots >= 1, "cholesky: at least one block");
  RF_DISPATCH_STORAGE(st, kernels::launch_cholesky_t, rows, order, y, g, kp, k, args, x, slots,
                      nslots, flags, stream);
}

}  // namespace recforge::backend::cuda
