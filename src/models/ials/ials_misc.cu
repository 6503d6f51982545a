// iALS helpers: factor packing (float32 rows ↔ padded storage rows), the weighted float32 copy
// that the Gram matrix is computed from, symmetrising cuBLAS's lower triangle, and the terms
// of the objective, each reduced per block in a fixed order (the host adds the partials).
#include "backend/cuda/launch.h"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

using backend::cuda::kSegmentItems;
using backend::cuda::RowsView;
using backend::cuda::Segments;

constexpr int kThreads = 256;

#define RF_GRID_STRIDE(e, n)                                                          \
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < (n); \
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename T>
__global__ void pack(const float* __restrict__ src, int64_t rows, int k, int kp, T* __restrict__ dst) {
  RF_GRID_STRIDE(e, rows * kp) {
    const int64_t r = e / kp;
    const int c = static_cast<int>(e % kp);
    dst[e] = from_float<T>(c < k ? src[r * k + c] : 0.f);
  }
}

template <typename T>
__global__ void unpack(const T* __restrict__ src, int64_t rows, int k, int kp, float* __restrict__ dst) {
  RF_GRID_STRIDE(e, rows * k) {
    const int64_t r = e / k;
    const int c = static_cast<int>(e % k);
    dst[e] = to_float(src[r * kp + c]);
  }
}

template <typename T>
__global__ void convert_scale(const T* __restrict__ src, int64_t rows, int kp,
                              const float* __restrict__ w, float* __restrict__ dst) {
  RF_GRID_STRIDE(e, rows * kp) {
    const float s = w ? sqrtf(w[e / kp]) : 1.f;
    dst[e] = s * to_float(src[e]);
  }
}

__global__ void symmetrize(float* g, int kp) {
  RF_GRID_STRIDE(e, static_cast<int64_t>(kp) * kp) {
    const int64_t i = e % kp, j = e / kp;  // column-major: element (i, j) at i + j kp
    if (i < j) g[i + j * kp] = g[j + i * kp];
  }
}

// Observed term: Σ alpha·w·(1 − x_u·y_i)², a warp per interaction.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    loss_observed(RowsView rows, Segments seg, const T* __restrict__ x, const T* __restrict__ y,
                  int kp, double alpha, double* partials) {
  __shared__ double scratch[kThreads / kWarp];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  double acc = 0;
  for (int64_t s = seg.seg0 + blockIdx.x; s < seg.seg0 + seg.nseg; s += gridDim.x) {
    const int64_t r = seg.row[s];
    const int64_t begin = seg.begin[s];
    const int64_t row_end = rows.indptr[r + 1];
    const int64_t end = begin + kSegmentItems < row_end ? begin + kSegmentItems : row_end;
    const T* xr = x + r * kp;
    for (int64_t q = begin + warp; q < end; q += kThreads / kWarp) {
      const T* yi = y + static_cast<int64_t>(rows.indices[q - rows.base]) * kp;
      float d = 0.f;
      for (int c = lane; c < kp; c += kWarp) d += to_float(xr[c]) * to_float(yi[c]);
      d = warp_sum(d);
      if (lane == 0) {
        const double err = 1.0 - static_cast<double>(d);
        acc += alpha * rows.values[q - rows.base] * err * err;
      }
    }
  }
  const double total = block_sum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// Regularisation term: Σ λ (n + ν)^e ‖x_r‖², a warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    loss_reg(const T* __restrict__ x, const int64_t* __restrict__ indptr, int64_t rows, int kp,
             double reg, double reg_exp, double reg_offset, double* partials) {
  __shared__ double scratch[kThreads / kWarp];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kThreads / kWarp);
  double acc = 0;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kThreads / kWarp) + warp; r < rows; r += warps) {
    const T* xr = x + r * kp;
    float s = 0.f;
    for (int c = lane; c < kp; c += kWarp) {
      const float v = to_float(xr[c]);
      s += v * v;
    }
    s = warp_sum(s);
    if (lane == 0) {
      const double n = static_cast<double>(indptr[r + 1] - indptr[r]);
      acc += reg * pow(n + reg_offset, reg_exp) * static_cast<double>(s);
    }
  }
  const double total = block_sum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads)
    dot(const float* __restrict__ a, const float* __restrict__ b, int64_t n, double* partials) {
  __shared__ double scratch[kThreads / kWarp];
  double acc = 0;
  RF_GRID_STRIDE(e, n) acc += static_cast<double>(a[e]) * static_cast<double>(b[e]);
  const double total = block_sum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void fill(int32_t* p, int64_t n, int32_t v) {
  RF_GRID_STRIDE(e, n) p[e] = v;
}

template <typename T>
void pack_t(const float* src, int64_t rows, int k, int kp, void* dst, cudaStream_t stream) {
  pack<T><<<grid_for(rows * kp, kThreads), kThreads, 0, stream>>>(src, rows, k, kp,
                                                                  static_cast<T*>(dst));
  RF_CHECK_LAUNCH();
}

template <typename T>
void unpack_t(const void* src, int64_t rows, int k, int kp, float* dst, cudaStream_t stream) {
  unpack<T><<<grid_for(rows * k, kThreads), kThreads, 0, stream>>>(static_cast<const T*>(src),
                                                                   rows, k, kp, dst);
  RF_CHECK_LAUNCH();
}

template <typename T>
void convert_scale_t(const void* src, int64_t rows, int kp, const float* w, float* dst,
                     cudaStream_t stream) {
  convert_scale<T><<<grid_for(rows * kp, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(src), rows, kp, w, dst);
  RF_CHECK_LAUNCH();
}

template <typename T>
void loss_observed_t(const RowsView& rows, const Segments& seg, const void* x, const void* y,
                     int kp, double alpha, double* partials, int blocks, cudaStream_t stream) {
  loss_observed<T><<<blocks, kThreads, 0, stream>>>(rows, seg, static_cast<const T*>(x),
                                                    static_cast<const T*>(y), kp, alpha, partials);
  RF_CHECK_LAUNCH();
}

template <typename T>
void loss_reg_t(const void* x, const int64_t* indptr, int64_t rows, int kp, double reg,
                double reg_exp, double reg_offset, double* partials, int blocks,
                cudaStream_t stream) {
  loss_reg<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), indptr, rows, kp, reg,
                                               reg_exp, reg_offset, partials);
  RF_CHECK_LAUNCH();
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

void launch_pack(Storage st, const float* src, int64_t rows, int k, int kp, void* dst,
                 cudaStream_t stream) {
  if (rows == 0) return;
  RF_DISPATCH_STORAGE(st, kernels::pack_t, src, rows, k, kp, dst, stream);
}

void launch_unpack(Storage st, const void* src, int64_t rows, int k, int kp, float* dst,
                   cudaStream_t stream) {
  if (rows == 0) return;
  RF_DISPATCH_STORAGE(st, kernels::unpack_t, src, rows, k, kp, dst, stream);
}

void launch_convert_scale(Storage st, const void* src, int64_t rows, int kp, const float* w,
                          float* dst, cudaStream_t stream) {
  if (rows == 0) return;
  RF_DISPATCH_STORAGE(st, kernels::convert_scale_t, src, rows, kp, w, dst, stream);
}

void launch_symmetrize(float* g, int kp, cudaStream_t stream) {
  kernels::symmetrize<<<kernels::grid_for(static_cast<int64_t>(kp) * kp, kernels::kThreads),
                        kernels::kThreads, 0, stream>>>(g, kp);
  RF_CHECK_LAUNCH();
}

void launch_loss_observed(Storage st, const RowsView& rows, const Segments& seg, const void* x,
                          const void* y, int kp, double alpha, double* partials, int blocks,
                          cudaStream_t stream) {
  RF_DISPATCH_STORAGE(st, kernels::loss_observed_t, rows, seg, x, y, kp, alpha, partials, blocks,
                      stream);
}

void launch_loss_reg(Storage st, const void* x, const int64_t* indptr, int64_t rows, int kp,
                     double reg, double reg_exp, double reg_offset, double* partials, int blocks,
                     cudaStream_t stream) {
  RF_DISPATCH_STORAGE(st, kernels::loss_reg_t, x, indptr, rows, kp, reg, reg_exp, reg_offset,
                      partials, blocks, stream);
}

void launch_dot(const float* a, const float* b, int64_t n, double* partials, int blocks,
                cudaStream_t stream) {
  kernels::dot<<<blocks, kernels::kThreads, 0, stream>>>(a, b, n, partials);
  RF_CHECK_LAUNCH();
}

void launch_fill(int32_t* p, int64_t n, int32_t v, cudaStream_t stream) {
  if (n == 0) return;
  kernels::fill<<<kernels::grid_for(n, kernels::kThreads), kernels::kThreads, 0, stream>>>(p, n, v);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
