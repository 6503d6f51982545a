#pragma once
// Tests written once and run on every device (XGBoost's DeclareUnifiedTest): a test fixture
// parameterised over {"cpu", "cuda:0"}; the cuda:0 instance skips, saying why, in a build
// without CUDA or on a machine where no GPU answers (a failure instead when RECFORGE_REQUIRE_GPU
// is set: require_gpu.h). GPU results are compared with the CPU reference under the tolerances
// below and the bounds of ials_bounds.h, derived from the numerics.

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/log.h"
#include "core/npy.h"
#include "core/rng.h"
#include "data/csr.h"
#include "random_data.h"
#include "require_gpu.h"

namespace recforge::test {

// ---- named tolerances ----------------------------------------------------------------------

// iALS factors and objectives compare under bounds derived from each problem (ials_bounds.h).

/// Scores of float32 factors in [-1, 1), d = 64: a 64-term float32 sum, |q·i| ≤ ‖q‖‖i‖ ≤ 64,
/// rounds by at most 6·√64·2⁻²⁴·64 (ials_bounds.h's probabilistic bound); two devices twice that.
constexpr float kScoreAbsTol = 2 * 6 * 8 * 64 * 0x1p-24f;
/// Metrics of identical lists: only the order of the double sums differs, sums of at most a few
/// thousand values in [0, 1], at most 4,096 · 2⁻⁵³ ≈ 4.5e-13 apart.
constexpr double kMetricsAbsTol = 1e-12;

// ---- the fixture -----------------------------------------------------------------------------

/// Why `device` cannot run tests here ("" when it can).
inline std::string why_unavailable(const std::string& device) {
  if (device.rfind("cuda", 0) != 0) return "";
  if (!backend::cuda_compiled())
    return device + ": this build has no CUDA backend (RECFORGE_CUDA=OFF or no nvcc at build "
                    "time); the GPU instance of this test is skipped";
  if (backend::cuda_device_count() == 0)
    return device + ": no CUDA device answers on this machine (" + backend::cuda_version_text() +
           "); the GPU instance of this test is skipped";
  return "";
}

/// Skips (or, with RECFORGE_REQUIRE_GPU set, fails) the test when its device cannot run here,
/// else creates the Context of the device under test (2 CPU threads) in ctx_.
#define RF_START_DEVICE()                                                  \
  do {                                                                     \
    const std::string why_ = ::recforge::test::why_unavailable(GetParam()); \
    if (!why_.empty()) RF_SKIP_UNLESS_GPU_REQUIRED(why_);                  \
    ctx_ = Context::create(GetParam(), 2);                                 \
  } while (0)

/// The GPU half of a test that did its CPU half first (the data and the CPU reference, checked on
/// every machine): skips (fails with RECFORGE_REQUIRE_GPU set) where no GPU answers, else sets
/// `ctx` to a cuda:0 Context (2 CPU threads).
#define RF_START_GPU(ctx)                                                 \
  do {                                                                    \
    const std::string why_ = ::recforge::test::why_unavailable("cuda:0"); \
    if (!why_.empty()) RF_SKIP_UNLESS_GPU_REQUIRED(why_);                 \
    ctx = Context::create("cuda:0", 2);                                   \
  } while (0)

/// Base of the per-device fixtures: SetUp skips a CUDA instance that cannot run (fails it with
/// RECFORGE_REQUIRE_GPU set) and creates the Context of the device under test (2 CPU threads).
class DeviceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    set_log_level("warn");
    RF_START_DEVICE();
  }
  /// True for the GPU instance.
  bool on_gpu() const { return ctx_.device().kind == Device::Kind::kCuda; }
  /// The CPU reference context.
  static Context cpu() { return Context::create("cpu", 2); }

  Context ctx_;
};

/// Tests of a GPU threshold: the CPU half first, then RF_START_GPU(gpu_).
class GpuHalfTest : public ::testing::Test {
 protected:
  void SetUp() override { set_log_level("warn"); }
  Context gpu_;
};

/// The devices every test runs on.
inline auto devices() { return ::testing::Values(std::string("cpu"), std::string("cuda:0")); }

/// Test-name suffix of a device ("cpu", "cuda0").
inline std::string device_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param == "cpu" ? "cpu" : "cuda0";
}

// ---- data ----------------------------------------------------------------------------------


/// ‖a − b‖ / ‖b‖ (Frobenius; NaN anywhere gives infinity).
inline double rel_error(const Matrix& a, const Matrix& b) {
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  if (a.data.size() != b.data.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t j = 0; j < a.data.size(); ++j) {
    const double d = static_cast<double>(a.data[j]) - b.data[j];
    num += d * d;
    den += static_cast<double>(b.data[j]) * b.data[j];
  }
  if (!std::isfinite(num)) return INFINITY;
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace recforge::test
