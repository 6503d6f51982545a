#pragma once
/// @file csr_cuda.h
/// CSR construction on the GPU (radix sort of 64-bit (row, column) keys with CUB, then the row
/// offsets from the sorted keys), with host round trips for tests. The device-side structure is
/// in device_csr.h (CUDA builds only).

#include <cstdint>
#include <vector>

#include "data/csr.h"

namespace recforge::backend::cuda {

class CudaResources;

/// The transpose of `m`, built on the GPU (same result as data::Csr::transpose).
data::Csr transpose_on_gpu(CudaResources& gpu, const data::Csr& m);

/// data::Csr::from_coo built on the GPU (same result: columns sorted within rows, repeated pairs
/// kept in input order).
data::Csr csr_from_coo_on_gpu(CudaResources& gpu, int64_t rows, int64_t cols,
                              const std::vector<data::index_t>& row_idx,
                              const std::vector<data::index_t>& col_idx,
                              const std::vector<float>& values);

}  // namespace recforge::backend::cuda
