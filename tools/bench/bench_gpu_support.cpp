// The device's ceilings for tools/bench/bench_gpu.cpp, timed with CUDA events after a warm-up
// (median of the repetitions). Random inputs from cuRAND: never time on zeros.
#include "bench_gpu_support.h"

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_resources.h"

namespace recforge::backend::cuda {
namespace {

template <typename F>
double median_seconds(CudaResources& g, int warmup, int reps, F&& f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CudaEvent a(true), b(true);
    a.record(g.stream());
    f();
    b.record(g.stream());
    t.push_back(b.ms_since(a) / 1e3);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

Ceilings measure_ceilings(CudaResources& gpu, int64_t copy_bytes, int sgemm_n) {
  DeviceScope scope(gpu.device());
  const cudaStream_t s = gpu.stream();
  Ceilings c;
  c.copy_bytes = copy_bytes;
  c.sgemm_n = sgemm_n;
  {
    const int64_t n = copy_bytes / 4;
    DeviceBuffer<float> src(n + 1), dst(n + 1);
    RF_CHECK_CURAND(curandGenerateUniform(gpu.curand(), src.data(), static_cast<size_t>(n)));
    const double t = median_seconds(gpu, 2, 10, [&] {
      RF_CHECK_CUDA(cudaMemcpyAsync(dst.data(), src.data(), n * 4, cudaMemcpyDeviceToDevice, s));
    });
    c.copy_bytes_per_s = 2.0 * static_cast<double>(n * 4) / t;  // read + write
  }
  {
    const int64_t n = sgemm_n;
    DeviceBuffer<float> a(n * n + 1), b(n * n + 1), out(n * n);
    RF_CHECK_CURAND(curandGenerateUniform(gpu.curand(), a.data(), static_cast<size_t>(n * n)));
    RF_CHECK_CURAND(curandGenerateUniform(gpu.curand(), b.data(), static_cast<size_t>(n * n)));
    const float one = 1.f, zero = 0.f;
    const int m = static_cast<int>(n);
    const double t = median_seconds(gpu, 2, 5, [&] {
      RF_CHECK_CUBLAS(cublasSgemm(gpu.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, m, m, m, &one, a.data(), m,
                                  b.data(), m, &zero, out.data(), m));
    });
    c.sgemm_flops_per_s = 2.0 * static_cast<double>(n) * n * n / t;
  }
  return c;
}

std::string describe(CudaResources& gpu) { return gpu.description(); }

}  // namespace recforge::backend::cuda
