#include "eval/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "eval/topk.h"

namespace recforge::eval {
namespace {

using data::Csr;
using data::index_t;

const bool kQuiet = (set_log_level("warn"), true);

/// Ranked lists given by hand (scores are irrelevant to the metrics).
TopK lists(const std::vector<std::vector<index_t>>& rows) {
  TopK t;
  t.n = static_cast<int64_t>(rows.size());
  t.k = static_cast<int>(rows.front().size());
  for (const auto& r : rows) {
    t.items.insert(t.items.end(), r.begin(), r.end());
    for (size_t j = 0; j < r.size(); ++j) t.scores.push_back(static_cast<float>(r.size() - j));
  }
  return t;
}

/// Truth matrix with one row per user listing the held-out items.
Csr truth_rows(int64_t n_items, const std::vector<std::vector<index_t>>& rows) {
  std::vector<index_t> r, c;
  for (size_t u = 0; u < rows.size(); ++u)
    for (index_t i : rows[u]) {
      r.push_back(static_cast<index_t>(u));
      c.push_back(i);
    }
  return Csr::from_coo(static_cast<int64_t>(rows.size()), n_items, r, c,
                       std::vector<float>(r.size(), 1.0f));
}

const double kLog3 = std::log2(3.0);  // 1/log2(3) ≈ 0.6309: the DCG discount of rank 2

// User A: truth {1, 5, 9}; list 1 2 5 7 8 → hits at ranks 1 and 3.
// User B: truth {4} (fewer test items than K); list 0 4 3 2 6 → hit at rank 2.
// User C: no truth items → skipped (its list 10..14 must not count for coverage either).
struct Example {
  TopK ranked = lists({{1, 2, 5, 7, 8}, {0, 4, 3, 2, 6}, {10, 11, 12, 13, 14}});
  Csr truth = truth_rows(20, {{1, 5, 9}, {4}, {}});
};

TEST(Metrics, UserWithThreeTestItemsHitAtRanksOneAndThree) {
  Example e;
  MetricsOptions o;
  o.ks = {5};
  // Only user A: pass query_rows {0} with its list alone.
  const Metrics m = compute_metrics(lists({{1, 2, 5, 7, 8}}), {0}, e.truth, 20, o);
  EXPECT_EQ(m.users, 1);
  EXPECT_DOUBLE_EQ(m.recall[0], 2.0 / 3);     // hits 2 of |T| = 3
  EXPECT_DOUBLE_EQ(m.precision[0], 2.0 / 5);  // hits 2 of K = 5
  // DCG = 1/log2(2) + 1/log2(4) = 1 + 1/2; IDCG over min(3, 5) = 3 positions = 1 + 1/log2(3) + 1/2
  EXPECT_DOUBLE_EQ(m.ndcg[0], (1 + 0.5) / (1 + 1 / kLog3 + 0.5));  // ≈ 0.7039
  // AP = (P@1·1 + P@3·1) / min(3, 5) = (1 + 2/3) / 3 = 5/9
  EXPECT_DOUBLE_EQ(m.map[0], 5.0 / 9);
  EXPECT_DOUBLE_EQ(m.hit_rate[0], 1.0);
  EXPECT_DOUBLE_EQ(m.coverage[0], 5.0 / 20);  // items 1 2 5 7 8 of 20
}

TEST(Metrics, UserWithFewerTestItemsThanK) {
  Example e;
  MetricsOptions o;
  o.ks = {5};
  const Metrics m = compute_metrics(lists({{0, 4, 3, 2, 6}}), {1}, e.truth, 20, o);
  EXPECT_EQ(m.users, 1);
  EXPECT_DOUBLE_EQ(m.recall[0], 1.0);         // 1 of |T| = 1
  EXPECT_DOUBLE_EQ(m.precision[0], 1.0 / 5);  // 1 of K = 5
  // DCG = 1/log2(3); IDCG over min(1, 5) = 1 position = 1
  EXPECT_DOUBLE_EQ(m.ndcg[0], 1 / kLog3);
  // AP = P@2 / min(1, 5) = 1/2
  EXPECT_DOUBLE_EQ(m.map[0], 0.5);
  EXPECT_DOUBLE_EQ(m.hit_rate[0], 1.0);
}

TEST(Metrics, SeveralCutoffsAveragedOverUsersWithTestItems) {
  Example e;
  MetricsOptions o;
  o.ks = {5, 1, 3};  // any order; results follow it
  const Metrics m = compute_metrics(e.ranked, {}, e.truth, 20, o);
  EXPECT_EQ(m.users, 2);  // user C has no test items
  EXPECT_EQ(m.ks, (std::vector<int>{5, 1, 3}));
  const double ndcg_a3 = 1.5 / (1 + 1 / kLog3 + 0.5);  // A@3 and A@5 alike: IDCG over 3 ranks
  // K = 5 (index 0): A = (2/3, 2/5, ndcg_a3, 5/9, 1); B = (1, 1/5, 1/log2(3), 1/2, 1)
  EXPECT_DOUBLE_EQ(m.recall[0], (2.0 / 3 + 1) / 2);
  EXPECT_DOUBLE_EQ(m.precision[0], (2.0 / 5 + 1.0 / 5) / 2);
  EXPECT_DOUBLE_EQ(m.ndcg[0], (ndcg_a3 + 1 / kLog3) / 2);
  EXPECT_DOUBLE_EQ(m.map[0], (5.0 / 9 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(m.hit_rate[0], 1.0);
  // K = 1 (index 1): A's rank 1 (item 1) hits: recall 1/3, precision 1, ndcg 1/1, AP 1/min(3,1);
  // B's rank 1 (item 0) misses: all 0.
  EXPECT_DOUBLE_EQ(m.recall[1], (1.0 / 3 + 0) / 2);
  EXPECT_DOUBLE_EQ(m.precision[1], (1.0 + 0) / 2);
  EXPECT_DOUBLE_EQ(m.ndcg[1], (1.0 + 0) / 2);
  EXPECT_DOUBLE_EQ(m.map[1], (1.0 + 0) / 2);
  EXPECT_DOUBLE_EQ(m.hit_rate[1], 0.5);
  // K = 3 (index 2): A hits ranks 1, 3: recall 2/3, precision 2/3, ndcg_a3,
  // AP (1 + 2/3)/min(3,3) = 5/9; B hits rank 2: recall 1, precision 1/3, 1/log2(3), AP 1/2.
  EXPECT_DOUBLE_EQ(m.recall[2], (2.0 / 3 + 1) / 2);
  EXPECT_DOUBLE_EQ(m.precision[2], (2.0 / 3 + 1.0 / 3) / 2);
  EXPECT_DOUBLE_EQ(m.ndcg[2], (ndcg_a3 + 1 / kLog3) / 2);
  EXPECT_DOUBLE_EQ(m.map[2], (5.0 / 9 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(m.hit_rate[2], 1.0);
  // Coverage over A and B only (C skipped), n_items = 20:
  // K=1: {1, 0} → 2; K=3: {1, 2, 5} ∪ {0, 4, 3} → 6; K=5: {1,2,5,7,8} ∪ {0,4,3,2,6} → 9.
  EXPECT_DOUBLE_EQ(m.coverage[0], 9.0 / 20);
  EXPECT_DOUBLE_EQ(m.coverage[1], 2.0 / 20);
  EXPECT_DOUBLE_EQ(m.coverage[2], 6.0 / 20);
  EXPECT_DOUBLE_EQ(m.get("coverage@3"), 6.0 / 20);
  EXPECT_DOUBLE_EQ(m.get("map@1"), 0.5);
}

TEST(Metrics, PerUserValuesAreEachUsersAndAverageToTheMetricsToTheBit) {
  Example e;
  MetricsOptions o;
  o.ks = {5, 1, 3};
  PerUserMetrics pu;
  pu.names = {"stale"};  // replaced, not appended to
  const Metrics m = compute_metrics(e.ranked, {}, e.truth, 20, o, &pu);
  EXPECT_EQ(pu.queries, (std::vector<int64_t>{0, 1}));  // user C (no truth) is not scored
  EXPECT_EQ(pu.names, (std::vector<std::string>{"recall@5", "recall@1", "recall@3",
                                                "precision@5", "precision@1", "precision@3",
                                                "ndcg@5", "ndcg@1", "ndcg@3", "map@5", "map@1",
                                                "map@3", "hit_rate@5", "hit_rate@1",
                                                "hit_rate@3"}));
  ASSERT_EQ(pu.values.size(), pu.names.size());
  const auto value = [&](const std::string& name, size_t user) {
    const size_t at = std::find(pu.names.begin(), pu.names.end(), name) - pu.names.begin();
    return pu.values.at(at).at(user);
  };
  // The users' values of SeveralCutoffsAveragedOverUsersWithTestItems.
  const double ndcg_a3 = 1.5 / (1 + 1 / kLog3 + 0.5);
  EXPECT_DOUBLE_EQ(value("recall@5", 0), 2.0 / 3);
  EXPECT_DOUBLE_EQ(value("recall@5", 1), 1.0);
  EXPECT_DOUBLE_EQ(value("precision@3", 0), 2.0 / 3);
  EXPECT_DOUBLE_EQ(value("precision@3", 1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(value("ndcg@3", 0), ndcg_a3);
  EXPECT_DOUBLE_EQ(value("ndcg@3", 1), 1 / kLog3);
  EXPECT_DOUBLE_EQ(value("map@5", 0), 5.0 / 9);
  EXPECT_DOUBLE_EQ(value("map@1", 1), 0.0);
  EXPECT_DOUBLE_EQ(value("hit_rate@1", 0), 1.0);
  EXPECT_DOUBLE_EQ(value("hit_rate@1", 1), 0.0);
  // Their means, summed in user order, are the metrics exactly.
  for (size_t n = 0; n < pu.names.size(); ++n) {
    ASSERT_EQ(pu.values[n].size(), 2u);
    EXPECT_EQ((pu.values[n][0] + pu.values[n][1]) / 2, m.get(pu.names[n])) << pu.names[n];
  }
  // Many users of random lists: still the metrics to the bit.
  std::vector<std::vector<index_t>> ranked, truth;
  uint64_t s = 12345;
  const auto next = [&s](int64_t n) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<index_t>((s >> 33) % static_cast<uint64_t>(n));
  };
  for (int u = 0; u < 500; ++u) {
    std::vector<index_t> r;
    while (r.size() < 20) {
      const index_t i = next(60);
      if (std::find(r.begin(), r.end(), i) == r.end()) r.push_back(i);
    }
    ranked.push_back(r);
    std::vector<index_t> t;
    for (int j = next(4); j > 0; --j) t.push_back(next(60));  // 0 to 3 items, repeats allowed
    std::sort(t.begin(), t.end());
    truth.push_back(t);
  }
  o.ks = {20, 7};
  const Metrics mr = compute_metrics(lists(ranked), {}, truth_rows(60, truth), 60, o, &pu);
  ASSERT_EQ(static_cast<int64_t>(pu.queries.size()), mr.users);
  EXPECT_GT(mr.users, 300);
  EXPECT_LT(mr.users, 500);
  for (size_t n = 0; n < pu.names.size(); ++n) {
    double sum = 0;
    for (double v : pu.values[n]) sum += v;
    EXPECT_EQ(sum / static_cast<double>(mr.users), mr.get(pu.names[n])) << pu.names[n];
  }
}

TEST(Metrics, QueryRowsMapListsToTruthRows) {
  Example e;
  MetricsOptions o;
  o.ks = {5};
  // Lists of B then A, pointing at truth rows 1 and 0: same averages as in natural order.
  const Metrics m =
      compute_metrics(lists({{0, 4, 3, 2, 6}, {1, 2, 5, 7, 8}}), {1, 0}, e.truth, 20, o);
  EXPECT_EQ(m.users, 2);
  EXPECT_DOUBLE_EQ(m.recall[0], (1 + 2.0 / 3) / 2);
}

TEST(Metrics, PaddingCountsAsMissesAndIsNotCovered) {
  // Truth {3, 7}; list 3, -1, -1 (only one eligible item): K = 3.
  const Metrics m =
      compute_metrics(lists({{3, -1, -1}}), {}, truth_rows(10, {{3, 7}}), 10, MetricsOptions{{3}});
  EXPECT_DOUBLE_EQ(m.recall[0], 0.5);                // 1 of 2
  EXPECT_DOUBLE_EQ(m.precision[0], 1.0 / 3);         // 1 of K = 3
  EXPECT_DOUBLE_EQ(m.ndcg[0], 1 / (1 + 1 / kLog3));  // DCG 1; IDCG over min(2, 3) = 2 ranks
  EXPECT_DOUBLE_EQ(m.map[0], 1.0 / 2);               // P@1 / min(2, 3)
  EXPECT_DOUBLE_EQ(m.coverage[0], 1.0 / 10);         // item 3 only
}

TEST(Metrics, NoUserWithTestItemsGivesZeros) {
  const Metrics m =
      compute_metrics(lists({{1, 2}}), {}, truth_rows(5, {{}}), 5, MetricsOptions{{2}});
  EXPECT_EQ(m.users, 0);
  EXPECT_EQ(m.recall[0], 0.0);
  EXPECT_EQ(m.ndcg[0], 0.0);
  EXPECT_EQ(m.coverage[0], 0.0);
}

TEST(Metrics, TiedScoresRankTheLowerItemFirstAndMetricsFollow) {
  // d = 2; query (1, 0); items 0..3 = (1,0), (2,0), (2,0), (0,1) → scores 1, 2, 2, 0.
  // Items 1 and 2 tie at 2: item 1 ranks first, item 2 second.
  const std::vector<float> q = {1, 0};
  const std::vector<float> items = {1, 0, 2, 0, 2, 0, 0, 1};
  const TopK t = topk(q.data(), 1, items.data(), 4, 2, 2);
  ASSERT_EQ(t.items, (std::vector<index_t>{1, 2}));
  MetricsOptions o;
  o.ks = {1, 2};
  // Truth {2}: the tie puts it at rank 2 → @1 all 0; @2 recall 1, ndcg 1/log2(3), AP 1/2.
  const Metrics m2 = compute_metrics(t, {}, truth_rows(4, {{2}}), 4, o);
  EXPECT_DOUBLE_EQ(m2.recall[0], 0.0);
  EXPECT_DOUBLE_EQ(m2.ndcg[0], 0.0);
  EXPECT_DOUBLE_EQ(m2.recall[1], 1.0);
  EXPECT_DOUBLE_EQ(m2.ndcg[1], 1 / kLog3);
  EXPECT_DOUBLE_EQ(m2.map[1], 0.5);
  // Truth {1}: rank 1 → @1 recall 1, ndcg 1, precision 1.
  const Metrics m1 = compute_metrics(t, {}, truth_rows(4, {{1}}), 4, o);
  EXPECT_DOUBLE_EQ(m1.recall[0], 1.0);
  EXPECT_DOUBLE_EQ(m1.ndcg[0], 1.0);
  EXPECT_DOUBLE_EQ(m1.precision[0], 1.0);
  EXPECT_DOUBLE_EQ(m1.precision[1], 0.5);
}

TEST(Metrics, JsonAndLookupByName) {
  Example e;
  const Metrics m = compute_metrics(e.ranked, {}, e.truth, 20, MetricsOptions{{1, 5}});
  const nlohmann::json j = m.to_json();
  EXPECT_EQ(j.at("users").get<int64_t>(), 2);
  for (const char* name : {"recall", "precision", "ndcg", "map", "hit_rate", "coverage"})
    for (const char* k : {"@1", "@5"}) {
      const std::string key = std::string(name) + k;
      ASSERT_TRUE(j.contains(key)) << key;
      EXPECT_DOUBLE_EQ(j.at(key).get<double>(), m.get(key)) << key;
    }
  EXPECT_EQ(j.size(), 13u);
  EXPECT_DOUBLE_EQ(m.get("recall@5"), m.recall[1]);
  try {
    m.get("recall@20");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find("recall@20"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ndcg@5"), std::string::npos) << msg;  // lists the valid names
  }
  EXPECT_THROW(m.get("auc@5"), Error);
}

TEST(Metrics, RejectsBadOptions) {
  Example e;
  EXPECT_THROW(compute_metrics(e.ranked, {}, e.truth, 20, MetricsOptions{{}}), Error);
  EXPECT_THROW(compute_metrics(e.ranked, {}, e.truth, 20, MetricsOptions{{0}}), Error);
  EXPECT_THROW(compute_metrics(e.ranked, {}, e.truth, 20, MetricsOptions{{3, 3}}), Error);
  try {
    compute_metrics(e.ranked, {}, e.truth, 20, MetricsOptions{{20}});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("hold 5 items"), std::string::npos) << err.what();
  }
  EXPECT_THROW(compute_metrics(e.ranked, {0}, e.truth, 20, MetricsOptions{{5}}), Error);
  EXPECT_THROW(compute_metrics(e.ranked, {0, 1, 7}, e.truth, 20, MetricsOptions{{5}}), Error);
  EXPECT_THROW(compute_metrics(e.ranked, {}, e.truth, 10, MetricsOptions{{5}}), Error);
}

}  // namespace
}  // namespace recforge::eval
