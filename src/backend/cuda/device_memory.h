#pragma once
/// @file device_memory.h
/// RAII owners of CUDA memory and objects (CUDA builds only): device buffers, pinned host
/// buffers, events, the current-device scope. Move-only; destructors never throw (a failure
/// while releasing is ignored, since the process is already handling an error or shutting down).

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "backend/cuda/cuda_check.h"

namespace recforge::backend::cuda {

/// `n` elements of T in device memory (cudaMalloc). Contents are uninitialised.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates n elements (nothing for n == 0). Throws InternalError naming the size on failure.
  explicit DeviceBuffer(int64_t n) { reset(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  /// Frees the old contents and allocates n elements.
  void reset(int64_t n) {
    release();
    if (n <= 0) return;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(n) * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the (non-sticky) allocation error
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      throw InternalError(fmt::format("CUDA error {} allocating {:.3f} GiB of device memory ({:.3f} "
                                      "GiB free of {:.3f} GiB)",
                                      cudaGetErrorName(e), n * sizeof(T) / 1073741824.0,
                                      free / 1073741824.0, total / 1073741824.0),
                          __FILE__, __LINE__);
    }
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  /// Device pointer (nullptr when empty).
  T* data() const { return p_; }
  /// Number of elements.
  int64_t size() const { return n_; }
  /// Size in bytes.
  int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(T)); }

 private:
  void release() noexcept {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  int64_t n_ = 0;
};

/// `n` elements of T in page-locked host memory (cudaHostAlloc), so that copies from it run
/// asynchronously and at full bus speed.
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  /// Allocates n elements (nothing for n == 0).
  explicit PinnedBuffer(int64_t n) {
    if (n <= 0) return;
    void* p = nullptr;
    RF_CHECK_CUDA(cudaHostAlloc(&p, static_cast<size_t>(n) * sizeof(T), cudaHostAllocDefault));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      if (p_) cudaFreeHost(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  /// Host pointer (nullptr when empty).
  T* data() const { return p_; }
  /// Number of elements.
  int64_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  int64_t n_ = 0;
};

/// A CUDA event (timing disabled unless asked for).
class CudaEvent {
 public:
  /// Creates the event; `timing` enables cudaEventElapsedTime.
  explicit CudaEvent(bool timing = false) {
    RF_CHECK_CUDA(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  ~CudaEvent() {
    if (e_) cudaEventDestroy(e_);
  }
  CudaEvent(CudaEvent&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& o) noexcept {
    if (this != &o) {
      if (e_) cudaEventDestroy(e_);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  /// The event handle.
  cudaEvent_t get() const { return e_; }
  /// Records the event on `stream`.
  void record(cudaStream_t stream) { RF_CHECK_CUDA(cudaEventRecord(e_, stream)); }
  /// Makes `stream` wait for the last record of this event (no wait if never recorded).
  void wait_on(cudaStream_t stream) const { RF_CHECK_CUDA(cudaStreamWaitEvent(stream, e_, 0)); }
  /// Milliseconds from `start` to this event (both recorded with timing, this one completed).
  float ms_since(const CudaEvent& start) const {
    RF_CHECK_CUDA(cudaEventSynchronize(e_));
    float ms = 0;
    RF_CHECK_CUDA(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

/// Makes `device` current for the lifetime of the object, restoring the previous one.
class DeviceScope {
 public:
  /// Switches to `device` when it is not already current.
  explicit DeviceScope(int device) {
    RF_CHECK_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) RF_CHECK_CUDA(cudaSetDevice(device));
  }
  ~DeviceScope() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

/// Copies n elements host → device on `stream` (asynchronous only from pinned memory).
template <typename T>
void copy_to_device(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  if (n > 0)
    RF_CHECK_CUDA(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(T),
                                  cudaMemcpyHostToDevice, stream));
}

/// Copies n elements device → host on `stream` (the caller synchronises before reading).
template <typename T>
void copy_to_host(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  if (n > 0)
    RF_CHECK_CUDA(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(T),
                                  cudaMemcpyDeviceToHost, stream));
}

}  // namespace recforge::backend::cuda
