// iALS on every device against the CPU reference (models/ials/ials_cpu.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include "models/ials/ials_cpu.h"
#include "config/config.h"
#include "core/error.h"
#include "device_test.h"
#include "ials_bounds.h"
#include "models/ials/ials.h"
#include "models/ials/ials_cuda.h"
#include "pipeline/options.h"

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

// The reference as the GPU computes: G applied densely. At small k the CPU's automatic choice
// solves in G's eigenbasis and leaves both factor matrices rotated (models/ials/ials_cpu.h,
// solve_half): the same model, other factors.
IalsOptions dense_basis(IalsOptions o) {
  o.solve.cg_basis = backend::cpu::CgBasis::kDense;
  return o;
}

// Whether the CPU's automatic basis rotates a half of this problem (rows solved, fixed rows).
bool cpu_rotates(const IalsOptions& o, int64_t rows, int64_t fixed) {
  return backend::cpu::use_eigenframe(o.solve, o.factors, rows, fixed);
}

// The relative rounding of a storage type.
double storage_roundoff(Storage s) {
  return s == Storage::kFloat16 ? kFloat16Roundoff : s == Storage::kBFloat16 ? kBFloat16Roundoff
                                                                             : kUnitRoundoff;
}

// Checks one iteration of a device half by half against the CPU's dense halves (the GPU's
// basis) from the same inputs (ials_bounds.h): the users from (x_start, y_start), which the
// device holds rounded by `start_u` (0: exactly), then the items from the device's own users
// (exact copies) and y_start.
void expect_iteration_matches(const data::Csr& r, const data::Csr& rt, const IalsOptions& o,
                              const Matrix& x_start, const Matrix& y_start, double start_u,
                              const Matrix& got_users, const Matrix& got_items,
                              const std::string& what) {
  const std::vector<float> w = backend::cpu::popularity_weights(rt, o.unobserved_exp);
  const backend::cpu::IalsSolveParams p = dense_basis(o).solve;
  const HalfNumerics h = half_numerics(o, storage_roundoff(o.dtype), false);
  Matrix users = x_start;
  backend::cpu::solve_side(r, y_start, users, p, 2, w, {});
  const std::vector<double> eu = half_error(r, y_start, rounding_errors(y_start, start_u), users,
                                            o.solve, h, w, {}, rounding_errors(x_start, start_u));
  EXPECT_LE(energy_difference(r, y_start, got_users, users, p, w, {}),
            relative_bound(eu, energy_norms(r, y_start, users, p, w, {})))
      << what << " users";
  Matrix items = y_start;
  backend::cpu::solve_side(rt, got_users, items, p, 2, {}, w);
  const std::vector<double> ei =
      half_error(rt, got_users, rounding_errors(got_users, 0.0), items, o.solve, h, {}, w,
                 rounding_errors(y_start, start_u));
  EXPECT_LE(energy_difference(rt, got_users, got_items, items, p, {}, w),
            relative_bound(ei, energy_norms(rt, got_users, items, p, {}, w)))
      << what << " items";
}

// ‖(‖a_r‖ − ‖b_r‖)_r‖ / ‖b‖: per-row norms, invariant under a rotation of either matrix.
double norm_difference(const Matrix& a, const Matrix& b) {
  double num = 0, den = 0;
  for (int64_t r = 0; r < b.rows; ++r) {
    const double nb = row_norm(b, r);
    num += std::pow(row_norm(a, r) - nb, 2);
    den += nb * nb;
  }
  return std::sqrt(num / std::max(den, 1e-300));
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
  // The k = 8 case is the one where the CPU's automatic basis rotates (else it covers nothing).
  EXPECT_TRUE(cpu_rotates(options(8, false), 300, 200));
  for (bool cholesky : {false, true}) {
    for (const Case& c : cases) {
      if (cholesky && c.k > backend::cuda::kMaxCholeskyFactors) continue;  // refused on GPUs
      const data::Csr r = random_csr(c.users, c.items, c.per_row, 100 + c.k);
      const data::Csr rt = r.transpose();
      IalsOptions o = options(c.k, cholesky);
      o.unobserved_exp = c.beta;
      const std::string what = std::string(cholesky ? "cholesky" : "cg") + " k=" + std::to_string(c.k);
      const auto [x0, y0] = models::initial_factors(o, c.users, c.items);
      const Trained got = one_iteration(o, ctx_, r, rt);  // automatic basis on the CPU
      const bool rotates = cpu_rotates(o, c.users, c.items) || cpu_rotates(o, c.items, c.users);
      if (on_gpu() || !rotates)
        expect_iteration_matches(r, rt, o, x0, y0, 0.0, got.users, got.items, what);
      if (!rotates) continue;
      // The CPU's eigenframe: factors rotated, each user's norm kept. Against the dense users
      // (bound of the user half in the eigenframe, which covers a dense device too).
      const std::vector<float> w = backend::cpu::popularity_weights(rt, o.unobserved_exp);
      Matrix users = x0;
      backend::cpu::solve_side(r, y0, users, dense_basis(o).solve, 2, w, {});
      const std::vector<double> e = two_norm_errors(
          r, half_error(r, y0, rounding_errors(y0, 0.0), users, o.solve,
                        half_numerics(o, kUnitRoundoff, true), w),
          o.solve);
      const double bound = relative_bound(e, rounding_errors(users, 1.0));  // 2-norms of rows
      const Trained rotated = on_gpu() ? one_iteration(o, cpu(), r, rt) : got;
      EXPECT_GT(rel_error(rotated.users, users), 100 * bound) << what << ": not rotated";
      EXPECT_LE(norm_difference(rotated.users, users), bound) << what << " rotated user norms";
      EXPECT_LE(norm_difference(got.users, rotated.users), bound) << what << " user norms";
    }
  }
}

// A warm start (model.init_from, Python's refit) replaces a model's initial factors through
// set_factors after init: the next iteration starts from the given factors on every device
// (uploaded to the GPU), within the bounds of an iteration from them, and not from the model's
// own draw.
TEST_P(IalsOnDevice, AnIterationAfterSetFactorsStartsFromTheGivenFactors) {
  const data::Csr r = random_csr(300, 200, 12, 164);
  const data::Csr rt = r.transpose();
  for (bool cholesky : {false, true}) {
    const IalsOptions o = dense_basis(options(64, cholesky));
    IalsOptions other = o;
    other.seed = 1234;
    const auto [xs, ys] = models::initial_factors(other, r.rows, r.cols);
    auto m = models::make_ials(o, ctx_);
    m->init(r.rows, r.cols);
    m->set_factors(xs, ys);
    m->iterate(r, rt);
    const std::string what = cholesky ? "cholesky" : "cg";
    expect_iteration_matches(r, rt, o, xs, ys, 0.0, m->user_factors(), m->item_factors(), what);
    const Trained own = one_iteration(o, ctx_, r, rt);
    EXPECT_GT(rel_error(m->item_factors(), own.items), 1e-2) << what;
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
    const auto [x0, y0] = models::initial_factors(o, r.rows, r.cols);
    const Trained got = one_iteration(o, ctx_, r, rt);
    expect_iteration_matches(r, rt, o, x0, y0, storage_roundoff(dtype), got.users, got.items,
                             backend::cuda::storage_name(dtype));
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
    const std::vector<float> w = backend::cpu::popularity_weights(rt, beta);
    const double want = backend::cpu::objective(r, rt, m->user_factors(), m->item_factors(), o.solve, w);
    EXPECT_NEAR(got, want, loss_bound(r, m->user_factors(), m->item_factors(), o.solve, w))
        << "beta " << beta;
  }
}

TEST_P(IalsOnDevice, FoldInIsTheTrainingSolve) {
  const data::Csr r = random_csr(80, 60, 8, 41);
  const IalsOptions o = options(24, false, 5);
  auto m = models::make_ials(o, ctx_);
  const Matrix users = random_matrix(80, 24, 42), items = random_matrix(60, 24, 43);
  m->set_factors(users, items);
  const Matrix got = m->fold_in(r);
  const Matrix want = backend::cpu::fold_in(r, items, dense_basis(o).solve, 2);
  // One half from zero factors against exact copies of the items.
  const std::vector<double> e = half_error(r, items, std::vector<double>(60, 0.0), want, o.solve,
                                           half_numerics(o, kUnitRoundoff, false));
  EXPECT_LE(energy_difference(r, items, got, want, o.solve),
            relative_bound(e, energy_norms(r, items, want, o.solve)));
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

TEST_P(IalsOnDevice, ConfidencesFarAboveTheGramMatrixTrainOrAreRefusedWithASentence) {
  // alpha·c = 1.5e10 against λ and a Gram matrix of order 1: float32 rounds the exact solver's
  // systems past positive definiteness. The CPU solves those rows in double; the GPU has no
  // such fallback, so where its factorisation fails it must refuse them with the input's
  // sentence, not an internal error (an uncaught InternalError fails the test).
  data::Csr r = random_csr(50, 40, 6, 57);
  for (int64_t u = 0; u < 5; ++u)
    if (r.row_size(u) > 0) r.data[r.indptr[u]] = 1e10f;
  const data::Csr rt = r.transpose();
  auto m = models::make_ials(options(16, true), ctx_);
  m->init(r.rows, r.cols);
  try {
    m->iterate(r, rt);
    for (const Matrix* f : {&m->user_factors(), &m->item_factors()})
      for (float v : f->data) ASSERT_TRUE(std::isfinite(v));
  } catch (const Error& e) {
    EXPECT_TRUE(on_gpu()) << e.what();
    EXPECT_NE(std::string(e.what()).find("span too many orders of magnitude for float32"),
              std::string::npos)
        << e.what();
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
    // Exact minimisations never raise the objective; the two evaluations' rounding may.
    EXPECT_LE(l, prev + loss_bound(r, m->user_factors(), m->item_factors(), options(16, true).solve))
        << "iteration " << it;
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
    // Each iteration of both, half by half against the CPU from the factors it started from.
    Matrix xa = a.user_factors(), ya = a.item_factors(), xb = xa, yb = ya;
    for (int it = 0; it < 2; ++it) {
      a.iterate(r, rt);
      b.iterate(r, rt);
      const std::string what = "k=" + std::to_string(k) + " iteration " + std::to_string(it + 1);
      expect_iteration_matches(r, rt, o, xa, ya, 0.0, a.user_factors(), a.item_factors(),
                               what + " streamed");
      expect_iteration_matches(r, rt, o, xb, yb, 0.0, b.user_factors(), b.item_factors(),
                               what + " resident");
      xa = a.user_factors();
      ya = a.item_factors();
      xb = b.user_factors();
      yb = b.item_factors();
    }
    EXPECT_NE(a.data_mode().find("streamed"), std::string::npos) << a.data_mode();
    EXPECT_NE(b.data_mode().find("resident"), std::string::npos) << b.data_mode();
    // The objective from the staged interactions against the CPU's from the same factors.
    const std::vector<float> w = backend::cpu::popularity_weights(rt, o.unobserved_exp);
    const double want = backend::cpu::objective(r, rt, a.user_factors(), a.item_factors(), o.solve, w);
    EXPECT_NEAR(a.loss(r, rt), want, loss_bound(r, a.user_factors(), a.item_factors(), o.solve, w))
        << "k=" << k;
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

// ---- thresholds of the kernels ---------------------------------------------------------------
// Each test builds its data and the CPU reference and checks them (that the data crosses the
// kernel's threshold, that the reference is a real training step) on every machine, and only
// then starts the GPU (RF_START_GPU): where no GPU answers, it skips there.

class IalsThresholds : public GpuHalfTest {};

// backend/cuda/launch.h: kSegmentItems = 512 interactions per thread block of the CG and
// objective kernels; a longer row spans several segments, summed per row.
constexpr int64_t kSegmentItems = 512;
// models/ials/ials_cholesky.cu: above kSharedMax = 90 factors a row's matrix lives in a global slot;
// models/ials/ials_cuda_solver.cpp allocates at most 2 slots per SM (264 on an H200's 132 SMs) and a
// block moves on to its next row when one is done.
constexpr int kSlotFactors = 100;
constexpr int64_t kMaxSlots = 2 * 132;

// One iteration of `o` from its initial factors on the device under test, and the objective
// before and after on the same device.
struct Trial {
  Trained t;
  double loss0 = 0, loss1 = 0;
  std::string data_mode;
};

Trial trial_once(const IalsOptions& o, const Context& ctx, const data::Csr& r, const data::Csr& rt) {
  auto m = models::make_ials(o, ctx);
  m->init(r.rows, r.cols);
  Trial run;
  run.loss0 = m->loss(r, rt);
  m->iterate(r, rt);
  run.loss1 = m->loss(r, rt);
  run.t = {m->user_factors(), m->item_factors()};
  if (auto* g = dynamic_cast<models::IalsCuda*>(m.get())) run.data_mode = g->data_mode();
  return run;
}

// The CPU half of a threshold test: the CPU's iteration of `o` (float32, G dense, as the GPU
// applies it; its users are the GPU's user-half reference) must be finite and lower the objective.
void check_cpu_reference(const IalsOptions& o, const data::Csr& r, const data::Csr& rt) {
  IalsOptions ref = dense_basis(o);
  ref.dtype = Storage::kFloat32;
  const Trial want = trial_once(ref, Context::create("cpu", 2), r, rt);
  EXPECT_TRUE(std::isfinite(want.loss1));
  EXPECT_LT(want.loss1, want.loss0) << "the reference iteration should lower the objective";
}

// The GPU against the CPU: each half within its derived bound of the CPU's from the same
// inputs, and the objective within its bound of the CPU objective of the GPU's own factors.
void expect_matches(const Trial& got, const IalsOptions& o, const data::Csr& r, const data::Csr& rt,
                    const std::string& what) {
  const auto [x0, y0] = models::initial_factors(o, r.rows, r.cols);
  const double start_u = o.dtype == Storage::kFloat32 ? 0.0 : storage_roundoff(o.dtype);
  expect_iteration_matches(r, rt, o, x0, y0, start_u, got.t.users, got.t.items, what);
  const std::vector<float> w = backend::cpu::popularity_weights(rt, o.unobserved_exp);
  EXPECT_NEAR(got.loss1, backend::cpu::objective(r, rt, got.t.users, got.t.items, o.solve, w),
              loss_bound(r, got.t.users, got.t.items, o.solve, w))
      << what << " objective";
}

// A user with 1,300 interactions (3 segments) and an item with 600 users (2 segments), among
// rows of a few: multi-segment CG sums and objective on both sides.
data::Csr long_rows(uint64_t seed) {
  Rng rng(seed);
  const int users = 600, items = 1400;
  std::vector<data::index_t> rr, cc;
  std::vector<float> vv;
  for (int u = 0; u < users; ++u) {
    std::vector<bool> used(items, false);
    if (u == 0)
      for (int i = 0; i < 1300; ++i) used[static_cast<size_t>(i)] = true;
    used[items - 1] = true;  // the long item: every user
    for (int e = 0; e < 4; ++e) used[static_cast<size_t>(rng.below(items))] = true;
    for (int i = 0; i < items; ++i)
      if (used[static_cast<size_t>(i)]) {
        rr.push_back(u);
        cc.push_back(i);
        vv.push_back(1.f + 4.f * static_cast<float>(rng.uniform()));
      }
  }
  return data::Csr::from_coo(users, items, rr, cc, vv);
}

int64_t longest_row(const data::Csr& m) {
  int64_t n = 0;
  for (int64_t r = 0; r < m.rows; ++r) n = std::max(n, m.row_size(r));
  return n;
}

TEST_F(IalsThresholds, RowsLongerThanOneSegment) {
  const data::Csr r = long_rows(91);
  const data::Csr rt = r.transpose();
  ASSERT_GT(longest_row(r), 2 * kSegmentItems);
  ASSERT_GT(longest_row(rt), kSegmentItems);
  for (int k : {32, 300})  // register tiles (kp 32) and shared-memory tiles (kp 512)
    check_cpu_reference(options(k, false), r, rt);
  RF_START_GPU(gpu_);
  for (int k : {32, 300}) {
    const IalsOptions o = options(k, false);
    expect_matches(trial_once(o, gpu_, r, rt), o, r, rt, "k=" + std::to_string(k));
  }
}

TEST_F(IalsThresholds, ConjugateGradientAboveTheSharedMemoryOptIn) {
  // models/ials/ials_cg.cu, cg_observed_large: (2 kp + 2·64) floats of shared memory; above 48 KiB
  // (kp ≥ 6,144, k > 5,888) the launch must opt in (cudaFuncAttributeMaxDynamicSharedMemorySize).
  const int k = 6000;
  const int64_t kp = (k + 255) / 256 * 256;
  ASSERT_GT((2 * kp + 2 * 64) * 4, 48 * 1024);
  const data::Csr r = random_csr(12, 10, 4, 93);
  const data::Csr rt = r.transpose();
  IalsOptions o = options(k, false);
  check_cpu_reference(o, r, rt);
  RF_START_GPU(gpu_);
  expect_matches(trial_once(o, gpu_, r, rt), o, r, rt, "k=6000");
}

TEST_F(IalsThresholds, CholeskyWithMoreRowsThanSlots) {
  const data::Csr r = random_csr(700, 500, 6, 95);
  const data::Csr rt = r.transpose();
  ASSERT_GT(r.rows, kMaxSlots);
  ASSERT_GT(rt.rows, kMaxSlots);
  IalsOptions o = options(kSlotFactors, true);
  check_cpu_reference(o, r, rt);
  RF_START_GPU(gpu_);
  for (Storage dtype : {Storage::kFloat32, Storage::kFloat16}) {
    o.dtype = dtype;
    expect_matches(trial_once(o, gpu_, r, rt), o, r, rt, backend::cuda::storage_name(dtype));
  }
}

TEST_F(IalsThresholds, StreamingWithCholeskyAndWith16BitStorage) {
  const data::Csr r = random_csr(400, 300, 15, 97);
  const data::Csr rt = r.transpose();
  struct Case {
    int k;
    bool cholesky;
    Storage dtype;
  };
  // Cholesky in shared memory (k ≤ 90) and in global slots; CG with float16 and bfloat16.
  const Case cases[] = {{40, true, Storage::kFloat32},
                        {kSlotFactors, true, Storage::kFloat32},
                        {kSlotFactors, true, Storage::kFloat16},
                        {64, false, Storage::kFloat16},
                        {64, false, Storage::kBFloat16}};
  for (const Case& c : cases) check_cpu_reference(options(c.k, c.cholesky), r, rt);
  RF_START_GPU(gpu_);
  for (size_t j = 0; j < std::size(cases); ++j) {
    IalsOptions o = options(cases[j].k, cases[j].cholesky);
    o.dtype = cases[j].dtype;
    o.streaming = Streaming::kOn;
    o.stream_batch_nnz = 500;  // many batches, both staging buffers reused
    const Trial got = trial_once(o, gpu_, r, rt);
    const std::string what = std::string(cases[j].cholesky ? "cholesky" : "cg") + " k=" +
                             std::to_string(cases[j].k) + " " + backend::cuda::storage_name(o.dtype);
    EXPECT_NE(got.data_mode.find("streamed"), std::string::npos) << what;
    expect_matches(got, o, r, rt, what);
  }
}

TEST_F(IalsThresholds, CholeskyAboveItsLimitIsRefusedBeforeAnyGpuWork) {
  // The check itself is CUDA-free: the options of a config, refused on every machine.
  config::Config cfg = config::Config::defaults();
  cfg.set("model.solver=cholesky");
  cfg.set("model.factors=" + std::to_string(backend::cuda::kMaxCholeskyFactors + 1));
  const IalsOptions o = pipeline::ials_options(cfg.settings());
  try {
    backend::cuda::check_gpu_solver(o.factors, o.solve);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "model.factors is 513 with model.solver cholesky; the GPU's exact solve supports "
                 "at most 512 factors (its cost grows as k³ per row), so set model.solver: cg or "
                 "train.device: cpu");
  }
  EXPECT_NO_THROW(backend::cuda::check_gpu_solver(backend::cuda::kMaxCholeskyFactors, o.solve));
  IalsOptions cg = o;
  cg.solve.cholesky = false;
  EXPECT_NO_THROW(backend::cuda::check_gpu_solver(o.factors, cg.solve));
  EXPECT_NO_THROW(models::make_ials(o, Context::create("cpu", 2)));  // the CPU has no such limit
  RF_START_GPU(gpu_);
  // The model refuses when it is made, before the data or the GPU are touched.
  EXPECT_THROW(models::make_ials(o, gpu_), Error);
}

}  // namespace
}  // namespace recforge::test
