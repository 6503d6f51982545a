#pragma once
/// @file bench_gpu_support.h
/// Measurements for bench_gpu.cpp (bench-gpu): the device's ceilings (copy bandwidth, SGEMM rate)
/// measured in the same run as the workloads,; the top-k timing is eval/topk_cuda.h's time_topk.

#include <cstdint>
#include <string>

namespace recforge::backend::cuda {

class CudaResources;

/// Ceilings measured with CUDA events (median of several repetitions after a warm-up).
struct Ceilings {
  double copy_bytes_per_s = 0;   ///< device-to-device cudaMemcpy, bytes read + bytes written
  double sgemm_flops_per_s = 0;  ///< cuBLAS SGEMM (float32, no TF32), n × n × n, 2n³ flops
  int64_t copy_bytes = 0;        ///< size of the copied buffer
  int sgemm_n = 0;               ///< n of the SGEMM
};

/// Measures the ceilings (`copy_bytes` bytes copied, an sgemm_n³ product).
Ceilings measure_ceilings(CudaResources& gpu, int64_t copy_bytes = int64_t{2} << 30,
                          int sgemm_n = 8192);

/// Name, memory and clocks of the device ("NVIDIA H200, 139.8 GiB, 132 SMs, sm_90").
std::string describe(CudaResources& gpu);

}  // namespace recforge::backend::cuda
