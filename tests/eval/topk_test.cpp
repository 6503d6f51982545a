#include "eval/topk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace recforge::eval {
namespace {

using data::Csr;
using data::index_t;

constexpr float kInf = std::numeric_limits<float>::infinity();

/// top-k logs one summary line per call; keep the test output readable.
const bool kQuiet = (set_log_level("warn"), true);

/// n × d factors with small integer values: every inner product is exact in float whatever the
/// summation order, so topk and topk_naive must agree bit for bit, and ties are frequent.
std::vector<float> int_factors(int64_t n, int d, uint64_t seed, int range = 3) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n * d));
  for (auto& x : v) x = static_cast<float>(static_cast<int>(rng.below(2 * range + 1)) - range);
  return v;
}

/// n × d factors uniform in [-1, 1).
std::vector<float> float_factors(int64_t n, int d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n * d));
  for (auto& x : v) x = static_cast<float>(2 * rng.uniform() - 1);
  return v;
}

/// rows × cols mask keeping each entry with probability `density`.
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
    ASSERT_EQ(got.items[i], want.items[i])
        << what << ": query " << i / got.k << " rank " << i % got.k;
    ASSERT_EQ(got.scores[i], want.scores[i])
        << what << ": query " << i / got.k << " rank " << i % got.k;
  }
}

struct Case {
  int64_t n_q, n_items;
  int d, k;
};

TEST(TopK, MatchesNaiveOnIntegerFactorsWithAndWithoutMasks) {
  const std::vector<Case> cases = {
      {1, 1, 1, 1},         {5, 10, 3, 1},       {7, 10, 4, 10},  // k = n_items
      {7, 10, 4, 15},                                             // k > n_items: padded
      {300, 20000, 16, 20},                                       // several tiles and blocks
      {130, 9000, 8, 100},  {3, 17000, 5, 9000},                  // k >= tile width
      {20, 10000, 8, 4096},                                       // large k
      {129, 2049, 2, 7},    {129, 8193, 2, 7},                    // one past tile sizes
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const auto q = int_factors(c.n_q, c.d, seed++);
    const auto it = int_factors(c.n_items, c.d, seed++);
    const Csr mask = random_mask(c.n_q, c.n_items, 0.2, seed++);
    std::vector<index_t> global;
    for (index_t i = 3; i < c.n_items; i += 7) global.push_back(i);
    const std::string what = "n_q=" + std::to_string(c.n_q) +
                             " n_items=" + std::to_string(c.n_items) + " d=" + std::to_string(c.d) +
                             " k=" + std::to_string(c.k);
    expect_same(topk(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k),
                topk_naive(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k), what);
    expect_same(topk(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k, &mask, {}, &global),
                topk_naive(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k, &mask, {}, &global),
                what + " masked");
  }
}

TEST(TopK, MatchesNaiveToTheBitOnRandomFloats) {
  // topk ranks and reports exact_score, so it equals topk_naive bit for bit on any factors,
  // whatever the BLAS kernels (this binary also runs once per OpenBLAS kernel family).
  const int64_t n_q = 257, n_items = 17000;
  const int d = 64, k = 50;
  const auto q = float_factors(n_q, d, 11);
  const auto it = float_factors(n_items, d, 12);
  const Csr mask = random_mask(n_q, n_items, 0.01, 13);
  const TopK got = topk(q.data(), n_q, it.data(), n_items, d, k, &mask);
  expect_same(got, topk_naive(q.data(), n_q, it.data(), n_items, d, k, &mask), "floats");
  const double u = std::ldexp(1.0, -24);
  const double gamma2 = d * std::ldexp(1.0, -53) / (1 - d * std::ldexp(1.0, -53));
  for (int64_t x = 0; x < n_q; ++x) {
    for (int j = 0; j < k; ++j) {
      // The score is the item's inner product. The products are exact in double, so this plain
      // double sum s and the score's own double sum S are each within γ'_d·Σ|q·x| of the exact
      // sum (u' = 2^-53); the score is S rounded to float, within u·|S| <= u·(|s| + 2γ'_d·Σ).
      const index_t i = got.item(x, j);
      double s = 0, abs_sum = 0;
      for (int c = 0; c < d; ++c) {
        s += static_cast<double>(q[x * d + c]) * it[i * d + c];
        abs_sum += std::abs(static_cast<double>(q[x * d + c]) * it[i * d + c]);
      }
      ASSERT_LE(std::abs(got.score(x, j) - s),
                u * std::abs(s) + 2 * gamma2 * (1 + u) * abs_sum);
      ASSERT_FALSE(std::binary_search(mask.indices.begin() + mask.indptr[x],
                                      mask.indices.begin() + mask.indptr[x + 1], i));
    }
  }
}

TEST(TopK, AQueryGetsTheSameListAloneAndInAnyBatch) {
  // The GEMM's float scores of one query depend on the shape of the call and the query's place
  // in it (OpenBLAS's Haswell/Zen kernels, among others, round them differently), so a server
  // that batches concurrent users must not rank by them: the list and scores must be the ones
  // the query gets alone, to the bit. Batches of 1-3 are scored by GEMVs and larger ones by a
  // GEMM, so this also compares the two products' candidates.
  const int64_t n_items = 6000;
  const int d = 48, k = 30;
  const auto it = float_factors(n_items, d, 61);
  const auto others = float_factors(200, d, 62);
  const auto me = float_factors(1, d, 63);
  const TopK alone = topk(me.data(), 1, it.data(), n_items, d, k);
  expect_same(alone, topk_naive(me.data(), 1, it.data(), n_items, d, k), "alone");
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  const std::vector<int> thread_counts = {1, 2, 3};
#else
  const int threads = 1;
  const std::vector<int> thread_counts = {1};
#endif
  for (const int64_t n : {2, 3, 4, 5, 8, 13, 16, 31, 64, 129, 200}) {
    for (const int64_t at : {int64_t{0}, n / 2, n - 1}) {
      std::vector<float> batch(others.begin(), others.begin() + n * d);
      std::copy(me.begin(), me.end(), batch.begin() + at * d);
      for (int t : thread_counts) {
#ifdef _OPENMP
        omp_set_num_threads(t);
#endif
        const TopK got = topk(batch.data(), n, it.data(), n_items, d, k);
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        const std::string what = "batch of " + std::to_string(n) + ", at " + std::to_string(at) +
                                 ", threads " + std::to_string(t);
        for (int j = 0; j < k; ++j) {
          ASSERT_EQ(got.item(at, j), alone.item(0, j)) << what << " rank " << j;
          ASSERT_EQ(got.score(at, j), alone.score(0, j)) << what << " rank " << j;
        }
      }
    }
  }
  (void)threads;
}

TEST(TopK, ExactTiesGoToTheLowerIndexWhateverTheFloatSumsGive) {
  // Items that are permutations of one row of values in [1, 2) all have the same inner product
  // with a query of ones, exactly (their double sums are exact); summed in float, in the orders a
  // GEMM kernel picks, they differ in the last bits. The ranking must still see the tie: the
  // first k permutations, in index order, with one score. Two items strictly above the tie (one
  // of them beyond the first tile) must come first.
  const int d = 256, k = 40;
  const int64_t n_items = 3000;
  Rng rng(77);
  std::vector<float> base(static_cast<size_t>(d));
  for (auto& x : base) x = static_cast<float>(1 + rng.uniform());
  std::vector<float> it(static_cast<size_t>(n_items * d));
  std::vector<float> row = base;
  std::set<float> float_sums;
  for (int64_t i = 0; i < n_items; ++i) {
    for (int c = d - 1; c > 0; --c)  // Fisher-Yates
      std::swap(row[static_cast<size_t>(c)], row[static_cast<size_t>(rng.below(c + 1))]);
    std::copy(row.begin(), row.end(), it.begin() + i * d);
    float f = 0;
    for (float x : row) f += x;
    float_sums.insert(f);
  }
  ASSERT_GT(float_sums.size(), 1u) << "the float sums should differ between permutations";
  for (const int64_t top : {int64_t{1700}, int64_t{2500}})
    for (int c = 0; c < d; ++c) it[static_cast<size_t>(top * d + c)] = base[c] + 0.5f;
  const std::vector<float> ones(static_cast<size_t>(2 * d), 1.0f);
  const TopK got = topk(ones.data(), 2, it.data(), n_items, d, k);
  for (int64_t x = 0; x < 2; ++x) {
    EXPECT_EQ(got.item(x, 0), 1700);
    EXPECT_EQ(got.item(x, 1), 2500);
    for (int j = 2; j < k; ++j) {
      EXPECT_EQ(got.item(x, j), j - 2) << "rank " << j;
      EXPECT_EQ(got.score(x, j), got.score(x, 2)) << "rank " << j;
    }
  }
  expect_same(got, topk_naive(ones.data(), 2, it.data(), n_items, d, k), "ties");
}

TEST(TopK, FactorsAtTheEdgesOfFloatsRangeStillRankByExactScores) {
  // Overflow: the float products of the first two items are ±1e40 (beyond float), so a GEMM
  // gives them inf or NaN, while their exact scores are 0 and the third item's is 1e10.
  {
    const std::vector<float> q = {1e30f, 1e30f};
    const std::vector<float> it = {1e10f, -1e10f, -1e10f, 1e10f, 1e-20f, 0.0f};
    const TopK got = topk(q.data(), 1, it.data(), 3, 2, 1);
    EXPECT_EQ(got.item(0, 0), 2);
    expect_same(got, topk_naive(q.data(), 1, it.data(), 3, 2, 1), "overflow");
  }
  // Underflow: every product of the query with item 0 (1) is about 10.49 (10.51) times the
  // smallest subnormal, rounded to 10 (11) of them in float, so a GEMM scores item 1 above
  // item 0 by 4 subnormal steps; both exact sums (41.96 and 42.04 steps) round to 42 steps, and
  // the tie goes to item 0.
  {
    const float step = std::ldexp(1.0f, -79);
    const std::vector<float> q(4, std::ldexp(1.0f, -70));
    std::vector<float> it(8);
    for (int c = 0; c < 4; ++c) {
      it[static_cast<size_t>(c)] = 10.49f * step;
      it[static_cast<size_t>(4 + c)] = 10.51f * step;
    }
    const TopK got = topk(q.data(), 1, it.data(), 2, 4, 1);
    EXPECT_EQ(got.item(0, 0), 0);
    EXPECT_EQ(got.score(0, 0), 42 * std::ldexp(1.0f, -149));
    expect_same(got, topk_naive(q.data(), 1, it.data(), 2, 4, 1), "underflow");
  }
}

TEST(TopK, TheItemsLargestNormIsComputedOrTakenAsGiven) {
  const std::vector<float> rows = {3, 4, 0, 1, -6, 8};  // norms 5, 1, 10
  EXPECT_EQ(max_row_norm(rows.data(), 3, 2), 10.0);
  EXPECT_EQ(max_row_norm(rows.data(), 0, 2), 0.0);
  std::vector<float> many = float_factors(1001, 7, 5);
  double want = 0;
  for (int64_t i = 0; i < 1001; ++i) {
    double s = 0;
    for (int c = 0; c < 7; ++c) s += static_cast<double>(many[i * 7 + c]) * many[i * 7 + c];
    want = std::max(want, std::sqrt(s));
  }
  // Both squared sums (positive terms, exact products) are within γ'_7 of the exact one
  // relatively (u' = 2^-53), so their square roots within about γ'_7 / 2 each, plus a rounding
  // of u' each: 2·(7 + 1)·u' covers the difference.
  EXPECT_NEAR(max_row_norm(many.data(), 1001, 7), want, 2 * (7 + 1) * std::ldexp(want, -53));
  many[500 * 7 + 3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(max_row_norm(many.data(), 1001, 7)));
  many[500 * 7 + 3] = kInf;
  EXPECT_EQ(max_row_norm(many.data(), 1001, 7), std::numeric_limits<double>::infinity());
  // Passing the norm gives what computing it gives.
  const auto q = float_factors(70, 16, 6);
  const auto it = float_factors(5000, 16, 7);
  const double norm = max_row_norm(it.data(), 5000, 16);
  expect_same(topk(q.data(), 70, it.data(), 5000, 16, 25, nullptr, {}, nullptr, norm),
              topk(q.data(), 70, it.data(), 5000, 16, 25), "norm given");
}

TEST(TopK, FloatScoresAsFarOffAsRoundingAllowsStillGiveTheExactList) {
  // The margins of the selection, probed: a float sum of d products can be off the exact sum by
  // γ_d·Σ|q_c·x_c| (Higham §3.1), so the tiles get each exact score moved by that much the
  // wrong way: down for the items of the exact top k, up for all others. Near-tied clusters
  // (C items within a few such errors of each other) make the float ranking wrong; topk must
  // still return topk_naive's list. C = 60 stays in the GEMM-score buffer, C = 1500 fills it
  // with near-ties and switches to exact scores; 1 query splits the items across threads, 150
  // go block by block. A slack ten times too small fails this test.
  const int d = 32, k = 25;
  const int64_t n_items = 6000;
  const double u = std::ldexp(1.0, -24);
  const double gamma = d * u / (1 - d * u);
  for (const int64_t cluster : {int64_t{60}, int64_t{1500}}) {
    for (const int64_t n_q : {int64_t{1}, int64_t{150}}) {
      Rng rng(static_cast<uint64_t>(1000 * cluster + n_q));
      std::vector<float> base(static_cast<size_t>(d));
      for (auto& x : base) x = static_cast<float>(2 * rng.uniform() - 1);
      std::vector<float> q(static_cast<size_t>(n_q * d));
      for (int64_t i = 0; i < n_q; ++i)
        for (int c = 0; c < d; ++c)
          q[static_cast<size_t>(i * d + c)] =
              base[static_cast<size_t>(c)] + static_cast<float>(0.01 * (2 * rng.uniform() - 1));
      // Items: background rows in [-1, 1), and a cluster around `base` (the queries' direction)
      // spread so that its scores differ by about 3 rounding errors.
      std::vector<float> it = float_factors(n_items, d, static_cast<uint64_t>(cluster + n_q));
      for (int64_t j = 0; j < cluster; ++j) {
        const int64_t i = 7 + j * ((n_items - 7) / cluster);  // scattered over the tiles
        for (int c = 0; c < d; ++c)
          it[static_cast<size_t>(i * d + c)] =
              base[static_cast<size_t>(c)] + static_cast<float>(2e-5 * (2 * rng.uniform() - 1));
      }
      const TopK want = topk_naive(q.data(), n_q, it.data(), n_items, d, k);
      std::vector<std::vector<uint8_t>> top(static_cast<size_t>(n_q),
                                            std::vector<uint8_t>(static_cast<size_t>(n_items)));
      for (int64_t x = 0; x < n_q; ++x)
        for (int j = 0; j < k; ++j) top[static_cast<size_t>(x)][want.item(x, j)] = 1;
      auto off = [&](int64_t x, int64_t i) {
        double exact = 0, abs_sum = 0;
        for (int c = 0; c < d; ++c) {
          const double p = static_cast<double>(q[static_cast<size_t>(x * d + c)]) *
                           it[static_cast<size_t>(i * d + c)];
          exact += p;
          abs_sum += std::abs(p);
        }
        const double e = gamma * abs_sum;
        return static_cast<float>(top[static_cast<size_t>(x)][static_cast<size_t>(i)] ? exact - e
                                                                                       : exact + e);
      };
      const detail::TileScores adversary = [&](int64_t q0, int64_t nb, int64_t t0, int64_t w,
                                               float* tile) {
        for (int64_t a = 0; a < nb; ++a)
          for (int64_t b = 0; b < w; ++b) tile[a * w + b] = off(q0 + a, t0 + b);
      };
      // The adversary's scores alone rank some query's top k wrongly (else this proves little).
      int64_t wrong = 0;
      for (int64_t x = 0; x < n_q; ++x) {
        std::vector<float> row(static_cast<size_t>(n_items));
        for (int64_t i = 0; i < n_items; ++i) row[static_cast<size_t>(i)] = off(x, i);
        std::vector<int64_t> order(static_cast<size_t>(n_items));
        for (int64_t i = 0; i < n_items; ++i) order[static_cast<size_t>(i)] = i;
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
          return row[a] > row[b] || (row[a] == row[b] && a < b);
        });
        for (int j = 0; j < k; ++j) wrong += !top[static_cast<size_t>(x)][order[j]];
      }
      EXPECT_GT(wrong, 0) << "cluster " << cluster << ", " << n_q << " queries";
      const TopK got = detail::topk_scored(q.data(), n_q, it.data(), n_items, d, k, nullptr, {},
                                           nullptr, -1, adversary);
      expect_same(got, want,
                  "cluster " + std::to_string(cluster) + ", " + std::to_string(n_q) + " queries");
    }
  }
}

TEST(TopK, MasksThatRemoveAlmostEverythingPadTheRows) {
  const int64_t n_q = 40, n_items = 9000;
  const int d = 4, k = 10;
  const auto q = int_factors(n_q, d, 21);
  const auto it = int_factors(n_items, d, 22);
  // Query u may only see items u, u + 1, u + 2 (row masks everything else but those and the
  // globally excluded ones); items 1, 5 and 9 are masked for everyone.
  std::vector<index_t> r, c;
  const std::vector<index_t> global = {1, 5, 9};
  for (int64_t u = 0; u < n_q; ++u)
    for (int64_t i = 0; i < n_items; ++i)
      if ((i < u || i > u + 2) && i != 1 && i != 5 && i != 9) {
        r.push_back(static_cast<index_t>(u));
        c.push_back(static_cast<index_t>(i));
      }
  const Csr mask = Csr::from_coo(n_q, n_items, r, c, std::vector<float>(r.size(), 1.0f));
  const TopK got = topk(q.data(), n_q, it.data(), n_items, d, k, &mask, {}, &global);
  expect_same(got, topk_naive(q.data(), n_q, it.data(), n_items, d, k, &mask, {}, &global),
              "nearly all masked");
  for (int64_t u = 0; u < n_q; ++u) {
    int eligible = 0;
    for (int64_t i = u; i <= u + 2; ++i) eligible += (i != 1 && i != 5 && i != 9);
    for (int j = 0; j < k; ++j) {
      if (j < eligible) {
        EXPECT_GE(got.item(u, j), u);
        EXPECT_LE(got.item(u, j), u + 2);
      } else {
        EXPECT_EQ(got.item(u, j), -1);
        EXPECT_EQ(got.score(u, j), -kInf);
      }
    }
  }
  // Everything masked: rows are all padding.
  std::vector<index_t> all(static_cast<size_t>(n_items));
  for (index_t i = 0; i < n_items; ++i) all[i] = i;
  const TopK none = topk(q.data(), n_q, it.data(), n_items, d, k, nullptr, {}, &all);
  for (size_t i = 0; i < none.items.size(); ++i) {
    EXPECT_EQ(none.items[i], -1);
    EXPECT_EQ(none.scores[i], -kInf);
  }
}

TEST(TopK, QueryRowsSelectTheExclusionRow) {
  // 2 queries, 4 items, d = 1: scores are q · item = q * (1, 2, 3, 4).
  const std::vector<float> q = {1, 1};
  const std::vector<float> it = {1, 2, 3, 4};
  // Exclusion row 0 masks item 3, row 1 masks items 2 and 3, row 2 masks nothing.
  const Csr ex = Csr::from_coo(3, 4, {0, 1, 1}, {3, 2, 3}, {1, 1, 1});
  const TopK a = topk(q.data(), 2, it.data(), 4, 1, 2, &ex, {2, 1});
  EXPECT_EQ(a.items, (std::vector<index_t>{3, 2, 1, 0}));  // query 0 ← row 2, query 1 ← row 1
  EXPECT_EQ(a.scores, (std::vector<float>{4, 3, 2, 1}));
  const TopK b = topk(q.data(), 2, it.data(), 4, 1, 2, &ex);  // rows 0 and 1
  EXPECT_EQ(b.items, (std::vector<index_t>{2, 1, 1, 0}));
  expect_same(topk_naive(q.data(), 2, it.data(), 4, 1, 2, &ex, {2, 1}), a, "query_rows");
}

TEST(TopK, TiesGoToTheLowerItemIndex) {
  // All items score 0 (zero query), then two pairs of equal scores.
  const std::vector<float> zero = {0, 0};
  const std::vector<float> it = {1, 0, 2, 0, 2, 0, 1, 0, 3, 0};  // scores 1, 2, 2, 1, 3 for q=(1,0)
  const TopK z = topk(zero.data(), 1, it.data(), 5, 2, 5);
  EXPECT_EQ(z.items, (std::vector<index_t>{0, 1, 2, 3, 4}));
  const std::vector<float> q = {1, 0};
  const TopK t = topk(q.data(), 1, it.data(), 5, 2, 4);
  EXPECT_EQ(t.items, (std::vector<index_t>{4, 1, 2, 0}));
  EXPECT_EQ(t.scores, (std::vector<float>{3, 2, 2, 1}));
  // Many equal scores across several tiles: the lowest indices win.
  const int64_t n_items = 20000;
  const std::vector<float> ones(static_cast<size_t>(n_items), 1.0f);
  const std::vector<float> one = {1};
  const TopK many = topk(one.data(), 1, ones.data(), n_items, 1, 300);
  for (int j = 0; j < 300; ++j) ASSERT_EQ(many.item(0, j), j);
}

TEST(TopK, NanScoresRankAsMinusInfinityAndNeverAboveFiniteOnes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // d = 1; item 1 is NaN, item 3 is -inf, others finite (negative to put them near the bottom).
  const std::vector<float> it = {-5, nan, -7, -kInf, -6};
  const std::vector<float> q = {1};
  const TopK t = topk(q.data(), 1, it.data(), 5, 1, 5);
  // -5, -6, -7 then NaN (as -inf) and -inf tie, broken by index: 1 before 3.
  EXPECT_EQ(t.items, (std::vector<index_t>{0, 4, 2, 1, 3}));
  EXPECT_EQ(t.scores, (std::vector<float>{-5, -6, -7, -kInf, -kInf}));
  expect_same(topk_naive(q.data(), 1, it.data(), 5, 1, 5), t, "nan");
  // NaN everywhere in a large problem: every item eligible, ranked by index.
  const std::vector<float> qn = {nan, nan};
  const auto big = int_factors(10000, 2, 31);
  const TopK all_nan = topk(qn.data(), 1, big.data(), 10000, 2, 3);
  EXPECT_EQ(all_nan.items, (std::vector<index_t>{0, 1, 2}));
  // k = 1 and the NaN item masked: the best finite item.
  const std::vector<index_t> g = {0};
  const TopK best = topk(q.data(), 1, it.data(), 5, 1, 1, nullptr, {}, &g);
  EXPECT_EQ(best.items, (std::vector<index_t>{4}));
}

TEST(TopK, EmptyProblems) {
  const std::vector<float> q = {1, 2};
  const TopK no_items = topk(q.data(), 1, nullptr, 0, 2, 3);
  EXPECT_EQ(no_items.items, (std::vector<index_t>{-1, -1, -1}));
  EXPECT_EQ(no_items.scores, (std::vector<float>{-kInf, -kInf, -kInf}));
  const TopK no_queries = topk(nullptr, 0, q.data(), 1, 2, 3);
  EXPECT_EQ(no_queries.n, 0);
  EXPECT_TRUE(no_queries.items.empty());
}

TEST(TopK, SameResultWithAnyThreadCount) {
  const auto q = float_factors(600, 32, 41);
  const auto it = float_factors(12000, 32, 42);
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const TopK a = topk(q.data(), 600, it.data(), 12000, 32, 20);
  omp_set_num_threads(3);
  const TopK b = topk(q.data(), 600, it.data(), 12000, 32, 20);
  omp_set_num_threads(threads);
  expect_same(a, b, "1 thread vs 3 threads");
#else
  GTEST_SKIP() << "built without OpenMP";
#endif
}

TEST(TopK, SmallBatchesSplitTheItemsAcrossThreadsAndStayExact) {
  // Fewer query blocks than threads: every thread scores a share of the item tiles and the
  // shares are merged. Integer factors make many ties, which must still go to the lower index
  // across the shares' boundaries; masks and the global list cross them too.
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  uint64_t seed = 101;
  for (const Case& c : std::vector<Case>{{1, 17000, 3, 20}, {3, 8193, 2, 300}, {100, 6000, 4, 7},
                                         {2, 4097, 1, 5000}}) {
    const auto q = int_factors(c.n_q, c.d, seed++);
    const auto it = int_factors(c.n_items, c.d, seed++);
    const Csr mask = random_mask(c.n_q, c.n_items, 0.3, seed++);
    std::vector<index_t> global;
    for (index_t i = 2047; i < c.n_items; i += 2048) global.push_back(i);  // tile edges
    const TopK want = topk_naive(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k, &mask, {}, &global);
    for (int t : {1, 2, 3, 5}) {
      omp_set_num_threads(t);
      const TopK got = topk(q.data(), c.n_q, it.data(), c.n_items, c.d, c.k, &mask, {}, &global);
      omp_set_num_threads(threads);
      expect_same(got, want, "n_q=" + std::to_string(c.n_q) + " n_items=" +
                                 std::to_string(c.n_items) + " threads=" + std::to_string(t));
    }
  }
#else
  GTEST_SKIP() << "built without OpenMP";
#endif
}

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected recforge::Error containing \"" << part << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(TopK, RejectsBadArgumentsWithClearMessages) {
  const std::vector<float> q = {1, 2, 3, 4};
  const std::vector<float> it = {1, 2, 3, 4, 5, 6};
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 0); }, "k is 0");
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 0, 1); }, "dimension is 0");
  expect_error([&] { topk(q.data(), -1, it.data(), 3, 2, 1); }, "number of queries is -1");
  const Csr ex = Csr::from_coo(2, 4, {0}, {1}, {1});
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 1, &ex); }, "has 4 columns");
  const Csr ex3 = Csr::from_coo(1, 3, {0}, {1}, {1});
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 1, &ex3); }, "has 1 rows");
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 1, &ex3, {0}); }, "query_rows has 1");
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 1, &ex3, {0, 1}); }, "query_rows[1] is 1");
  const std::vector<index_t> unsorted = {2, 0};
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 1, nullptr, {}, &unsorted); },
               "expected sorted");
  const std::vector<index_t> outside = {3};
  expect_error([&] { topk(q.data(), 2, it.data(), 3, 2, 1, nullptr, {}, &outside); },
               "global_exclude[0] is 3");
}

}  // namespace
}  // namespace recforge::eval
