// eval.validation_sample: validation evaluations on a fixed sample of the users; and the test
// metrics by user activity (recforge evaluate --by-activity), which also score a subset of the
// users.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/context.h"
#include "core/error.h"
#include "core/rng.h"
#include "eval/metrics.h"
#include "eval/topk.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/options.h"

namespace recforge::pipeline {
namespace {

config::Config synthetic(const std::string& split) {
  config::Config cfg = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "data.format=synthetic", "synthetic.users=1500", "synthetic.items=500",
        "synthetic.interactions=30000", "split.validation_fraction=0.5", "model.factors=8",
        "run.progress=off", "split.method=" + split})
    cfg.set(s);
  return cfg;
}

// A model with fixed random factors (normal, 0.3): what is evaluated does not matter here, only
// which users are.
std::unique_ptr<models::Model> random_model(const config::Config& cfg, const Dataset& data) {
  auto model = make_model(cfg, Context::create("cpu", 2));
  Rng rng(7);
  Matrix u{data.users.size(), 8, {}}, i{data.items.size(), 8, {}};
  for (Matrix* m : {&u, &i}) {
    m->data.resize(static_cast<size_t>(m->rows * m->cols));
    for (float& x : m->data) x = static_cast<float>(0.3 * rng.normal());
  }
  model->set_factors(std::move(u), std::move(i));
  std::vector<int64_t> counts(static_cast<size_t>(data.items.size()), 0);
  for (const data::index_t it : data.user_items.indices) ++counts[static_cast<size_t>(it)];
  model->set_item_counts(counts);
  return model;
}

int64_t users_with_items(const data::Interactions& x, int64_t n_users) {
  std::vector<uint8_t> has(static_cast<size_t>(n_users), 0);
  for (data::offset_t e = 0; e < x.size(); ++e) has[static_cast<size_t>(x.users[e])] = 1;
  int64_t n = 0;
  for (const uint8_t h : has) n += h;
  return n;
}

TEST(ValidationSample, ScoresExactlyTheValidationOfTheSampledUsersAlone) {
  // The sampled evaluation equals a whole evaluation of a validation part that holds only the
  // sampled users' interactions: the same users, masks and lists, so every metric is equal to
  // the bit (coverage included). Both splits: the users' own factors (leave_last) and held-out
  // users folded in from their fold-in interactions (users).
  for (const std::string& split : std::vector<std::string>{"leave_last", "users"}) {
    SCOPED_TRACE(split);
    const config::Config cfg = synthetic(split);
    const Dataset data = prepare_dataset(cfg);
    const auto model = random_model(cfg, data);
    const double share = 0.3;
    const eval::Metrics sampled = evaluate(*model, data, Part::kValidation, {5, 20}, share);

    Dataset restricted = data;
    data::Interactions kept;
    const data::Interactions& v = data.split.validation;
    for (data::offset_t e = 0; e < v.size(); ++e)
      if (in_validation_sample(data.users.external(v.users[e]), share))
        kept.push(v.users[e], v.items[e], v.weights[e]);
    ASSERT_GT(kept.size(), 0);
    ASSERT_LT(kept.size(), v.size());
    restricted.split.validation = kept;
    const eval::Metrics whole = evaluate(*model, restricted, Part::kValidation, {5, 20});

    const int64_t population = users_with_items(v, data.users.size());
    EXPECT_EQ(sampled.sampled_from, population);
    EXPECT_EQ(whole.sampled_from, 0);
    EXPECT_EQ(sampled.users, users_with_items(kept, data.users.size()));
    EXPECT_EQ(sampled.users, whole.users);
    // Expected share × population; 5 standard deviations of a binomial either side.
    const double mean = share * static_cast<double>(population);
    const double sd = std::sqrt(mean * (1 - share));
    EXPECT_NEAR(static_cast<double>(sampled.users), mean, 5 * sd);
    for (const std::string& name : whole.names())
      EXPECT_EQ(sampled.get(name), whole.get(name)) << name;
    EXPECT_GT(sampled.get("recall@20"), 0.0);
    EXPECT_EQ(sampled.to_json()["sampled_from"], population);
    EXPECT_FALSE(whole.to_json().contains("sampled_from"));
  }
}

TEST(ByActivity, EachGroupHasTheMetricsOfItsUsersEvaluatedAlone) {
  // The users are grouped by the interactions their ranking came from, counted here from the
  // split itself (training part; fold-in part for held-out users). Each group's means equal, to
  // the bit, an evaluation of a test part that holds only that group's users' items.
  for (const std::string& split : std::vector<std::string>{"leave_last", "users"}) {
    SCOPED_TRACE(split);
    const config::Config cfg = synthetic(split);
    const Dataset data = prepare_dataset(cfg);
    const auto model = random_model(cfg, data);
    const UserMetrics um = evaluate_per_user(*model, data, Part::kTest, {5, 20});
    const std::vector<int64_t> edges = {10, 20, 40};
    const std::vector<ActivityBucket> buckets = by_activity(um, edges);
    ASSERT_EQ(buckets.size(), 4u);
    const data::Interactions& source =
        split == "users" ? data.split.test_foldin : data.split.train;
    std::vector<int64_t> activity(static_cast<size_t>(data.users.size()), 0);
    for (data::offset_t e = 0; e < source.size(); ++e) ++activity[static_cast<size_t>(source.users[e])];
    int64_t users = 0;
    for (size_t b = 0; b < buckets.size(); ++b) {
      const ActivityBucket& g = buckets[b];
      SCOPED_TRACE(fmt::format("{}-{}", g.low, g.high));
      EXPECT_EQ(g.low, b == 0 ? 0 : edges[b - 1] + 1);
      EXPECT_EQ(g.high, b < edges.size() ? edges[b] : -1);
      const auto in = [&](data::index_t u) {
        const int64_t a = activity[static_cast<size_t>(u)];
        return a >= g.low && (g.high < 0 || a <= g.high);
      };
      Dataset restricted = data;
      data::Interactions kept;
      const data::Interactions& t = data.split.test;
      for (data::offset_t e = 0; e < t.size(); ++e)
        if (in(t.users[e])) kept.push(t.users[e], t.items[e], t.weights[e]);
      EXPECT_EQ(g.users, users_with_items(kept, data.users.size()));
      users += g.users;
      if (g.users == 0) continue;
      restricted.split.test = kept;
      const eval::Metrics alone = evaluate(*model, restricted, Part::kTest, {5, 20});
      ASSERT_EQ(g.means.size(), um.per_user.names.size());
      for (size_t n = 0; n < g.means.size(); ++n)
        EXPECT_EQ(g.means[n], alone.get(um.per_user.names[n])) << um.per_user.names[n];
    }
    EXPECT_EQ(users, um.metrics.users);
    // The groups are not all alike: at least two hold users.
    EXPECT_GE(std::count_if(buckets.begin(), buckets.end(),
                            [](const ActivityBucket& g) { return g.users > 0; }),
              2);
  }
  EXPECT_THROW(by_activity(UserMetrics{}, {10, 10}), Error);
  EXPECT_THROW(by_activity(UserMetrics{}, {0, 10}), Error);
  EXPECT_EQ(by_activity(UserMetrics{}, {}).size(), 1u);  // one group of everyone
}

TEST(ValidationSample, TheConfigSamplesValidationOnlyAndAnEmptySampleIsRefused) {
  config::Config cfg = synthetic("leave_last");
  cfg.set("eval.validation_sample=0.25");
  const Dataset data = prepare_dataset(cfg);
  const auto model = random_model(cfg, data);
  const eval::Metrics v = evaluate(*model, data, Part::kValidation, cfg);
  const eval::Metrics direct = evaluate(*model, data, Part::kValidation, eval_ks(cfg), 0.25);
  EXPECT_EQ(v.users, direct.users);
  EXPECT_EQ(v.get("ndcg@20"), direct.get("ndcg@20"));
  EXPECT_EQ(v.sampled_from, users_with_items(data.split.validation, data.users.size()));
  EXPECT_LT(v.users, v.sampled_from);
  // Test always scores every user.
  const eval::Metrics t = evaluate(*model, data, Part::kTest, cfg);
  EXPECT_EQ(t.sampled_from, 0);
  EXPECT_EQ(t.users, users_with_items(data.split.test, data.users.size()));
  // validation_sample_size counts what evaluate scores.
  const auto [users, selected] = validation_sample_size(data, cfg);
  EXPECT_EQ(users, v.sampled_from);
  EXPECT_EQ(selected, v.users);
  // A share so small that it selects nobody: one sentence, not metrics of no users.
  try {
    evaluate(*model, data, Part::kValidation, {20}, 1e-12);
    ADD_FAILURE() << "an empty sample was evaluated";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              fmt::format("eval.validation_sample 1e-12 selects none of the {} users with a "
                          "validation item; expected a share that selects some",
                          users));
  }
}

TEST(ValidationSample, AUsersMembershipDependsOnItsIdAloneAndSharesNest) {
  // 20,000 ids: the count selected at each share is within 5 binomial standard deviations of
  // share × 20,000, and every id selected at a share is selected at every larger one.
  std::vector<std::string> ids;
  for (int i = 0; i < 20000; ++i) ids.push_back("u" + std::to_string(i));
  const std::vector<double> shares = {0.01, 0.1, 0.25, 0.5, 0.9};
  std::vector<std::vector<uint8_t>> in(shares.size());
  for (size_t s = 0; s < shares.size(); ++s) {
    int64_t n = 0;
    for (const std::string& id : ids) {
      in[s].push_back(in_validation_sample(id, shares[s]) ? 1 : 0);
      n += in[s].back();
    }
    const double mean = shares[s] * 20000, sd = std::sqrt(mean * (1 - shares[s]));
    EXPECT_NEAR(static_cast<double>(n), mean, 5 * sd) << shares[s];
    if (s == 0) continue;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (in[s - 1][i]) {
        ASSERT_TRUE(in[s][i]) << ids[i] << " left the sample at " << shares[s];
      }
    }
  }
  for (const std::string& id : ids) ASSERT_TRUE(in_validation_sample(id, 1.0));
}

TEST(Evaluate, ManyQueryUsersAreRankedInChunksAsInOneCall) {
  // The CPU evaluation gathers the query users' rows a chunk of about 64 MiB at a time (at least
  // 1,024 users): at 16,384 factors a chunk is 1,024 users, so the ~2,500 test users below take
  // three. Metrics and per-user values must equal one eval::topk call over every query row, to
  // the bit, with the training items masked.
  config::Config cfg = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "data.format=synthetic", "synthetic.users=2500", "synthetic.items=300",
           "synthetic.interactions=40000", "split.method=leave_last",
           "split.validation_fraction=0", "model.factors=16384", "run.progress=off"})
    cfg.set(s);
  const Dataset data = prepare_dataset(cfg);
  const int d = 16384;
  auto model = make_model(cfg, Context::create("cpu", 2));
  Rng rng(11);
  Matrix u{data.users.size(), d, {}}, i{data.items.size(), d, {}};
  for (Matrix* m : {&u, &i}) {
    m->data.resize(static_cast<size_t>(m->rows * m->cols));
    for (float& x : m->data) x = static_cast<float>(0.01 * rng.normal());
  }
  model->set_factors(u, i);

  const UserMetrics got = evaluate_per_user(*model, data, Part::kTest, {5, 20});
  const eval::Metrics whole = evaluate(*model, data, Part::kTest, {5, 20}, 1.0);
  ASSERT_GT(got.metrics.users, 2048);  // more than two chunks

  const data::Csr truth = data::Csr::from_interactions(
      data.users.size(), data.items.size(), data.split.test,
      std::vector<float>(static_cast<size_t>(data.split.test.size()), 1.f));
  std::vector<data::index_t> rows;
  for (int64_t r = 0; r < truth.rows; ++r)
    if (truth.row_size(r) > 0) rows.push_back(static_cast<data::index_t>(r));
  std::vector<float> queries;
  for (const data::index_t r : rows) queries.insert(queries.end(), u.row(r), u.row(r) + d);
  const eval::TopK top =
      eval::topk(queries.data(), static_cast<int64_t>(rows.size()), i.data.data(), i.rows, d, 20,
                 &data.user_items, rows);
  eval::MetricsOptions mo;
  mo.ks = {5, 20};
  eval::PerUserMetrics want_users;
  const eval::Metrics want = eval::compute_metrics(top, rows, truth, i.rows, mo, &want_users);
  EXPECT_EQ(got.metrics.to_json(), want.to_json());
  EXPECT_EQ(whole.to_json(), want.to_json());
  EXPECT_EQ(got.per_user.values, want_users.values);
  EXPECT_GT(want.recall[1], 0);
}

}  // namespace
}  // namespace recforge::pipeline
