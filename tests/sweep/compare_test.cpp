// `recforge compare`: the keys that differ, the metrics side by side, the curves CSV and the plot.
#include "sweep/compare.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "helpers.h"

namespace recforge::sweep {
namespace {

namespace fs = std::filesystem;
using test::read_json_file;
using test::run_recforge;
using test::TempDir;
using test::write_file;

const std::string kSmall =
    "run:\n  progress: off\n  log_level: warn\n"
    "data:\n  format: synthetic\n"
    "synthetic:\n  users: 300\n  items: 200\n  interactions: 6000\n"
    "split:\n  method: leave_last\n  validation_fraction: 0.1\n"
    "model:\n  factors: 8\n  iterations: 3\n  eval_every: 1\n"
    "eval:\n  ks: [10, 20]\n";

// Two runs that differ in factors and regularization, and a third equal to the first.
struct Runs {
  TempDir t;
  Runs() {
    write_file(t.file("small.yaml"), kSmall);
    EXPECT_EQ(run_recforge(t.str(), "train small.yaml --name a").rc, 0);
    EXPECT_EQ(run_recforge(t.str(),
                           "train small.yaml --name b --set model.factors=16 "
                           "--set model.regularization=0.1 --set model.iterations=4")
                  .rc,
              0);
    EXPECT_EQ(run_recforge(t.str(), "train small.yaml --name c").rc, 0);
  }
  std::string dir(const char* name) const { return t.file(std::string("runs/") + name); }
};

std::vector<std::string> row(const Comparison& c, const std::string& name) {
  for (const auto* rows : {&c.config, &c.training, &c.metrics})
    for (const auto& [n, cells] : *rows)
      if (n == name) return cells;
  return {};
}

TEST(Compare, DifferingKeysMetricsAndCurves) {
  const Runs r;
  const std::vector<RunInfo> runs = read_runs({r.dir("a"), r.dir("b")});
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].label, "a");
  const Comparison c = compare(runs, "ndcg@20");
  std::vector<std::string> keys;
  for (const auto& [k, cells] : c.config) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"model.factors", "model.iterations",
                                            "model.regularization"}));
  EXPECT_EQ(row(c, "model.factors"), (std::vector<std::string>{"8", "16"}));
  EXPECT_EQ(row(c, "model.regularization"), (std::vector<std::string>{"0.01", "0.1"}));
  EXPECT_EQ(row(c, "iterations trained"), (std::vector<std::string>{"3", "4"}));
  const nlohmann::json ma = read_json_file(r.dir("a") + "/metrics.json");
  const nlohmann::json mb = read_json_file(r.dir("b") + "/metrics.json");
  EXPECT_EQ(
      row(c, "validation ndcg@20"),
      (std::vector<std::string>{fmt::format("{:.4f}", ma["validation"]["ndcg@20"].get<double>()),
                                fmt::format("{:.4f}", mb["validation"]["ndcg@20"].get<double>())}));
  EXPECT_EQ(row(c, "test recall@10").size(), 2u);
  // The best-iteration row names the iteration with the highest validation value.
  const auto hb = read_json_file(r.dir("b") + "/run.json")["history"];
  int best_it = 0;
  double best = -1;
  for (const auto& e : hb)
    if (e["validation"]["ndcg@20"].get<double>() > best)
      best = e["validation"]["ndcg@20"].get<double>(), best_it = e["iteration"].get<int>();
  EXPECT_EQ(row(c, "best validation ndcg@20 at iteration")[1],
            fmt::format("{} ({:.4f})", best_it, best));

  const std::string table = format_comparison(c);
  EXPECT_TRUE(std::regex_search(table, std::regex("\n  model\\.factors +8 +16\n"))) << table;
  EXPECT_EQ(table.find("run.name"), std::string::npos) << table;
  EXPECT_EQ(table.find("model.solver"), std::string::npos) << table;  // equal keys are not shown

  // curves.csv: one row per iteration of each run, with the validation metrics.
  const std::string csv = curves_csv(runs);
  std::vector<std::string> lines;
  std::istringstream in(csv);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 1u + 3 + 4);
  EXPECT_EQ(lines[0].rfind("run,iteration,seconds,loss,recall@10,recall@20,", 0), 0u) << lines[0];
  const auto header = test::parse_csv(csv);
  const size_t col = std::find(header[0].begin(), header[0].end(), "ndcg@20") - header[0].begin();
  EXPECT_EQ(header[6][0], "b");
  EXPECT_EQ(header[6][1], "3");
  EXPECT_EQ(std::stod(header[6][col]), hb[2]["validation"]["ndcg@20"].get<double>());
}

TEST(Compare, EqualConfigsAndBadInput) {
  const Runs r;
  const Comparison c = compare(read_runs({r.dir("a"), r.dir("c")}), "ndcg@20", false);
  EXPECT_TRUE(c.config.empty());
  EXPECT_NE(format_comparison(c).find("(none: the configs are equal but for run.name)"),
            std::string::npos);
  EXPECT_EQ(row(c, "validation ndcg@20")[0], row(c, "validation ndcg@20")[1]);
  // Grouped (the default), two runs of one config are one column with a spread of zero: iALS
  // on one seed is deterministic.
  const Comparison g = compare(read_runs({r.dir("a"), r.dir("c")}), "ndcg@20");
  EXPECT_EQ(g.labels, (std::vector<std::string>{"runs ×2"}));
  EXPECT_EQ(row(g, "validation ndcg@20"),
            (std::vector<std::string>{row(c, "validation ndcg@20")[0] + " ± 0.0000"}));
  try {
    read_runs({r.dir("a"), r.dir("nope")});
    FAIL() << "a missing run was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), r.dir("nope") + ": no such run directory");
  }
  // A hand-edited or damaged run.json or metrics.json: one sentence naming the file and the
  // value (these reached nlohmann's type errors, "recforge: internal error: ...").
  const auto refused = [&](const std::string& file, const std::string& text,
                           const std::string& expected) {
    const std::string path = r.dir("c") + "/" + file;
    const std::string kept = test::read_file(path);
    write_file(path, text);
    try {
      read_runs({r.dir("a"), r.dir("c")});
      ADD_FAILURE() << file << " " << text << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), path + ": " + expected);
    }
    write_file(path, kept);
  };
  refused("metrics.json", R"({"test": {"recall@10": "x"}})", "test's recall@10 is \"x\"; expected a number");
  refused("metrics.json", R"({"test": 5})", "test is 5; expected an object of metric values");
  refused("metrics.json", "[1]", "expected a JSON object of metric parts");
  refused("run.json", R"({"history": 5})", "history is 5; expected an array of iterations");
  refused("run.json", R"({"history": [{"iteration": 1, "validation": {"ndcg@10": null}}]})",
          "history[0].validation's ndcg@10 is null; expected a number");
  refused("run.json", R"({"history": [{"loss": 1}]})",
          "history[0] is not an object with an integer iteration");
  EXPECT_EQ(read_runs({r.dir("a"), r.dir("c")}).size(), 2u);
}

// Seed runs of two configs: each config is one column, its numbers the mean and the sample
// standard deviation over its runs' own figures.
TEST(Compare, SeedRunsOfOneConfigAreOneColumn) {
  TempDir t;
  write_file(t.file("small.yaml"), kSmall);
  const std::vector<std::pair<std::string, std::string>> runs_made = {
      {"ials-seed-1", "--set model.seed=1"},
      {"ials-seed-2", "--set model.seed=2"},
      {"ials-seed-3", "--set model.seed=3 --set run.log_level=error"},
      {"wide-1", "--set model.seed=1 --set model.factors=16"},
      {"wide-2", "--set model.seed=2 --set model.factors=16"},
      {"single", "--set model.seed=1 --set model.regularization=0.1"}};
  std::vector<std::string> dirs;
  for (const auto& [name, sets] : runs_made) {
    ASSERT_EQ(run_recforge(t.str(), "train small.yaml --name " + name + " " + sets).rc, 0);
    dirs.push_back(t.file("runs/" + name));
  }
  const std::vector<RunInfo> runs = read_runs(dirs);
  EXPECT_EQ(seed_groups(runs), (std::vector<std::vector<size_t>>{{0, 1, 2}, {3, 4}, {5}}));
  const Comparison c = compare(runs, "ndcg@20");
  EXPECT_EQ(c.labels, (std::vector<std::string>{"ials ×3", "wide ×2", "single"}));
  EXPECT_EQ(c.members[0], (std::vector<std::string>{dirs[0], dirs[1], dirs[2]}));
  EXPECT_EQ(row(c, "model.seed"), (std::vector<std::string>{"1, 2, 3", "1, 2", "1"}));
  EXPECT_EQ(row(c, "model.factors"), (std::vector<std::string>{"8", "16", "8"}));
  EXPECT_EQ(row(c, "run.log_level"), (std::vector<std::string>{"warn, error", "warn", "warn"}));
  EXPECT_EQ(row(c, "iterations trained"), (std::vector<std::string>{"3", "3", "3"}));

  // Every metric cell from the runs' metrics.json, computed here in double.
  auto cell = [&](std::initializer_list<size_t> members, const char* part, const char* name) {
    std::vector<double> v;
    for (size_t i : members)
      v.push_back(read_json_file(dirs[i] + "/metrics.json")[part][name].get<double>());
    double mean = 0, ss = 0;
    for (double x : v) mean += x / static_cast<double>(v.size());
    for (double x : v) ss += (x - mean) * (x - mean);
    return v.size() == 1 ? fmt::format("{:.4f}", mean)
                         : fmt::format("{:.4f} ± {:.4f}", mean, std::sqrt(ss / (v.size() - 1.0)));
  };
  for (const char* part : {"validation", "test"})
    for (const char* name : {"recall@10", "ndcg@20"})
      EXPECT_EQ(row(c, std::string(part) + " " + name),
                (std::vector<std::string>{cell({0, 1, 2}, part, name), cell({3, 4}, part, name),
                                          cell({5}, part, name)}))
          << part << " " << name;
  // The seeds do move the figures, so the spread is not zero.
  EXPECT_EQ(row(c, "test ndcg@20")[0].find("± 0.0000"), std::string::npos);

  // The best point of the mean validation curve.
  std::map<int, double> mean_curve;
  for (size_t i : {3, 4}) {
    const nlohmann::json run = read_json_file(dirs[i] + "/run.json");
    for (const auto& e : run["history"])
      mean_curve[e["iteration"].get<int>()] += e["validation"]["ndcg@20"].get<double>() / 2;
  }
  const auto best = std::max_element(mean_curve.begin(), mean_curve.end(),
                                     [](auto& a, auto& b) { return a.second < b.second; });
  EXPECT_EQ(row(c, "best mean validation ndcg@20 at iteration")[1],
            fmt::format("{} ({:.4f})", best->first, best->second));
  {
    // A run of the group that stopped an iteration early (as early stopping or a sweep's
    // stopped seed leaves it), beside one whose last point is the best of all: that point is
    // one run's, not the group's mean, and is not the group's best.
    const std::string one = dirs[3] + "/run.json", two = dirs[4] + "/run.json";
    const std::string one_text = test::read_file(one), two_text = test::read_file(two);
    nlohmann::json a = nlohmann::json::parse(one_text), b = nlohmann::json::parse(two_text);
    a["history"].back()["validation"]["ndcg@20"] = 0.99;
    b["history"].erase(b["history"].size() - 1);
    write_file(one, a.dump());
    write_file(two, b.dump());
    std::map<int, double> both;
    for (const nlohmann::json* run : {&a, &b})
      for (const auto& e : (*run)["history"])
        both[e["iteration"].get<int>()] += e["validation"]["ndcg@20"].get<double>() / 2;
    both.erase(std::prev(both.end()));  // the last iteration: one run only
    const auto top = std::max_element(both.begin(), both.end(),
                                      [](auto& x, auto& y) { return x.second < y.second; });
    EXPECT_EQ(row(compare(read_runs(dirs), "ndcg@20"), "best mean validation ndcg@20 at iteration")[1],
              fmt::format("{} ({:.4f})", top->first, top->second));
    write_file(one, one_text);
    write_file(two, two_text);
  }

  // The table aligns by terminal columns and names each group's runs.
  const std::string table = format_comparison(c);
  EXPECT_TRUE(std::regex_search(table, std::regex("\n  model\\.factors +8 +16 +8\n"))) << table;
  EXPECT_NE(table.find("seed runs (one column each: mean ± sample standard deviation (n - 1))\n"
                       "  ials ×3: " +
                       dirs[0] + ", " + dirs[1] + ", " + dirs[2] + "\n  wide ×2: "),
            std::string::npos)
      << table;
  std::istringstream lines(table);
  size_t header_end = 0;
  for (std::string l; std::getline(lines, l);)
    if (l.find("validation recall@10") != std::string::npos) {
      // The last cell ends where the header's last label ends.
      size_t cols = 0;
      for (char ch : l) cols += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
      if (header_end == 0) {
        std::string h = table.substr(0, table.find('\n'));
        for (char ch : h) header_end += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
      }
      EXPECT_EQ(cols, header_end) << table;
    }

  // --each: one column per run, as before.
  const Comparison each = compare(runs, "ndcg@20", false);
  EXPECT_EQ(each.labels.size(), 6u);
  EXPECT_EQ(row(each, "model.seed"), (std::vector<std::string>{"1", "2", "3", "1", "2", "1"}));
  const test::Result cli = run_recforge(t.str(), "compare runs/wide-1 runs/wide-2 --each --out cmp",
                                        "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(cli.rc, 0) << cli.out;
  EXPECT_TRUE(std::regex_search(cli.out, std::regex("\n  model\\.seed +1 +2\n"))) << cli.out;
  const test::Result grouped = run_recforge(t.str(), "compare runs/wide-1 runs/wide-2 --out cmp",
                                            "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(grouped.rc, 0) << grouped.out;
  EXPECT_TRUE(std::regex_search(grouped.out, std::regex("\n  model\\.seed +1, 2\n")))
      << grouped.out;
}

// compare --paired: each column minus the first, per test user. The mean differences are the
// differences of the runs' test metrics (metrics.json), a seed column is its runs' mean, and
// runs that hold out other items are refused.
TEST(Compare, PairedTestOfTheColumnsOnTheTestUsers) {
  const Runs r;
  ASSERT_EQ(run_recforge(r.t.str(), "train small.yaml --name s-seed-1 --set model.seed=1 --set model.regularization=0.05").rc, 0);
  ASSERT_EQ(run_recforge(r.t.str(), "train small.yaml --name s-seed-2 --set model.seed=2 --set model.regularization=0.05").rc, 0);
  ASSERT_EQ(run_recforge(r.t.str(), "train small.yaml --name d --set split.leave_k=2").rc, 0);
  // Fewer users (the others' held-out items unchanged).
  ASSERT_EQ(
      run_recforge(r.t.str(), "train small.yaml --name e --set data.min_user_interactions=25").rc,
      0);
  const auto test_metric = [&](const char* run, const std::string& name) {
    return read_json_file(r.dir(run) + "/metrics.json")["test"][name].get<double>();
  };
  const std::vector<RunInfo> runs =
      read_runs({r.dir("a"), r.dir("b"), r.dir("s-seed-1"), r.dir("s-seed-2")});
  const Comparison c = compare(runs, "ndcg@20");
  ASSERT_EQ(c.labels.size(), 3u);  // a, b, and the two seed runs as one column
  const PairedComparison p = paired_comparison(c, {10, 20});
  EXPECT_EQ(p.labels, c.labels);
  EXPECT_EQ(p.users, read_json_file(r.dir("a") + "/metrics.json")["test"]["users"].get<int64_t>());
  EXPECT_GT(p.users, 250);
  ASSERT_EQ(p.rows.size(), 20u);  // 5 per-user metrics × 2 cutoffs, for columns 1 and 2
  std::vector<double> ps;
  for (const PairedComparison::Row& row : p.rows) ps.push_back(row.d.p);
  const std::vector<double> holm = eval::holm_adjust(ps);
  int different = 0;
  for (size_t i = 0; i < p.rows.size(); ++i) {
    const PairedComparison::Row& row = p.rows[i];
    SCOPED_TRACE(row.metric + " column " + std::to_string(row.column));
    EXPECT_EQ(row.column, i < 10 ? 1u : 2u);
    EXPECT_EQ(row.d.n, p.users);
    const double base = test_metric("a", row.metric);
    const double expected =
        row.column == 1 ? test_metric("b", row.metric) - base
                        : (test_metric("s-seed-1", row.metric) + test_metric("s-seed-2", row.metric)) / 2 - base;
    // Means of values in [0, 1] over a few hundred users, summed in other orders: a few ulps.
    EXPECT_NEAR(row.d.mean, expected, 1e-13);
    EXPECT_LE(row.d.low, row.d.mean);
    EXPECT_GE(row.d.high, row.d.mean);
    EXPECT_GE(row.d.p, 0);
    EXPECT_LE(row.d.p, 1);
    EXPECT_EQ(row.p_holm, holm[i]);
    // The interval excludes 0 exactly when p < 0.05.
    if (row.d.sd > 0) {
      EXPECT_EQ(row.d.low > 0 || row.d.high < 0, row.d.p < 0.05);
    }
    if (row.d.mean != 0) ++different;
  }
  EXPECT_GT(different, 10);  // other factors and seeds rank differently
  const std::string text = format_paired(p);
  EXPECT_NE(text.find(fmt::format("paired test on the {} test users (each column minus a;", p.users)),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  b - a\n    test recall@10 "), std::string::npos) << text;
  const std::vector<std::vector<std::string>> csv = test::parse_csv(paired_csv(p));
  ASSERT_EQ(csv.size(), 21u);
  EXPECT_EQ(csv[0], (std::vector<std::string>{"column", "baseline", "metric", "users",
                                              "mean_difference", "ci_low", "ci_high", "level", "t",
                                              "p", "p_holm"}));
  EXPECT_EQ(csv[1][0], "b");
  EXPECT_EQ(csv[1][2], "recall@10");
  EXPECT_EQ(std::stod(csv[1][4]), p.rows[0].d.mean);  // shortest round-trip form

  // The same run twice (a copy of its directory: one directory given twice is refused): every
  // difference 0, p 1.
  fs::copy(r.dir("a"), r.dir("a-copy"), fs::copy_options::recursive);
  const PairedComparison same =
      paired_comparison(compare(read_runs({r.dir("a"), r.dir("a-copy")}), "ndcg@20", false), {20});
  for (const PairedComparison::Row& row : same.rows) {
    EXPECT_EQ(row.d.mean, 0) << row.metric;
    EXPECT_EQ(row.d.p, 1) << row.metric;
  }
  // Another split (leave_k) holds out other items: refused, naming both runs.
  try {
    paired_comparison(compare(read_runs({r.dir("a"), r.dir("d")}), "ndcg@20"), {20});
    ADD_FAILURE() << "a run on another split was compared";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("compare --paired: " + r.dir("d") +
                                         " holds out other test items than " + r.dir("a") +
                                         " (a user (an id of "),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(" has other test items)"), std::string::npos)
        << e.what();
  }
  // A run with fewer test users is refused in either order, naming a user only the other has.
  for (const auto& [first, second] : {std::pair{"a", "e"}, std::pair{"e", "a"}}) {
    try {
      paired_comparison(compare(read_runs({r.dir(first), r.dir(second)}), "ndcg@20"), {20});
      ADD_FAILURE() << "runs with other test users were compared";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(") is a test user of " + r.dir("a") + " only)"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(paired_comparison(compare(read_runs({r.dir("a")}), "ndcg@20"), {20}), Error);

  // The CLI prints the block and writes paired.csv; a refusal writes nothing.
  const test::Result out = run_recforge(r.t.str(), "compare runs/a runs/b --paired --out cmp",
                                        "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(out.rc, 0) << out.out;
  EXPECT_NE(out.out.find("paired test on the "), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("\npaired: cmp/paired.csv\n"), std::string::npos) << out.out;
  EXPECT_EQ(test::read_csv(r.t.file("cmp/paired.csv")).size(), 11u);
  const test::Result refused =
      run_recforge(r.t.str(), "compare runs/a runs/d --paired --out cmp2");
  EXPECT_NE(refused.rc, 0);
  EXPECT_NE(refused.out.find("runs/d holds out other test items than runs/a (a user (an id of "),
            std::string::npos)
      << refused.out;
  EXPECT_FALSE(fs::exists(r.t.file("cmp2")));
}

TEST(Compare, CliWritesTheCsvAndSaysWhenThePlotIsSkipped) {
  const Runs r;
  const test::Result out = run_recforge(r.t.str(), "compare runs/a runs/b --out cmp",
                                        "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(out.rc, 0) << out.out;
  EXPECT_TRUE(std::regex_search(out.out, std::regex("\n  model\\.factors +8 +16\n"))) << out.out;
  EXPECT_TRUE(fs::exists(r.t.file("cmp/curves.csv")));
  EXPECT_FALSE(fs::exists(r.t.file("cmp/curves.png")));
  EXPECT_NE(out.out.find("\nplot skipped: /nonexistent/python is missing; run tools/setup.sh (it "
                         "creates .venv with matplotlib), then compare again\n"),
            std::string::npos)
      << out.out;
  // A python without matplotlib is told apart from a missing one.
  if (std::system("python3 -c 'import matplotlib' 2>/dev/null") != 0) {
    const test::Result no_mpl = run_recforge(r.t.str(), "compare runs/a runs/b --out cmp2",
                                             "RECFORGE_PYTHON=$(command -v python3)");
    ASSERT_EQ(no_mpl.rc, 0) << no_mpl.out;
    EXPECT_NE(no_mpl.out.find("plot skipped: matplotlib is not installed in"), std::string::npos)
        << no_mpl.out;
  }
}

TEST(Compare, CliRefusesAMetricNoRunEvaluatedAndFilesItDidNotWrite) {
  const Runs r;
  // K = 30 is in no run's eval.ks: the table showed "-" and the plot told to train with
  // model.eval_every > 0, which these runs did.
  test::Result out = run_recforge(r.t.str(), "compare runs/a runs/b --metric ndcg@30 --out cmp",
                                  "RECFORGE_PYTHON=/nonexistent/python");
  EXPECT_EQ(out.rc, 1) << out.out;
  EXPECT_NE(out.out.find("recforge: error: --metric ndcg@30: no run evaluated K = 30 (their "
                         "eval.ks hold 10, 20); expected one of those"),
            std::string::npos)
      << out.out;
  EXPECT_FALSE(fs::exists(r.t.file("cmp")));
  // compare's own files are replaced on a second compare into the same directory.
  out = run_recforge(r.t.str(), "compare runs/a runs/b --out cmp", "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(out.rc, 0) << out.out;
  out = run_recforge(r.t.str(), "compare runs/a runs/c --out cmp", "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(out.rc, 0) << out.out;
  EXPECT_NE(test::read_file(r.t.file("cmp/curves.csv")).find("\nc,"), std::string::npos);
  // What an earlier compare wrote and this one does not write again goes: its paired.csv and
  // its plot would describe other runs than the new curves.csv.
  out = run_recforge(r.t.str(), "compare runs/a runs/b --paired --out cmp",
                     "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(out.rc, 0) << out.out;
  ASSERT_TRUE(fs::exists(r.t.file("cmp/paired.csv")));
  write_file(r.t.file("cmp/curves.png"), "the plot of runs a and b");
  out = run_recforge(r.t.str(), "compare runs/a runs/c --out cmp", "RECFORGE_PYTHON=/nonexistent/python");
  ASSERT_EQ(out.rc, 0) << out.out;
  EXPECT_FALSE(fs::exists(r.t.file("cmp/paired.csv")));
  EXPECT_FALSE(fs::exists(r.t.file("cmp/curves.png")));
  EXPECT_NE(test::read_file(r.t.file("cmp/curves.csv")).find("\nc,"), std::string::npos);
  // A run directory (or a directory inside one) is refused before any output: compare's files
  // would sit among the run's.
  for (const std::string inside : {"runs/a", "runs/a/cmp"}) {
    out = run_recforge(r.t.str(), "compare runs/a runs/b --out " + inside,
                       "RECFORGE_PYTHON=/nonexistent/python");
    EXPECT_EQ(out.rc, 1) << out.out;
    EXPECT_NE(out.out.find("recforge: error: --out " + inside + ": is inside the run directory " +
                           fs::canonical(r.t.file("runs/a")).string() +
                           ", whose files compare's would sit among; choose another --out"),
              std::string::npos)
        << out.out;
  }
  EXPECT_FALSE(fs::exists(r.t.file("runs/a/curves.csv")));
  EXPECT_FALSE(fs::exists(r.t.file("runs/a/cmp")));
  // A curves.csv, paired.csv or curves.png that compare did not write is refused before any
  // output, and left as it was.
  for (const char* name : {"curves.csv", "paired.csv", "curves.png"}) {
    SCOPED_TRACE(name);
    const std::string dir = r.t.file(std::string("mine-") + name);
    fs::create_directories(dir);
    write_file(dir + "/" + name, "my own notes\n");
    out = run_recforge(r.t.str(), std::string("compare runs/a runs/b --out mine-") + name,
                       "RECFORGE_PYTHON=/nonexistent/python");
    EXPECT_EQ(out.rc, 1) << out.out;
    EXPECT_EQ(out.out.find("model.factors"), std::string::npos) << out.out;  // no table printed
    EXPECT_NE(out.out.find("recforge: error: --out mine-"), std::string::npos) << out.out;
    EXPECT_NE(out.out.find(std::string(name) == "curves.png"
                               ? "curves.png exists without the curves.csv that recforge compare "
                                 "writes beside it; choose another --out"
                               : " exists and was not written by recforge compare"),
              std::string::npos)
        << out.out;
    EXPECT_EQ(test::read_file(dir + "/" + name), "my own notes\n");
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  }
}

TEST(Compare, ARunGivenTwiceIsRefused) {
  // It was counted as two seed runs of one config (± 0.0000, a paired test of a run with itself).
  const Runs r;
  for (const char* second : {"runs/a", "runs/a/", "runs/../runs/a"}) {
    const test::Result out = run_recforge(
        r.t.str(), std::string("compare runs/a runs/b ") + second + " --out cmp");
    EXPECT_EQ(out.rc, 1) << out.out;
    EXPECT_EQ(out.out, fmt::format("recforge: error: compare: {} is given twice (as runs/a and "
                                   "{}); give each run once\n",
                                   fs::weakly_canonical(r.dir("a")).string(), second));
  }
  EXPECT_FALSE(fs::exists(r.t.file("cmp")));
}

TEST(Compare, CliPlotsWithTheProjectVenv) {
  const std::string python = std::string(RECFORGE_SOURCE_DIR) + "/.venv/bin/python";
  if (std::system(("'" + python + "' -c 'import matplotlib' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << python << " with matplotlib is missing; run tools/setup.sh";
  const Runs r;
  const test::Result out = run_recforge(r.t.str(), "compare runs/a runs/b --out cmp");
  ASSERT_EQ(out.rc, 0) << out.out;
  EXPECT_NE(out.out.find("plot: cmp/curves.png"), std::string::npos) << out.out;
  const std::string png = test::read_file(r.t.file("cmp/curves.png"));
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

}  // namespace
}  // namespace recforge::sweep
