#pragma once
/// @file require_gpu.h
/// RECFORGE_REQUIRE_GPU: set (to anything but "" or "0"; tools/device/device-check.sh sets 1),
/// every test that would skip because no GPU answers fails instead, so that a machine whose driver
/// cannot run this build (too old for CUDA 13, no device visible) cannot pass the device check
/// by skipping everything. Used by tests/gpu (DeviceTest) and tests/index/gpu_index_test.cpp.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace recforge::test {

/// The environment variable that turns "no GPU" skips into failures.
constexpr const char* kRequireGpuVariable = "RECFORGE_REQUIRE_GPU";

/// True when RECFORGE_REQUIRE_GPU is set to anything but "" or "0".
inline bool gpu_required() {
  const char* v = std::getenv(kRequireGpuVariable);
  return v != nullptr && std::string(v) != "" && std::string(v) != "0";
}

}  // namespace recforge::test

/// Skips the current test saying why (`message`, a stream expression), or fails it with the same
/// words when RECFORGE_REQUIRE_GPU is set. Returns from the calling function either way.
#define RF_SKIP_UNLESS_GPU_REQUIRED(message)                                                  \
  do {                                                                                        \
    if (::recforge::test::gpu_required())                                                     \
      GTEST_FAIL() << ::recforge::test::kRequireGpuVariable << " is set, but " << message;    \
    GTEST_SKIP() << message;                                                                  \
  } while (0)
