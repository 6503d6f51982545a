#pragma once
/// @file device_csr.h
/// A CSR matrix in device memory (64-bit offsets) and its construction on the GPU: upload,
/// transpose and build from COO by a CUB radix sort of (row, column) keys, download (CUDA builds
/// only; csr_cuda.h is the public face).

#include <cstdint>

#include "backend/cuda/cuda_resources.h"
#include "data/csr.h"

namespace recforge::backend::cuda {

/// rows × cols sparse matrix on the device; the layout of data::Csr.
struct DeviceCsr {
  int64_t rows = 0;                ///< number of rows
  int64_t cols = 0;                ///< number of columns
  int64_t nnz = 0;                 ///< stored values
  DeviceBuffer<int64_t> indptr;    ///< rows + 1 offsets
  DeviceBuffer<int32_t> indices;   ///< column of each value, sorted within rows
  DeviceBuffer<float> values;      ///< values
};

/// Copies a host CSR to the device (ordered on gpu.stream(); the host data may change on return).
DeviceCsr upload_csr(CudaResources& gpu, const data::Csr& m);
/// The transpose, built on the device.
DeviceCsr transpose(CudaResources& gpu, const DeviceCsr& m);
/// A CSR from device COO triplets (columns sorted within rows, repeated pairs kept in order).
DeviceCsr csr_from_coo(CudaResources& gpu, int64_t rows, int64_t cols, const int32_t* row,
                       const int32_t* col, const float* values, int64_t nnz);
/// Copies a device CSR to the host (synchronises).
data::Csr download_csr(CudaResources& gpu, const DeviceCsr& m);

}  // namespace recforge::backend::cuda
