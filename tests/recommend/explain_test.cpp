// Explanations (recommend/explain.h): iALS's exact decomposition of the user solve against the
// training's own Cholesky solve, for several configs; bpr's item similarity against cosines
// computed here; exports with and without seen_data.npy; report-user's fields.
#include "recommend/explain.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "artifact/artifact.h"
#include "config/config.h"
#include "core/context.h"
#include "core/error.h"
#include "core/secret.h"
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

std::string train_run(const TempDir& dir, const std::string& name, const std::string& extra) {
  const std::string yaml = "run:\n  name: " + name + "\n  dir: " + dir.str() +
                           "\n  progress: off\n  seed: 11\n"
                           "data:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 120\n  items: 90\n  interactions: 2500\n"
                           "split:\n  method: leave_last\n" + extra;
  const std::string run = pipeline::train(config::Config::parse(yaml, name + ".yaml"));
  pipeline::export_run(run, dir.file(name + "-export"), {});
  return run;
}

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

// Float32 unit roundoff and γ_m = m u / (1 − m u).
constexpr double kFloatUnit = FLT_EPSILON / 2;
double gamma_f(double m) { return m * kFloatUnit / (1 - m * kFloatUnit); }

// The user's training row (values: confidences) of a run.
data::Csr training_row(const data::Csr& seen, data::index_t u) {
  data::Csr row;
  row.rows = 1;
  row.cols = seen.cols;
  const auto b = seen.indptr[u], e = seen.indptr[u + 1];
  row.indptr = {0, e - b};
  row.indices.assign(seen.indices.begin() + b, seen.indices.begin() + e);
  row.data.assign(seen.data.begin() + b, seen.data.begin() + e);
  return row;
}

// The configs of the check: each term of A and b (unobserved weight, per-item unobserved
// weights, alpha, reg_exp/reg_offset, the weighting schemes). Regularization 0.5 keeps the
// systems well conditioned, so that the float32 bound below is tight enough to catch a wrong
// term.
const char* const kIalsConfigs[] = {
    "model:\n  factors: 8\n  iterations: 3\n  regularization: 0.5\n",
    "model:\n  factors: 8\n  iterations: 3\n  regularization: 0.5\n  unobserved_weight: 0.4\n"
    "  unobserved_exp: 0.8\n  alpha: 2.5\n",
    "model:\n  factors: 12\n  iterations: 3\n  regularization: 0.5\n  reg_exp: 0.5\n"
    "  reg_offset: 3\n  unobserved_weight: 1.0\n",
    "model:\n  factors: 8\n  iterations: 3\n  regularization: 0.5\n  unobserved_exp: 0.5\n"
    "weighting:\n  scheme: bm25\n",
    "model:\n  factors: 8\n  iterations: 3\n  regularization: 0.5\n  alpha: 0.7\n"
    "weighting:\n  scheme: log\n  alpha: 2\n",
};

TEST(Explain, IalsContributionsSumToTheExactSolveWhichIsTheTrainingCholeskySolve) {
  TempDir t;
  int config = 0;
  for (const char* extra : kIalsConfigs) {
    SCOPED_TRACE(extra);
    const std::string run = train_run(t, "c" + std::to_string(config++), extra);
    const Recommender rec = Recommender::open(run);
    const pipeline::OpenedRun& r = *rec.run();
    // The same model solving each row exactly: model.solver cholesky, the run's factors and
    // training item counts (model.unobserved_exp).
    config::Config cfg = r.config;
    cfg.set("model.solver=cholesky");
    std::unique_ptr<models::Model> exact = pipeline::make_model(cfg, Context::create("cpu", 1));
    exact->set_factors(r.model->user_factors(), r.model->item_factors());
    std::vector<int64_t> counts;
    for (int64_t i = 0; i < r.data.item_users.rows; ++i) counts.push_back(r.data.item_users.row_size(i));
    exact->set_item_counts(counts);
    const double alpha = cfg.settings().model.alpha;
    const Matrix& y = rec.item_factors();
    const int64_t k = y.cols;
    int checked = 0;
    for (data::index_t u = 0; u < rec.user_ids().size(); u += 13) {
      const data::Csr row = training_row(rec.seen(), u);
      if (row.nnz() == 0) continue;
      const Matrix x = exact->fold_in(row);  // float32 Cholesky of the training's A x = b
      for (data::index_t i : {data::index_t{0}, data::index_t{17}, row.indices[0],
                              static_cast<data::index_t>(y.rows - 1)}) {
        const std::vector<ItemExplanation> ex =
            explain(rec, rec.user_ids().external(u), {rec.item_ids().external(i)});
        ASSERT_EQ(ex.size(), 1u);
        const ItemExplanation& e = ex[0];
        EXPECT_EQ(e.method, "exact_decomposition");
        EXPECT_TRUE(e.sums_to_score);
        ASSERT_EQ(static_cast<int64_t>(e.contributions.size()), row.nnz());
        double sum = 0;
        for (size_t q = 0; q < e.contributions.size(); ++q) {
          sum += e.contributions[q].contribution;
          if (q > 0) {
            EXPECT_GE(e.contributions[q - 1].contribution, e.contributions[q].contribution);
          }
          const auto j = rec.item_ids().find(e.contributions[q].item);
          ASSERT_TRUE(j);
          const auto pos = std::find(row.indices.begin(), row.indices.end(), *j) - row.indices.begin();
          EXPECT_EQ(e.contributions[q].value, row.data[pos]);
          EXPECT_DOUBLE_EQ(e.contributions[q].confidence, alpha * row.data[pos]);
        }
        // The decomposition: the sum of the terms is the score, within the bound of the double
        // sums (explain_user derives it); 0 < tolerance < 1e-12 |score| keeps the bound honest.
        EXPECT_LE(std::abs(sum - e.score), e.tolerance);
        EXPECT_GT(e.tolerance, 0);
        EXPECT_LT(e.tolerance, 1e-12 * (std::abs(e.score) + 1));
        // The model's stored score.
        EXPECT_NEAR(e.model_score, dot(rec.user_factors().row(u), y.row(i), k),
                    1e-12 * (std::abs(e.model_score) + 1));
        // The exact score is y_i · x for the training's own Cholesky solve, up to float32's
        // error in it: A and b accumulate m = n_items + n products per entry (relative γ_m of
        // trace(A) ≥ ‖A‖, so k γ_m relative to ‖A‖ ≥ trace/k), the Cholesky and the two
        // triangular solves γ_{k+1} each of k‖A‖; the solution's relative error is at most
        // κ(A) times the sum (first order, doubled), κ(A) ≤ condition_bound; y_i · x adds γ_k.
        const std::vector<ItemExplanation> again =
            explain(rec, rec.user_ids().external(u), {rec.item_ids().external(i)});
        const double kappa = [&] {  // from the model's own explanation
          const std::vector<models::Explanation> me =
              r.model->explain(row, rec.user_factors().row(u), {i});
          return me[0].condition_bound;
        }();
        EXPECT_GE(kappa, 1.0);
        const double m = static_cast<double>(y.rows + row.nnz());
        const double rel = 2 * kappa * k * (gamma_f(m) + 3 * gamma_f(k + 1));
        const double xnorm = std::sqrt(dot(x.row(0), x.row(0), k));
        const double ynorm = std::sqrt(dot(y.row(i), y.row(i), k));
        double abs_dot = 0;
        for (int64_t c = 0; c < k; ++c) abs_dot += std::abs(static_cast<double>(x.row(0)[c]) * y.row(i)[c]);
        const double tol = rel * ynorm * xnorm + gamma_f(k) * abs_dot;
        EXPECT_NEAR(e.score, dot(x.row(0), y.row(i), k), tol) << "user " << u << " item " << i;
        EXPECT_LT(tol, 0.05 * (std::abs(e.score) + ynorm * xnorm)) << "the bound is too loose to test";
        EXPECT_EQ(again[0].score, e.score);  // deterministic
        ++checked;
      }
    }
    EXPECT_GE(checked, 20);
  }
}

TEST(Explain, AnExportExplainsAsItsRunAndAnOlderOneSaysExportAgain) {
  TempDir t;
  const std::string run = train_run(t, "e", "model:\n  factors: 8\n  iterations: 3\n"
                                            "  unobserved_exp: 0.6\nweighting:\n  scheme: log\n");
  const Recommender from_run = Recommender::open(run);
  const std::string exp = t.file("e-export");
  {
    const Recommender from_export = Recommender::open(exp);
    // seen_data.npy holds the training confidences.
    EXPECT_EQ(from_export.seen().data, from_run.seen().data);
    for (data::index_t u = 0; u < from_run.user_ids().size(); u += 29) {
      const std::string user = from_run.user_ids().external(u);
      const std::vector<std::string> items = {from_run.item_ids().external(3),
                                              from_run.item_ids().external(40)};
      const auto a = explain(from_run, user, items);
      const auto b = explain(from_export, user, items);
      ASSERT_EQ(a.size(), b.size());
      for (size_t q = 0; q < a.size(); ++q) {
        EXPECT_EQ(a[q].score, b[q].score);
        EXPECT_EQ(a[q].model_score, b[q].model_score);
        ASSERT_EQ(a[q].contributions.size(), b[q].contributions.size());
        for (size_t c = 0; c < a[q].contributions.size(); ++c) {
          EXPECT_EQ(a[q].contributions[c].item, b[q].contributions[c].item);
          EXPECT_EQ(a[q].contributions[c].contribution, b[q].contributions[c].contribution);
        }
      }
    }
    const std::string user = from_run.user_ids().external(0);
    EXPECT_EQ(error_of([&] { explain(from_export, "nobody", {"3"}); }),
              exp + ": user \"nobody\" is not in this export; expected a user id of its training "
                    "data");
    EXPECT_EQ(error_of([&] { explain(from_export, user, {"no-such-item"}); }),
              exp + ": item \"no-such-item\" is not in this export; expected an item id of its "
                    "training data");
  }
  // An export written before seen_data.npy: the file and its manifest entry absent.
  const std::string v = exp + "/" + fs::read_symlink(exp + "/current").string();
  nlohmann::json m = nlohmann::json::parse(test::read_file(v + "/manifest.json"));
  m["files"].erase("seen_data.npy");
  { std::ofstream(v + "/manifest.json") << m.dump(2); }
  fs::remove(v + "/seen_data.npy");
  const Recommender old = Recommender::open(exp);
  EXPECT_TRUE(old.seen().data.empty());
  EXPECT_EQ(error_of([&] { explain(old, from_run.user_ids().external(0), {"3"}); }),
            exp + ": this export has no seen_data.npy (the training confidences that "
                  "explanations need); export the run again with this recforge");
  // report-user still answers, without explanations and confidences.
  const nlohmann::ordered_json rep = report_user(old, from_run.user_ids().external(0), 3);
  EXPECT_TRUE(rep["recommendations"].contains("explanations_unavailable"));
  EXPECT_TRUE(rep["training"]["interactions"][0]["confidence"].is_null());
}

TEST(Explain, BprRanksTheTrainingItemsByCosineAndDoesNotClaimASum) {
  TempDir t;
  const std::string run = train_run(t, "b", "model:\n  type: bpr\n  factors: 8\n  iterations: 2\n");
  const Recommender rec = Recommender::open(run);
  const Matrix& y = rec.item_factors();
  const int64_t k = y.cols;
  for (data::index_t u = 0; u < rec.user_ids().size(); u += 31) {
    const data::Csr row = training_row(rec.seen(), u);
    const data::index_t i = 5;
    const ItemExplanation e =
        explain(rec, rec.user_ids().external(u), {rec.item_ids().external(i)}).at(0);
    EXPECT_EQ(e.method, "item_similarity");
    EXPECT_FALSE(e.sums_to_score);
    EXPECT_EQ(e.score, e.model_score);
    EXPECT_NEAR(e.model_score, dot(rec.user_factors().row(u), y.row(i), k),
                1e-12 * (std::abs(e.model_score) + 1));
    ASSERT_EQ(static_cast<int64_t>(e.contributions.size()), row.nnz());
    for (size_t q = 0; q < e.contributions.size(); ++q) {
      const data::index_t j = *rec.item_ids().find(e.contributions[q].item);
      const double cosine = dot(y.row(i), y.row(j), k) /
                            std::sqrt(dot(y.row(i), y.row(i), k) * dot(y.row(j), y.row(j), k));
      EXPECT_NEAR(e.contributions[q].contribution, cosine, 1e-12);
      if (q > 0) {
        EXPECT_GE(e.contributions[q - 1].contribution, e.contributions[q].contribution);
      }
    }
    const nlohmann::ordered_json j = to_json(e, 2);
    EXPECT_EQ(j["method"], "item_similarity");
    EXPECT_FALSE(j.contains("tolerance"));
    EXPECT_FALSE(j["contributions"][0].contains("share"));
  }
}

// A user the `users` split held out of training: the report lists the history the run holds for
// evaluation and says the model learned nothing of theirs (it showed a zero embedding, score-0
// lists "because of" nothing, and the history only as a count).
TEST(Explain, ReportUserSaysAUserHeldOutOfTrainingWasNotLearned) {
  TempDir t;
  const std::string yaml = "run:\n  name: u\n  dir: " + t.str() +
                           "\n  progress: off\n  seed: 11\n"
                           "data:\n  format: synthetic\n  cache: false\n"
                           "synthetic:\n  users: 120\n  items: 90\n  interactions: 2500\n"
                           "split:\n  method: users\n  heldout_users: 0.2\n  test_fraction: 0.3\n"
                           "model:\n  factors: 8\n  iterations: 2\n";
  const std::string run = pipeline::train(config::Config::parse(yaml, "u.yaml"));
  const Recommender rec = Recommender::open(run);
  const data::Split& s = rec.run()->data.split;
  ASSERT_GT(s.test_foldin.size(), 0);
  const data::index_t u = s.test_foldin.users[0];
  size_t given = 0;
  for (data::offset_t k = 0; k < s.test_foldin.size(); ++k) given += s.test_foldin.users[k] == u;
  const nlohmann::ordered_json rep = report_user(rec, rec.user_ids().external(u), 5);
  EXPECT_EQ(rep["training"]["count"], 0);
  EXPECT_EQ(rep["test"]["history_count"], given);
  EXPECT_EQ(rep["test"]["history"].size(), given);
  EXPECT_NE(rep["held_note"].get<std::string>().find("split.method users held this user out"),
            std::string::npos);
  const auto& recs = rep["recommendations"];
  EXPECT_NE(recs["explanations_unavailable"].get<std::string>().find("no training interaction"),
            std::string::npos);
  ASSERT_FALSE(recs["items"].empty());
  EXPECT_FALSE(recs["items"][0].contains("explained_by"));
}

TEST(Explain, ReportUserListsWhatTheRunHoldsAboutTheUser) {
  TempDir t;
  const std::string run = train_run(t, "r", "model:\n  factors: 8\n  iterations: 3\n");
  const Recommender rec = Recommender::open(run);
  const pipeline::OpenedRun& r = *rec.run();
  const data::index_t u = 4;
  const std::string user = rec.user_ids().external(u);
  const nlohmann::ordered_json rep = report_user(rec, user, 5);
  EXPECT_EQ(rep["user"], user);
  EXPECT_EQ(rep["source"], "run");
  const data::Csr row = training_row(rec.seen(), u);
  EXPECT_EQ(rep["training"]["count"], row.nnz());
  size_t raw = 0;
  for (data::offset_t k = 0; k < r.data.split.train.size(); ++k) raw += r.data.split.train.users[k] == u;
  size_t listed = 0;
  for (const auto& x : rep["training"]["interactions"]) {
    listed += x["raw"].size();
    EXPECT_TRUE(x["raw"][0].contains("timestamp"));  // synthetic data has timestamps
  }
  EXPECT_EQ(listed, raw);
  size_t test_count = 0;
  for (data::offset_t k = 0; k < r.data.split.test.size(); ++k) test_count += r.data.split.test.users[k] == u;
  EXPECT_EQ(rep["test"]["count"], test_count);
  EXPECT_EQ(rep["test"]["present"], test_count > 0);
  EXPECT_EQ(rep["validation"]["count"], 0);
  const double norm = std::sqrt(dot(rec.user_factors().row(u), rec.user_factors().row(u), 8));
  EXPECT_NEAR(rep["embedding"]["norm"].get<double>(), norm, 1e-12 * norm);
  // run.json names no export; the one `recforge export` wrote (train_run) is in exports.txt.
  EXPECT_EQ(rep["embedding"]["in_export"], true);
  ASSERT_EQ(rep["embedding"]["exports"].size(), 1u);
  EXPECT_EQ(rep["embedding"]["exports"][0]["export"],
            std::filesystem::weakly_canonical(t.file("r-export")).string());
  EXPECT_EQ(rep["embedding"]["exports"][0]["holds_user"], true);
  const auto& recs = rep["recommendations"]["items"];
  ASSERT_EQ(recs.size(), 5u);
  Options o;
  o.k = 5;
  o.exact = true;
  const Result top = rec.recommend({user}, o);
  for (size_t q = 0; q < 5; ++q) {
    EXPECT_EQ(recs[q]["item"], top.lists[0].items[q].id);
    const ItemExplanation e = explain(rec, user, {top.lists[0].items[q].id}).at(0);
    ASSERT_EQ(recs[q]["explained_by"].size(), std::min<size_t>(3, e.contributions.size()));
    EXPECT_EQ(recs[q]["explained_by"][0]["item"], e.contributions[0].item);
  }
  EXPECT_EQ(error_of([&] { report_user(rec, "nobody", 5); }),
            run + ": user \"nobody\" is not in this run; expected a user id of its training data");
  // The export: no validation or test data, the embedding stored.
  const Recommender exp = Recommender::open(t.file("r-export"));
  const nlohmann::ordered_json rep2 = report_user(exp, user, 5);
  EXPECT_TRUE(rep2["validation"].is_null());
  EXPECT_TRUE(rep2["test"].is_null());
  EXPECT_EQ(rep2["embedding"]["in_export"], true);
  EXPECT_EQ(rep2["training"]["count"], row.nnz());
  EXPECT_FALSE(rep2["recommendations"].contains("score_metric"));  // an inner-product export

  // An export of index.metric cosine lists and scores by cosine, as it serves, and says that
  // the contributions decompose u·v (the report paired cosines with them unannounced).
  train_run(t, "c", "model:\n  factors: 8\n  iterations: 3\nindex:\n  metric: cosine\n");
  const Recommender cexp = Recommender::open(t.file("c-export"));
  const nlohmann::ordered_json rep3 = report_user(cexp, user, 5);
  const auto& crecs = rep3["recommendations"];
  EXPECT_EQ(crecs["score_metric"], "cosine");
  EXPECT_NE(crecs["explanations_note"].get<std::string>().find("divided by |u| |v| is that cosine"),
            std::string::npos);
  const data::index_t cu = *cexp.user_row(user);
  const float* xu = cexp.user_factors().row(cu);
  ASSERT_EQ(crecs["items"].size(), 5u);
  for (const auto& x : crecs["items"]) {
    const float* yi = cexp.item_factors().row(*cexp.item_ids().find(x["item"].get<std::string>()));
    const double cosine = dot(xu, yi, 8) / std::sqrt(dot(xu, xu, 8) * dot(yi, yi, 8));
    // The reference is in double from the stored float factors. recforge normalises each vector
    // in float (1/|v| rounded, then each product: 2u relative per component, u = 2^-24), sums
    // the 8 products (in float at worst: gamma_8 <= 8u of the sum of |products| <= 1 for unit
    // vectors) and returns a float (u): at most (2 + 2 + 8 + 1)u to first order; twice that
    // covers the second-order terms.
    EXPECT_NEAR(x["score"].get<double>(), cosine, 2 * (2 + 2 + 8 + 1) * std::ldexp(1.0, -24))
        << x["item"];
  }
}

TEST(Explain, OptedOutUsersAreReportedAsSuchAndNotExplained) {
  TempDir t;
  const std::string key = "report-user-test-key-0123456789";
  const std::string key_file = test::write_file(t.file("key"), key + "\n");
  const std::string opt = test::write_file(t.file("opt-out.txt"), "7\n");
  const std::string run = train_run(t, "o",
                                    "model:\n  factors: 8\n  iterations: 3\n"
                                    "privacy:\n  opt_out: " + opt + "\n"
                                    "export:\n  enabled: true\n  pseudonymize: true\n"
                                    "  pseudonym_key_file: " + key_file + "\n");
  {
    const Recommender rec = Recommender::open(run);
    ASSERT_FALSE(rec.user_row("7").has_value());  // dropped before training
    const nlohmann::ordered_json rep = report_user(rec, "7", 5);
    EXPECT_EQ(rep["opted_out"], true);
    EXPECT_EQ(rep["training"]["count"], 0);
    EXPECT_TRUE(rep["embedding"].is_null());
    EXPECT_EQ(rep["recommendations"]["personalised"], false);
    EXPECT_EQ(rep["recommendations"]["items"].size(), 5u);
    EXPECT_FALSE(rep["recommendations"]["items"][0].contains("explained_by"));
    const std::string item = rec.item_ids().external(0);
    EXPECT_NE(error_of([&] { explain(rec, "7", {item}); }).find("opted out of personalisation"),
              std::string::npos);
    // A user with a row: the run's export is pseudonymised, found through the config's key.
    const nlohmann::ordered_json three = report_user(rec, "3", 5);
    EXPECT_EQ(three["opted_out"], false);
    EXPECT_EQ(three["embedding"]["in_export"], true);
    EXPECT_EQ(three["recommendations"]["personalised"], true);
  }
  // "9" opts out after training: what is held about them is still reported (their
  // interactions and embedding), and their answers are the popularity list, unexplained.
  test::write_file(opt, "7\n9\n");
  const Recommender rec = Recommender::open(run);
  const nlohmann::ordered_json nine = report_user(rec, "9", 5);
  EXPECT_EQ(nine["opted_out"], true);
  EXPECT_GT(nine["training"]["count"].get<int64_t>(), 0);
  EXPECT_FALSE(nine["embedding"].is_null());
  EXPECT_EQ(nine["recommendations"]["personalised"], false);
  EXPECT_NE(nine["recommendations"]["explanations_unavailable"].get<std::string>().find("opted out"),
            std::string::npos);
  // The pseudonymised export answers the raw id only with the key.
  const std::string exp = run + "/export";
  EXPECT_NE(error_of([&] { report_user(Recommender::open(exp), "3", 5); }).find("not in this export"),
            std::string::npos);
  OpenOptions k;
  k.pseudonym_key = SecretKey::from_file(key_file, "--pseudonym-key-file");
  const nlohmann::ordered_json keyed = report_user(Recommender::open(exp, k), "3", 5);
  EXPECT_EQ(keyed["embedding"]["in_export"], true);
  EXPECT_EQ(keyed["training"]["count"], report_user(rec, "3", 5)["training"]["count"]);
}

}  // namespace
}  // namespace recforge::recommend
