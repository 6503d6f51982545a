#include "backend/cuda/csr_cuda.h"

#include "backend/cuda/device_csr.h"
#include "backend/cuda/launch.h"

namespace recforge::backend::cuda {
namespace {

// Bits needed for the values 0 .. n − 1 (at least 1).
int bits_for(int64_t n) {
  int b = 1;
  while (b < 62 && (int64_t{1} << b) < n) ++b;
  return b;
}

// Finishes a CSR from unsorted keys (row << 32 | column) and their values.
DeviceCsr from_keys(CudaResources& gpu, int64_t rows, int64_t cols, TempBuffer<uint64_t>& keys,
                    const float* values, int64_t nnz) {
  DeviceCsr out;
  out.rows = rows;
  out.cols = cols;
  out.nnz = nnz;
  out.indptr.reset(rows + 1);
  out.indices.reset(nnz);
  out.values.reset(nnz);
  if (nnz == 0) {
    RF_CHECK_CUDA(cudaMemsetAsync(out.indptr.data(), 0, out.indptr.bytes(), gpu.stream()));
    return out;
  }
  const int end_bit = 32 + bits_for(rows);
  TempBuffer<uint64_t> sorted(gpu, nnz);
  const size_t temp_bytes = sort_pairs_temp_bytes(nnz, end_bit);
  TempBuffer<unsigned char> temp(gpu, static_cast<int64_t>(temp_bytes));
  sort_pairs(temp.data(), temp_bytes, keys.data(), sorted.data(), values, out.values.data(), nnz,
             end_bit, gpu.stream());
  launch_csr_from_sorted_keys(sorted.data(), nnz, rows, out.indptr.data(), out.indices.data(),
                              gpu.stream());
  return out;
}

}  // namespace

DeviceCsr upload_csr(CudaResources& gpu, const data::Csr& m) {
  RF_ASSERT(static_cast<int64_t>(m.indptr.size()) == m.rows + 1, "upload_csr: indptr size");
  DeviceScope scope(gpu.device());
  DeviceCsr d;
  d.rows = m.rows;
  d.cols = m.cols;
  d.nnz = m.nnz();
  d.indptr.reset(m.rows + 1);
  d.indices.reset(d.nnz);
  d.values.reset(d.nnz);
  copy_to_device(d.indptr.data(), m.indptr.data(), m.rows + 1, gpu.stream());
  copy_to_device(d.indices.data(), m.indices.data(), d.nnz, gpu.stream());
  copy_to_device(d.values.data(), m.data.data(), d.nnz, gpu.stream());
  return d;
}

DeviceCsr transpose(CudaResources& gpu, const DeviceCsr& m) {
  DeviceScope scope(gpu.device());
  TempBuffer<uint64_t> keys(gpu, m.nnz);
  launch_transpose_keys(m.indptr.data(), m.rows, m.indices.data(), m.nnz, keys.data(),
                        gpu.stream());
  return from_keys(gpu, m.cols, m.rows, keys, m.values.data(), m.nnz);
}

DeviceCsr csr_from_coo(CudaResources& gpu, int64_t rows, int64_t cols, const int32_t* row,
                       const int32_t* col, const float* values, int64_t nnz) {
  DeviceScope scope(gpu.device());
  TempBuffer<uint64_t> keys(gpu, nnz);
  launch_coo_keys(row, col, nnz, keys.data(), gpu.stream());
  return from_keys(gpu, rows, cols, keys, values, nnz);
}

data::Csr download_csr(CudaResources& gpu, const DeviceCsr& m) {
  DeviceScope scope(gpu.device());
  data::Csr h;
  h.rows = m.rows;
  h.cols = m.cols;
  h.indptr.resize(static_cast<size_t>(m.rows + 1));
  h.indices.resize(static_cast<size_t>(m.nnz));
  h.data.resize(static_cast<size_t>(m.nnz));
  copy_to_host(h.indptr.data(), m.indptr.data(), m.rows + 1, gpu.stream());
  copy_to_host(h.indices.data(), m.indices.data(), m.nnz, gpu.stream());
  copy_to_host(h.data.data(), m.values.data(), m.nnz, gpu.stream());
  gpu.synchronize();
  return h;
}

data::Csr transpose_on_gpu(CudaResources& gpu, const data::Csr& m) {
  const DeviceCsr d = upload_csr(gpu, m);
  return download_csr(gpu, transpose(gpu, d));
}

data::Csr csr_from_coo_on_gpu(CudaResources& gpu, int64_t rows, int64_t cols,
                              const std::vector<data::index_t>& row_idx,
                              const std::vector<data::index_t>& col_idx,
                              const std::vector<float>& values) {
  RF_ASSERT(row_idx.size() == col_idx.size() && row_idx.size() == values.size(),
            "csr_from_coo_on_gpu: triplet sizes differ");
  for (size_t e = 0; e < row_idx.size(); ++e)
    if (row_idx[e] < 0 || row_idx[e] >= rows || col_idx[e] < 0 || col_idx[e] >= cols)
      fail("CSR from COO: entry {} is ({}, {}); expected a row below {} and a column below {}", e,
           row_idx[e], col_idx[e], rows, cols);
  DeviceScope scope(gpu.device());
  const int64_t nnz = static_cast<int64_t>(values.size());
  DeviceBuffer<int32_t> r(nnz), c(nnz);
  DeviceBuffer<float> v(nnz);
  copy_to_device(r.data(), row_idx.data(), nnz, gpu.stream());
  copy_to_device(c.data(), col_idx.data(), nnz, gpu.stream());
  copy_to_device(v.data(), values.data(), nnz, gpu.stream());
  const DeviceCsr d = csr_from_coo(gpu, rows, cols, r.data(), c.data(), v.data(), nnz);
  data::Csr h = download_csr(gpu, d);
  return h;
}

}  // namespace recforge::backend::cuda
