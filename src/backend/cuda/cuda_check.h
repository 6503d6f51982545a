#pragma once
/// @file cuda_check.h
/// Checks for every CUDA, cuBLAS and cuRAND call and every kernel launch (CUDA builds only).
/// A failure throws recforge::InternalError with the API's error name and text, the call, and
/// file:line:
///
///     RF_CHECK_CUDA(cudaMemcpyAsync(...));
///     kernel<<<grid, block, smem, stream>>>(...);
///     RF_CHECK_LAUNCH();  // cudaGetLastError: bad configuration, missing kernel image, ...
///
/// Errors of a kernel's execution surface at the next synchronising call, which is checked too.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include "core/error.h"

namespace recforge::backend::cuda {

/// Throws InternalError when `e` is not cudaSuccess.
inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  throw InternalError(fmt::format("CUDA error {} ({}) in {}", cudaGetErrorName(e),
                                  cudaGetErrorString(e), call),
                      file, line);
}

/// Throws InternalError when `s` is not CUBLAS_STATUS_SUCCESS.
inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw InternalError(fmt::format("cuBLAS error {} ({}) in {}", cublasGetStatusName(s),
                                  cublasGetStatusString(s), call),
                      file, line);
}

/// The name of a cuRAND status (cuRAND has no string function).
inline const char* curand_status_name(curandStatus_t s) {
  switch (s) {
    case CURAND_STATUS_SUCCESS: return "CURAND_STATUS_SUCCESS";
    case CURAND_STATUS_VERSION_MISMATCH: return "CURAND_STATUS_VERSION_MISMATCH";
    case CURAND_STATUS_NOT_INITIALIZED: return "CURAND_STATUS_NOT_INITIALIZED";
    case CURAND_STATUS_ALLOCATION_FAILED: return "CURAND_STATUS_ALLOCATION_FAILED";
    case CURAND_STATUS_TYPE_ERROR: return "CURAND_STATUS_TYPE_ERROR";
    case CURAND_STATUS_OUT_OF_RANGE: return "CURAND_STATUS_OUT_OF_RANGE";
    case CURAND_STATUS_LENGTH_NOT_MULTIPLE: return "CURAND_STATUS_LENGTH_NOT_MULTIPLE";
    case CURAND_STATUS_DOUBLE_PRECISION_REQUIRED: return "CURAND_STATUS_DOUBLE_PRECISION_REQUIRED";
    case CURAND_STATUS_LAUNCH_FAILURE: return "CURAND_STATUS_LAUNCH_FAILURE";
    case CURAND_STATUS_PREEXISTING_FAILURE: return "CURAND_STATUS_PREEXISTING_FAILURE";
    case CURAND_STATUS_INITIALIZATION_FAILED: return "CURAND_STATUS_INITIALIZATION_FAILED";
    case CURAND_STATUS_ARCH_MISMATCH: return "CURAND_STATUS_ARCH_MISMATCH";
    case CURAND_STATUS_INTERNAL_ERROR: return "CURAND_STATUS_INTERNAL_ERROR";
    default: return "unknown cuRAND status";
  }
}

/// Throws InternalError when `s` is not CURAND_STATUS_SUCCESS.
inline void check_curand(curandStatus_t s, const char* call, const char* file, int line) {
  if (s == CURAND_STATUS_SUCCESS) return;
  throw InternalError(fmt::format("cuRAND error {} in {}", curand_status_name(s), call), file,
                      line);
}

}  // namespace recforge::backend::cuda

/// Checks a CUDA runtime call.
#define RF_CHECK_CUDA(call) ::recforge::backend::cuda::check_cuda((call), #call, __FILE__, __LINE__)
/// Checks a cuBLAS call.
#define RF_CHECK_CUBLAS(call) \
  ::recforge::backend::cuda::check_cublas((call), #call, __FILE__, __LINE__)
/// Checks a cuRAND call.
#define RF_CHECK_CURAND(call) \
  ::recforge::backend::cuda::check_curand((call), #call, __FILE__, __LINE__)
/// Checks the launch just made (configuration and launch errors; cudaGetLastError).
#define RF_CHECK_LAUNCH() \
  ::recforge::backend::cuda::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
