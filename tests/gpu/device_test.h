#pragma once
// Tests written once and run on every device (XGBoost's DeclareUnifiedTest): a test fixture
// parameterised over {"cpu", "cuda:0"}; the cuda:0 instance skips, saying why, in a build
// without CUDA or on a machine where no GPU answers. GPU results are compared with the CPU
// reference under the named tolerances below.

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

namespace recforge::test {

// ---- named tolerances ----------------------------------------------------------------------

/// float32 factors, GPU vs CPU, after one iteration from the same initial factors, CG: the same
/// algorithm in float32 with other summation orders (block reductions, cuBLAS vs OpenBLAS);
/// three warm-started CG steps amplify rounding only mildly. Relative Frobenius error.
constexpr double kCgFactorRelTol = 2e-4;
/// float32 factors, GPU vs CPU, exact Cholesky solves (systems of condition ~1e2 to 1e3).
constexpr double kCholeskyFactorRelTol = 2e-4;
/// float16 storage on the GPU vs the float32 CPU reference: every stored value carries a
/// relative rounding error up to 2^-11 ≈ 4.9e-4 (initial factors included), which the solves
/// carry into the result.
constexpr double kFloat16FactorRelTol = 2e-2;
/// bfloat16 storage: relative rounding up to 2^-8 ≈ 3.9e-3 per stored value.
constexpr double kBFloat16FactorRelTol = 5e-2;
/// The objective: float dot products summed in double on both devices.
constexpr double kLossRelTol = 1e-5;
/// Scores of float32 factors in [-1, 1), d = 64: float32 sums in different orders.
constexpr float kScoreAbsTol = 1e-4f;
/// Metrics of identical lists: only the order of the double sums differs.
constexpr double kMetricsAbsTol = 1e-12;
/// Streamed vs resident training: the same kernels on batches of other sizes (cuBLAS may pick
/// other GEMM kernels for other shapes).
constexpr double kStreamingRelTol = 1e-5;

// ---- the fixture -----------------------------------------------------------------------------

/// Base of the per-device fixtures: SetUp skips a CUDA instance that cannot run and creates the
/// Context of the device under test (2 CPU threads).
class DeviceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    set_log_level("warn");
    const std::string& device = GetParam();
    if (device.rfind("cuda", 0) == 0) {
      if (!backend::cuda_compiled())
        GTEST_SKIP() << device << ": this build has no CUDA backend (RECFORGE_CUDA=OFF or no nvcc "
                     << "at build time); the GPU instance of this test is skipped";
      if (backend::cuda_device_count() == 0)
        GTEST_SKIP() << device << ": no CUDA device answers on this machine ("
                     << backend::cuda_version_text() << "); the GPU instance of this test is skipped";
    }
    ctx_ = Context::create(device, 2);
  }
  /// True for the GPU instance.
  bool on_gpu() const { return ctx_.device().kind == Device::Kind::kCuda; }
  /// The CPU reference context.
  static Context cpu() { return Context::create("cpu", 2); }

  Context ctx_;
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
