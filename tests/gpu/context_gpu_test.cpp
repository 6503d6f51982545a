// The Context's GPU resources and the CSR built on the device.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "backend/cuda/csr_cuda.h"
#include "core/error.h"
#include "device_test.h"

namespace recforge::test {
namespace {

// One GPU instance of this very binary, run with RECFORGE_REQUIRE_GPU set or unset: its exit
// status and output.
struct Child {
  int status = -1;
  std::string output;
};

Child run_gpu_instance(bool require) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string cmd =
      std::string("env -u GTEST_OUTPUT -u RECFORGE_REQUIRE_GPU ") +
      (require ? "RECFORGE_REQUIRE_GPU=1 " : "") + "'" + self +
      "' --gtest_filter=Devices/ContextOnDevice.GpuResourcesAreCreatedOnceAndSharedByCopies/cuda0 2>&1";
  Child c;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return c;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) c.output.append(buf, n);
  const int st = pclose(p);
  c.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return c;
}

// The device check sets RECFORGE_REQUIRE_GPU so that a machine where no GPU answers (a driver
// too old for CUDA 13, say) fails instead of skipping every GPU instance. Here, without a GPU,
// the instance fails with the variable and skips without it; with a GPU it passes either way.
TEST(RequireGpu, TurnsTheNoGpuSkipIntoAFailure) {
  const bool gpu = backend::cuda_compiled() && backend::cuda_device_count() > 0;
  const Child required = run_gpu_instance(true);
  const Child plain = run_gpu_instance(false);
  if (gpu) {
    EXPECT_EQ(required.status, 0) << required.output;
    EXPECT_NE(required.output.find("[  PASSED  ] 1 test"), std::string::npos) << required.output;
    EXPECT_EQ(required.output.find("SKIPPED"), std::string::npos) << required.output;
  } else {
    EXPECT_EQ(required.status, 1) << required.output;
    EXPECT_NE(required.output.find("RECFORGE_REQUIRE_GPU is set, but cuda:0: "), std::string::npos)
        << required.output;
    EXPECT_NE(required.output.find("[  FAILED  ] 1 test"), std::string::npos) << required.output;
    EXPECT_EQ(plain.status, 0) << plain.output;
    EXPECT_NE(plain.output.find("[  SKIPPED ] 1 test"), std::string::npos) << plain.output;
  }
  EXPECT_EQ(plain.status, 0) << plain.output;
}

class ContextOnDevice : public DeviceTest {};
INSTANTIATE_TEST_SUITE_P(Devices, ContextOnDevice, devices(), device_name);

TEST_P(ContextOnDevice, GpuResourcesAreCreatedOnceAndSharedByCopies) {
  if (!on_gpu()) {
    EXPECT_THROW(ctx_.cuda(), InternalError) << "a CPU context has no GPU resources";
    return;
  }
  const Context copy = ctx_;
  const auto a = ctx_.cuda();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a, copy.cuda());
  EXPECT_EQ(a, ctx_.cuda());
}

TEST_P(ContextOnDevice, AutoPicksAGpuOnlyWhenOneAnswers) {
  const Context a = Context::create("auto", 1);
  EXPECT_EQ(a.device().kind == Device::Kind::kCuda, backend::cuda_device_count() > 0);
}

TEST_P(ContextOnDevice, CsrTransposeAndBuildFromCooEqualTheHostOnes) {
  if (!on_gpu()) GTEST_SKIP() << "the CSR construction on the device exists on GPUs only";
  auto& gpu = *ctx_.cuda();
  for (int rows : {1, 37, 3000}) {
    const data::Csr m = random_csr(rows, 517, 9, static_cast<uint64_t>(rows));
    const data::Csr want = m.transpose();
    const data::Csr got = backend::cuda::transpose_on_gpu(gpu, m);
    EXPECT_EQ(got.rows, want.rows);
    EXPECT_EQ(got.cols, want.cols);
    EXPECT_EQ(got.indptr, want.indptr);
    EXPECT_EQ(got.indices, want.indices);
    EXPECT_EQ(got.data, want.data);
  }
  // COO with repeated pairs (kept, in input order) and empty rows.
  Rng rng(5);
  std::vector<data::index_t> r, c;
  std::vector<float> v;
  for (int e = 0; e < 20000; ++e) {
    r.push_back(static_cast<data::index_t>(2 * rng.below(500)));  // odd rows stay empty
    c.push_back(static_cast<data::index_t>(rng.below(50)));
    v.push_back(static_cast<float>(e));
  }
  const data::Csr want = data::Csr::from_coo(1001, 50, r, c, v);
  const data::Csr got = backend::cuda::csr_from_coo_on_gpu(gpu, 1001, 50, r, c, v);
  EXPECT_EQ(got.indptr, want.indptr);
  EXPECT_EQ(got.indices, want.indices);
  EXPECT_EQ(got.data, want.data);
  // Empty matrices.
  const data::Csr empty = data::Csr::from_coo(4, 3, {}, {}, {});
  EXPECT_EQ(backend::cuda::transpose_on_gpu(gpu, empty).indptr, std::vector<int64_t>(4, 0));
}

}  // namespace
}  // namespace recforge::test
