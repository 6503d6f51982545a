// The recommend library: fold-in from exports, similar items/users against brute force, batches
// against single queries, unknown ids, concurrent queries, and the masks (exclude, candidate
// subset, include_seen), on small runs trained here.
#include "recommend/recommend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include <cblas.h>

#include "config/config.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/context.h"
#include "models/model.h"
#include "pipeline/export.h"
#include "pipeline/options.h"
#include "pipeline/run.h"
#include "pipeline/train.h"
#include "test_util.h"

namespace recforge::recommend {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

/// Trains a small synthetic run named `name` into `dir` and exports it to `dir/<name>-export`
/// (with `export_sets`). Returns the run directory.
std::string train_run(const TempDir& dir, const std::string& name, const std::string& extra,
                      const std::vector<std::string>& export_sets = {}) {
  const std::string yaml = "run:\n  name: " + name + "\n  dir: " + dir.str() +
                           "\n  progress: off\n  seed: 7\n"
                           "data:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
                           "split:\n  method: leave_last\n" + extra;
  const std::string run = pipeline::train(config::Config::parse(yaml, name + ".yaml"));
  pipeline::export_run(run, dir.file(name + "-export"), export_sets);
  return run;
}

/// The exception message of f(), or "" when it does not throw.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

double dot(const float* a, const float* b, int64_t d) {
  double s = 0;
  for (int64_t c = 0; c < d; ++c) s += static_cast<double>(a[c]) * b[c];
  return s;
}

/// Bound on the float32 rounding error of a d-term dot product computed in float (each product
/// and partial sum rounds once, relative FLT_EPSILON/2 each): d·ε·Σ|a_c·b_c|, doubled for safety
/// of the bound's first-order approximation.
double dot_tolerance(const float* a, const float* b, int64_t d) {
  double s = 0;
  for (int64_t c = 0; c < d; ++c) s += std::fabs(static_cast<double>(a[c]) * b[c]);
  return 2.0 * static_cast<double>(d) * FLT_EPSILON * s + 1e-30;
}

std::vector<float> unit(const float* a, int64_t d) {
  double n = std::sqrt(dot(a, a, d));
  std::vector<float> u(a, a + d);
  if (n > 0)
    for (float& x : u) x = static_cast<float>(x / n);
  return u;
}

/// Checks `got` (a list for query row `q` of `m`, q excluded) against the brute-force order of
/// every row of `m` by dot or cosine in double: the j-th score equals the j-th best double score
/// within the rounding bound, and the item at rank j has that score too (ties within the bound
/// may swap places, nothing else may).
void expect_brute_force(const List& got, const Matrix& m, data::index_t q, int k, bool cosine) {
  const int64_t d = m.cols;
  std::vector<std::vector<float>> rows;
  for (int64_t r = 0; r < m.rows; ++r)
    rows.push_back(cosine ? unit(m.row(r), d) : std::vector<float>(m.row(r), m.row(r) + d));
  std::vector<std::pair<double, data::index_t>> all;
  for (int64_t r = 0; r < m.rows; ++r)
    if (r != q) all.push_back({dot(rows[q].data(), rows[r].data(), d), static_cast<data::index_t>(r)});
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first; });
  ASSERT_EQ(got.items.size(), static_cast<size_t>(k));
  std::set<data::index_t> distinct;
  for (int j = 0; j < k; ++j) {
    const Scored& s = got.items[static_cast<size_t>(j)];
    EXPECT_NE(s.row, q) << "the query itself was returned";
    distinct.insert(s.row);
    const double tol = dot_tolerance(rows[q].data(), rows[s.row].data(), d) +
                       dot_tolerance(rows[q].data(), rows[all[j].second].data(), d);
    EXPECT_NEAR(s.score, all[static_cast<size_t>(j)].first, tol) << "rank " << j + 1;
    EXPECT_NEAR(dot(rows[q].data(), rows[s.row].data(), d), all[static_cast<size_t>(j)].first, tol)
        << "rank " << j + 1 << ": item row " << s.row << " instead of " << all[j].second;
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(k));
}

/// Largest |a - b| over two factor rows, and the bound for comparing two fold-ins.
void expect_same_factors(const Matrix& a, const Matrix& b) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  double scale = 0;
  for (float x : b.data) scale = std::max(scale, std::fabs(static_cast<double>(x)));
  // Both solve the same system from the same float32 item factors, confidences and settings:
  // any difference can only come from the order of the d-term sums (BLAS threads), bounded by
  // d rounding steps of the largest value.
  const double tol = static_cast<double>(a.cols) * FLT_EPSILON * std::max(scale, 1.0);
  for (size_t i = 0; i < a.data.size(); ++i) EXPECT_NEAR(a.data[i], b.data[i], tol) << "value " << i;
}

void expect_same(const Result& a, const Result& b) {
  ASSERT_EQ(a.lists.size(), b.lists.size());
  for (size_t l = 0; l < a.lists.size(); ++l) {
    EXPECT_EQ(a.lists[l].query, b.lists[l].query);
    ASSERT_EQ(a.lists[l].items.size(), b.lists[l].items.size()) << "list " << l;
    for (size_t j = 0; j < a.lists[l].items.size(); ++j) {
      EXPECT_EQ(a.lists[l].items[j].id, b.lists[l].items[j].id) << "list " << l << " rank " << j;
      EXPECT_EQ(a.lists[l].items[j].score, b.lists[l].items[j].score) << "list " << l << " rank " << j;
    }
  }
}

// One iALS run (linear weighting, so that fold-in depends on the weighting carried) and one BPR
// run (its fold-in is seeded by run.seed), trained once for all tests.
class RecommendTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ials_ = train_run(*dir_, "ials",
                      "model:\n  factors: 8\n  iterations: 4\n"
                      "weighting:\n  scheme: linear\n  alpha: 3.0\n");
    bpr_ = train_run(*dir_, "bpr", "model:\n  type: bpr\n  factors: 8\n  iterations: 3\n");
    train_run(*dir_, "bm25", "model:\n  factors: 8\n  iterations: 4\n"
                              "weighting:\n  scheme: bm25\n");
    // Per-item unobserved weights (eALS): the fold-in solve depends on the training counts.
    train_run(*dir_, "ials-exp", "model:\n  factors: 8\n  iterations: 4\n  unobserved_exp: 0.6\n"
                                  "weighting:\n  scheme: linear\n  alpha: 3.0\n");
    ivf_ = train_run(*dir_, "ivf", "model:\n  factors: 8\n  iterations: 4\n",
                     {"index.type=ivf_flat", "index.nlist=8", "index.nprobe=2"});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string export_of(const std::string& name) { return dir_->file(name + "-export"); }
  static TempDir* dir_;
  static std::string ials_, bpr_, ivf_;
};
TempDir* RecommendTest::dir_ = nullptr;
std::string RecommendTest::ials_, RecommendTest::bpr_, RecommendTest::ivf_;

TEST_F(RecommendTest, FoldInFromAnExportEqualsFoldInFromTheRunDirectory) {
  for (const std::string& name :
       {std::string("ials"), std::string("bpr"), std::string("bm25"), std::string("ials-exp")}) {
    SCOPED_TRACE(name);
    const Recommender run = Recommender::open(dir_->file(name));
    const Recommender exp = Recommender::open(export_of(name));
    ASSERT_TRUE(exp.is_export());
    ASSERT_TRUE(exp.can_fold_in());
    const std::vector<std::string> items{"3", "17", " 42 ", "99"};
    const std::vector<float> weights{1.f, 4.f, 2.f, 0.5f};
    const Matrix a = exp.fold_in(items, weights, nullptr);
    const Matrix b = run.fold_in(items, weights, nullptr);
    expect_same_factors(a, b);
    // The solve really ran, and for iALS the weights reach it through the training weighting
    // (linear, alpha 3; bm25); BPR fits the positives whatever their weight.
    double norm = 0;
    for (float x : a.data) norm += x * x;
    EXPECT_GT(norm, 1e-6);
    if (name != "bpr") {
      const Matrix unweighted = exp.fold_in(items, {}, nullptr);
      double diff = 0;
      for (size_t i = 0; i < a.data.size(); ++i) diff = std::max(diff, std::fabs(double(a.data[i]) - unweighted.data[i]));
      EXPECT_GT(diff, 1e-4) << "the weights made no difference";
    }
    // And the lists of the two agree (exact scoring on both sides).
    Options o;
    o.k = 10;
    o.exact = true;
    const Result ra = exp.recommend_new_user(items, weights, o);
    const Result rb = run.recommend_new_user(items, weights, o);
    ASSERT_EQ(ra.lists.size(), 1u);
    ASSERT_EQ(ra.lists[0].items.size(), 10u);
    for (size_t j = 0; j < 10; ++j) {
      EXPECT_EQ(ra.lists[0].items[j].id, rb.lists[0].items[j].id);
      for (const char* given : {"3", "17", "42", "99"})
        EXPECT_NE(ra.lists[0].items[j].id, given) << "a given item was recommended";
    }
  }
}

TEST_F(RecommendTest, AReopenedRunFoldsInWithTheTrainingItemWeights) {
  // model.unobserved_exp weighs each item's unobserved term by its training popularity. A run
  // reopened from disk has no training pass to compute those weights in: open_run gives the
  // model the training counts. Without them the fold-in solve would use uniform weights.
  const pipeline::OpenedRun r = pipeline::open_run(dir_->file("ials-exp"), "fold in from");
  const data::Csr& rows = r.data.user_items;  // every training user's confidences
  const Matrix with_counts = r.model->fold_in(rows);
  auto uniform = pipeline::make_model(r.config, Context::create("cpu", 2));
  uniform->set_factors(r.model->user_factors(), r.model->item_factors());
  const Matrix without = uniform->fold_in(rows);
  double diff = 0;
  for (size_t i = 0; i < with_counts.data.size(); ++i)
    diff = std::max(diff, std::fabs(double(with_counts.data[i]) - without.data[i]));
  EXPECT_GT(diff, 1e-3) << "the per-item weights made no difference to the fold-in solve";
  // With the counts the restored model folds in as the reopened one does.
  std::vector<int64_t> counts(static_cast<size_t>(rows.cols), 0);
  for (data::index_t i : rows.indices) ++counts[static_cast<size_t>(i)];
  uniform->set_item_counts(counts);
  expect_same_factors(uniform->fold_in(rows), with_counts);
}

TEST_F(RecommendTest, AnExportWithoutFoldInDataSaysItMustBeExportedAgain) {
  // An export written before the fold_in section existed: the same files, manifest without it
  // (manifest.json is the one file not checksummed).
  const std::string old = dir_->file("old-export");
  fs::copy(export_of("ials"), old, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  const std::string mpath = old + "/v-1/manifest.json";
  nlohmann::json m = nlohmann::json::parse(test::read_file(mpath));
  ASSERT_TRUE(m.contains("fold_in"));
  m.erase("fold_in");
  test::write_file(mpath, m.dump(2));
  const Recommender r = Recommender::open(old);
  EXPECT_FALSE(r.can_fold_in());
  Options o;
  EXPECT_EQ(r.recommend({"5"}, o).lists.size(), 1u);  // everything else still works
  const std::string err = error_of([&] { r.recommend_new_user({"3", "17"}, {}, o); });
  EXPECT_NE(err.find(old + ": this export predates fold-in support"), std::string::npos) << err;
  EXPECT_NE(err.find("export the run again"), std::string::npos) << err;
}

TEST_F(RecommendTest, SimilarItemsAndUsersEqualBruteForce) {
  const Recommender run = Recommender::open(ials_);
  const Recommender exp = Recommender::open(export_of("ials"));  // flat inner-product index
  const Matrix& items = run.item_factors();
  for (const char* id : {"0", "57", "199"}) {
    const data::index_t q = *run.item_ids().find(id);
    SCOPED_TRACE(id);
    SimilarOptions dot_o, cos_o;
    dot_o.metric = Metric::kDot;
    cos_o.metric = Metric::kCosine;
    expect_brute_force(run.similar_items(id, 12, dot_o).lists.at(0), items, q, 12, false);
    expect_brute_force(run.similar_items(id, 12, cos_o).lists.at(0), items, q, 12, true);
    const Result via_index = exp.similar_items(id, 12, dot_o);
    EXPECT_TRUE(via_index.exact);  // a flat inner-product index is scored by the exact top-k
    expect_brute_force(via_index.lists.at(0), items, q, 12, false);
    const Result cos_exp = exp.similar_items(id, 12, cos_o);  // the index is not cosine: exact
    EXPECT_TRUE(cos_exp.exact);
    expect_brute_force(cos_exp.lists.at(0), items, q, 12, true);
  }
  for (const char* id : {"5", "250"}) {
    const data::index_t q = *run.user_ids().find(id);
    SimilarOptions cos_o;
    cos_o.metric = Metric::kCosine;
    expect_brute_force(run.similar_users(id, 9).lists.at(0), run.user_factors(), q, 9, false);
    expect_brute_force(exp.similar_users(id, 9, cos_o).lists.at(0), run.user_factors(), q, 9, true);
  }
  // k beyond the other items: every other item, the query never.
  EXPECT_EQ(run.similar_items("3", 500).lists.at(0).items.size(), 199u);
}

TEST_F(RecommendTest, SimilarItemsOfABatchEqualEachItemAlone) {
  // Exact and approximate (IVF), dot and cosine: each item's list in a batch of seven is the one
  // it gets alone, to the bit, with the item itself never listed; an unknown item is refused by
  // name. (Bit equality through IVF holds on any CPU for batches under 20 queries, which Faiss
  // assigns to cells one query at a time; from 20 on it ranks the cells by a GEMM, whose last
  // bits may depend on the batch: docs/serving.md.)
  for (const std::string& path : {export_of("ials"), export_of("ivf")}) {
    const Recommender r = Recommender::open(path);
    const std::vector<std::string> items{"7", "9", "0", "199", "42", "7", "13"};
    for (const Metric metric : {Metric::kDot, Metric::kCosine})
      for (const bool exact : {false, true}) {
        SCOPED_TRACE(path + (metric == Metric::kCosine ? " cosine" : " dot") +
                     (exact ? " exact" : ""));
        SimilarOptions o;
        o.metric = metric;
        o.exact = exact;
        const Result batch = r.similar_items_batch(items, 6, o);
        ASSERT_EQ(batch.lists.size(), items.size());
        EXPECT_EQ(batch.k, 6);
        for (size_t j = 0; j < items.size(); ++j) {
          const Result alone = r.similar_items(items[j], 6, o);
          EXPECT_EQ(batch.exact, alone.exact);
          Result one;
          one.lists.push_back(batch.lists[j]);
          expect_same(one, alone);
          ASSERT_EQ(batch.lists[j].items.size(), 6u);
          for (const Scored& s : batch.lists[j].items) EXPECT_NE(s.id, items[j]);
        }
      }
    EXPECT_NE(error_of([&] { r.similar_items_batch({"7", "no-such-item"}, 6); })
                  .find("item \"no-such-item\" is not in this"),
              std::string::npos);
  }
}

TEST_F(RecommendTest, ABatchEqualsOneQueryAtATime) {
  for (const std::string& path : {ials_, export_of("ials"), export_of("ivf")}) {
    SCOPED_TRACE(path);
    const Recommender r = Recommender::open(path);
    for (bool exact : {false, true}) {
      Options o;
      o.k = 7;
      o.exact = exact;
      o.exclude = {"11", "12"};
      const std::vector<std::string> users{"5", "17", "250", "3", "120"};
      const Result batch = r.recommend(users, o);
      ASSERT_EQ(batch.lists.size(), users.size());
      for (size_t u = 0; u < users.size(); ++u) {
        const Result one = r.recommend({users[u]}, o);
        Result part;
        part.lists = {batch.lists[u]};
        expect_same(part, one);
        EXPECT_EQ(batch.lists[u].items.size(), 7u);
      }
    }
  }
}

TEST_F(RecommendTest, UnknownIdsAreReportedAndTheRestAnswered) {
  const Recommender r = Recommender::open(export_of("ials"));
  Options o;
  o.k = 5;
  o.exclude = {"zz", " 11"};
  const Result res = r.recommend({"5", "nobody", " 17 "}, o);
  ASSERT_EQ(res.lists.size(), 2u);
  EXPECT_EQ(res.lists[0].query, "5");
  EXPECT_EQ(res.lists[1].query, "17");  // trimmed
  ASSERT_EQ(res.unknown.size(), 2u);
  EXPECT_EQ(res.unknown[0].id, "nobody");
  EXPECT_EQ(res.unknown[0].field, "users");
  EXPECT_EQ(res.unknown[1].id, "zz");
  EXPECT_EQ(res.unknown[1].field, "exclude");
  for (const List& l : res.lists)
    for (const Scored& s : l.items) EXPECT_NE(s.id, "11");  // the known exclusion still applies
  // Fold-in: unknown items are skipped, the rest folded in.
  const Result fold = r.recommend_new_user({"3", "ghost", "17"}, {}, o);
  ASSERT_EQ(fold.unknown.size(), 2u);  // and "zz" of exclude
  EXPECT_EQ(fold.unknown[0].id, "ghost");
  EXPECT_EQ(fold.unknown[0].field, "items");
  EXPECT_EQ(fold.lists.at(0).items.size(), 5u);
  expect_same_factors(r.fold_in({"3", "ghost", "17"}, {}, nullptr), r.fold_in({"3", "17"}, {}, nullptr));
  // Nothing answerable: one sentence naming what.
  const std::string path = export_of("ials");
  EXPECT_EQ(error_of([&] { r.recommend({"nobody"}, o); }),
            path + ": user \"nobody\" is not in this export; expected a user id of its training data");
  EXPECT_EQ(error_of([&] { r.recommend({"a", "b"}, o); }),
            path + ": none of the 2 users asked for is in this export; expected user ids of its "
                   "training data");
  EXPECT_EQ(error_of([&] { r.recommend_new_user({"x", "y"}, {}, o); }),
            path + ": none of the 2 items given to fold in is in this export; expected item ids "
                   "of its training data");
  Options cand = o;
  cand.candidates = std::vector<std::string>{"p", "q"};
  EXPECT_EQ(error_of([&] { r.recommend({"5"}, cand); }),
            path + ": none of the 2 candidate items is in this export; expected item ids of its "
                   "training data");
  EXPECT_EQ(error_of([&] { r.similar_items("nothing", 3); }),
            path + ": item \"nothing\" is not in this export; expected an item id of its training "
                   "data");
  EXPECT_EQ(error_of([&] { r.recommend_new_user({"3", "17"}, {1.f}, o); }),
            "fold-in: 1 weights for 2 items; expected one weight per item");
  EXPECT_EQ(error_of([&] { r.recommend_new_user({"3"}, {-1.f}, o); }),
            "fold-in: the weight of item \"3\" is -1; expected a finite weight >= 0");
}

TEST_F(RecommendTest, ExcludeCandidatesAndIncludeSeenMaskAsSpecified) {
  for (const std::string& path : {ials_, export_of("ials")}) {
    SCOPED_TRACE(path);
    const Recommender r = Recommender::open(path);
    const Matrix& U = r.user_factors();
    const Matrix& V = r.item_factors();
    const data::index_t u = *r.user_ids().find("17");
    // The user's training items, as the export stores them (the run's are the same rows).
    const Recommender e = Recommender::open(export_of("ials"));
    std::set<std::string> seen;
    {
      Options all;
      all.k = 200;
      all.include_seen = true;
      all.exact = true;
      const Result with = e.recommend({"17"}, all);
      all.include_seen = false;
      const Result without = e.recommend({"17"}, all);
      std::set<std::string> kept;
      for (const Scored& s : without.lists[0].items) kept.insert(s.id);
      for (const Scored& s : with.lists[0].items)
        if (!kept.count(s.id)) seen.insert(s.id);
      EXPECT_EQ(with.lists[0].items.size(), 200u);  // include_seen: every item
      EXPECT_EQ(without.lists[0].items.size() + seen.size(), 200u);
    }
    ASSERT_GE(seen.size(), 3u);
    // include_seen: the full order by score, equal to the double-precision scores.
    Options o;
    o.k = 200;
    o.include_seen = true;
    o.exact = true;
    const Result full = r.recommend({"17"}, o);
    ASSERT_EQ(full.lists[0].items.size(), 200u);
    for (size_t j = 0; j < 200; ++j) {
      const Scored& s = full.lists[0].items[j];
      const double want = dot(U.row(u), V.row(s.row), U.cols);
      EXPECT_NEAR(s.score, want, dot_tolerance(U.row(u), V.row(s.row), U.cols));
      if (j > 0) {
        EXPECT_LE(s.score, full.lists[0].items[j - 1].score);
      }
    }
    // Default: the seen items are gone and the order of the rest is kept.
    o.include_seen = false;
    o.k = 10;
    const Result top = r.recommend({"17"}, o);
    std::vector<std::string> expected;
    for (const Scored& s : full.lists[0].items)
      if (!seen.count(s.id) && expected.size() < 10) expected.push_back(s.id);
    ASSERT_EQ(top.lists[0].items.size(), 10u);
    for (size_t j = 0; j < 10; ++j) EXPECT_EQ(top.lists[0].items[j].id, expected[j]) << j;
    // exclude: the first and third are removed, the list closes up.
    o.exclude = {expected[0], expected[2]};
    const Result ex = r.recommend({"17"}, o);
    EXPECT_EQ(ex.lists[0].items[0].id, expected[1]);
    EXPECT_EQ(ex.lists[0].items[1].id, expected[3]);
    EXPECT_EQ(ex.lists[0].items.size(), 10u);
    // candidates: only those, seen ones masked unless include_seen, in score order.
    const std::string seen_one = *seen.begin();
    o.exclude = {expected[5]};
    o.candidates = std::vector<std::string>{expected[4], seen_one, expected[5], expected[1], "nope"};
    const Result c = r.recommend({"17"}, o);
    ASSERT_EQ(c.lists[0].items.size(), 2u);
    EXPECT_EQ(c.lists[0].items[0].id, expected[1]);
    EXPECT_EQ(c.lists[0].items[1].id, expected[4]);
    EXPECT_TRUE(c.exact);
    ASSERT_EQ(c.unknown.size(), 1u);
    EXPECT_EQ(c.unknown[0].field, "candidates");
    o.include_seen = true;
    const Result cs = r.recommend({"17"}, o);
    ASSERT_EQ(cs.lists[0].items.size(), 3u);
    std::set<std::string> got;
    for (const Scored& s : cs.lists[0].items) got.insert(s.id);
    EXPECT_TRUE(got.count(seen_one));
  }
}

// Every kind of query of one recommender: approximate and exact, fold-in, similar items and
// users by dot and cosine.
std::vector<Result> all_answers(const Recommender& r) {
  Options ann, exact;
  ann.k = exact.k = 8;
  exact.exact = true;
  SimilarOptions sim_exact;
  sim_exact.exact = true;
  SimilarOptions sim_cos;
  sim_cos.metric = Metric::kCosine;
  const std::vector<std::string> users{"5", "17", "250"};
  const std::vector<std::string> fold{"3", "17", "42"};
  std::vector<Result> v;
  v.push_back(r.recommend(users, ann));
  v.push_back(r.recommend(users, exact));
  v.push_back(r.recommend_new_user(fold, {2.f, 1.f, 1.f}, ann));
  v.push_back(r.recommend_new_user(fold, {}, exact));
  v.push_back(r.similar_items("7", 8));
  v.push_back(r.similar_items("7", 8, sim_exact));
  v.push_back(r.similar_items("9", 8, sim_cos));
  v.push_back(r.similar_users("5", 8, sim_cos));
  return v;
}

// What a server prepares while loading (prepare(), from four threads at once) changes no
// answer: an IVF export, flat iALS and BPR exports (scored exactly: their largest item norm is
// prepared), and a flat cosine one (answered by its Faiss index). A run directory (no index:
// the norm and the fold-in Gram matrix) is covered too.
TEST_F(RecommendTest, PreparingOnLoadChangesNoAnswer) {
  const std::string cosine = dir_->file("cosine-export");
  pipeline::export_run(ials_, cosine, {"index.metric=cosine"});
  ASSERT_EQ(Recommender::open(cosine).default_metric(), Metric::kCosine);
  for (const std::string& path :
       {export_of("ivf"), export_of("ials"), export_of("bpr"), cosine, ials_}) {
    SCOPED_TRACE(path);
    const Recommender fresh = Recommender::open(path);
    const Recommender prepared = Recommender::open(path);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back([&] { prepared.prepare(); });
    for (auto& th : threads) th.join();
    prepared.prepare();  // again: nothing left to do
    const std::vector<Result> want = all_answers(fresh), got = all_answers(prepared);
    ASSERT_EQ(got.size(), want.size());
    for (size_t a = 0; a < want.size(); ++a) expect_same(got[a], want[a]);
  }
}

TEST_F(RecommendTest, SixteenThreadsOnOneExportGetTheAnswersOfOne) {
  const Recommender r = Recommender::open(export_of("ivf"));
  ASSERT_TRUE(r.can_fold_in());
  auto answers = [&] { return all_answers(r); };
  const std::vector<Result> want = answers();
  std::vector<std::vector<Result>> got(16);
  std::vector<std::string> errors(16);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 16; ++t)
    threads.emplace_back([&, t] {
      try {
        for (int rep = 0; rep < 3; ++rep) got[t] = answers();
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < 16; ++t) {
    SCOPED_TRACE("thread " + std::to_string(t));
    ASSERT_EQ(errors[t], "");
    ASSERT_EQ(got[t].size(), want.size());
    for (size_t a = 0; a < want.size(); ++a) expect_same(got[t][a], want[a]);
  }
}

// A folded-in user's bm25 confidences use the training set's idf and mean length: a training
// user's own row weighted alone against the training statistics gets exactly the confidences
// training gave it (weighted as a set of one row, every idf was log(1) - log1p(1) < 0).
TEST(Bm25, ARowWeightedAgainstTheTrainingStatisticsGetsItsTrainingConfidences) {
  data::Interactions train;
  const int64_t nu = 6, ni = 5;
  const float w[6][5] = {{1, 0, 3, 0, 0}, {2, 1, 0, 0, 5}, {0, 0, 1, 1, 0},
                         {4, 0, 0, 2, 0}, {0, 0, 0, 0, 0}, {1, 1, 1, 0, 7}};
  for (int u = 0; u < nu; ++u)
    for (int i = 0; i < ni; ++i)
      if (w[u][i] > 0) train.push(u, i, w[u][i]);
  data::WeightOptions o;
  o.scheme = data::WeightScheme::kBm25;
  o.bm25_k1 = 1.2;
  o.bm25_b = 0.75;
  const std::vector<float> all = data::confidence(train, nu, ni, o);
  const data::Bm25Corpus corpus = data::bm25_corpus(train, nu, ni);
  EXPECT_EQ(corpus.users, nu);
  EXPECT_EQ(corpus.total_weight, 30.0);
  EXPECT_EQ(corpus.item_counts, (std::vector<int64_t>{4, 2, 3, 2, 2}));
  for (int u : {0, 1, 5}) {
    data::Interactions row;
    std::vector<float> want;
    for (data::offset_t e = 0; e < train.size(); ++e)
      if (train.users[e] == u) {
        row.push(0, train.items[e], train.weights[e]);
        want.push_back(all[static_cast<size_t>(e)]);
      }
    EXPECT_EQ(data::confidence(row, 1, ni, o, corpus), want) << "user " << u;
    for (float c : data::confidence(row, 1, ni, o, corpus)) EXPECT_GT(c, 0.f);
  }
  // Hand check of one value (user 1, item 4: w 5, row length 8, mean 30 / 6, count 2) in double.
  const double idf = std::log(6.0) - std::log1p(2.0);
  const double norm = 0.25 + 0.75 * 8.0 / 5.0;
  const double c = 5.0 * 2.2 / (1.2 * norm + 5.0) * idf;
  data::Interactions one;
  one.push(0, 0, 2.f);
  one.push(0, 1, 1.f);
  one.push(0, 4, 5.f);
  EXPECT_FLOAT_EQ(data::confidence(one, 1, ni, o, corpus)[2], static_cast<float>(c));
}

// BlasThreads objects alive at once (concurrent queries each set OpenBLAS to one thread) that
// end in another order than they began restore the count from before the first, not the 1 that
// the second one saw.
TEST(BlasThreads, OverlappingObjectsRestoreTheOriginalCount) {
  const int original = openblas_get_num_threads();
  if (original < 2) GTEST_SKIP() << "OpenBLAS runs one thread here; nothing to restore";
  auto a = std::make_unique<BlasThreads>(1);
  auto b = std::make_unique<BlasThreads>(1);
  EXPECT_EQ(openblas_get_num_threads(), 1);
  a.reset();  // the first ends first, as a faster concurrent query does
  EXPECT_EQ(openblas_get_num_threads(), 1) << "b's BLAS calls would run multithreaded";
  b.reset();
  EXPECT_EQ(openblas_get_num_threads(), original);
}

}  // namespace
}  // namespace recforge::recommend
