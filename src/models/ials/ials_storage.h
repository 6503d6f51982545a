#pragma once
/// @file ials_storage.h
/// How the CUDA iALS solver stores factors and interactions (`model.dtype`,
/// `train.gpu_streaming`); plain enums, so that options and configs name them without including
/// any CUDA code.

namespace recforge::backend::cuda {

/// Storage type of factor matrices on the GPU; arithmetic is float32 whatever the storage.
enum class Storage { kFloat32, kFloat16, kBFloat16 };

/// "float32", "float16" or "bfloat16".
inline const char* storage_name(Storage s) {
  return s == Storage::kFloat16 ? "float16" : s == Storage::kBFloat16 ? "bfloat16" : "float32";
}

/// Whether training streams the interactions from pinned host memory (`train.gpu_streaming`).
enum class Streaming {
  kAuto,  ///< stream only when the interactions do not fit in free GPU memory
  kOn,    ///< always stream (tests, or to leave GPU memory to others)
  kOff,   ///< never stream; refuse when the interactions do not fit
};

}  // namespace recforge::backend::cuda
