// BPR, sampled softmax and CCL on every device (models/batch/batch_cpu.h, models/batch/batch_cuda_trainer.h).
// The devices draw different samples (xoshiro on the CPU, Philox on the GPU) and run Hogwild in
// different orders, so they are compared through what training achieves, not factor by factor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.h"
#include "device_test.h"
#include "models/batch/batch.h"
#include "models/batch/batch_cpu.h"
#include "models/batch/batch_cuda_trainer.h"

namespace recforge::test {
namespace {

using backend::BatchLoss;
using backend::Optimizer;
using models::BatchOptions;

// ---- named tolerances ------------------------------------------------------------------------

/// Loss decrease: the last epoch's mean loss must be at most this fraction of the first's. One
/// epoch's mean over 4,400 samples carries about 1 % sampling noise; on the planted set every
/// configuration below lowers the loss by 45 % or more in 6 epochs on the CPU (BPR 0.69 → 0.10,
/// softmax 4.5 → 2.4; CCL: see LossDecreasesForEveryLossAndOptimizer's log), so 0.9 fails only
/// when training does not work.
constexpr double kLossDropFactor = 0.9;
/// Planted groups: Recall@10 of each user's held-out item. A model that has learnt the groups
/// ranks the user's 9 unseen group items above all others, so recall is ~1 (the CPU reaches
/// 0.98 for BPR and 0.99 for softmax); item popularity alone gives about 10 / 149 ≈ 0.07. 0.8
/// leaves room for sampling noise and Hogwild orders.
constexpr double kPlantedRecallMin = 0.8;
/// GPU vs CPU Recall@10 on the planted set: other random streams and update orders; with 400
/// users one run's recall varies by about ±0.03 (binomial), so 0.15 is several of those.
constexpr double kRecallBand = 0.15;
/// reject_seen: share of the negative pushes that went to unseen items (see the test). With
/// reject_seen it is 1 up to the 1 % of triples whose 16 draws all hit seen items (skipped) and
/// σ(−x) deviating from 1/2 by < 1 % at this learning rate (the CPU measures 0.988); without it,
/// 2/7 ≈ 0.29 (CPU: 0.26).
constexpr double kRejectSeenMinShare = 0.9;
constexpr double kNoRejectMaxShare = 0.5;

class EmbeddingOnDevice : public DeviceTest {};
INSTANTIATE_TEST_SUITE_P(Devices, EmbeddingOnDevice, devices(), device_name);

const char* opt_name(Optimizer o) {
  return o == Optimizer::kSgd ? "sgd" : o == Optimizer::kAdagrad ? "adagrad" : "adam";
}

// A configuration that trains on the small problems below, per loss and optimiser.
BatchOptions options(BatchLoss loss, Optimizer opt) {
  BatchOptions o;
  auto& p = o.params;
  p.loss = loss;
  p.optimizer = opt;
  p.factors = 16;
  p.batch_size = 64;
  p.regularization = 1e-4;
  p.negatives = loss == BatchLoss::kBpr ? 2 : 32;
  // Softmax gradients are means over the batch, hence SGD's larger step.
  if (opt == Optimizer::kSgd)
    p.learning_rate = loss == BatchLoss::kBpr ? 0.1 : 10.0;
  else if (opt == Optimizer::kAdagrad)
    p.learning_rate = 0.1;
  else
    p.learning_rate = 0.02;
  if (loss == BatchLoss::kCcl) {  // unit rows, cosine scores, many shared negatives
    p.normalize = true;
    p.in_batch = false;
    p.margin = 0.3;
    p.negative_weight = 5;
  }
  o.epochs = 6;
  o.seed = 5;
  o.init_std = 0.1;
  return o;
}

std::string what(const BatchOptions& o) {
  return std::string(models::loss_name(o.params.loss)) + "/" + opt_name(o.params.optimizer);
}

// Losses of every epoch.
std::vector<double> train(models::Model& m, const data::Csr& r, const data::Csr& rt, int epochs) {
  std::vector<double> losses;
  m.init(r.rows, r.cols);
  for (int e = 0; e < epochs; ++e) {
    m.iterate(r, rt);
    losses.push_back(m.loss(r, rt));
  }
  return losses;
}

// Users in 8 groups; each user interacts with 12 of its group's 20 items, the last of which is
// held out.
struct Planted {
  data::Csr train;
  std::vector<data::index_t> held;  // per user
};

Planted planted(uint64_t seed) {
  constexpr int kGroups = 8, kUsersPerGroup = 50, kItemsPerGroup = 20, kPerUser = 12;
  Rng rng(seed);
  Planted p;
  std::vector<data::index_t> rows, cols;
  const int users = kGroups * kUsersPerGroup;
  for (int u = 0; u < users; ++u) {
    const int g = u % kGroups;
    std::vector<data::index_t> items(kItemsPerGroup);
    std::iota(items.begin(), items.end(), g * kItemsPerGroup);
    for (int k = 0; k < kPerUser; ++k)  // partial Fisher-Yates
      std::swap(items[k], items[k + rng.below(static_cast<uint64_t>(kItemsPerGroup - k))]);
    for (int k = 0; k + 1 < kPerUser; ++k) {
      rows.push_back(u);
      cols.push_back(items[k]);
    }
    p.held.push_back(items[kPerUser - 1]);
  }
  p.train = data::Csr::from_coo(users, kGroups * kItemsPerGroup, rows, cols,
                                std::vector<float>(rows.size(), 1.f));
  return p;
}

// Share of users whose held-out item is among their 10 best-scored unseen items.
double recall_at_10(const models::Model& m, const Planted& p) {
  const Matrix& u = m.user_factors();
  const Matrix& v = m.item_factors();
  int hits = 0;
  for (int64_t r = 0; r < p.train.rows; ++r) {
    std::vector<std::pair<float, data::index_t>> scored;
    for (int64_t i = 0; i < v.rows; ++i) {
      const data::index_t* b = p.train.indices.data() + p.train.indptr[r];
      const data::index_t* e = p.train.indices.data() + p.train.indptr[r + 1];
      if (std::binary_search(b, e, static_cast<data::index_t>(i))) continue;
      float s = 0;
      for (int64_t c = 0; c < u.cols; ++c) s += u.row(r)[c] * v.row(i)[c];
      scored.emplace_back(-s, static_cast<data::index_t>(i));
    }
    std::partial_sort(scored.begin(), scored.begin() + 10, scored.end());
    for (int k = 0; k < 10; ++k)
      if (scored[static_cast<size_t>(k)].second == p.held[static_cast<size_t>(r)]) ++hits;
  }
  return static_cast<double>(hits) / static_cast<double>(p.train.rows);
}

TEST_P(EmbeddingOnDevice, LossDecreasesForEveryLossAndOptimizer) {
  const data::Csr r = planted(31).train;
  const data::Csr rt = r.transpose();
  for (BatchLoss loss : {BatchLoss::kBpr, BatchLoss::kSoftmax, BatchLoss::kCcl}) {
    for (Optimizer opt : {Optimizer::kSgd, Optimizer::kAdagrad, Optimizer::kAdam}) {
      const BatchOptions o = options(loss, opt);
      auto m = models::make_batch_model(o, ctx_);
      const std::vector<double> l = train(*m, r, rt, o.epochs);
      for (double x : l) ASSERT_TRUE(std::isfinite(x)) << what(o);
      EXPECT_LE(l.back(), kLossDropFactor * l.front())
          << what(o) << ": first " << l.front() << ", last " << l.back();
    }
  }
}

TEST_P(EmbeddingOnDevice, SoftmaxVariantsLowerTheLoss) {
  // Without in-batch negatives, without logq, and with popularity-skewed negatives.
  const data::Csr r = planted(32).train;
  const data::Csr rt = r.transpose();
  for (int variant = 0; variant < 3; ++variant) {
    BatchOptions o = options(BatchLoss::kSoftmax, Optimizer::kAdam);
    if (variant == 0) o.params.in_batch = false;
    if (variant == 1) o.params.logq = false;
    if (variant == 2) o.params.negative_exp = 0.75;
    auto m = models::make_batch_model(o, ctx_);
    const std::vector<double> l = train(*m, r, rt, o.epochs);
    EXPECT_LE(l.back(), kLossDropFactor * l.front())
        << "variant " << variant << ": first " << l.front() << ", last " << l.back();
  }
}

TEST_P(EmbeddingOnDevice, PlantedGroupsAreRecovered) {
  const Planted p = planted(77);
  const data::Csr rt = p.train.transpose();
  // Plain BPR and softmax, BPR with dynamic negative sampling, the cosine softmax, the cosine
  // softmax with an item bias outside the sphere, CCL without and with in-batch negatives,
  // CCL with SimpleX's user-side aggregation, CCL with dropout on the user vector (the GPU
  // draws its masks from Philox, so CPU and GPU agree within the recall band, not bit for bit),
  // and CCL with both.
  for (int variant = 0; variant < 10; ++variant) {
    const BatchLoss loss = variant == 0 || variant == 2 ? BatchLoss::kBpr
                           : variant >= 5           ? BatchLoss::kCcl
                                                    : BatchLoss::kSoftmax;
    BatchOptions o = options(loss, Optimizer::kAdam);
    o.epochs = 20;
    if (variant == 2) o.params.hard_negatives = 8;
    if (variant == 6) o.params.in_batch = true;
    if (variant == 8) o.params.dropout = 0.2;
    if (variant == 7 || variant == 9) o.params.history_weight = 0.5;
    if (variant == 9) o.params.dropout = 0.2;  // both: the mask on the aggregated vector
    if (variant == 3 || variant == 4) {
      o.params.normalize = true;
      o.params.item_bias = variant == 4;
      o.params.temperature = 0.2;
    }
    auto m = models::make_batch_model(o, ctx_);
    train(*m, p.train, rt, o.epochs);
    const double recall = recall_at_10(*m, p);
    EXPECT_GE(recall, kPlantedRecallMin) << what(o) << " variant " << variant;
    if (on_gpu()) {
      auto ref = models::make_batch_model(o, cpu());
      train(*ref, p.train, rt, o.epochs);
      const double want = recall_at_10(*ref, p);
      EXPECT_NEAR(recall, want, kRecallBand) << what(o) << ": GPU vs CPU Recall@10";
    }
  }
}

// Every user has seen items 0..5 of 8. With plain SGD, no L2, tiny factors and a tiny step,
// each triple moves the positive's bias up and the negative's down by lr·σ(−x) ≈ lr/2, so the
// unseen items' bias drop, over lr/2 per triple, is the share of negatives that were unseen.
TEST_P(EmbeddingOnDevice, RejectSeenDrawsOnlyUnseenNegatives) {
  constexpr int kUsers = 50, kItems = 8, kSeen = 6;
  std::vector<data::index_t> rows, cols;
  for (int u = 0; u < kUsers; ++u)
    for (int i = 0; i < kSeen; ++i) {
      rows.push_back(u);
      cols.push_back(i);
    }
  const data::Csr r = data::Csr::from_coo(kUsers, kItems, rows, cols,
                                          std::vector<float>(rows.size(), 1.f));
  const data::Csr rt = r.transpose();
  // One thread and one sample per step: no Hogwild collisions on the 8 bias rows.
  const Context ctx = Context::create(GetParam(), 1);
  for (bool reject : {true, false}) {
    BatchOptions o;
    auto& q = o.params;
    q.loss = BatchLoss::kBpr;
    q.optimizer = Optimizer::kSgd;
    q.factors = 2;
    q.item_bias = true;
    q.batch_size = 1;
    q.negatives = 1;
    q.learning_rate = 1e-4;
    q.regularization = 0;
    q.reject_seen = reject;
    o.init_std = 1e-3;
    o.seed = 9;
    auto m = models::make_batch_model(o, ctx);
    train(*m, r, rt, 1);
    const Matrix& v = m->item_factors();
    double unseen_drop = 0;
    for (int i = kSeen; i < kItems; ++i) unseen_drop -= v.row(i)[q.factors];  // bias starts at 0
    const double share = unseen_drop / (0.5 * q.learning_rate * static_cast<double>(r.nnz()));
    if (reject)
      EXPECT_GE(share, kRejectSeenMinShare) << "reject_seen: share of unseen negatives";
    else
      EXPECT_LE(share, kNoRejectMaxShare) << "without reject_seen: share of unseen negatives";
  }
}

TEST_P(EmbeddingOnDevice, UsersKeepOneInTheItemBiasColumn) {
  const data::Csr r = random_csr(200, 90, 8, 33);
  const data::Csr rt = r.transpose();
  for (BatchLoss loss : {BatchLoss::kBpr, BatchLoss::kSoftmax}) {
    for (Optimizer opt : {Optimizer::kSgd, Optimizer::kAdagrad, Optimizer::kAdam}) {
      BatchOptions o = options(loss, opt);
      o.params.item_bias = true;
      o.params.regularization = 0.01;  // L2 must not shrink the constant column either
      auto m = models::make_batch_model(o, ctx_);
      train(*m, r, rt, 2);
      const Matrix& u = m->user_factors();
      const Matrix& v = m->item_factors();
      ASSERT_EQ(u.cols, o.params.factors + 1) << what(o);
      int64_t moved = 0;
      for (int64_t row = 0; row < u.rows; ++row)
        ASSERT_EQ(u.row(row)[o.params.factors], 1.f) << what(o) << " user " << row;
      for (int64_t i = 0; i < v.rows; ++i) moved += v.row(i)[o.params.factors] != 0.f;
      EXPECT_GT(moved, 0) << what(o) << ": the item biases should train";
    }
  }
}

TEST_P(EmbeddingOnDevice, CclAggregationResumesFromItsTrainingState) {
  // With user-side aggregation the served user vectors are not what training continues from:
  // the users' own rows and the history map W are in the training state. Two epochs, a resume
  // from the state into a new model, and a third epoch must give the factors of three epochs in
  // one go; each device is deterministic on one problem (the CPU's sums split by its 2 threads
  // the same way every run; the GPU sorts its updates, cuBLAS repeats its results), so the only
  // slack is kResumeTol = 1e-6, far below what a lost state costs: without the own rows and W
  // (the control below) the third epoch starts from other vectors and moves factors by 1e-3 or
  // more.
  constexpr double kResumeTol = 1e-6;
  const Planted p = planted(91);
  const data::Csr rt = p.train.transpose();
  BatchOptions o = options(BatchLoss::kCcl, Optimizer::kAdam);
  o.params.history_weight = 0.5;
  auto straight = models::make_batch_model(o, ctx_);
  train(*straight, p.train, rt, 3);
  auto first = models::make_batch_model(o, ctx_);
  train(*first, p.train, rt, 2);
  const models::TrainingState state = first->training_state();
  ASSERT_EQ(state.arrays.count("user_rows"), 1u);
  ASSERT_EQ(state.arrays.count("history_map"), 1u);
  const auto max_diff = [](const Matrix& a, const Matrix& b) {
    double m = 0;
    for (size_t e = 0; e < a.data.size(); ++e)
      m = std::max(m, static_cast<double>(std::abs(a.data[e] - b.data[e])));
    return m;
  };
  for (bool whole : {true, false}) {
    models::TrainingState st = state;
    if (!whole) {
      st.arrays.erase("user_rows");
      st.arrays.erase("history_map");
      st.arrays.erase("history_map_m");
      st.arrays.erase("history_map_v");
    }
    auto resumed = models::make_batch_model(o, ctx_);
    resumed->resume(first->user_factors(), first->item_factors(), 2, std::move(st));
    resumed->iterate(p.train, rt);
    const double du = max_diff(resumed->user_factors(), straight->user_factors());
    const double di = max_diff(resumed->item_factors(), straight->item_factors());
    if (whole) {
      EXPECT_LE(du, kResumeTol) << "served user vectors after the resume";
      EXPECT_LE(di, kResumeTol) << "item rows after the resume";
    } else {
      EXPECT_GT(std::max(du, di), 1e-3) << "a resume without the own rows and W went unnoticed";
    }
  }
}

// ---- one CCL step on chosen samples, CPU against CUDA ------------------------------------------
// The tests above compare the devices only through what training achieves, which a wrong scale,
// a row left out of the summed updates or an optimiser's state off by a step would pass. Here
// both devices take the same two steps on chosen samples from the same unit rows
// (cpu::BatchTrainerCpu::step against cuda::BatchTrainerCuda::step, the code an epoch runs after
// its sampling), without dropout (the GPU draws its own mask).
//
// Bounds. B = 4 rows of a batch of 6 (a short batch), C = 4 negatives (plus the 4 positives with
// in_batch), d = 16, negative weight w = 3, unit rows (every coordinate at most 1). A gradient
// entry is a float32 sum of at most 2·(B + 2C) = 24 products whose magnitudes add up to at most
// 2·(1 + w)/B = 2 (a row repeated twice, each occurrence −1/B for its positive and w/(kept·B)
// per negative above the margin); the devices add them in other orders (OpenBLAS against cuBLAS,
// per-row sums against a sort by id), so by the γ_n bound their gradients differ by at most
// δg = 24 · 2⁻²⁴ · 2 ≈ 2.9e-6, and the projection onto the tangent space (g − (g·w)w) at most
// doubles that. Step 1, SGD at lr 0.2: rows differ by at most 2·0.2·δg ≈ 1.2e-6 plus the
// renormalisation's few ulps. Adagrad and Adam take lr·m̂/(√v̂ + ε), which moves by at most about
// lr/ε per unit change of the gradient: ε = 0.1 (not 1e-8, where a coordinate with g near 0 would
// amplify rounding a hundred-million-fold) and lr 0.01 make that 0.1. Step 2 starts from rows
// that differ by those amounts, and its gradients move by at most about twice a row's change
// (2 = the bound on Σ|terms| above), so after it rows differ by at most about
// 1.2e-6 + 2·0.2·(2.9e-6 + 2·1.2e-6) ≈ 3.4e-6 (SGD; less for the adaptive ones).
// kCclStepTol is three times that; what it must catch is of the order of a step: SGD moves rows
// by 0.2·|g| ≈ 0.05–0.1, the adaptive ones about lr·|g|/(|g| + ε) ≈ 5e-3 per coordinate, and an
// Adam bias correction one step off halves the first step. The losses (means of 1 − cos plus w
// times a hinge mean) differ by about (1 + w)·d·2⁻²⁴ ≈ 4e-6 (step 2: plus about 2·(1 + w) times
// the rows' differences). Hinge terms switch on at cos = margin: every score of both steps is at
// least kMarginGap from it on the CPU, so that cosines within 16·2⁻²⁴ ≈ 1e-6 plus the rows'
// differences of each other fall on the same side on both devices.
constexpr double kCclStepTol = 1e-5;
constexpr double kCclStepLossTol = 3e-5;
constexpr double kMarginGap = 2e-3;

struct CclStepCase {
  const char* label;
  Optimizer optimizer;
  double lr;
};

class CclStepOnGpu : public GpuHalfTest {};

constexpr int64_t kStepUsers = 8, kStepItems = 12;
constexpr int kStepDim = 16;

// rows × kStepDim rows drawn uniformly in [−1, 1) and scaled to unit norm.
Matrix unit_rows(int64_t rows, Rng& rng) {
  Matrix m;
  m.rows = rows;
  m.cols = kStepDim;
  m.data.resize(static_cast<size_t>(rows * kStepDim));
  for (float& e : m.data) e = static_cast<float>(rng.uniform() * 2 - 1);
  for (int64_t r = 0; r < rows; ++r) backend::cpu::normalize_row(m.row(r), kStepDim);
  return m;
}

// The CCL of the step tests: a batch of 6 (the tests give 4 rows), 4 shared negatives, margin
// 0.05 (some cosines above it, some below), negative weight 3.
backend::BatchParams ccl_step_params(bool in_batch, Optimizer optimizer) {
  backend::BatchParams p;
  p.loss = BatchLoss::kCcl;
  p.factors = kStepDim;
  p.normalize = true;
  p.batch_size = 6;
  p.negatives = 4;
  p.in_batch = in_batch;
  p.margin = 0.05;
  p.negative_weight = 3;
  p.optimizer = optimizer;
  return p;
}

// The two steps' samples of the step comparisons (4 rows of a batch of 6; one vector per step).
// Step 1: a repeated user (rows 0 and 3), a repeated positive (rows 1 and 2), a negative equal
// to row 0's positive; step 2: other rows, items 5 and 11 on both sides.
const std::vector<std::vector<data::index_t>> kStepUsersOf = {{1, 4, 6, 1}, {0, 3, 4, 7}};
const std::vector<std::vector<data::index_t>> kStepPositivesOf = {{2, 5, 5, 8}, {8, 1, 5, 11}};
const std::vector<std::vector<data::index_t>> kStepNegativesOf = {{2, 9, 0, 3}, {5, 10, 11, 6}};
// The optimisers of the comparisons, with the learning rates of the bounds.
const CclStepCase kStepCases[] = {{"sgd", Optimizer::kSgd, 0.2},
                                  {"adagrad", Optimizer::kAdagrad, 0.01},
                                  {"adam", Optimizer::kAdam, 0.01}};

// One case of the step comparisons and what the CPU's two steps gave (the GPU's reference).
struct CclStepResult {
  std::string label;
  backend::BatchParams params;
  double lr = 0;
  double loss[2] = {0, 0};
  Matrix users, items;
  std::vector<float> map;  // with aggregation: W after the steps
};

// The case's label, parameters (ccl_step_params with Adagrad's and Adam's ε at 0.1, the bounds'
// premise) and learning rate.
CclStepResult step_case(bool in_batch, const CclStepCase& c) {
  CclStepResult r;
  r.label = std::string(c.label) + (in_batch ? " in_batch" : "");
  r.params = ccl_step_params(in_batch, c.optimizer);
  r.params.epsilon = 0.1;
  r.lr = c.lr;
  return r;
}

// The precondition of the step comparisons on batch row b: the cosine of its user vector `u`
// (unit, double) with each shared candidate (the negatives, after the batch's positives with
// in_batch) lies at least kMarginGap from the margin, so both devices put each hinge on the same
// side. Counts the row's negatives above the margin (`above`) and all of them (`pairs`).
void check_margins(const std::vector<double>& u, const Matrix& items,
                   const std::vector<data::index_t>& negatives,
                   const std::vector<data::index_t>& positives, size_t b,
                   const backend::BatchParams& p, const std::string& where, int& above,
                   int& pairs) {
  std::vector<data::index_t> cands = negatives;
  if (p.in_batch) cands.insert(cands.begin(), positives.begin(), positives.end());
  for (data::index_t i : cands) {
    double cos = 0;
    for (size_t k = 0; k < u.size(); ++k) cos += u[k] * items.row(i)[k];
    ASSERT_GT(std::abs(cos - p.margin), kMarginGap) << where << " row " << b << " item " << i;
    if (i != positives[b]) {
      above += cos > p.margin;
      ++pairs;
    }
  }
}

// The GPU trainer's users and items (downloaded) within `tol` of the CPU's, value by value.
void expect_factors_near(backend::cuda::BatchTrainerCuda& gpu, const Matrix& want_users,
                         const Matrix& want_items, double tol) {
  Matrix users, items;
  gpu.get_factors(users, items);
  for (auto [got, ref, side] : {std::tuple<const Matrix*, const Matrix*, const char*>{
                                    &users, &want_users, "user"},
                                {&items, &want_items, "item"}})
    for (int64_t r = 0; r < ref->rows; ++r)
      for (int64_t k = 0; k < ref->cols; ++k)
        ASSERT_NEAR(got->row(r)[k], ref->row(r)[k], tol) << side << " " << r << " column " << k;
}

TEST_F(CclStepOnGpu, TwoStepsOnChosenSamplesEqualTheCpus) {
  constexpr int64_t kUsers = kStepUsers, kItems = kStepItems;
  constexpr int kDim = kStepDim;
  const data::Csr x = random_csr(kUsers, kItems, 4, 21);  // the CPU trainer's matrix (not read)
  Rng rng(20);
  const Matrix u0 = unit_rows(kUsers, rng), v0 = unit_rows(kItems, rng);
  const auto& us = kStepUsersOf;
  const auto& ps = kStepPositivesOf;
  const auto& ns = kStepNegativesOf;
  std::vector<CclStepResult> cpu_results;
  for (bool in_batch : {false, true})
    for (const CclStepCase& c : kStepCases) {
      CclStepResult res = step_case(in_batch, c);
      const backend::BatchParams& p = res.params;
      backend::cpu::BatchTrainerCpu cpu(p, x, 1);
      res.users = u0;
      res.items = v0;
      int above = 0, pairs = 0;  // negatives above the margin: both sides of the hinge are tested
      for (int step = 0; step < 2; ++step) {
        // The precondition on the margin, on the rows this step starts from.
        for (size_t b = 0; b < us[step].size(); ++b) {
          const float* row = res.users.row(us[step][b]);
          check_margins(std::vector<double>(row, row + kDim), res.items, ns[step], ps[step], b,
                        p, res.label + " step " + std::to_string(step + 1), above, pairs);
        }
        res.loss[step] = cpu.step(res.users, res.items, us[step], ps[step], ns[step], res.lr);
      }
      EXPECT_GT(above, 0) << res.label;
      EXPECT_LT(above, pairs) << res.label;
      cpu_results.push_back(std::move(res));
    }

  RF_START_GPU(gpu_);
  for (const CclStepResult& want : cpu_results) {
    SCOPED_TRACE(want.label);
    auto gpu = backend::cuda::make_batch_trainer_cuda(gpu_.cuda(), kUsers, kItems, want.params);
    gpu->set_factors(u0, v0);
    for (int step = 0; step < 2; ++step)
      EXPECT_NEAR(gpu->step(us[step], ps[step], ns[step], want.lr, 1), want.loss[step],
                  kCclStepLossTol)
          << "loss of step " << step + 1;
    expect_factors_near(*gpu, want.users, want.items, kCclStepTol);
  }
}

// SimpleX's user-side aggregation (history_weight h = 0.5): row b scores with u' = z / ‖z‖,
// z = (1 − h)·e_u + h·W·m_u. The same two steps as TwoStepsOnChosenSamplesEqualTheCpus, from a
// history map W = I + noise (so that a transposed W, dW or W·dZ shows in the first step), with
// histories of 0 to 5 items that reach beyond the candidates (user 4, in both batches, has
// none; the second batch has more history entries than the first, so the GPU's entry buffers
// grow between the steps). The GPU's rows, items and W after the two steps must equal the CPU's, whose step
// BatchStep.CclHistoryAggregationFollowsTheGradient checks against central differences.
//
// Bounds, on top of TwoStepsOnChosenSamplesEqualTheCpus's: the gradient reaching e_u, W and the
// history items passes back through the normalisation, (g − (g·u')u') / ‖z‖, which scales a
// difference in g by at most 1/‖z‖ ≤ 1/kMinZ = 2.5 (checked on the CPU), then through W (its
// absolute row and column sums are at most 1 + 15·0.15 < 3.5) and h or 1 − h (≤ 1). The history means are
// the same float sums in the same order on both devices; z, ‖z‖ and u' add a few ulps. So the
// first step's gradients differ by at most about 2.5·3.5·δg ≈ 2.5e-5 and the rows by 2·0.2 of
// that, 1e-5 (SGD; the adaptive ones: lr/ε·δ as before, less); the second step adds as much
// again plus the first step's differences carried through gradients of slope up to
// 2·2.5·3.5 ≈ 18 times a row's change (0.4·18·1e-5 ≈ 7e-5). kAggStepTol is 3e-4, about twice
// that sum. What it must catch is of the order of a step: SGD at lr 0.2 moves a row by
// 0.2·|g| ≈ 0.02–0.1, W by 0.2·h·|dZ|·|m| ≈ 1e-3–1e-2 per entry; a transposed W changes
// z by h·|W − Wᵀ|·|m| ≈ 0.05 already before the step.
constexpr double kAggStepTol = 3e-4;
constexpr double kAggLossTol = 1e-3;
constexpr double kMinZ = 0.4;

// z = (1 − h)·e + h·W·m of user `u` in double, from the rows, the items, W (row-major) and the
// history matrix x.
std::vector<double> aggregate_z(double h, const Matrix& users, const Matrix& items,
                                const std::vector<float>& w, const data::Csr& x,
                                data::index_t u) {
  const int d = static_cast<int>(users.cols);
  std::vector<double> m(d, 0.0), z(d);
  const int64_t n = x.indptr[u + 1] - x.indptr[u];
  for (auto e = x.indptr[u]; e < x.indptr[u + 1]; ++e)
    for (int c = 0; c < d; ++c) m[c] += items.row(x.indices[e])[c] / static_cast<double>(n);
  for (int r = 0; r < d; ++r) {
    double wm = 0;
    for (int c = 0; c < d; ++c) wm += static_cast<double>(w[r * d + c]) * m[c];
    z[r] = (1 - h) * users.row(u)[r] + h * wm;
  }
  return z;
}

TEST_F(CclStepOnGpu, AggregatingStepsEqualTheCpus) {
  constexpr int64_t kUsers = kStepUsers, kItems = kStepItems;
  constexpr int kDim = kStepDim;
  constexpr double kH = 0.5;
  const std::vector<std::vector<data::index_t>> histories = {
      {0, 7}, {3, 10, 11}, {1}, {2, 4, 6, 9, 10}, {}, {5, 8}, {0, 7, 11}, {1, 2, 6, 8, 9}};
  std::vector<data::index_t> hr, hc;
  for (size_t u = 0; u < histories.size(); ++u)
    for (data::index_t i : histories[u]) {
      hr.push_back(static_cast<data::index_t>(u));
      hc.push_back(i);
    }
  const data::Csr x =
      data::Csr::from_coo(kUsers, kItems, hr, hc, std::vector<float>(hr.size(), 1.f));
  Rng rng(20);
  const Matrix u0 = unit_rows(kUsers, rng), v0 = unit_rows(kItems, rng);
  std::vector<float> w0(static_cast<size_t>(kDim * kDim));
  Rng wrng(18);  // a seed whose steps keep every cosine off the margin (checked below)
  for (int r = 0; r < kDim; ++r)
    for (int c = 0; c < kDim; ++c)
      w0[r * kDim + c] = (r == c ? 1.f : 0.f) + 0.3f * static_cast<float>(wrng.uniform() - 0.5);
  const auto& us = kStepUsersOf;
  const auto& ps = kStepPositivesOf;
  const auto& ns = kStepNegativesOf;
  // The starting state: W = w0 and zero moments of the optimiser's kind.
  const auto start = [&](const backend::BatchParams& p) {
    backend::cpu::OptimizerState st;
    st.map = w0;
    const size_t nm = w0.size();
    if (p.optimizer == Optimizer::kAdam) st.map_m.assign(nm, 0.f);
    if (p.optimizer != Optimizer::kSgd) st.map_v.assign(nm, 0.f);
    return st;
  };
  std::vector<CclStepResult> cpu_results;
  for (bool in_batch : {false, true})
    for (const CclStepCase& c : kStepCases) {
      CclStepResult res = step_case(in_batch, c);
      res.params.history_weight = kH;
      const backend::BatchParams& p = res.params;
      backend::cpu::BatchTrainerCpu cpu(p, x, 1);
      cpu.set_optimizer_state(start(p), kUsers, kItems);
      res.users = u0;
      res.items = v0;
      int above = 0, pairs = 0;
      for (int step = 0; step < 2; ++step) {
        // Preconditions on the state this step starts from: ‖z‖ bounded below (the bounds
        // above) and every aggregated cosine off the margin.
        const std::vector<float> w = cpu.history_map();
        for (size_t b = 0; b < us[step].size(); ++b) {
          const std::vector<double> z = aggregate_z(kH, res.users, res.items, w, x, us[step][b]);
          double norm = 0;
          for (double e : z) norm += e * e;
          norm = std::sqrt(norm);
          ASSERT_GT(norm, kMinZ) << res.label << " step " << step + 1 << " row " << b;
          std::vector<double> u(z);
          for (double& e : u) e /= norm;
          check_margins(u, res.items, ns[step], ps[step], b, p,
                        res.label + " step " + std::to_string(step + 1), above, pairs);
        }
        res.loss[step] = cpu.step(res.users, res.items, us[step], ps[step], ns[step], res.lr);
      }
      EXPECT_GT(above, 0) << res.label;
      EXPECT_LT(above, pairs) << res.label;
      res.map = cpu.history_map();
      double moved = 0;  // W's largest change: a W left alone on the GPU must show
      for (size_t e = 0; e < w0.size(); ++e)
        moved = std::max(moved, static_cast<double>(std::abs(res.map[e] - w0[e])));
      EXPECT_GT(moved, 10 * kAggStepTol) << res.label << ": W must move for the comparison";
      cpu_results.push_back(std::move(res));
    }

  RF_START_GPU(gpu_);
  const backend::cpu::ItemSampler sampler(backend::cpu::item_counts(x), 0.0);
  for (const CclStepResult& want : cpu_results) {
    SCOPED_TRACE(want.label);
    auto gpu = backend::cuda::make_batch_trainer_cuda(gpu_.cuda(), kUsers, kItems, want.params);
    gpu->set_factors(u0, v0);
    gpu->use_interactions(x, sampler);
    gpu->set_optimizer_state(start(want.params));
    for (int step = 0; step < 2; ++step)
      EXPECT_NEAR(gpu->step(us[step], ps[step], ns[step], want.lr, 1), want.loss[step],
                  kAggLossTol)
          << "loss of step " << step + 1;
    expect_factors_near(*gpu, want.users, want.items, kAggStepTol);
    const std::vector<float> map = gpu->history_map();
    ASSERT_EQ(map.size(), want.map.size());
    for (size_t e = 0; e < map.size(); ++e)
      ASSERT_NEAR(map[e], want.map[e], kAggStepTol) << "W entry " << e;
  }
}

// One CCL SGD step on the sphere written out in double, for the batch (us, ps) against the
// shared candidates (ns, after ps with in_batch), with the given dropout masks (kStepDim values
// per batch row): the loss before the step and the rows after it. The reference of the dropout
// step below, where the GPU's masks are not the CPU's. Also returns the smallest distance of a
// masked cosine to the margin (where a hinge switches), which the comparison needs large.
struct CclReference {
  double loss = 0, margin_gap = INFINITY;
  Matrix users, items;
};

CclReference ccl_sgd_step(const backend::BatchParams& p, const Matrix& u, const Matrix& v,
                          const std::vector<data::index_t>& us,
                          const std::vector<data::index_t>& ps,
                          const std::vector<data::index_t>& ns, const std::vector<float>& masks,
                          double lr) {
  const int d = kStepDim;
  const auto b_count = static_cast<double>(us.size());
  std::vector<data::index_t> cands = ns;
  if (p.in_batch) cands.insert(cands.begin(), ps.begin(), ps.end());
  std::vector<double> gu(u.data.size(), 0.0), gv(v.data.size(), 0.0);
  std::vector<char> touched_u(static_cast<size_t>(u.rows), 0), touched_v(static_cast<size_t>(v.rows), 0);
  CclReference out;
  for (size_t b = 0; b < us.size(); ++b) {
    std::vector<double> ub(d);
    for (int k = 0; k < d; ++k) ub[k] = static_cast<double>(u.row(us[b])[k]) * masks[b * d + k];
    const auto dot = [&](data::index_t i) {
      double x = 0;
      for (int k = 0; k < d; ++k) x += ub[k] * v.row(i)[k];
      return x;
    };
    std::vector<data::index_t> above;
    double kept = 0, hinge = 0;
    for (data::index_t c : cands) {
      if (c == ps[b]) continue;
      kept += 1;
      const double cos = dot(c);
      out.margin_gap = std::min(out.margin_gap, std::abs(cos - p.margin));
      if (cos > p.margin) {
        hinge += cos - p.margin;
        above.push_back(c);
      }
    }
    out.loss += 1 - dot(ps[b]) + (kept > 0 ? p.negative_weight * hinge / kept : 0.0);
    const double scale = kept > 0 ? p.negative_weight / kept / b_count : 0.0;
    std::vector<double> dub(d);
    for (int k = 0; k < d; ++k) dub[k] = -v.row(ps[b])[k] / b_count;
    for (data::index_t c : above)
      for (int k = 0; k < d; ++k) dub[k] += scale * v.row(c)[k];
    for (int k = 0; k < d; ++k) {
      gu[us[b] * d + k] += dub[k] * masks[b * d + k];  // through the mask
      gv[ps[b] * d + k] -= ub[k] / b_count;
      for (data::index_t c : above) gv[c * d + k] += scale * ub[k];
    }
    touched_u[static_cast<size_t>(us[b])] = 1;
    touched_v[static_cast<size_t>(ps[b])] = 1;
    for (data::index_t c : cands) touched_v[static_cast<size_t>(c)] = 1;
  }
  out.loss /= b_count;
  // w ← (w − lr·(g − (g·w)w)) / ‖…‖ on every touched row.
  const auto sgd = [&](const Matrix& w, const std::vector<double>& g,
                       const std::vector<char>& touched) {
    Matrix r = w;
    for (int64_t row = 0; row < w.rows; ++row) {
      if (!touched[static_cast<size_t>(row)]) continue;
      double gw = 0, norm = 0;
      for (int k = 0; k < d; ++k) gw += g[row * d + k] * w.row(row)[k];
      std::vector<double> next(d);
      for (int k = 0; k < d; ++k) {
        next[k] = w.row(row)[k] - lr * (g[row * d + k] - gw * w.row(row)[k]);
        norm += next[k] * next[k];
      }
      for (int k = 0; k < d; ++k) r.row(row)[k] = static_cast<float>(next[k] / std::sqrt(norm));
    }
    return r;
  };
  out.users = sgd(u, gu, touched_u);
  out.items = sgd(v, gv, touched_v);
  return out;
}

TEST_F(CclStepOnGpu, ADropoutStepFollowsItsMasks) {
  // One SGD step with dropout 0.3, in_batch off and on, against ccl_sgd_step given the step's
  // own masks: the CPU's (dropout_mask of its step seed) here, which also checks the reference,
  // and the GPU's (downloaded) on a GPU. Bounds: the reference is double, each device float, so
  // the gradients differ by at most δg ≈ 2.9e-6 and the rows by 2·lr·δg ≈ 1.2e-6 at lr 0.2 (as in
  // TwoStepsOnChosenSamplesEqualTheCpus; masks of 1/0.7 raise the sums' bound by at most 1/0.7):
  // kCclStepTol. A masked cosine this close to the margin (float against double: within 16·2⁻²⁴
  // ·1/0.7 ≈ 1.4e-6) would make the hinge ambiguous, so each device's masks must keep every one
  // at least kMaskedMarginGap away: the CPU's seed is fixed and checked here; on the GPU the first
  // of 8 Philox seeds whose masks do is compared (each misses with probability about 0.2 %).
  constexpr double kMaskedMarginGap = 2e-5;
  constexpr double kDropout = 0.3, kLr = 0.2;
  const data::Csr x = random_csr(kStepUsers, kStepItems, 4, 21);
  Rng rng(20);
  const Matrix u0 = unit_rows(kStepUsers, rng), v0 = unit_rows(kStepItems, rng);
  const std::vector<data::index_t> us = {1, 4, 6, 1}, ps = {2, 5, 5, 8}, ns = {2, 9, 0, 3};
  std::vector<backend::BatchParams> params;
  for (bool in_batch : {false, true}) {
    backend::BatchParams p = ccl_step_params(in_batch, Optimizer::kSgd);
    p.dropout = kDropout;
    params.push_back(p);
    SCOPED_TRACE(in_batch ? "cpu, in_batch" : "cpu");
    backend::cpu::BatchTrainerCpu cpu(p, x, 1);
    Matrix u = u0, v = v0;
    const double loss = cpu.step(u, v, us, ps, ns, kLr);
    std::vector<float> masks(us.size() * kStepDim);
    for (size_t b = 0; b < us.size(); ++b)
      backend::cpu::dropout_mask(cpu.dropout_seed(), static_cast<int64_t>(b), kStepDim, kDropout,
                                 masks.data() + b * kStepDim);
    const CclReference want = ccl_sgd_step(p, u0, v0, us, ps, ns, masks, kLr);
    ASSERT_GT(want.margin_gap, kMaskedMarginGap) << "precondition on the CPU's masks";
    EXPECT_NEAR(loss, want.loss, kCclStepLossTol);
    for (int64_t i = 0; i < static_cast<int64_t>(u.data.size()); ++i)
      ASSERT_NEAR(u.data[i], want.users.data[i], kCclStepTol) << "user value " << i;
    for (int64_t i = 0; i < static_cast<int64_t>(v.data.size()); ++i)
      ASSERT_NEAR(v.data[i], want.items.data[i], kCclStepTol) << "item value " << i;
  }

  RF_START_GPU(gpu_);
  const float keep = static_cast<float>(1.0 / (1.0 - kDropout));
  for (const backend::BatchParams& p : params) {
    SCOPED_TRACE(p.in_batch ? "cuda, in_batch" : "cuda");
    auto gpu = backend::cuda::make_batch_trainer_cuda(gpu_.cuda(), kStepUsers, kStepItems, p);
    bool compared = false;
    for (uint64_t seed = 1; seed <= 8 && !compared; ++seed) {
      gpu->set_factors(u0, v0);  // also restarts the optimiser's state
      const double loss = gpu->step(us, ps, ns, kLr, seed);
      const std::vector<float> masks = gpu->dropout_mask();
      ASSERT_EQ(masks.size(), us.size() * kStepDim);
      int dropped = 0;
      for (float m : masks) {
        ASSERT_TRUE(m == 0.f || m == keep) << "a mask value is " << m;
        dropped += m == 0.f;
      }
      ASSERT_GT(dropped, 0) << "seed " << seed;
      ASSERT_LT(dropped, static_cast<int>(masks.size())) << "seed " << seed;
      const CclReference want = ccl_sgd_step(p, u0, v0, us, ps, ns, masks, kLr);
      if (want.margin_gap <= kMaskedMarginGap) continue;  // ambiguous hinge: another seed
      compared = true;
      EXPECT_NEAR(loss, want.loss, kCclStepLossTol) << "seed " << seed;
      Matrix u, v;
      gpu->get_factors(u, v);
      for (int64_t i = 0; i < static_cast<int64_t>(u.data.size()); ++i)
        ASSERT_NEAR(u.data[i], want.users.data[i], kCclStepTol) << "user value " << i;
      for (int64_t i = 0; i < static_cast<int64_t>(v.data.size()); ++i)
        ASSERT_NEAR(v.data[i], want.items.data[i], kCclStepTol) << "item value " << i;
    }
    EXPECT_TRUE(compared) << "no seed of 8 kept every masked cosine off the margin";
  }
}

}  // namespace
}  // namespace recforge::test
