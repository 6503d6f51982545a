// Sweep files: grid and random expansion, refusal of invalid search spaces with their location,
// and the early-stopping rules.
#include "sweep/spec.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "sweep/search.h"
#include "sweep/sweep.h"
#include "test_util.h"

namespace recforge::sweep {
namespace {

// An inline base of 7 lines (the space starts at line 8): tiny synthetic data with a
// validation part and per-iteration evaluation.
const std::string kBase =
    "base:\n"
    "  run: {progress: off, log_level: warn}\n"
    "  data: {format: synthetic}\n"
    "  synthetic: {users: 300, items: 200, interactions: 6000}\n"
    "  split: {method: leave_last, validation_fraction: 0.1}\n"
    "  model: {factors: 8, iterations: 4, eval_every: 1}\n"
    "  eval: {ks: [10, 20]}\n";

SweepSpec parse(const std::string& rest, const std::vector<std::string>& sets = {}) {
  return parse_sweep(kBase + rest, "t.yaml", sets);
}

// The message of the recforge::Error thrown by parsing, or "" when none.
std::string error_of(const std::string& rest, const std::vector<std::string>& sets = {}) {
  try {
    parse(rest, sets);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string parse_sweep_error(const std::string& text) {
  try {
    parse_sweep(text, "s.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> labels(const std::vector<Point>& points) {
  std::vector<std::string> out;
  for (const Point& p : points) {
    std::string s;
    for (const nlohmann::json& v : p) s += (s.empty() ? "" : " ") + value_label(v);
    out.push_back(s);
  }
  return out;
}

TEST(SweepSpec, ReadsEveryFieldAndTheInlineBase) {
  const SweepSpec s = parse(
      "space:\n  model.factors: [4, 8]\n  model.regularization: {log_uniform: [1e-4, 1e-1]}\n"
      "search: random\ntrials: 5\nseed: 9\nmetric: recall@10\ndirection: min\n"
      "early_stop: {rule: halving, eta: 2, min_trials: 1, grace: 2}\nout: here\n");
  EXPECT_EQ(s.base.get_int("synthetic.users"), 300);
  EXPECT_DOUBLE_EQ(s.base.get_float("split.validation_fraction"), 0.1);
  EXPECT_EQ(s.base.where("model.factors"), "t.yaml:6:11");  // inline base keeps its locations
  ASSERT_EQ(s.space.size(), 2u);
  EXPECT_EQ(s.space[0].kind, Dimension::Kind::kValues);
  EXPECT_EQ(s.space[1].kind, Dimension::Kind::kLogUniform);
  EXPECT_DOUBLE_EQ(s.space[1].low, 1e-4);
  EXPECT_EQ(s.search, Search::kRandom);
  EXPECT_EQ(s.trials, 5);
  EXPECT_EQ(s.seed, 9u);
  EXPECT_EQ(s.metric, "recall@10");
  EXPECT_FALSE(s.maximize);
  EXPECT_EQ(s.early_stop.rule, EarlyStop::Rule::kHalving);
  EXPECT_EQ(s.early_stop.eta, 2);
  EXPECT_EQ(s.early_stop.grace, 2);
  EXPECT_EQ(s.out, "here");
  // Defaults: grid, the base's eval.metric, max, no early stop, sweeps/<file stem>.
  const SweepSpec d = parse("space:\n  model.factors: [4]\n");
  EXPECT_EQ(d.search, Search::kGrid);
  EXPECT_EQ(d.metric, "ndcg@20");
  EXPECT_TRUE(d.maximize);
  EXPECT_EQ(d.early_stop.rule, EarlyStop::Rule::kNone);
  EXPECT_EQ(d.out, "sweeps/t");
}

TEST(SweepSpec, BaseFileIsRelativeToTheSweepFile) {
  test::TempDir t;
  std::filesystem::create_directories(t.file("sub/configs"));
  test::write_file(
      t.file("sub/configs/b.yaml"),
      "split:\n  method: leave_last\n  validation_fraction: 0.2\nmodel:\n  factors: 12\n");
  test::write_file(t.file("sub/s.yaml"),
                   "base: configs/b.yaml\nspace:\n  model.iterations: [2, 3]\n");
  const SweepSpec s = load_sweep(t.file("sub/s.yaml"), {"model.factors=6"});
  EXPECT_EQ(s.base.get_int("model.factors"), 6);  // --set applies to the base
  EXPECT_DOUBLE_EQ(s.base.get_float("split.validation_fraction"), 0.2);
}

TEST(SweepSearch, GridIsEveryCombinationFirstKeySlowest) {
  const SweepSpec s = parse(
      "space:\n  model.factors: [4, 8]\n  model.cg_steps: {int_range: [1, 3]}\n"
      "  model.solver: {choice: [cg, cholesky]}\n");
  const std::vector<std::string> got = labels(expand(s));
  const std::vector<std::string> want = {"4 1 cg", "4 1 cholesky", "4 2 cg", "4 2 cholesky",
                                         "4 3 cg", "4 3 cholesky", "8 1 cg", "8 1 cholesky",
                                         "8 2 cg", "8 2 cholesky", "8 3 cg", "8 3 cholesky"};
  EXPECT_EQ(got, want);
  // Values are typed like the parameter.
  const Point p = expand(s)[0];
  EXPECT_TRUE(p[0].is_number_integer());
  EXPECT_TRUE(p[2].is_string());
}

TEST(SweepSearch, CappedGridIsASeededPrefixOfAShuffle) {
  const std::string space =
      "space:\n  model.factors: [4, 8, 16]\n  model.cg_steps: {int_range: [1, 3]}\n";
  const std::vector<std::string> all = labels(expand(parse(space)));
  ASSERT_EQ(all.size(), 9u);
  const std::vector<std::string> a = labels(expand(parse(space + "trials: 4\nseed: 5\n")));
  const std::vector<std::string> again = labels(expand(parse(space + "trials: 4\nseed: 5\n")));
  const std::vector<std::string> six = labels(expand(parse(space + "trials: 6\nseed: 5\n")));
  const std::vector<std::string> other = labels(expand(parse(space + "trials: 4\nseed: 6\n")));
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a, again);
  EXPECT_EQ(std::vector<std::string>(six.begin(), six.begin() + 4), a);  // a larger budget extends
  EXPECT_NE(a, other);
  EXPECT_EQ(std::set<std::string>(a.begin(), a.end()).size(), 4u);  // distinct grid points
  for (const std::string& x : a) EXPECT_NE(std::find(all.begin(), all.end(), x), all.end()) << x;
}

TEST(SweepSearch, RandomIsSeededReproducibleAndInBounds) {
  const std::string space =
      "space:\n  model.regularization: {log_uniform: [0.001, 10]}\n"
      "  model.unobserved_weight: {uniform: [0.01, 0.2]}\n"
      "  model.cg_steps: {int_range: [1, 8]}\n  model.factors: {log_uniform: [4, 256]}\n"
      "  model.solver: [cg, cholesky]\nsearch: random\nseed: 7\n";
  const std::vector<Point> p = expand(parse(space + "trials: 30\n"));
  ASSERT_EQ(p.size(), 30u);
  EXPECT_EQ(labels(p), labels(expand(parse(space + "trials: 30\n"))));
  const std::vector<Point> few = expand(parse(space + "trials: 10\n"));
  EXPECT_EQ(labels(few), labels(std::vector<Point>(p.begin(), p.begin() + 10)));
  std::string s2 = space;
  s2.replace(s2.find("seed: 7"), 7, "seed: 8");
  EXPECT_NE(labels(expand(parse(s2 + "trials: 30\n"))), labels(p));
  std::set<std::string> solvers;
  double lo_reg = 1e9, hi_reg = 0;
  for (const Point& x : p) {
    const double reg = x[0].get<double>();
    EXPECT_GE(reg, 0.001);
    EXPECT_LE(reg, 10.0);
    lo_reg = std::min(lo_reg, reg);
    hi_reg = std::max(hi_reg, reg);
    EXPECT_EQ(std::stod(fmt::format("{:.4g}", reg)), reg);  // 4 significant digits
    EXPECT_GE(x[1].get<double>(), 0.01);
    EXPECT_LE(x[1].get<double>(), 0.2);
    ASSERT_TRUE(x[2].is_number_integer());
    EXPECT_GE(x[2].get<int64_t>(), 1);
    EXPECT_LE(x[2].get<int64_t>(), 8);
    ASSERT_TRUE(x[3].is_number_integer());  // log_uniform over an integer parameter
    EXPECT_GE(x[3].get<int64_t>(), 4);
    EXPECT_LE(x[3].get<int64_t>(), 256);
    solvers.insert(x[4].get<std::string>());
  }
  // Log-uniform over four decades reaches both ends' decades in 30 draws.
  EXPECT_LT(lo_reg, 0.01);
  EXPECT_GT(hi_reg, 1.0);
  EXPECT_EQ(solvers.size(), 2u);
}

TEST(SweepSearch, RandomOverASmallFiniteSpaceTriesEachPointOnce) {
  const std::vector<std::string> p =
      labels(expand(parse("space:\n  model.factors: [4, 8]\n  model.cg_steps: [1, 2, 3]\n"
                          "search: random\ntrials: 20\nseed: 1\n")));
  ASSERT_EQ(p.size(), 6u);
  EXPECT_EQ(std::set<std::string>(p.begin(), p.end()).size(), 6u);
}

TEST(SweepSpec, ListSearchRunsThePointsAsListedWithTheBaseFillingGaps) {
  // Line 8 on: the points. The second point leaves model.regularization out (base value), the
  // third names model.solver, which the others leave at the base's cg.
  const SweepSpec s = parse(
      "search: list\n"
      "points:\n"
      "  - {model.factors: 16, model.regularization: 0.5}\n"
      "  - {model.factors: 4}\n"
      "  - {model.regularization: 0.5, model.solver: cholesky}\n"
      "score: best_iteration\n");
  EXPECT_EQ(s.search, Search::kList);
  EXPECT_EQ(s.score, Score::kBestIteration);
  ASSERT_EQ(s.space.size(), 3u);
  EXPECT_EQ(s.space[0].path, "model.factors");
  EXPECT_EQ(s.space[1].path, "model.regularization");
  EXPECT_EQ(s.space[2].path, "model.solver");
  EXPECT_EQ(s.space[0].where, "t.yaml:10:6");
  const double base_reg = s.base.get_float("model.regularization");
  ASSERT_NE(base_reg, 0.5);
  EXPECT_EQ(
      labels(expand(s)),
      (std::vector<std::string>{fmt::format("16 0.5 cg"),
                                fmt::format("4 {} cg", value_label(base_reg)), "8 0.5 cholesky"}));
  // A dimension holds the distinct values, in order: factors 16, 4 and the base's 8.
  EXPECT_EQ(s.space[0].values.size(), 3u);
  // The trial configs carry exactly those values.
  const config::Config c = trial_config(s, expand(s)[2], "d", "trial-003", 0);
  EXPECT_EQ(c.get_int("model.factors"), 8);
  EXPECT_EQ(c.get_string("model.solver"), "cholesky");
  EXPECT_DOUBLE_EQ(c.get_float("model.regularization"), 0.5);
  // trials: caps a list to its first points; the list and the score are part of the
  // definition (a changed point or score cannot resume an old sweep), absent otherwise.
  const SweepSpec two = parse(
      "search: list\npoints:\n  - {model.factors: 16}\n  - {model.factors: 4}\n"
      "  - {model.factors: 32}\ntrials: 2\n");
  EXPECT_EQ(labels(expand(two)), (std::vector<std::string>{"16", "4"}));
  EXPECT_EQ(two.definition()["search"], "list");
  EXPECT_EQ(two.definition()["points"].size(), 3u);
  EXPECT_FALSE(two.definition().contains("score"));
  EXPECT_EQ(s.definition()["score"], "best_iteration");
  const SweepSpec grid = parse("space:\n  model.factors: [4]\n");
  EXPECT_FALSE(grid.definition().contains("points"));
  EXPECT_FALSE(grid.definition().contains("score"));
  EXPECT_EQ(grid.score, Score::kFinal);
  // best.yaml under best_iteration trains the trial's best iteration count.
  EXPECT_EQ(best_config(s, expand(s)[0], 3).get_int("model.iterations"), 3);
  EXPECT_EQ(best_config(s, expand(s)[0]).get_int("model.iterations"), 4);
}

TEST(SweepSpec, InvalidPointsAndScoresAreRefusedWithTheirLocation) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"search: list\nspace:\n  model.factors: [4]\npoints:\n  - {model.factors: 4}\n",
       "t.yaml:9:1: space: a list search runs the trials under points: and has no space"},
      {"search: list\n", "t.yaml:8:1: points: missing; search: list needs a list of trials"},
      {"space:\n  model.factors: [4]\npoints:\n  - {model.factors: 4}\n",
       "t.yaml:10:1: points: only a list search takes points; set search: list"},
      {"search: list\npoints: []\n", "t.yaml:9:9: points: expected a non-empty list of trials"},
      {"search: list\npoints:\n  - 4\n",
       "t.yaml:10:5: points: trial 1 must be a non-empty mapping of parameter paths to values, "
       "got 4"},
      {"search: list\npoints:\n  - {model.factors: 4}\n  - {}\n",
       "t.yaml:11:5: points: trial 2 must be a non-empty mapping of parameter paths to values, "
       "got an empty mapping"},
      {"search: list\npoints:\n  - {model.factrs: 4}\n",
       "t.yaml:10:6: model.factrs: unknown key; did you mean \"model.factors\"?"},
      {"search: list\npoints:\n  - {model.factors: 0}\n",
       "t.yaml:10:21: model.factors: expected an integer >= 1, got 0"},
      {"search: list\npoints:\n  - {model.factors: [4, 8]}\n",
       "t.yaml:10:21: model.factors: expected an integer"},
      {"search: list\npoints:\n  - {split.validation_fraction: 0.3}\n",
       "t.yaml:10:6: split.validation_fraction: cannot be searched"},
      {"search: list\npoints:\n  - {model.factors: 4}\n  - {model.factors: 4}\n",
       "t.yaml:11:5: points: trial 2 is the same as trial 1"},
      // The base's factors are 8: naming them or leaving them out is the same trial.
      {"search: list\npoints:\n  - {model.factors: 8, model.solver: cg}\n  - {model.solver: cg}\n",
       "t.yaml:11:5: points: trial 2 is the same as trial 1"},
      {"space:\n  model.factors: [4]\nscore: peak\n",
       "t.yaml:10:8: score: expected one of final, best_iteration, got peak"},
      {"space:\n  model.eval_every: [0, 1]\nscore: best_iteration\n",
       "t.yaml:9:3: model.eval_every: score: best_iteration needs model.eval_every > 0 in every "
       "trial"},
  };
  for (const auto& [text, want] : cases) {
    const std::string got = error_of(text);
    EXPECT_EQ(got.rfind(want, 0), 0u) << "sweep text:\n"
                                      << text << "got:  " << got << "\nwant: " << want;
  }
  EXPECT_EQ(
      error_of("space:\n  model.factors: [4]\nscore: best_iteration\n", {"model.eval_every=0"}),
      "t.yaml:10:1: score: best_iteration needs per-iteration validation metrics, but the "
      "base config has model.eval_every 0; set it above 0 (e.g. 1) in the base config");
}

TEST(SweepSpec, SeedsAreReadAndEnterTheDefinitionOnlyWhenGiven) {
  const SweepSpec s = parse("space:\n  model.factors: [4, 8]\nseeds: [3, 0, 17]\n");
  EXPECT_EQ(s.seeds, (std::vector<int64_t>{3, 0, 17}));
  EXPECT_EQ(s.seeds_where, "t.yaml:10:1");
  EXPECT_EQ(s.definition()["seeds"], nlohmann::json::parse("[3, 0, 17]"));
  // best.yaml's model.seed is the first seed; trial configs get theirs from the runner.
  EXPECT_EQ(best_config(s, {8}).get_int("model.seed"), 3);
  // Without seeds: the definition (and so the hash of existing sweep directories) is unchanged.
  const SweepSpec d = parse("space:\n  model.factors: [4, 8]\n");
  EXPECT_TRUE(d.seeds.empty());
  EXPECT_FALSE(d.definition().contains("seeds"));
  EXPECT_FALSE(best_config(d, {8}).is_set("model.seed"));
  // A list search takes seeds too.
  const SweepSpec l =
      parse("search: list\npoints:\n  - {model.factors: 4}\n  - {model.factors: 16}\nseeds: [1]\n");
  EXPECT_EQ(l.seeds, (std::vector<int64_t>{1}));
}

TEST(SweepSpec, InvalidSeedsAreRefusedWithTheirLocation) {
  std::string twenty_one = "[";
  for (int i = 0; i < 21; ++i) twenty_one += (i ? ", " : "") + std::to_string(i);
  twenty_one += "]";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"space:\n  model.factors: [4]\nseeds: []\n",
       "t.yaml:10:8: seeds: the list is empty; expected at least one model.seed value, or no "
       "seeds: key"},
      {"space:\n  model.factors: [4]\nseeds: [1, 2, 1]\n",
       "t.yaml:10:15: seeds: the seed 1 is listed twice (first at t.yaml:10:9); expected distinct "
       "seeds"},
      {"space:\n  model.factors: [4]\nseeds: [1, -2]\n",
       "t.yaml:10:12: seeds: expected an integer >= 0, got -2"},
      {"space:\n  model.factors: [4]\nseeds: [1, 2.5]\n",
       "t.yaml:10:12: seeds: expected an integer >= 0, got 2.5"},
      {"space:\n  model.factors: [4]\nseeds: [1, [2]]\n",
       "t.yaml:10:12: seeds: expected an integer >= 0, got a list"},
      {"space:\n  model.factors: [4]\nseeds: 3\n",
       "t.yaml:10:8: seeds: expected a list of model.seed values ([1, 2, 3]), got 3"},
      {"space:\n  model.factors: [4]\nseeds: {a: 1}\n",
       "t.yaml:10:8: seeds: expected a list of model.seed values ([1, 2, 3]), got a mapping"},
      {"space:\n  model.factors: [4]\nseeds: " + twenty_one + "\n",
       "t.yaml:10:8: seeds: 21 seeds listed; expected at most 20"},
      {"space:\n  model.seed: [1, 2]\nseeds: [1, 2]\n",
       "t.yaml:9:3: model.seed: the sweep lists seeds: (at t.yaml:10:1) and also searches "
       "model.seed; list the seeds under seeds: or search model.seed, not both"},
      {"search: list\npoints:\n  - {model.factors: 4, model.seed: 1}\n  - {model.seed: 2}\n"
       "seeds: [3]\n",
       "t.yaml:10:24: model.seed: the sweep lists seeds: (at t.yaml:12:1) and also searches "
       "model.seed; list the seeds under seeds: or search model.seed, not both"},
      {"space:\n  model.factors: [4]\nseed: 1\nseeds: [1]\nseeds: [2]\n",
       "t.yaml:12:1: seeds: duplicate key, first given at t.yaml:11:1"},
  };
  for (const auto& [text, want] : cases) {
    const std::string got = error_of(text);
    EXPECT_EQ(got, want) << "sweep text:\n" << text;
  }
}

TEST(SweepSeeds, MeanCurveStdAndMeanMetrics) {
  // Two finished seeds and a running third one at iteration 2: the running mean covers the
  // iterations the running seed reached.
  const Curve a = {{1, 0.1}, {2, 0.2}, {3, 0.3}};
  const Curve b = {{1, 0.3}, {2, 0.4}, {3, 0.5}};
  const Curve c = {{1, 0.5}, {2, 0.9}};
  const Curve running = mean_curve({&a, &b, &c});
  ASSERT_EQ(running.size(), 2u);
  EXPECT_EQ(running[0].first, 1);
  EXPECT_DOUBLE_EQ(running[0].second, 0.3);
  EXPECT_EQ(running[1].first, 2);
  EXPECT_DOUBLE_EQ(running[1].second, 0.5);
  const Curve finished = mean_curve({&a, &b});
  ASSERT_EQ(finished.size(), 3u);
  EXPECT_DOUBLE_EQ(finished[2].second, 0.4);
  EXPECT_TRUE(mean_curve({}).empty());

  EXPECT_FALSE(sample_std({0.5}).has_value());
  EXPECT_DOUBLE_EQ(*sample_std({1.0, 2.0, 3.0, 4.0}), std::sqrt(5.0 / 3.0));  // n - 1
  EXPECT_DOUBLE_EQ(*sample_std({2.0, 2.0}), 0.0);

  const std::vector<nlohmann::json> m = {{{"ndcg@10", 0.2}, {"users", 30}, {"k", "x"}},
                                         {{"ndcg@10", 0.4}, {"users", 30}, {"k", "x"}}};
  const nlohmann::json mean = mean_metrics(m);
  EXPECT_DOUBLE_EQ(mean["ndcg@10"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(mean["users"].get<double>(), 30);
  EXPECT_EQ(mean["k"], "x");
  const nlohmann::json std = mean_metrics(m, true);
  EXPECT_DOUBLE_EQ(std["ndcg@10"].get<double>(), std::sqrt(0.02));
  EXPECT_FALSE(std.contains("k"));
  EXPECT_TRUE(mean_metrics({}).is_null());
}

TEST(SweepSpec, InvalidSpacesAreRefusedWithTheirLocation) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"space:\n  model.factrs: [4]\n",
       "t.yaml:9:3: model.factrs: unknown key; did you mean \"model.factors\"?"},
      {"space:\n  factors: [4]\n",
       "t.yaml:9:3: factors: expected a parameter path section.key; did you mean "
       "\"model.factors\"?"},
      {"space:\n  model.factors: []\n",
       "t.yaml:9:3: model.factors: the list of values is empty; expected at least one value"},
      {"space:\n  model.factors: {choice: []}\n",
       "t.yaml:9:19: model.factors: the list of values is empty"},
      {"space:\n  model.regularization: {uniform: [1, 0.5]}\nsearch: random\ntrials: 2\n",
       "t.yaml:9:26: model.regularization: uniform low 1 is above high 0.5; expected [low, high] "
       "with low <= high"},
      {"space:\n  model.cg_steps: {int_range: [5, 2]}\n",
       "t.yaml:9:20: model.cg_steps: int_range low 5 is above high 2"},
      {"space:\n  model.regularization: {log_uniform: [0, 0.5]}\nsearch: random\ntrials: 2\n",
       "t.yaml:9:26: model.regularization: log_uniform needs low > 0, got 0"},
      {"space:\n  model.solver: {int_range: [1, 2]}\n",
       "t.yaml:9:18: model.solver: int_range needs a numeric parameter, but model.solver is one "
       "of cg, cholesky; list its values instead"},
      {"space:\n  train.device: {uniform: [0, 1]}\nsearch: random\ntrials: 2\n",
       "t.yaml:9:18: train.device: uniform needs a numeric parameter, but train.device is a "
       "string"},
      {"space:\n  model.factors: [8, 0]\n",
       "t.yaml:9:22: model.factors: expected an integer >= 1, got 0"},
      {"space:\n  model.solver: [cg, qr]\n",
       "t.yaml:9:22: model.solver: expected one of cg, cholesky, got \"qr\""},
      {"space:\n  model.cg_steps: {int_range: [0, 3]}\n",
       "t.yaml:9:32: model.cg_steps: expected an integer >= 1, got 0"},
      {"space:\n  model.factors: [4, 4]\n",
       "t.yaml:9:22: model.factors: the value 4 is listed twice"},
      {"space:\n  model.regularization: {uniform: [0.1, 1]}\n",
       "t.yaml:9:26: model.regularization: grid search enumerates values and uniform has "
       "infinitely many; give a list, or set search: random"},
      {"space:\n  model.factors: {unifrm: [1, 2]}\n",
       "t.yaml:9:19: model.factors: unknown distribution unifrm; did you mean \"uniform\"?"},
      {"space:\n  model.factors: 8\n",
       "t.yaml:9:3: model.factors: expected a list of values ([a, b, ...]) or one distribution"},
      {"space:\n  split.validation_fraction: [0.1, 0.2]\n",
       "t.yaml:9:3: split.validation_fraction: cannot be searched: it changes the data or the "
       "split"},
      {"space:\n  eval.test: [true, false]\n", "t.yaml:9:3: eval.test: cannot be searched"},
      {"space:\n  eval.validation_sample: [0.1, 0.5]\n",
       "t.yaml:9:3: eval.validation_sample: cannot be searched: trials would be scored on "
       "different samples of the validation users"},
      {"space:\n  privacy.opt_out: [a.txt, b.txt]\n",
       "t.yaml:9:3: privacy.opt_out: cannot be searched: privacy settings are the base's for "
       "every trial"},
      {"space: {}\n", "t.yaml:8:8: space: expected a non-empty mapping"},
      {"spce:\n  model.factors: [4]\n", "t.yaml:8:1: spce: unknown key; did you mean \"space\"?"},
      {"space:\n  model.factors: [4]\nsearch: random\n",
       "t.yaml:10:1: trials: random search needs a budget; add trials: N"},
      {"space:\n  model.factors: [4]\nmetric: ndcg@30\n",
       "t.yaml:10:1: metric: ndcg@30 uses K = 30, which is not in the base config's eval.ks [10, "
       "20]"},
      // K beyond int64 (was std::stoi's out_of_range, an internal error).
      {"space:\n  model.factors: [4]\nmetric: ndcg@99999999999999999999\n",
       "t.yaml:10:1: metric: ndcg@99999999999999999999 uses K = 99999999999999999999, which is "
       "not in the base config's eval.ks [10, 20]"},
      {"space:\n  model.factors: [4]\nearly_stop: {rule: median, etaa: 2}\n",
       "t.yaml:10:28: early_stop.etaa: unknown key; did you mean \"eta\"?"},
      {"space:\n  model.eval_every: [0, 1]\nearly_stop: median\n",
       "t.yaml:9:3: model.eval_every: early_stop median needs model.eval_every > 0 in every trial"},
      // A key of the other rule was accepted and dropped.
      {"space:\n  model.factors: [4]\nearly_stop: {rule: median, eta: 3}\n",
       "t.yaml:10:28: early_stop.eta: the rule median does not use it (median takes min_trials "
       "and grace); remove it"},
      {"space:\n  model.factors: [4]\nearly_stop: {rule: none, grace: 2}\n",
       "t.yaml:10:26: early_stop.grace: the rule none does not use it (none stops nothing); "
       "remove it"},
  };
  for (const auto& [text, want] : cases) {
    const std::string got = error_of(text);
    EXPECT_EQ(got.rfind(want, 0), 0u) << "sweep text:\n"
                                      << text << "got:  " << got << "\nwant: " << want;
  }
}

TEST(SweepSpec, BaseWithoutValidationOrPerIterationMetricsIsRefused) {
  EXPECT_EQ(error_of("space:\n  model.factors: [4]\n", {"split.validation_fraction=0"}),
            "--set split.validation_fraction=0: split.validation_fraction is 0, so trials would "
            "have no validation set to be scored on; set it above 0 in the base config (a sweep "
            "never scores trials on test)");
  EXPECT_EQ(error_of("space:\n  model.factors: [4]\nearly_stop: halving\n", {"model.eval_every=0"}),
            "t.yaml:10:1: early_stop: halving needs per-iteration validation metrics, but the base "
            "config has model.eval_every 0; set it above 0 (e.g. 1) in the base config");
  EXPECT_EQ(error_of("space:\n  model.factors: [4]\n", {"model.type=none"}),
            "--set model.type=none: model.type is none, so there is nothing to tune; set a model "
            "in the base config");
  // An inline base's own mistakes keep the sweep file's line and column.
  EXPECT_EQ(parse_sweep_error("base:\n  model:\n    factors: 0\nspace:\n  model.iterations: [1]\n"),
            "s.yaml:3:5: model.factors: expected an integer >= 1, got 0");
}

TEST(SweepSpec, ASetOfASearchedParameterIsRefused) {
  // Every trial replaces it: the --set was recorded in sweep.json's base and never trained with.
  EXPECT_EQ(error_of("space:\n  model.factors: [4, 16]\n", {"model.factors=8"}),
            "--set model.factors=8: model.factors is searched by the sweep (t.yaml:9:3: space), "
            "so each trial sets it; remove the --set, or the parameter from the sweep");
  EXPECT_EQ(error_of("search: list\npoints:\n  - {model.factors: 4}\n", {" model.factors = 8"}),
            "--set  model.factors = 8: model.factors is searched by the sweep (t.yaml:10:6: "
            "points), so each trial sets it; remove the --set, or the parameter from the sweep");
  EXPECT_EQ(error_of("space:\n  model.factors: [4, 16]\n", {"model.iterations=2"}), "");
}

TEST(SweepSpec, TrialAndBestConfigs) {
  const SweepSpec s = parse("space:\n  model.factors: [4, 16]\nmetric: recall@10\n");
  const config::Config t = trial_config(s, {16}, "/tmp/x y", "trial-002", 3);
  EXPECT_EQ(t.get_int("model.factors"), 16);
  EXPECT_FALSE(t.get_bool("eval.test"));
  EXPECT_EQ(t.get_string("eval.metric"), "recall@10");
  EXPECT_EQ(t.get_string("run.dir"), "/tmp/x y");
  EXPECT_EQ(t.get_string("run.name"), "trial-002");
  EXPECT_EQ(t.get_int("train.threads"), 3);
  EXPECT_DOUBLE_EQ(t.get_float("split.validation_fraction"), 0.1);
  const config::Config b = best_config(s, {16});
  EXPECT_TRUE(b.get_bool("eval.test"));
  EXPECT_EQ(b.get_int("model.factors"), 16);
  EXPECT_EQ(b.get_string("run.name"), "t-best");
  EXPECT_EQ(b.get_string("run.dir"), "runs");
  EXPECT_DOUBLE_EQ(b.get_float("split.validation_fraction"), 0.1);
  // best.yaml loads back to the same config.
  EXPECT_TRUE(config::Config::parse(b.to_yaml(), "best.yaml") == b);
}

TEST(SweepSpec, ShippedQuickGowallaSweepIsARandomSearchOfTwentyTrials) {
  const SweepSpec s =
      load_sweep(std::string(RECFORGE_SOURCE_DIR) + "/configs/gowalla-ials-sweep-quick.yaml");
  EXPECT_EQ(s.search, Search::kRandom);
  EXPECT_GE(expand(s).size(), 20u);
  EXPECT_EQ(s.metric, "ndcg@20");
  EXPECT_DOUBLE_EQ(s.base.get_float("split.validation_fraction"), 0.2);
  std::set<std::string> paths;
  for (const Dimension& d : s.space) paths.insert(d.path);
  for (const char* p : {"model.factors", "model.regularization", "model.reg_exp",
                        "model.unobserved_weight", "model.iterations"})
    EXPECT_TRUE(paths.count(p)) << p;
}

// Each tuned Gowalla config is its sweep's best.yaml retrained on all of train: one of the
// sweep's trials has exactly the config's model settings (the config's iteration count is at
// most the trial's, since the sweep keeps the best iteration), with the same data and metric.
TEST(SweepSpec, EachTunedGowallaConfigIsATrialOfItsShippedSweep) {
  const std::string dir = std::string(RECFORGE_SOURCE_DIR) + "/configs/";
  const std::vector<std::pair<std::string, size_t>> models = {
      {"ials", 13}, {"bpr", 18}, {"softmax", 2}, {"ccl", 30}};
  for (const auto& [model, count] : models) {
    const SweepSpec s = load_sweep(dir + "gowalla-" + model + "-sweep.yaml");
    const config::Config tuned = config::Config::load(dir + "gowalla-" + model + ".yaml");
    EXPECT_EQ(s.search, Search::kList) << model;
    EXPECT_EQ(s.score, Score::kBestIteration) << model;
    EXPECT_EQ(s.metric, tuned.get_string("eval.metric")) << model;
    EXPECT_DOUBLE_EQ(s.base.get_float("split.validation_fraction"), 0.2) << model;
    EXPECT_DOUBLE_EQ(tuned.get_float("split.validation_fraction"), 0.0) << model;
    EXPECT_EQ(s.base.get_string("data.path"), tuned.get_string("data.path")) << model;
    EXPECT_EQ(s.base.get_string("data.test_path"), tuned.get_string("data.test_path")) << model;
    const std::vector<Point> points = expand(s);
    EXPECT_EQ(points.size(), count) << model;
    nlohmann::json want = tuned.to_json()["model"];
    want.erase("eval_every");
    const int64_t iterations = want["iterations"].get<int64_t>();
    want.erase("iterations");
    int matches = 0;
    for (const Point& p : points) {
      const config::Config c = trial_config(s, p, "d", "t", 0);
      nlohmann::json got = c.to_json()["model"];
      got.erase("eval_every");
      const int64_t trial_iterations = got["iterations"].get<int64_t>();
      got.erase("iterations");
      if (got == want && iterations <= trial_iterations) ++matches;
    }
    EXPECT_EQ(matches, 1) << model << ": configs/gowalla-" << model
                          << ".yaml is not one trial of its sweep";
  }
}

// ---- Early-stopping rules -----------------------------------------------------------------------

TEST(SweepEarlyStop, MedianRule) {
  EarlyStop r;
  r.rule = EarlyStop::Rule::kMedian;
  r.min_trials = 3;
  const std::vector<Curve> finished = {
      {{1, 0.3}, {2, 0.5}}, {{1, 0.2}, {2, 0.4}}, {{1, 0.1}, {2, 0.35}}};
  EXPECT_TRUE(median_stop({{1, 0.15}}, finished, r, true));  // median at 1 is 0.2
  EXPECT_FALSE(median_stop({{1, 0.25}}, finished, r, true));
  EXPECT_FALSE(median_stop({{1, 0.2}}, finished, r, true));            // equal is not below
  EXPECT_TRUE(median_stop({{1, 0.25}, {2, 0.3}}, finished, r, true));  // best 0.3 < median 0.4
  EXPECT_FALSE(median_stop({{1, 0.25}, {2, 0.45}}, finished, r, true));
  EXPECT_FALSE(median_stop({{1, 0.45}, {2, 0.3}}, finished, r, true));  // best so far counts
  EXPECT_TRUE(median_stop({{1, 0.25}}, finished, r, false));  // lower is better: 0.25 > 0.2
  r.min_trials = 4;
  EXPECT_FALSE(median_stop({{1, 0.15}}, finished, r, true));  // too few finished trials
  r.min_trials = 2;
  const std::vector<Curve> two = {{{1, 0.3}}, {{1, 0.2}}};  // even count: mean of the middle two
  EXPECT_TRUE(median_stop({{1, 0.24}}, two, r, true));
  EXPECT_FALSE(median_stop({{1, 0.26}}, two, r, true));
  r.grace = 2;
  EXPECT_FALSE(median_stop({{1, 0.01}}, two, r, true));  // before the grace iteration
}

TEST(SweepEarlyStop, SuccessiveHalving) {
  EarlyStop r;
  r.rule = EarlyStop::Rule::kHalving;
  r.min_trials = 1;
  r.eta = 2;  // rungs at 1, 2, 4, 8 with eval_every 1
  const std::vector<Curve> others = {{{1, 0.5}, {2, 0.6}, {3, 0.62}, {4, 0.65}}};
  EXPECT_TRUE(halving_stop({{1, 0.4}}, others, r, 1, true));  // worse of two at rung 1
  EXPECT_FALSE(halving_stop({{1, 0.55}}, others, r, 1, true));
  EXPECT_TRUE(halving_stop({{1, 0.55}, {2, 0.58}}, others, r, 1, true));  // rung 2: 0.58 < 0.6
  EXPECT_FALSE(halving_stop({{1, 0.55}, {2, 0.58}, {3, 0.5}}, others, r, 1, true));  // no rung at 3
  EXPECT_TRUE(halving_stop({{1, 0.55}, {2, 0.61}, {3, 0.7}, {4, 0.6}}, others, r, 1, true));
  EXPECT_FALSE(halving_stop({{1, 0.4}}, others, r, 1, false));  // lower is better
  // eval_every 2: rungs at 2, 4, 8; a trial's rung value is its first value at or after it.
  EXPECT_TRUE(halving_stop({{2, 0.59}}, others, r, 2, true));
  EXPECT_FALSE(halving_stop({{2, 0.61}}, others, r, 2, true));
  r.min_trials = 2;
  EXPECT_FALSE(halving_stop({{1, 0.4}}, others, r, 1, true));  // too few trials at the rung
  // eta 3: the best ceil(n / 3) of n go on.
  r.eta = 3;
  r.min_trials = 3;
  const std::vector<Curve> three = {{{1, 0.5}}, {{1, 0.6}}, {{1, 0.7}}};
  EXPECT_FALSE(halving_stop({{1, 0.65}}, three, r, 1, true));  // 2nd of 4: ceil(4/3) = 2 go on
  EXPECT_TRUE(halving_stop({{1, 0.55}}, three, r, 1, true));   // 3rd of 4
}

}  // namespace
}  // namespace recforge::sweep

namespace recforge::sweep {
namespace {

// yaml-cpp decodes the escape "\N" into the single byte 0x85; in a sweep file's key it reached
// the JSON rendering of an error message, which threw nlohmann's type_error (exit 3; found by
// fuzz/sweep_fuzz.cpp). It is a user error naming the scalar's line and column.
TEST(SweepSpec, EscapesThatDecodeToNonUtf8BytesAreAUserError) {
  const std::string e = parse_sweep_error("\"sp\\Nace\": 1\n");
  EXPECT_NE(e.find("s.yaml:1:1"), std::string::npos) << e;
  EXPECT_NE(e.find("0x85"), std::string::npos) << e;
  const std::string v = parse_sweep_error("space:\n  run.name: [\"a\\_b\"]\n");
  EXPECT_NE(v.find("s.yaml:2:14"), std::string::npos) << v;
  EXPECT_NE(v.find("0xA0"), std::string::npos) << v;
}

}  // namespace
}  // namespace recforge::sweep

namespace recforge::sweep {
namespace {

TEST(SweepReport, TrialsStoppedEarlyComeAfterTheFinishedOnesHoweverGoodTheirScore) {
  // A trial stopped early is never the best (choose_best): ranked above the finished ones by
  // its score so far, results.md put the chosen best at rank 4 under three stopped trials.
  const SweepSpec spec = parse_sweep(kBase + "space:\n  model.factors: [4, 8, 16, 32, 64]\n",
                                     "t.yaml");
  std::vector<TrialRecord> trials(5);
  const std::vector<std::pair<std::string, std::optional<double>>> rows = {
      {"finished", 0.10}, {"stopped_early", 0.30}, {"finished", 0.20}, {"failed", std::nullopt},
      {"stopped_early", 0.25}};
  for (size_t i = 0; i < trials.size(); ++i) {
    trials[i].id = static_cast<int>(i + 1);
    trials[i].name = fmt::format("trial-00{}", i + 1);
    trials[i].values = {static_cast<int64_t>(4) << i};
    trials[i].status = rows[i].first;
    trials[i].score = rows[i].second;
    if (rows[i].second) trials[i].validation = {{"ndcg@20", *rows[i].second}};
  }
  const std::string md = results_md(spec, trials, nlohmann::json());
  std::vector<std::string> order;
  for (size_t at = md.find("\n| "); at != std::string::npos; at = md.find("\n| ", at + 1)) {
    const std::string line = md.substr(at + 1, md.find('\n', at + 1) - at - 1);
    const size_t t = line.find("trial-");
    if (t != std::string::npos) order.push_back(line.substr(0, t + 9));
  }
  EXPECT_EQ(order, (std::vector<std::string>{"| 1 | trial-003", "| 2 | trial-001",
                                             "|  | trial-002", "|  | trial-005",
                                             "|  | trial-004"}))
      << md;
}

// A seeded trial whose last seed stopped early trained fewer iterations in that seed than in
// the others, and its metrics average them all: the iterations column gives the range over its
// seeds (it gave the last seed's count alone); a failed seed does not count.
TEST(SweepReport, ASeededTrialsIterationsAreTheRangeOverItsSeeds) {
  const SweepSpec spec = parse_sweep(kBase + "seeds: [1, 2, 3]\nspace:\n  model.factors: [4, 8]\n",
                                     "t.yaml");
  std::vector<TrialRecord> trials(2);
  for (size_t i = 0; i < trials.size(); ++i) {
    trials[i].id = static_cast<int>(i + 1);
    trials[i].name = fmt::format("trial-00{}", i + 1);
    trials[i].values = {static_cast<int64_t>(4) << i};
    trials[i].score = 0.1 * static_cast<double>(i + 1);
    trials[i].validation = {{"ndcg@20", *trials[i].score}};
    for (int seed = 1; seed <= 3; ++seed) {
      SeedRun r;
      r.seed = seed;
      r.status = "finished";
      r.iterations = 12;
      trials[i].seed_runs.push_back(r);
    }
  }
  trials[0].status = "stopped_early";
  trials[0].seed_runs[2].status = "stopped_early";
  trials[0].seed_runs[2].iterations = 4;
  trials[0].iterations = 4;  // summarize_seeds: the last seed's
  trials[1].status = "finished";
  trials[1].iterations = 12;
  trials[1].seed_runs[0].iterations = 2;  // a failed seed's count is not shown
  trials[1].seed_runs[0].status = "failed";
  const std::string md = results_md(spec, trials, nlohmann::json());
  const auto row = [&](const std::string& name) {
    const size_t at = md.find("| " + name + " |");
    return md.substr(at, md.find('\n', at) - at);
  };
  EXPECT_NE(row("trial-001").find("| 4–12 |"), std::string::npos) << md;
  EXPECT_NE(row("trial-002").find("| 12 |"), std::string::npos) << md;
  EXPECT_EQ(row("trial-002").find("2–12"), std::string::npos) << md;
  const std::string csv = results_csv(spec, trials);
  EXPECT_NE(csv.find("\ntrial-001,stopped_early,"), std::string::npos) << csv;
  const std::string line1 = csv.substr(csv.find("\ntrial-001") + 1, csv.find('\n', csv.find("\ntrial-001") + 1) - csv.find("\ntrial-001") - 1);
  EXPECT_NE(line1.find(",4-12,"), std::string::npos) << csv;
}

}  // namespace
}  // namespace recforge::sweep
