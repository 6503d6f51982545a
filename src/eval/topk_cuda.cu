// Exact top-k selection fused after each GEMM tile of scores (queries × items).
//
// A (score, item) pair is packed into a 64-bit key that orders like the CPU's ranking (higher
// score first, then lower item): high word = ~order(score), low word = item, so a SMALLER key
// ranks HIGHER. NaN counts as -inf and -0 as +0, as in eval::topk.
//
// Per query, a block scans the tile's scores, skipping masked items (a shared-memory bitmap of
// the query's excluded items in the tile), and appends to a shared-memory buffer every key below
// the query's threshold. When the buffer fills (and at the end of the tile) it is flushed: while
// fewer than k keys are kept they are appended to the kept list in global memory; otherwise the
// buffer and the kept list are bitonic-sorted together, the best k are kept and the k-th key
// becomes the threshold. Tiles are visited in increasing item order and the buffer is flushed
// between chunks of increasing items, so a later item can only enter with a strictly better
// score — the CPU's tie rule.
#include "backend/cuda/launch.h"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

using backend::cuda::kSelectChunk;
using backend::cuda::kSelectThreads;
using backend::cuda::MaskView;
using backend::cuda::SelectState;

constexpr uint64_t kNoKey = ~uint64_t{0};

__device__ __forceinline__ uint32_t float_order(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float order_float(uint32_t o) {
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

__device__ __forceinline__ uint64_t make_key(float s, int32_t item) {
  if (isnan(s)) s = -INFINITY;
  if ((__float_as_uint(s) & 0x7fffffffu) == 0) s = 0.f;  // -0 ranks as +0
  return (static_cast<uint64_t>(~float_order(s)) << 32) | static_cast<uint32_t>(item);
}

__device__ __forceinline__ float key_score(uint64_t key) {
  return order_float(~static_cast<uint32_t>(key >> 32));
}

__device__ __forceinline__ int32_t key_item(uint64_t key) {
  return static_cast<int32_t>(key & 0xffffffffu);
}

__host__ __device__ __forceinline__ int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Ascending bitonic sort of a[0 .. n), n a power of two, by the whole block.
__device__ void bitonic_sort(uint64_t* a, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
        const int lo = 2 * stride * (i / stride) + (i % stride);
        const int hi = lo + stride;
        const bool ascending = (lo & size) == 0;
        const uint64_t x = a[lo], y = a[hi];
        if ((x > y) == ascending) {
          a[lo] = y;
          a[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

// Candidate-buffer capacity (a power of two >= 2k + one chunk, so a merge of the kept list and
// a full buffer fits).
__host__ __device__ __forceinline__ int select_capacity(int k) {
  return next_pow2(2 * k + kSelectChunk);
}

struct Shared {
  int n;           // keys in the buffer
  int count;       // keys kept in global memory
  uint64_t thr;    // only keys below it can enter
  int64_t lo, hi;  // the query's masked items in the tile: mask indices [lo, hi)
};

// Flushes the buffer (see the file comment). All threads call it.
__device__ void flush(uint64_t* cand, int cap, Shared& sh, uint64_t* kept, int k) {
  __syncthreads();
  const int n = sh.n, count = sh.count;
  if (count + n <= k) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) kept[count + i] = cand[i];
    __syncthreads();
    if (threadIdx.x == 0) {
      sh.count = count + n;
      sh.n = 0;
    }
    __syncthreads();
    return;
  }
  for (int i = threadIdx.x; i < count; i += blockDim.x) cand[n + i] = kept[i];
  const int total = n + count;
  const int p = next_pow2(total);  // <= cap
  for (int i = total + threadIdx.x; i < p; i += blockDim.x) cand[i] = kNoKey;
  __syncthreads();
  bitonic_sort(cand, p);
  for (int i = threadIdx.x; i < k; i += blockDim.x) kept[i] = cand[i];
  __syncthreads();
  if (threadIdx.x == 0) {
    sh.count = k;
    sh.thr = cand[k - 1];
    sh.n = 0;
  }
  __syncthreads();
  (void)cap;
}

__global__ void __launch_bounds__(kSelectThreads)
    topk_select(const float* __restrict__ scores, int64_t ld, int64_t q0, int64_t t0, int w,
                int tile, int k, SelectState state, MaskView mask) {
  extern __shared__ __align__(16) uint64_t cand[];
  const int cap = select_capacity(k);
  uint32_t* bitmap = reinterpret_cast<uint32_t*>(cand + cap);  // tile / 32 words
  __shared__ Shared sh;
  const int64_t qi = blockIdx.x;  // query within the batch
  uint64_t* kept = state.kept + qi * k;
  const bool masked = mask.indptr != nullptr;
  if (threadIdx.x == 0) {
    sh.n = 0;
    sh.count = state.count[qi];
    sh.thr = state.threshold[qi];
    sh.lo = sh.hi = 0;
    if (masked) {
      const int64_t q = q0 + qi;
      const int64_t row = mask.rows ? mask.rows[q] : q;
      // Binary searches for the row's (sorted) items in [t0, t0 + w).
      int64_t lo = mask.indptr[row], hi = mask.indptr[row + 1];
      int64_t a = lo, b = hi;
      while (a < b) {
        const int64_t m = a + (b - a) / 2;
        if (mask.indices[m] < t0) a = m + 1; else b = m;
      }
      sh.lo = a;
      b = hi;
      while (a < b) {
        const int64_t m = a + (b - a) / 2;
        if (mask.indices[m] < t0 + w) a = m + 1; else b = m;
      }
      sh.hi = a;
    }
  }
  if (masked)
    for (int i = threadIdx.x; i < (tile + 31) / 32; i += blockDim.x) bitmap[i] = 0u;
  __syncthreads();
  if (masked) {
    for (int64_t e = sh.lo + threadIdx.x; e < sh.hi; e += blockDim.x) {
      const int j = static_cast<int>(mask.indices[e] - t0);
      atomicOr(&bitmap[j >> 5], 1u << (j & 31));
    }
    __syncthreads();
  }
  const float* row = scores + qi * ld;
  for (int base = 0; base < w; base += kSelectChunk) {
    // Every thread reads the count before any thread appends again, so all take the same branch.
    const int n_now = sh.n;
    __syncthreads();
    if (n_now + kSelectChunk > cap - k) flush(cand, cap, sh, kept, k);
    const uint64_t thr = sh.thr;  // changed only by flush, which ends with a barrier
    const int j0 = base + 4 * threadIdx.x;
    float v[4];
    if (j0 + 3 < w) {
      const float4 f = *reinterpret_cast<const float4*>(row + j0);
      v[0] = f.x;
      v[1] = f.y;
      v[2] = f.z;
      v[3] = f.w;
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c) v[c] = j0 + c < w ? row[j0 + c] : 0.f;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int j = j0 + c;
      if (j >= w) break;
      if (masked && ((bitmap[j >> 5] >> (j & 31)) & 1u)) continue;
      const uint64_t key = make_key(v[c], static_cast<int32_t>(t0 + j));
      if (key < thr) cand[atomicAdd(&sh.n, 1)] = key;
    }
    __syncthreads();
  }
  // sh.n is read after the loop's last barrier and nobody appends any more: a uniform branch.
  if (sh.n > 0) flush(cand, cap, sh, kept, k);
  if (threadIdx.x == 0) {
    state.count[qi] = sh.count;
    state.threshold[qi] = sh.thr;
  }
}

__global__ void __launch_bounds__(kSelectThreads)
    topk_finalize(SelectState state, int k, int32_t* __restrict__ items, float* __restrict__ scores) {
  extern __shared__ __align__(16) uint64_t buf[];
  const int64_t qi = blockIdx.x;
  const int count = state.count[qi];
  const uint64_t* kept = state.kept + qi * k;
  const int p = next_pow2(count < 1 ? 1 : count);
  for (int i = threadIdx.x; i < p; i += blockDim.x) buf[i] = i < count ? kept[i] : kNoKey;
  __syncthreads();
  bitonic_sort(buf, p);
  int32_t* out_items = items + qi * k;
  float* out_scores = scores + qi * k;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    if (j < count) {
      out_items[j] = key_item(buf[j]);
      out_scores[j] = key_score(buf[j]);
    } else {
      out_items[j] = -1;
      out_scores[j] = -INFINITY;
    }
  }
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

size_t select_smem_bytes(int k, int tile) {
  return static_cast<size_t>(kernels::select_capacity(k)) * sizeof(uint64_t) +
         static_cast<size_t>((tile + 31) / 32) * sizeof(uint32_t);
}

void launch_topk_select(const float* scores, int64_t ld, int64_t nq, int64_t q0, int64_t t0,
                        int w, int tile, int k, const SelectState& state, const MaskView& mask,
                        cudaStream_t stream) {
  if (nq == 0 || w == 0) return;
  RF_ASSERT(ld % 4 == 0 && w <= tile, "topk_select: tile layout");
  const size_t smem = select_smem_bytes(k, tile);
  if (smem > 48 * 1024)
    RF_CHECK_CUDA(cudaFuncSetAttribute(kernels::topk_select,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  kernels::topk_select<<<static_cast<unsigned>(nq), kSelectThreads, smem, stream>>>(
      scores, ld, q0, t0, w, tile, k, state, mask);
  RF_CHECK_LAUNCH();
}

void launch_topk_finalize(const SelectState& state, int64_t nq, int k, int32_t* items,
                          float* scores, cudaStream_t stream) {
  if (nq == 0) return;
  const size_t smem = static_cast<size_t>(kernels::next_pow2(k)) * sizeof(uint64_t);
  if (smem > 48 * 1024)
    RF_CHECK_CUDA(cudaFuncSetAttribute(kernels::topk_finalize,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  kernels::topk_finalize<<<static_cast<unsigned>(nq), kSelectThreads, smem, stream>>>(
      state, k, items, scores);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
