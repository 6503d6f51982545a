#include "backend/cuda/cuda_resources.h"

#include <cstdint>
#include <limits>

#include "core/context.h"
#include "core/log.h"

namespace recforge::backend::cuda {

CudaResources::CudaResources(int ordinal) : device_(ordinal) {
  DeviceScope scope(device_);
  try {
    RF_CHECK_CUDA(cudaGetDeviceProperties(&props_, device_));
    RF_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    RF_CHECK_CUDA(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    RF_CHECK_CUBLAS(cublasCreate(&cublas_));
    RF_CHECK_CUBLAS(cublasSetStream(cublas_, stream_));
    // Scalars (alpha, beta) are passed from the host.
    RF_CHECK_CUBLAS(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
    int pools = 0;
    RF_CHECK_CUDA(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_));
    if (pools) {
      cudaMemPoolProps p{};
      p.allocType = cudaMemAllocationTypePinned;
      p.location.type = cudaMemLocationTypeDevice;
      p.location.id = device_;
      RF_CHECK_CUDA(cudaMemPoolCreate(&pool_, &p));
      // Keep freed blocks for reuse instead of returning them at every synchronisation.
      uint64_t keep = std::numeric_limits<uint64_t>::max();
      RF_CHECK_CUDA(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
    }
  } catch (...) {
    release();
    throw;
  }
  log().debug("GPU resources: {}{}", description(),
              pool_ ? "" : " (no memory pools: temporary memory uses cudaMalloc)");
}

CudaResources::~CudaResources() {
  // Release on our device; never throw from a destructor.
  int previous = device_;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
  if (switched) cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  release();
  if (switched) cudaSetDevice(previous);
}

void CudaResources::release() noexcept {
  if (curand_) curandDestroyGenerator(curand_);
  if (cublas_) cublasDestroy(cublas_);
  if (pool_) cudaMemPoolDestroy(pool_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
  if (stream_) cudaStreamDestroy(stream_);
  curand_ = nullptr;
  cublas_ = nullptr;
  pool_ = nullptr;
  copy_stream_ = stream_ = nullptr;
}

curandGenerator_t CudaResources::curand() {
  if (!curand_) {
    DeviceScope scope(device_);
    RF_CHECK_CURAND(curandCreateGenerator(&curand_, CURAND_RNG_PSEUDO_PHILOX4_32_10));
    RF_CHECK_CURAND(curandSetStream(curand_, stream_));
  }
  return curand_;
}

void* CudaResources::allocate_temp(size_t bytes) {
  if (bytes == 0) return nullptr;
  DeviceScope scope(device_);
  void* p = nullptr;
  cudaError_t e;
  if (pool_) {
    e = cudaMallocFromPoolAsync(&p, bytes, pool_, stream_);
  } else {
    e = cudaMalloc(&p, bytes);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    throw InternalError(fmt::format("CUDA error {} allocating {:.3f} GiB of temporary device memory "
                                    "({:.3f} GiB free of {:.3f} GiB)",
                                    cudaGetErrorName(e), bytes / 1073741824.0, free / 1073741824.0,
                                    total / 1073741824.0),
                        __FILE__, __LINE__);
  }
  return p;
}

void CudaResources::free_temp(void* p) noexcept {
  if (!p) return;
  int previous = 0;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
  if (switched) cudaSetDevice(device_);
  if (pool_) {
    cudaFreeAsync(p, stream_);
  } else {
    cudaStreamSynchronize(stream_);  // work enqueued so far may still read it
    cudaFree(p);
  }
  if (switched) cudaSetDevice(previous);
}

int64_t CudaResources::free_bytes() {
  DeviceScope scope(device_);
  RF_CHECK_CUDA(cudaStreamSynchronize(stream_));
  if (pool_) RF_CHECK_CUDA(cudaMemPoolTrimTo(pool_, 0));
  size_t free = 0, total = 0;
  RF_CHECK_CUDA(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free);
}

void CudaResources::synchronize() {
  DeviceScope scope(device_);
  RF_CHECK_CUDA(cudaStreamSynchronize(stream_));
}

std::string CudaResources::description() const {
  return fmt::format("cuda:{} {} ({:.1f} GiB, sm_{}{}, {} SMs)", device_, props_.name,
                     props_.totalGlobalMem / 1073741824.0, props_.major, props_.minor,
                     props_.multiProcessorCount);
}

std::shared_ptr<CudaResources> create_resources(int ordinal) {
  return std::make_shared<CudaResources>(ordinal);
}

}  // namespace recforge::backend::cuda
