#pragma once
// Device helpers shared by the kernels: storage-type conversion, vector loads of a warp lane's
// share of a factor row, warp and block reductions, and the dispatch from the host-side Storage
// enum to the device types.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "models/ials/ials_cuda_solver.h"

namespace recforge::kernels {

constexpr int kWarp = 32;

// ---- storage types -------------------------------------------------------------------------

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Elements per 16-byte vector load of T, capped by the values a lane holds.
template <typename T, int kValues>
constexpr int vector_width() {
  constexpr int w = 16 / static_cast<int>(sizeof(T));
  return kValues < w ? kValues : w;
}

// Loads N consecutive elements at p (aligned to N * sizeof(T) bytes) as floats.
template <int N>
__device__ __forceinline__ void load_n(const float* __restrict__ p, float* out) {
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const float4 v = reinterpret_cast<const float4*>(p)[i];
      out[4 * i] = v.x;
      out[4 * i + 1] = v.y;
      out[4 * i + 2] = v.z;
      out[4 * i + 3] = v.w;
    }
  } else if constexpr (N == 2) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    out[0] = v.x;
    out[1] = v.y;
  } else {
    static_assert(N == 1, "load_n<float>: N must be 1, 2 or a multiple of 4");
    out[0] = *p;
  }
}

// Two 16-bit values packed in a 32-bit word (low half first) as floats; register-only bit
// operations, so vector loads of 16-bit data never go through local memory.
__device__ __forceinline__ void unpack_word(uint32_t w, __half*, float* out) {
  out[0] = __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
  out[1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}
__device__ __forceinline__ void unpack_word(uint32_t w, __nv_bfloat16*, float* out) {
  out[0] = __uint_as_float(w << 16);  // bfloat16 is the high half of a float32
  out[1] = __uint_as_float(w & 0xffff0000u);
}

// 16-bit types (H = __half or __nv_bfloat16): N in {1, 2, 4, 8}, loaded as one vector of
// N * 2 bytes.
template <int N, typename H>
__device__ __forceinline__ void load_half_n(const H* __restrict__ p, float* out) {
  if constexpr (N == 8) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    unpack_word(v.x, static_cast<H*>(nullptr), out);
    unpack_word(v.y, static_cast<H*>(nullptr), out + 2);
    unpack_word(v.z, static_cast<H*>(nullptr), out + 4);
    unpack_word(v.w, static_cast<H*>(nullptr), out + 6);
  } else if constexpr (N == 4) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    unpack_word(v.x, static_cast<H*>(nullptr), out);
    unpack_word(v.y, static_cast<H*>(nullptr), out + 2);
  } else if constexpr (N == 2) {
    unpack_word(*reinterpret_cast<const uint32_t*>(p), static_cast<H*>(nullptr), out);
  } else {
    static_assert(N == 1, "load_half_n: N must be 1, 2, 4 or 8");
    out[0] = to_float(*p);
  }
}

template <int N>
__device__ __forceinline__ void load_n(const __half* __restrict__ p, float* out) {
  load_half_n<N, __half>(p, out);
}

template <int N>
__device__ __forceinline__ void load_n(const __nv_bfloat16* __restrict__ p, float* out) {
  load_half_n<N, __nv_bfloat16>(p, out);
}

// A warp lane's share of a row of kValues * 32 columns: lane l holds, for j < kValues / VW,
// columns j * 32 * VW + l * VW + c (c < VW), VW = vector_width<T, kValues>(). Every lane of a
// warp loads VW * sizeof(T) consecutive bytes per step, so a warp reads whole 128-byte lines.
// Factor rows and workspace rows use the same mapping (VW chosen by the factor storage type).
template <typename T, int kValues>
struct LaneMap {
  static constexpr int kVW = vector_width<T, kValues>();
  static_assert(kValues % kVW == 0, "LaneMap: kValues must be a multiple of the vector width");
  __device__ __forceinline__ static int col(int j, int c, int lane) {
    return j * kWarp * kVW + lane * kVW + c;
  }
  // Loads the lane's values of `row` (any element type S, mapping of T).
  template <typename S>
  __device__ __forceinline__ static void load(const S* __restrict__ row, int lane,
                                              float (&v)[kValues]) {
#pragma unroll
    for (int j = 0; j < kValues / kVW; ++j) load_n<kVW>(row + col(j, 0, lane), v + j * kVW);
  }
};

// ---- reductions ----------------------------------------------------------------------------

// Sum over the warp; every lane gets the same value (xor butterfly: a + b == b + a exactly).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ long long warp_sum(long long v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over a block of kThreads threads; every thread gets the same value, in a fixed order
// (deterministic). `scratch` holds kThreads / 32 values; all threads must call it.
template <int kThreads, typename V>
__device__ __forceinline__ V block_sum(V v, V* scratch) {
  v = warp_sum(v);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V s = 0;
#pragma unroll
  for (int w = 0; w < kThreads / kWarp; ++w) s += scratch[w];
  __syncthreads();  // scratch may be reused right after
  return s;
}

// λ (n + ν)^e of a row with n interactions, rounded to float as the CPU solver does.
__device__ __forceinline__ float row_lambda(double reg, double reg_exp, double reg_offset, int64_t n) {
  return static_cast<float>(reg * pow(static_cast<double>(n) + reg_offset, reg_exp));
}

// Blocks for a grid-stride loop over n items with `threads` threads each.
inline unsigned int grid_for(int64_t n, int threads, int64_t max_blocks = 65536) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned int>(b);
}

}  // namespace recforge::kernels

// Calls FN<T>(args...) with T the device type of a backend::cuda::Storage value.
#define RF_DISPATCH_STORAGE(storage, FN, ...)                                       \
  do {                                                                              \
    switch (storage) {                                                              \
      case ::recforge::backend::cuda::Storage::kFloat32:                            \
        FN<float>(__VA_ARGS__);                                                     \
        break;                                                                      \
      case ::recforge::backend::cuda::Storage::kFloat16:                            \
        FN<__half>(__VA_ARGS__);                                                    \
        break;                                                                      \
      case ::recforge::backend::cuda::Storage::kBFloat16:                           \
        FN<__nv_bfloat16>(__VA_ARGS__);                                             \
        break;                                                                      \
    }                                                                               \
  } while (0)
