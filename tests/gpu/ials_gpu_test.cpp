// iALS on every device against the CPU reference (backend/cpu/ials_cpu.cpp).
#include <gtest/gtest.h>

#include <string>

#include "backend/cpu/ials_cpu.h"
#include "core/error.h"
#include "device_test.h"
#include "models/ials.h"
#include "models/ials_cuda.h"

namespace recforge::test {
namespace {

using backend::cuda::Storage;
using backend::cuda::Streaming;
using models::IalsOptions;

class IalsOnDevice : public DeviceTest {};
INSTANTIATE_TEST_SUITE_P(Devices, IalsOnDevice, devices(), device_name);

IalsOptions options(int factors, bool cholesky, int cg_steps = 3) {
  IalsOptions o;
  o.factors = factors;
  o.iterations = 1;
  o.seed = 7;
  o.init_std = 0.5;
  o.solve.regularization = 0.05;
  o.solve.reg_exp = 1.0;
  o.solve.reg_offset = 1.0;
  o.solve.unobserved_weight = 0.1;
  o.solve.alpha = 1.5;
  o.solve.cholesky = cholesky;
  o.solve.cg_steps = cg_steps;
  return o;
}

struct Trained {
  Matrix users, items;
};

// One iteration from the model's own initial factors (identical on every device: drawn on the
// host from the seed).
Trained one_iteration(const IalsOptions& o, const Context& ctx, const data::Csr& r,
                      const data::Csr& rt) {
  auto m = models::make_ials(o, ctx);
  m->init(r.rows, r.cols);
  m->iterate(r, rt);
  return {m->user_factors(), m->item_factors()};
}

TEST_P(IalsOnDevice, OneIterationMatchesTheCpuReference) {
  struct Case {
    int k;
    int users, items, per_row;
    double beta;  // popularity weights of the unobserved term
  };
  const Case cases[] = {{8, 300, 200, 12, 0.0},
                        {64, 300, 200, 12, 0.5},
                        {200, 200, 150, 20, 0.0},
                        {1100, 60, 50, 8, 0.0}};
  for (bool cholesky : {false, true}) {
    for (const Case& c : cases) {
      const data::Csr r = random_csr(c.users, c.items, c.per_row, 100 + c.k);
      const data::Csr rt = r.transpose();
      IalsOptions o = options(c.k, cholesky);
      o.unobserved_exp = c.beta;
      const Trained got = one_iteration(o, ctx_, r, rt);
      const Trained want = one_iteration(o, cpu(), r, rt);
      const double tol = cholesky ? kCholeskyFactorRelTol : kCgFactorRelTol;
      const std::string what = std::string(cholesky ? "cholesky" : "cg") + " k=" + std::to_string(c.k);
      EXPECT_LE(rel_error(got.users, want.users), tol) << what << " users";
      EXPECT_LE(rel_error(got.items, want.items), tol) << what << " items";
    }
  }
}

TEST_P(IalsOnDevice, HalfPrecisionStorageWithinLooserTolerances) {
  const data::Csr r = random_csr(300, 200, 12, 11);
  const data::Csr rt = r.transpose();
  for (Storage dtype : {Storage::kFloat16, Storage::kBFloat16}) {
    IalsOptions o = options(64, false);
    o.dtype = dtype;
    if (!on_gpu()) {
      // The CPU stores float32 only and says so.
      try {
        models::make_ials(o, ctx_);
        ADD_FAILURE() << "the CPU accepted model.dtype " << backend::cuda::storage_name(dtype);
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("float32 only"), std::string::npos) << e.what();
      }
      continue;
    }
    IalsOptions ref = o;
    ref.dtype = Storage::kFloat32;
    const Trained got = one_iteration(o, ctx_, r, rt);
    const Trained want = one_iteration(ref, cpu(), r, rt);
    const double tol = dtype == Storage::kFloat16 ? kFloat16FactorRelTol : kBFloat16FactorRelTol;
    EXPECT_LE(rel_error(got.users, want.users), tol) << backend::cuda::storage_name(dtype);
    EXPECT_LE(rel_error(got.items, want.items), tol) << backend::cuda::storage_name(dtype);
  }
}

TEST_P(IalsOnDevice, RowsWithoutInteractionsGetZeroFactors) {
  const data::Csr r = random_csr(120, 90, 3, 21);  // ~1 in 6 rows empty
  const data::Csr rt = r.transpose();
  int64_t empty = 0;
  for (bool cholesky : {false, true}) {
    const Trained t = one_iteration(options(40, cholesky), ctx_, r, rt);
    for (int64_t u = 0; u < r.rows; ++u)
      if (r.row_size(u) == 0) {
        ++empty;
        for (int c = 0; c < 40; ++c) ASSERT_EQ(t.users.row(u)[c], 0.f) << "user " << u;
      }
    for (int64_t i = 0; i < rt.rows; ++i) {
      if (rt.row_size(i) != 0) continue;
      for (int c = 0; c < 40; ++c) ASSERT_EQ(t.items.row(i)[c], 0.f) << "item " << i;
    }
  }
  EXPECT_GT(empty, 0) << "the data should hold empty rows";
}

TEST_P(IalsOnDevice, LossMatchesTheCpuObjective) {
  const data::Csr r = random_csr(250, 180, 10, 31);
  const data::Csr rt = r.transpose();
  for (double beta : {0.0, 0.7}) {
    IalsOptions o = options(48, false);
    o.unobserved_exp = beta;
    auto m = models::make_ials(o, ctx_);
    m->init(r.rows, r.cols);
    m->iterate(r, rt);  // item weights are in place after an iteration on every device
    const double got = m->loss(r, rt);
    const double want =
        backend::cpu::objective(r, rt, m->user_factors(), m->item_factors(), o.solve,
                                backend::cpu::popularity_weights(rt, beta));
    EXPECT_NEAR(got, want, kLossRelTol * want) << "beta " << beta;
  }
}

TEST_P(IalsOnDevice, FoldInIsTheTrainingSolve) {
  const data::Csr r = random_csr(80, 60, 8, 41);
  const IalsOptions o = options(24, false, 5);
  auto m = models::make_ials(o, ctx_);
  const Matrix users = random_matrix(80, 24, 42), items = random_matrix(60, 24, 43);
  m->set_factors(users, items);
  const Matrix got = m->fold_in(r);
  const Matrix want = backend::cpu::fold_in(r, items, o.solve, 2);
  EXPECT_LE(rel_error(got, want), kCgFactorRelTol);
}

TEST_P(IalsOnDevice, NonFiniteFactorsAreAnErrorNamingTheIteration) {
  data::Csr r = random_csr(50, 40, 6, 51);
  ASSERT_GT(r.nnz(), 0);
  // A confidence so large that r·r overflows: CG's step becomes inf/inf on every device (an
  // infinite confidence would only stop CG, since p·Ap turns NaN).
  r.data[0] = 1e30f;
  const data::Csr rt = r.transpose();
  auto m = models::make_ials(options(16, false), ctx_);
  m->init(r.rows, r.cols);
  try {
    m->iterate(r, rt);
    ADD_FAILURE() << "an infinite confidence went unnoticed";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("iteration 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
  }
}

TEST_P(IalsOnDevice, LossNeverIncreasesWithTheExactSolver) {
  const data::Csr r = random_csr(300, 120, 12, 61);
  const data::Csr rt = r.transpose();
  auto m = models::make_ials(options(16, true), ctx_);
  m->init(r.rows, r.cols);
  double prev = m->loss(r, rt);
  for (int it = 0; it < 6; ++it) {
    m->iterate(r, rt);
    const double l = m->loss(r, rt);
    EXPECT_LE(l, prev * (1 + 1e-5)) << "iteration " << it;
    prev = l;
  }
}

TEST_P(IalsOnDevice, StreamingEqualsResidentTraining) {
  if (!on_gpu()) GTEST_SKIP() << "streaming from pinned host memory is a GPU mode";
  const data::Csr r = random_csr(400, 300, 15, 71);
  const data::Csr rt = r.transpose();
  for (int k : {32, 300}) {
    IalsOptions o = options(k, false);
    o.unobserved_exp = 0.3;
    IalsOptions streamed = o, resident = o;
    streamed.streaming = Streaming::kOn;
    streamed.stream_batch_nnz = 500;  // many batches, both staging buffers reused
    resident.streaming = Streaming::kOff;
    models::IalsCuda a(streamed, ctx_), b(resident, ctx_);
    a.init(r.rows, r.cols);
    b.init(r.rows, r.cols);
    for (int it = 0; it < 2; ++it) {
      a.iterate(r, rt);
      b.iterate(r, rt);
    }
    EXPECT_NE(a.data_mode().find("streamed"), std::string::npos) << a.data_mode();
    EXPECT_NE(b.data_mode().find("resident"), std::string::npos) << b.data_mode();
    EXPECT_LE(rel_error(a.user_factors(), b.user_factors()), kStreamingRelTol) << "k=" << k;
    EXPECT_LE(rel_error(a.item_factors(), b.item_factors()), kStreamingRelTol) << "k=" << k;
    EXPECT_NEAR(a.loss(r, rt), b.loss(r, rt), kStreamingRelTol * b.loss(r, rt)) << "k=" << k;
  }
}

TEST_P(IalsOnDevice, ManyFactorsTrainAndLowerTheLoss) {
  const data::Csr r = random_csr(40, 30, 6, 81);
  const data::Csr rt = r.transpose();
  IalsOptions o = options(2300, false);  // several 256-column tiles, above implicit's 1024
  o.init_std = 0.1;
  auto m = models::make_ials(o, ctx_);
  m->init(r.rows, r.cols);
  const double l0 = m->loss(r, rt);
  m->iterate(r, rt);
  m->iterate(r, rt);
  const double l2 = m->loss(r, rt);
  EXPECT_TRUE(std::isfinite(l2));
  EXPECT_LT(l2, 0.5 * l0);
  EXPECT_EQ(m->user_factors().cols, 2300);
}

}  // namespace
}  // namespace recforge::test
