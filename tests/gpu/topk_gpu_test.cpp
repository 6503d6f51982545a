// Exact top-k, metrics and evaluation on every device against the CPU reference (eval/).
#include <gtest/gtest.h>

#include <iterator>
#include <string>
#include <vector>

#include "eval/topk_cuda.h"
#include "config/config.h"
#include "device_test.h"
#include "eval/metrics.h"
#include "eval/topk.h"
#include "models/ials/ials.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/options.h"

namespace recforge::test {
namespace {

using data::Csr;
using data::index_t;
using eval::TopK;

class TopkOnDevice : public DeviceTest {
 protected:
  // Top-k on the device under test (the CPU's eval::topk for the cpu instance).
  TopK topk(const std::vector<float>& q, int64_t n_q, const std::vector<float>& it, int64_t n_items,
            int d, int k, const Csr* mask = nullptr, const std::vector<index_t>& rows = {}) {
    if (on_gpu())
      return backend::cuda::topk(*ctx_.cuda(), q.data(), n_q, it.data(), n_items, d, k, mask, rows);
    return eval::topk(q.data(), n_q, it.data(), n_items, d, k, mask, rows);
  }
  // Metrics on the device under test.
  eval::Metrics metrics(const TopK& top, const std::vector<index_t>& rows, const Csr& truth,
                        int64_t n_items, const eval::MetricsOptions& o) {
    if (on_gpu()) return backend::cuda::compute_metrics(*ctx_.cuda(), top, rows, truth, n_items, o);
    return eval::compute_metrics(top, rows, truth, n_items, o);
  }
};
INSTANTIATE_TEST_SUITE_P(Devices, TopkOnDevice, devices(), device_name);

/// n × d small integers: every inner product is exact whatever the summation order, so lists
/// and scores must agree bit for bit with the naive reference, ties included (frequent here).
std::vector<float> int_factors(int64_t n, int d, uint64_t seed, int range = 3) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n * d));
  for (auto& x : v) x = static_cast<float>(static_cast<int>(rng.below(2 * range + 1)) - range);
  return v;
}

std::vector<float> float_factors(int64_t n, int d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n * d));
  for (auto& x : v) x = static_cast<float>(2 * rng.uniform() - 1);
  return v;
}

Csr random_mask(int64_t rows, int64_t cols, double density, uint64_t seed) {
  Rng rng(seed);
  std::vector<index_t> r, c;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (rng.uniform() < density) {
        r.push_back(static_cast<index_t>(i));
        c.push_back(static_cast<index_t>(j));
      }
  return Csr::from_coo(rows, cols, r, c, std::vector<float>(r.size(), 1.0f));
}

void expect_same(const TopK& got, const TopK& want, const std::string& what) {
  ASSERT_EQ(got.n, want.n) << what;
  ASSERT_EQ(got.k, want.k) << what;
  ASSERT_EQ(got.items.size(), want.items.size()) << what;
  for (size_t i = 0; i < got.items.size(); ++i) {
    ASSERT_EQ(got.items[i], want.items[i]) << what << ": query " << i / got.k << " rank " << i % got.k;
    ASSERT_EQ(got.scores[i], want.scores[i]) << what << ": query " << i / got.k << " rank " << i % got.k;
  }
}

TEST_P(TopkOnDevice, ExactListsWithMasksForKOf1And100And4096) {
  struct Case {
    int64_t n_q, n_items;
    int d, k;
  };
  const Case cases[] = {
      {300, 40000, 16, 1},    // several item tiles
      {130, 20000, 8, 100},   // ties everywhere
      {5, 70000, 8, 4096},    // large k, several large tiles
      {7, 10, 4, 15},         // k > items: padded
      {129, 16385, 2, 7},     // one past a tile
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const auto q = int_factors(c.n_q, c.d, seed++);
    const auto it = int_factors(c.n_items, c.d, seed++);
    const Csr mask = random_mask(c.n_q + 3, c.n_items, 0.05, seed++);
    std::vector<index_t> rows;  // a permutation of the mask's rows
    for (int64_t r = 0; r < c.n_q; ++r) rows.push_back(static_cast<index_t>((r * 7 + 3) % (c.n_q + 3)));
    const std::string what = "n_q=" + std::to_string(c.n_q) + " n_items=" + std::to_string(c.n_items) +
                             " k=" + std::to_string(c.k);
    expect_same(topk(q, c.n_q, it, c.n_items, c.d, c.k),
                eval::topk_naive(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k), what);
    expect_same(topk(q, c.n_q, it, c.n_items, c.d, c.k, &mask, rows),
                eval::topk_naive(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k, &mask, rows),
                what + " masked");
  }
}

// Small enough for compute-sanitizer (tools/device/device-check.sh): several flushes and merges of
// the candidate buffer, ties, masks, one tile.
TEST_P(TopkOnDevice, SmallMaskedListsWithTies) {
  const int64_t n_q = 20, n_items = 3000;
  const int d = 4, k = 37;
  const auto q = int_factors(n_q, d, 41, 2);
  const auto it = int_factors(n_items, d, 42, 2);
  const Csr mask = random_mask(n_q, n_items, 0.1, 43);
  expect_same(topk(q, n_q, it, n_items, d, k, &mask),
              eval::topk_naive(q.data(), n_q, it.data(), n_items, d, k, &mask), "small");
}

TEST_P(TopkOnDevice, FloatScoresDifferOnlyWhereScoresTie) {
  const int64_t n_q = 257, n_items = 17000;
  const int d = 64, k = 50;
  const auto q = float_factors(n_q, d, 11);
  const auto it = float_factors(n_items, d, 12);
  const Csr mask = random_mask(n_q, n_items, 0.01, 13);
  const TopK got = topk(q, n_q, it, n_items, d, k, &mask);
  const TopK want = eval::topk(q.data(), n_q, it.data(), n_items, d, k, &mask);
  for (int64_t u = 0; u < n_q; ++u)
    for (int j = 0; j < k; ++j) {
      ASSERT_NEAR(got.score(u, j), want.score(u, j), kScoreAbsTol) << "query " << u << " rank " << j;
      if (got.item(u, j) == want.item(u, j)) continue;
      // Another item only where the reference's score at this rank is a near-tie of its own.
      const index_t i = got.item(u, j);
      double s = 0;
      for (int c = 0; c < d; ++c) s += static_cast<double>(q[u * d + c]) * it[i * d + c];
      EXPECT_NEAR(s, want.score(u, j), kScoreAbsTol) << "query " << u << " rank " << j;
    }
}

TEST_P(TopkOnDevice, MetricsMatchTheCpuFromTheSameLists) {
  const int64_t n_q = 400, n_items = 3000;
  const int d = 6;
  const auto q = int_factors(n_q, d, 21);
  const auto it = int_factors(n_items, d, 22);
  const Csr train = random_mask(n_q, n_items, 0.01, 23);
  const Csr truth = random_mask(n_q + 10, n_items, 0.003, 24);  // some users without truth
  std::vector<index_t> rows;
  for (int64_t r = 0; r < n_q; ++r) rows.push_back(static_cast<index_t>(r + 5));
  eval::MetricsOptions o;
  o.ks = {50, 1, 10, 20};  // unsorted on purpose
  const TopK top = eval::topk(q.data(), n_q, it.data(), n_items, d, 50, &train);
  const eval::Metrics got = metrics(top, rows, truth, n_items, o);
  const eval::Metrics want = eval::compute_metrics(top, rows, truth, n_items, o);
  EXPECT_EQ(got.users, want.users);
  EXPECT_GT(want.users, 0);
  ASSERT_EQ(got.names(), want.names());
  for (const std::string& name : want.names())
    EXPECT_NEAR(got.get(name), want.get(name), kMetricsAbsTol) << name;
}

TEST_P(TopkOnDevice, EvaluationRunsWhereTheModelDoesAndAgrees) {
  // A small synthetic run's data, and integer factors: exact scores, so the lists are the same
  // on every device and the metrics equal the CPU's.
  config::Config cfg = config::Config::defaults();
  for (const char* s : {"data.format=synthetic", "synthetic.users=600", "synthetic.items=400",
                        "synthetic.interactions=12000", "split.method=leave_last",
                        "split.validation_fraction=0.5", "model.factors=8", "run.progress=off"})
    cfg.set(s);
  cfg.set(std::string("train.device=") + GetParam());
  const pipeline::Dataset data = pipeline::prepare_dataset(cfg);
  auto model = pipeline::make_model(cfg, ctx_);
  auto reference = pipeline::make_model(cfg, cpu());
  const auto u = int_factors(data.users.size(), 8, 31), i = int_factors(data.items.size(), 8, 32);
  Matrix users{data.users.size(), 8, u}, items{data.items.size(), 8, i};
  model->set_factors(users, items);
  reference->set_factors(users, items);
  EXPECT_EQ(model->cuda() != nullptr, on_gpu());
  for (pipeline::Part part : {pipeline::Part::kValidation, pipeline::Part::kTest}) {
    const eval::Metrics got = pipeline::evaluate(*model, data, part, {5, 20});
    const eval::Metrics want = pipeline::evaluate(*reference, data, part, {5, 20});
    EXPECT_GT(want.users, 0);
    EXPECT_EQ(got.users, want.users);
    for (const std::string& name : want.names())
      EXPECT_NEAR(got.get(name), want.get(name), kMetricsAbsTol) << pipeline::part_name(part) << " " << name;
  }
}

// ---- thresholds of the kernels ---------------------------------------------------------------
// The reference lists are built (and checked) on every machine before the GPU starts
// (RF_START_GPU): where no GPU answers, the test skips there.

class TopkThresholds : public GpuHalfTest {};

TEST_F(TopkThresholds, MoreQueriesThanOneBatch) {
  // eval/topk_cuda.cpp, plan_topk: tiles of 16,384 items for k ≤ 1024 and at most
  // 256 MiB of scores per GEMM, so 2^28 / (4 · 16,384) = 4,096 queries per batch: 4,500 queries
  // make two batches (the second of 404), each over two item tiles (16,384 + 116).
  const int64_t n_q = 4500, n_items = 16500;
  const int d = 4, k = 20;
  ASSERT_GT(n_q, (int64_t{256} << 20) / (4 * 16384));
  const auto q = int_factors(n_q, d, 51);
  const auto it = int_factors(n_items, d, 52);
  const Csr mask = random_mask(n_q, n_items, 0.002, 53);
  // The reference: the CPU's eval::topk (exact on integer factors), checked against the naive
  // sort on the first and the last 64 queries.
  const TopK want = eval::topk(q.data(), n_q, it.data(), n_items, d, k, &mask);
  for (int64_t q0 : {int64_t{0}, n_q - 64}) {
    std::vector<index_t> rows;
    for (int64_t r = q0; r < q0 + 64; ++r) rows.push_back(static_cast<index_t>(r));
    const TopK naive = eval::topk_naive(q.data() + q0 * d, 64, it.data(), n_items, d, k, &mask, rows);
    for (int64_t r = 0; r < 64; ++r)
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(want.item(q0 + r, j), naive.item(r, j)) << "query " << q0 + r << " rank " << j;
        ASSERT_EQ(want.score(q0 + r, j), naive.score(r, j)) << "query " << q0 + r << " rank " << j;
      }
  }
  RF_START_GPU(gpu_);
  expect_same(backend::cuda::topk(*gpu_.cuda(), q.data(), n_q, it.data(), n_items, d, k, &mask, {}),
              want, "two query batches");
}

TEST_F(TopkThresholds, KAbove4096SortsInOptInSharedMemory) {
  // eval/topk_cuda.cu, topk_finalize: next_pow2(k) keys of 8 bytes in shared memory, above
  // 48 KiB for k > 4,096 (opt-in); topk_select's buffer holds next_pow2(2k + 1024) keys (128 KiB
  // up to k = 7,680, the GPU's limit, kMaxTopK in eval/topk_cuda.cpp).
  const int64_t n_q = 3, n_items = 9000;
  const int d = 4;
  const int ks[] = {4097, 5000, 7680};
  std::vector<std::vector<float>> qs, its;
  std::vector<TopK> want;
  const Csr mask = random_mask(n_q, n_items, 0.05, 63);
  for (int k : ks) {
    int p = 1;
    while (p < k) p *= 2;
    ASSERT_GT(p * 8, 48 * 1024) << "k=" << k;
    qs.push_back(int_factors(n_q, d, 61 + static_cast<uint64_t>(k)));
    its.push_back(int_factors(n_items, d, 62 + static_cast<uint64_t>(k)));
    want.push_back(eval::topk_naive(qs.back().data(), n_q, its.back().data(), n_items, d, k, &mask));
    expect_same(eval::topk(qs.back().data(), n_q, its.back().data(), n_items, d, k, &mask),
                want.back(), "cpu k=" + std::to_string(k));
  }
  RF_START_GPU(gpu_);
  EXPECT_EQ(backend::cuda::max_topk(), 7680);
  for (size_t j = 0; j < std::size(ks); ++j)
    expect_same(backend::cuda::topk(*gpu_.cuda(), qs[j].data(), n_q, its[j].data(), n_items, d,
                                    ks[j], &mask, {}),
                want[j], "k=" + std::to_string(ks[j]));
}

}  // namespace
}  // namespace recforge::test
