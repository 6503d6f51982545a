#pragma once
/// @file bench_gpu.h
/// Measurements for tools/bench/bench_gpu.cpp: the device's ceilings (copy bandwidth, SGEMM rate)
/// measured in the same run as the workloads, and the top-k throughput against the bare GEMM.

#include <cstdint>
#include <string>

namespace recforge::backend::cuda {

class GpuResources;

/// Ceilings measured with CUDA events (median of several repetitions after a warm-up).
struct Ceilings {
  double copy_bytes_per_s = 0;   ///< device-to-device cudaMemcpy, bytes read + bytes written
  double sgemm_flops_per_s = 0;  ///< cuBLAS SGEMM (float32, no TF32), n × n × n, 2n³ flops
  int64_t copy_bytes = 0;        ///< size of the copied buffer
  int sgemm_n = 0;               ///< n of the SGEMM
};

/// Measures the ceilings (`copy_bytes` bytes copied, an sgemm_n³ product).
Ceilings measure_ceilings(GpuResources& gpu, int64_t copy_bytes = int64_t{2} << 30,
                          int sgemm_n = 8192);

/// Exact top-k throughput on random factors drawn with cuRAND (no masks).
struct TopkTiming {
  int64_t users = 0;          ///< queries ranked
  double topk_seconds = 0;    ///< GEMM tiles + fused selection + final sort, all users
  double gemm_seconds = 0;    ///< the same GEMM tiles alone
};

/// Times top-k of `users` queries over `items` items with `d` factors, k = `k`.
TopkTiming time_topk(GpuResources& gpu, int64_t users, int64_t items, int d, int k);

/// Name, memory and clocks of the device ("NVIDIA H200, 139.8 GiB, 132 SMs, sm_90").
std::string describe(GpuResources& gpu);

}  // namespace recforge::backend::cuda
