#pragma once
/// @file cuda_resources.h
/// Everything a GPU computation needs, in one object owned (through shared_ptr) by the run's
/// Context: the device, a compute stream and a copy stream, the cuBLAS handle (bound to the
/// compute stream), a cuRAND generator (created on first use) and a stream-ordered pool of
/// temporary device memory that keeps freed blocks for reuse. CUDA builds only; public code sees
/// the class forward-declared. One host thread at a time may use a CudaResources.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <cstdint>
#include <string>

#include "backend/cuda/device_memory.h"

namespace recforge::backend::cuda {

/// The resources of one CUDA device.
class CudaResources {
 public:
  /// Creates streams, handles and the pool on device `ordinal`. Throws InternalError with the
  /// CUDA error text when the device cannot be used.
  explicit CudaResources(int ordinal);
  ~CudaResources();
  CudaResources(const CudaResources&) = delete;
  CudaResources& operator=(const CudaResources&) = delete;

  /// The CUDA device ordinal.
  int device() const { return device_; }
  /// Its properties (multiprocessors, shared memory per block, ...).
  const cudaDeviceProp& properties() const { return props_; }
  /// The compute stream: kernels, cuBLAS, temporary memory.
  cudaStream_t stream() const { return stream_; }
  /// The second stream, for host → device copies that overlap compute.
  cudaStream_t copy_stream() const { return copy_stream_; }
  /// cuBLAS handle bound to stream(), default (full float32) math.
  cublasHandle_t cublas() const { return cublas_; }
  /// cuRAND generator (Philox) bound to stream(), created on first use.
  curandGenerator_t curand();

  /// `bytes` of temporary device memory, ordered on stream(): usable by work enqueued on
  /// stream() after this call. nullptr for 0 bytes. Prefer TempBuffer.
  void* allocate_temp(size_t bytes);
  /// Returns temporary memory after the work enqueued on stream() so far (never throws).
  void free_temp(void* p) noexcept;
  /// Free device memory in bytes after handing cached pool blocks back (synchronises stream()).
  int64_t free_bytes();
  /// Total device memory in bytes.
  int64_t total_bytes() const { return static_cast<int64_t>(props_.totalGlobalMem); }
  /// Waits for everything enqueued on stream().
  void synchronize();
  /// "cuda:0 NVIDIA H200 (139.8 GiB, sm_90, 132 SMs)".
  std::string description() const;

 private:
  void release() noexcept;

  int device_ = 0;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  curandGenerator_t curand_ = nullptr;
  cudaMemPool_t pool_ = nullptr;  // null when the device has no memory pools (cudaMalloc then)
};

/// `n` elements of T of temporary device memory from a CudaResources' pool, returned when the
/// object dies (stream-ordered, so work already enqueued on the compute stream may still use it).
template <typename T>
class TempBuffer {
 public:
  /// n elements (nothing for n <= 0).
  TempBuffer(CudaResources& gpu, int64_t n) : gpu_(&gpu) {
    if (n > 0) {
      p_ = static_cast<T*>(gpu.allocate_temp(static_cast<size_t>(n) * sizeof(T)));
      n_ = n;
    }
  }
  ~TempBuffer() {
    if (p_) gpu_->free_temp(p_);
  }
  TempBuffer(TempBuffer&& o) noexcept
      : gpu_(o.gpu_), p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  TempBuffer& operator=(TempBuffer&&) = delete;
  TempBuffer(const TempBuffer&) = delete;
  TempBuffer& operator=(const TempBuffer&) = delete;
  /// Device pointer (nullptr when empty).
  T* data() const { return p_; }
  /// Number of elements.
  int64_t size() const { return n_; }

 private:
  CudaResources* gpu_;
  T* p_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace recforge::backend::cuda
