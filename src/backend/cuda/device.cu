// CUDA device discovery. Every call is checked; no error may abort the process, because a
// machine without a driver must fall back to the CPU.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include "core/context.h"

namespace recforge::backend {

bool cuda_compiled() { return true; }

int cuda_device_count() noexcept {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver"/"no device" state
    return 0;
  }
  return n;
}

std::string cuda_device_description(int ordinal) {
  cudaDeviceProp prop{};
  const cudaError_t err = cudaGetDeviceProperties(&prop, ordinal);
  if (err != cudaSuccess) return fmt::format("cuda:{} unavailable ({})", ordinal, cudaGetErrorString(err));
  return fmt::format("cuda:{} {} ({:.1f} GiB, sm_{}{}, {} SMs)", ordinal, prop.name,
                     prop.totalGlobalMem / 1073741824.0, prop.major, prop.minor,
                     prop.multiProcessorCount);
}

std::string cuda_version_text() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  return fmt::format("runtime {}.{}, driver {}", runtime / 1000, (runtime % 1000) / 10,
                     driver ? fmt::format("{}.{}", driver / 1000, (driver % 1000) / 10)
                            : std::string("none"));
}

}  // namespace recforge::backend
