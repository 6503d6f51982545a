// CSR construction on the GPU: each interaction becomes a 64-bit key (row << 32 | column), a
// stable CUB radix sort orders the keys with their values, and the row offsets are read off the
// sorted keys (every offset written exactly once, no atomics). The transpose sorts keys
// (column << 32 | row) built from a CSR. 64-bit offsets throughout.
#include <cub/device/device_radix_sort.cuh>
#include <cub/version.cuh>

// sort_pairs passes nnz as int64_t: DeviceRadixSort takes 64-bit item counts since CUB 1.16
// (NVIDIA/cub#340); an older CUB took `int num_items` and would sort only part of a data set of
// 2^31 interactions or more.
static_assert(CUB_VERSION >= 101600,
              "recforge needs CUB 1.16 or later (a CUDA toolkit from 2022 on) for 64-bit sort sizes");

#include "backend/cuda/launch.h"
#include "backend/cuda/common.cuh"

namespace recforge::kernels {
namespace {

constexpr int kThreads = 256;

// The row r with indptr[r] <= e < indptr[r + 1] (the last such r when rows are empty).
__device__ __forceinline__ int64_t row_of(const int64_t* __restrict__ indptr, int64_t rows,
                                          int64_t e) {
  int64_t lo = 0, hi = rows - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (indptr[mid] <= e)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

__global__ void transpose_keys(const int64_t* __restrict__ indptr, int64_t rows,
                               const int32_t* __restrict__ indices, int64_t nnz,
                               uint64_t* __restrict__ keys) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < nnz;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = static_cast<uint64_t>(row_of(indptr, rows, e));
    keys[e] = (static_cast<uint64_t>(static_cast<uint32_t>(indices[e])) << 32) | r;
  }
}

__global__ void coo_keys(const int32_t* __restrict__ row, const int32_t* __restrict__ col,
                         int64_t nnz, uint64_t* __restrict__ keys) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < nnz;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    keys[e] = (static_cast<uint64_t>(static_cast<uint32_t>(row[e])) << 32) |
              static_cast<uint32_t>(col[e]);
}

// Position e in [0, nnz]: indptr[r] = e for every row r in (row(e − 1), row(e)], with row(−1) = −1
// and row(nnz) = rows; so each of the rows + 1 offsets is written once.
__global__ void csr_from_sorted(const uint64_t* __restrict__ keys, int64_t nnz, int64_t rows,
                                int64_t* __restrict__ indptr, int32_t* __restrict__ indices) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e <= nnz;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t cur = e < nnz ? static_cast<int64_t>(keys[e] >> 32) : rows;
    const int64_t prev = e > 0 ? static_cast<int64_t>(keys[e - 1] >> 32) : -1;
    for (int64_t r = prev + 1; r <= cur; ++r) indptr[r] = e;
    if (e < nnz) indices[e] = static_cast<int32_t>(keys[e] & 0xffffffffu);
  }
}

}  // namespace
}  // namespace recforge::kernels

namespace recforge::backend::cuda {

void launch_transpose_keys(const int64_t* indptr, int64_t rows, const int32_t* indices,
                           int64_t nnz, uint64_t* keys, cudaStream_t stream) {
  if (nnz == 0) return;
  kernels::transpose_keys<<<kernels::grid_for(nnz, kernels::kThreads), kernels::kThreads, 0,
                            stream>>>(indptr, rows, indices, nnz, keys);
  RF_CHECK_LAUNCH();
}

void launch_coo_keys(const int32_t* row, const int32_t* col, int64_t nnz, uint64_t* keys,
                     cudaStream_t stream) {
  if (nnz == 0) return;
  kernels::coo_keys<<<kernels::grid_for(nnz, kernels::kThreads), kernels::kThreads, 0, stream>>>(
      row, col, nnz, keys);
  RF_CHECK_LAUNCH();
}

size_t sort_pairs_temp_bytes(int64_t nnz, int end_bit) {
  size_t bytes = 0;
  RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint64_t*>(nullptr),
                                                static_cast<uint64_t*>(nullptr),
                                                static_cast<const float*>(nullptr),
                                                static_cast<float*>(nullptr), nnz, 0, end_bit));
  return bytes;
}

void sort_pairs(void* temp, size_t temp_bytes, const uint64_t* keys_in, uint64_t* keys_out,
                const float* values_in, float* values_out, int64_t nnz, int end_bit,
                cudaStream_t stream) {
  if (nnz == 0) return;
  RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, values_in,
                                                values_out, nnz, 0, end_bit, stream));
  RF_CHECK_LAUNCH();
}

void launch_csr_from_sorted_keys(const uint64_t* keys, int64_t nnz, int64_t rows, int64_t* indptr,
                                 int32_t* indices, cudaStream_t stream) {
  kernels::csr_from_sorted<<<kernels::grid_for(nnz + 1, kernels::kThreads), kernels::kThreads, 0,
                             stream>>>(keys, nnz, rows, indptr, indices);
  RF_CHECK_LAUNCH();
}

}  // namespace recforge::backend::cuda
