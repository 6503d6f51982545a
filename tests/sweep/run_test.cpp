// Running sweeps end to end through the recforge binary: resuming after a kill, early stopping,
// the best config's test metrics, refusals before any trial runs, --parallel.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "helpers.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::read_csv;
using test::read_json_file;
using test::run_recforge;
using test::TempDir;
using test::tiny_base;
using test::write_file;

const std::string kRandom =
    "space:\n  model.factors: [4, 8, 16]\n  model.regularization: {log_uniform: [0.001, 1]}\n"
    "search: random\ntrials: 5\nseed: 3\n";

fs::file_time_type mtime(const std::string& p) { return fs::last_write_time(p); }

std::vector<std::string> statuses(const std::string& sweep_dir) {
  std::vector<std::string> out;
  const nlohmann::json state = read_json_file(sweep_dir + "/sweep.json");
  for (const auto& t : state["trials"]) out.push_back(t["status"].get<std::string>());
  return out;
}

bool has_partial(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".partial-") != std::string::npos) return true;
  return false;
}

// The sweep directory itself, its lock, reports and trials take the base's privacy.file_mode
// (the directory and the lock took the umask); with `umask`, the umask's modes.
TEST(SweepRun, TheSweepDirectoryAndEverythingInItTakeTheFileMode) {
  const mode_t old_umask = ::umask(022);
  for (const auto& [mode, file, dir] : {std::tuple<const char*, mode_t, mode_t>{"owner", 0600, 0700},
                                        {"group", 0640, 0750}, {"umask", 0644, 0755}}) {
    SCOPED_TRACE(mode);
    TempDir t;
    write_file(t.file("s.yaml"), tiny_base(2) + "  privacy: {file_mode: " + mode + "}\n" +
                                     "space:\n  model.factors: [4, 8]\nout: sw\n");
    const test::Result r = run_recforge(t.str(), "sweep s.yaml");
    ASSERT_EQ(r.rc, 0) << r.out;
    int files = 0, dirs = 0;
    const mode_t file_mode = file, dir_mode = dir;  // bindings are not captured before C++20
    const auto check = [&](const fs::path& p) {
      struct stat st {};
      ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
      if (S_ISLNK(st.st_mode)) return;
      (S_ISDIR(st.st_mode) ? dirs : files) += 1;
      EXPECT_EQ(st.st_mode & 07777, S_ISDIR(st.st_mode) ? dir_mode : file_mode) << p;
    };
    check(t.file("sw"));
    for (const auto& e : fs::recursive_directory_iterator(t.file("sw"))) check(e.path());
    EXPECT_TRUE(fs::exists(t.file("sw/.sweep.lock")));
    EXPECT_GE(files, 10);  // sweep.json, results, best.yaml, the lock, two trials' files
    EXPECT_GE(dirs, 3);
  }
  ::umask(old_umask);
}

TEST(SweepRun, ResumesAfterAKillWithoutRerunningFinishedTrials) {
  TempDir t;
  write_file(t.file("a.yaml"), tiny_base() + kRandom + "out: a\n");
  write_file(t.file("b.yaml"), tiny_base() + kRandom + "out: b\n");

  // Killed (as by SIGKILL) in the middle of the third trial.
  const test::Result killed =
      run_recforge(t.str(), "sweep a.yaml", "RECFORGE_TEST_SWEEP_KILL_AFTER=2");
  ASSERT_EQ(killed.rc, 137) << killed.out;
  EXPECT_EQ(statuses(t.file("a")),
            (std::vector<std::string>{"finished", "finished", "running", "pending", "pending"}));
  EXPECT_TRUE(fs::exists(t.file("a/trial-002/run.json")));
  EXPECT_FALSE(fs::exists(t.file("a/trial-003")));  // staged, so no final directory
  EXPECT_TRUE(has_partial(t.file("a")));
  EXPECT_FALSE(fs::exists(t.file("a/best.yaml")));
  const auto t1 = mtime(t.file("a/trial-001/run.json"));
  const auto t2 = mtime(t.file("a/trial-002/metrics.json"));
  const std::string log1 = test::read_file(t.file("a/trial-001/log.txt"));

  // The same command continues: trials 1 and 2 are kept, 3 runs again, then 4 and 5.
  const test::Result resumed = run_recforge(t.str(), "sweep a.yaml");
  ASSERT_EQ(resumed.rc, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("5 trials (random search), 2 already done"), std::string::npos)
      << resumed.out;
  EXPECT_EQ(resumed.out.find("trial-001 of 5 starts"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("trial-003 of 5 starts"), std::string::npos) << resumed.out;
  EXPECT_EQ(mtime(t.file("a/trial-001/run.json")), t1);
  EXPECT_EQ(mtime(t.file("a/trial-002/metrics.json")), t2);
  EXPECT_EQ(test::read_file(t.file("a/trial-001/log.txt")), log1);
  EXPECT_EQ(statuses(t.file("a")), std::vector<std::string>(5, "finished"));
  EXPECT_FALSE(has_partial(t.file("a")));
  EXPECT_TRUE(fs::exists(t.file("a/best_test_metrics.json")));

  // A third run has nothing left to do.
  const test::Result again = run_recforge(t.str(), "sweep a.yaml");
  ASSERT_EQ(again.rc, 0) << again.out;
  EXPECT_NE(again.out.find("5 already done"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("already evaluated on test"), std::string::npos) << again.out;
  EXPECT_EQ(mtime(t.file("a/trial-001/run.json")), t1);

  // A trial killed between the two renames of an overwrite left only `.trial-002.old-PID` (the
  // pid of a live process here: under the sweep's lock every pid is stale): it is moved back,
  // not removed, and the trial is not trained again.
  const std::string old = t.file("a/.trial-002.old-" + std::to_string(::getpid()));
  fs::rename(t.file("a/trial-002"), old);
  const test::Result restored = run_recforge(t.str(), "sweep a.yaml");
  ASSERT_EQ(restored.rc, 0) << restored.out;
  EXPECT_NE(restored.out.find("5 already done"), std::string::npos) << restored.out;
  EXPECT_FALSE(fs::exists(old));
  EXPECT_EQ(mtime(t.file("a/trial-002/metrics.json")), t2);

  // An uninterrupted sweep draws the same trials and gets the same results.
  const test::Result whole = run_recforge(t.str(), "sweep b.yaml");
  ASSERT_EQ(whole.rc, 0) << whole.out;
  const auto ra = test::without_column(read_csv(t.file("a/results.csv")), "seconds");
  const auto rb = test::without_column(read_csv(t.file("b/results.csv")), "seconds");
  ASSERT_EQ(ra.size(), 6u);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(read_json_file(t.file("a/best_test_metrics.json"))["test"],
            read_json_file(t.file("b/best_test_metrics.json"))["test"]);
  // The drawn values are those of the random search (seed 3), not placeholders.
  std::set<std::string> regs;
  for (size_t i = 1; i < ra.size(); ++i) regs.insert(ra[i][3]);
  EXPECT_EQ(regs.size(), 5u);
}

TEST(SweepRun, BestYamlRetrainsToTheReportedTestMetrics) {
  TempDir t;
  write_file(t.file("s.yaml"), tiny_base() + kRandom + "out: sw\n");
  const test::Result r = run_recforge(t.str(), "sweep s.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("\nsw\n"), std::string::npos) << r.out;  // stdout: the sweep directory

  // The best trial is the one with the highest validation ndcg@20 in results.csv.
  const auto rows = read_csv(t.file("sw/results.csv"));
  const size_t col = std::find(rows[0].begin(), rows[0].end(), "ndcg@20") - rows[0].begin();
  ASSERT_LT(col, rows[0].size());
  std::string best;
  double best_v = -1;
  for (size_t i = 1; i < rows.size(); ++i)
    if (std::stod(rows[i][col]) > best_v) best_v = std::stod(rows[i][col]), best = rows[i][0];
  const nlohmann::json report = read_json_file(t.file("sw/best_test_metrics.json"));
  EXPECT_EQ(report["trial"], best);
  EXPECT_DOUBLE_EQ(report["trial_validation"].get<double>(), best_v);
  EXPECT_EQ(report["validation_matches_trial"], true);
  EXPECT_GT(report["test"]["ndcg@20"].get<double>(), 0.05);
  EXPECT_GT(report["test"]["users"].get<int>(), 200);

  // best.yaml: the trial's config with eval.test restored and the base's split.
  const config::Config best_cfg = config::Config::load(t.file("sw/best.yaml"));
  EXPECT_TRUE(best_cfg.get_bool("eval.test"));
  EXPECT_DOUBLE_EQ(best_cfg.get_float("split.validation_fraction"), 0.1);
  const config::Config trial_cfg = config::Config::load(t.file("sw/" + best + "/config.yaml"));
  EXPECT_EQ(best_cfg.get_int("model.factors"), trial_cfg.get_int("model.factors"));
  EXPECT_EQ(best_cfg.get_float("model.regularization"),
            trial_cfg.get_float("model.regularization"));
  EXPECT_FALSE(trial_cfg.get_bool("eval.test"));

  // A fresh `recforge train` of best.yaml gives the same test metrics, to the last digit.
  const test::Result train = run_recforge(t.str(), "train sw/best.yaml");
  ASSERT_EQ(train.rc, 0) << train.out;
  const nlohmann::json m = read_json_file(t.file("runs/s-best/metrics.json"));
  ASSERT_TRUE(m.contains("test"));
  for (const auto& [name, v] : report["test"].items())
    EXPECT_EQ(m["test"][name].get<double>(), v.get<double>()) << name;
  EXPECT_EQ(m["validation"]["ndcg@20"].get<double>(), best_v);

  // results.md shows the trials best first and the test figure once.
  const std::string md = test::read_file(t.file("sw/results.md"));
  EXPECT_NE(md.find(fmt::format("| 1 | {} | finished |", best)), std::string::npos) << md;
  EXPECT_NE(md.find(fmt::format("| ndcg@20 | {:.4f} | {:.4f} |", best_v,
                                report["test"]["ndcg@20"].get<double>())),
            std::string::npos)
      << md;
}

TEST(SweepRun, ListSearchScoredByTheBestIterationRetrainsThatIterationCount) {
  TempDir t;
  // Trial 1 (32 factors, almost no L2, heavy unobserved weight) peaks early and then overfits.
  const std::string points =
      "search: list\npoints:\n"
      "  - {model.factors: 32, model.regularization: 0.0001, model.unobserved_weight: 1.0}\n"
      "  - {model.factors: 4, model.regularization: 0.1}\n"
      "  - {model.factors: 16, model.regularization: 0.001}\n";
  write_file(t.file("peak.yaml"), tiny_base(8) + points + "score: best_iteration\nout: peak\n");
  write_file(t.file("final.yaml"), tiny_base(8) + points + "out: final\n");
  const test::Result r = run_recforge(t.str(), "sweep peak.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("3 trials (list search)"), std::string::npos) << r.out;
  const nlohmann::json state = read_json_file(t.file("peak/sweep.json"));
  ASSERT_EQ(state["trials"].size(), 3u);

  // Each trial's score is the best value of its curve; the best trial has the best score.
  std::string best;
  double best_score = -1;
  int best_iteration = 0;
  for (const auto& tr : state["trials"]) {
    double peak = -1;
    int at = 0;
    for (const auto& p : tr["curve"])
      if (p[1].get<double>() > peak) peak = p[1].get<double>(), at = p[0].get<int>();
    EXPECT_EQ(tr["score"].get<double>(), peak) << tr["name"];
    EXPECT_EQ(tr["best_iteration"].get<int>(), at) << tr["name"];
    EXPECT_EQ(tr["iterations"].get<int>(), 8);
    if (peak > best_score) best_score = peak, best = tr["name"], best_iteration = at;
  }
  const nlohmann::json report = read_json_file(t.file("peak/best_test_metrics.json"));
  EXPECT_EQ(report["trial"], best);
  EXPECT_EQ(report["iterations"].get<int>(), best_iteration);
  ASSERT_LT(best_iteration, 8) << "the case needs a trial that peaks before its last iteration";
  // best.yaml trains the best iteration count, and that model's validation value is the score.
  const config::Config best_cfg = config::Config::load(t.file("peak/best.yaml"));
  EXPECT_EQ(best_cfg.get_int("model.iterations"), best_iteration);
  EXPECT_EQ(report["validation_matches_trial"], true);
  EXPECT_EQ(report["validation"]["ndcg@20"].get<double>(), best_score);
  const auto rows = read_csv(t.file("peak/results.csv"));
  EXPECT_NE(std::find(rows[0].begin(), rows[0].end(), "score"), rows[0].end());
  const std::string md = test::read_file(t.file("peak/results.md"));
  EXPECT_NE(md.find(fmt::format("model.iterations {} (its best iteration)", best_iteration)),
            std::string::npos)
      << md;

  // Scored by the final model instead, the same points rank by their last validation value,
  // and best.yaml keeps the trials' 8 iterations.
  const test::Result f = run_recforge(t.str(), "sweep final.yaml");
  ASSERT_EQ(f.rc, 0) << f.out;
  const auto frows = read_csv(t.file("final/results.csv"));
  EXPECT_EQ(std::find(frows[0].begin(), frows[0].end(), "score"), frows[0].end());
  const size_t col = std::find(frows[0].begin(), frows[0].end(), "ndcg@20") - frows[0].begin();
  std::string final_best;
  double final_v = -1;
  for (size_t i = 1; i < frows.size(); ++i)
    if (std::stod(frows[i][col]) > final_v)
      final_v = std::stod(frows[i][col]), final_best = frows[i][0];
  EXPECT_EQ(read_json_file(t.file("final/best_test_metrics.json"))["trial"], final_best);
  EXPECT_EQ(config::Config::load(t.file("final/best.yaml")).get_int("model.iterations"), 8);
}

// The median of the finished trials' best values up to iteration `it`.
double median_at(const std::vector<nlohmann::json>& histories, int it) {
  std::vector<double> best;
  for (const auto& h : histories) {
    double b = -1;
    for (const auto& e : h)
      if (e["iteration"].get<int>() <= it)
        b = std::max(b, e["validation"]["ndcg@20"].get<double>());
    best.push_back(b);
  }
  std::sort(best.begin(), best.end());
  return best.size() % 2 ? best[best.size() / 2]
                         : 0.5 * (best[best.size() / 2 - 1] + best[best.size() / 2]);
}

// Runs the 4-trial median-rule sweep (6 iterations; `extra` adds keys such as `seeds:`) in `t`,
// whose last trial, heavy regularization (1000), is the bad one after three finished ones.
void run_median_sweep(const TempDir& t, const std::string& extra) {
  write_file(t.file("s.yaml"), tiny_base(6) +
                                   "space:\n  model.regularization: [0.01, 0.03, 0.1, 1000]\n" +
                                   extra + "early_stop: median\nout: sw\n");
  const test::Result r = run_recforge(t.str(), "sweep s.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(statuses(t.file("sw")),
            (std::vector<std::string>{"finished", "finished", "finished", "stopped_early"}));
}

// The stopped trial's history `bad` stopped at the first iteration where its best so far fell
// below the median of the finished trials' curves.
void expect_stopped_below_the_median(const nlohmann::json& bad,
                                     const std::vector<nlohmann::json>& finished) {
  ASSERT_GE(bad.size(), 1u);
  ASSERT_LT(bad.size(), 6u);  // it did stop
  EXPECT_EQ(bad.back()["stopped_early"], true);
  double best = -1;
  for (const auto& e : bad) {
    const int it = e["iteration"].get<int>();
    best = std::max(best, e["validation"]["ndcg@20"].get<double>());
    if (it < static_cast<int>(bad.size())) {
      EXPECT_GE(best, median_at(finished, it)) << it;
    } else {
      EXPECT_LT(best, median_at(finished, it)) << it;
    }
  }
}

TEST(SweepRun, MedianRuleStopsABadTrial) {
  TempDir t;
  run_median_sweep(t, "");
  if (HasFatalFailure()) return;
  std::vector<nlohmann::json> finished;
  for (int i = 1; i <= 3; ++i) {
    const auto h = read_json_file(t.file(fmt::format("sw/trial-00{}/run.json", i)))["history"];
    EXPECT_EQ(h.size(), 6u);
    finished.push_back(h);
  }
  expect_stopped_below_the_median(read_json_file(t.file("sw/trial-004/run.json"))["history"],
                                  finished);
  const auto rows = read_csv(t.file("sw/results.csv"));
  EXPECT_EQ(rows[4][0], "trial-004");
  EXPECT_EQ(rows[4][1], "stopped_early");
  EXPECT_NE(read_json_file(t.file("sw/best_test_metrics.json"))["trial"], "trial-004");
}

TEST(SweepRun, HalvingStopsTheWorseTrialAtARung) {
  TempDir t;
  write_file(t.file("s.yaml"), tiny_base(6) +
                                   "space:\n  model.regularization: [0.1, 1000]\n"
                                   "early_stop: {rule: halving, eta: 2, min_trials: 1}\nout: sw\n");
  const test::Result r = run_recforge(t.str(), "sweep s.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(statuses(t.file("sw")), (std::vector<std::string>{"finished", "stopped_early"}));
  const auto good = read_json_file(t.file("sw/trial-001/run.json"))["history"];
  const auto bad = read_json_file(t.file("sw/trial-002/run.json"))["history"];
  ASSERT_LT(bad.size(), 6u);
  const size_t it = bad.size();  // rungs at 1, 2, 4: it stopped at one of them
  EXPECT_TRUE(it == 1 || it == 2 || it == 4) << it;
  EXPECT_LT(bad.back()["validation"]["ndcg@20"].get<double>(),
            good[it - 1]["validation"]["ndcg@20"].get<double>());
  for (size_t rung = 1; rung < it; rung *= 2)  // and it was ahead at the earlier rungs
    EXPECT_GE(bad[rung - 1]["validation"]["ndcg@20"].get<double>(),
              good[rung - 1]["validation"]["ndcg@20"].get<double>());
}

TEST(SweepRun, RefusalsComeBeforeAnyTrial) {
  TempDir t;
  // An invalid space: one error line with the location, nothing written.
  write_file(t.file("bad.yaml"), tiny_base() + "space:\n  model.factors: [8, 0]\nout: sw\n");
  test::Result r = run_recforge(t.str(), "sweep bad.yaml");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out,
            "recforge: error: bad.yaml:9:22: model.factors: expected an integer >= 1, got 0\n");
  EXPECT_FALSE(fs::exists(t.file("sw")));
  EXPECT_FALSE(fs::exists(t.file("sweeps")));

  // A validation sample that selects none of the validation users, likewise.
  write_file(t.file("vs.yaml"), tiny_base() + "space:\n  model.factors: [4, 8]\nout: sw\n");
  r = run_recforge(t.str(), "sweep vs.yaml --set eval.validation_sample=1e-9");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("recforge: error: --set eval.validation_sample=1e-9: "
                       "eval.validation_sample 1e-09 selects none of the "),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("trial"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(t.file("sw")));

  // A finished sweep refuses to continue under a changed definition.
  write_file(t.file("s.yaml"), tiny_base() + "space:\n  model.factors: [4, 8]\nseed: 1\nout: sw\n");
  ASSERT_EQ(run_recforge(t.str(), "sweep s.yaml").rc, 0);
  const std::string state = test::read_file(t.file("sw/sweep.json"));
  write_file(t.file("s.yaml"), tiny_base() + "space:\n  model.factors: [4, 8]\nseed: 2\nout: sw\n");
  r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("recforge: error: s.yaml: the sweep in sw was started with a different "
                       "seed (sweep.json keeps the definition it was made with)"),
            std::string::npos)
      << r.out;
  write_file(t.file("s.yaml"),
             tiny_base() + "space:\n  model.factors: [4, 16]\nseed: 1\nout: sw\n");
  r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_NE(r.out.find("was started with a different space"), std::string::npos) << r.out;
  write_file(t.file("s.yaml"), tiny_base() + "space:\n  model.factors: [4, 8]\nseed: 1\nout: sw\n");
  r = run_recforge(t.str(), "sweep s.yaml --set model.iterations=2");
  EXPECT_NE(r.out.find("was started with a different base config (model.iterations) (sweep.json"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(test::read_file(t.file("sw/sweep.json")), state);  // untouched by the refusals
  // Log settings are not part of the definition.
  r = run_recforge(t.str(), "sweep s.yaml --set run.log_level=error");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("2 already done"), std::string::npos) << r.out;

  // A damaged record (a field of another type) is refused naming the file, which is kept.
  nlohmann::json damaged = nlohmann::json::parse(state);
  damaged["trials"][1]["curve"] = nlohmann::json::array({7});
  write_file(t.file("sw/sweep.json"), damaged.dump());
  r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("recforge: error: sw/sweep.json: a trial's record is damaged ("),
            std::string::npos)
      << r.out;
  EXPECT_EQ(test::read_file(t.file("sw/sweep.json")), damaged.dump());

  // A directory that is not a sweep's is not used.
  fs::create_directories(t.file("other"));
  write_file(t.file("other/keep.txt"), "x");
  write_file(t.file("o.yaml"), tiny_base() + "space:\n  model.factors: [4]\nout: other\n");
  r = run_recforge(t.str(), "sweep o.yaml");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("o.yaml: out: other exists and is not a sweep directory"), std::string::npos)
      << r.out;
}

TEST(SweepRun, ATrialWhoseCombinationBreaksACheckIsRefusedBeforeAnyTrial) {
  // A list search's point that broke a cross-parameter check failed when its turn came (after
  // the trials before it), blaming a --set the user never typed.
  TempDir t;
  write_file(t.file("l.yaml"), tiny_base() +
                                   "search: list\npoints:\n  - {model.factors: 16}\n"
                                   "  - {model.eval_every: 0, model.patience: 2}\nout: sw\n");
  const test::Result r = run_recforge(t.str(), "sweep l.yaml");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.out,
            "recforge: error: l.yaml: trial-002 (model.factors 8, model.eval_every 0, "
            "model.patience 2) cannot run: l.yaml:11:27: model.patience needs model.eval_every > "
            "0\n");
  EXPECT_FALSE(fs::exists(t.file("sw")));
}

TEST(SweepRun, AResumedSweepRefusesDataThatChangedSinceItsTrialsTrained) {
  // Trials trained on other data than the ones before them were ranked together (the data
  // file was edited between a kill and the resume).
  TempDir t;
  std::string csv = "user,item,weight,time\n";
  for (int u = 0; u < 150; ++u)
    for (int j = 0; j < 12; ++j)
      csv += fmt::format("{},{},{},{}\n", u, (u * 7 + j * 5) % 90, 1 + (u + j) % 4, 100 + j);
  write_file(t.file("d.csv"), csv);
  write_file(t.file("s.yaml"),
             "base:\n  run: {progress: off, log_level: warn}\n"
             "  data: {path: d.csv, header: true, user_col: user, item_col: item, weight_col: "
             "weight, time_col: time, cache: false}\n"
             "  split: {method: leave_last, validation_fraction: 0.1}\n"
             "  model: {factors: 8, iterations: 2, eval_every: 1}\n  eval: {ks: [10, 20]}\n"
             "space:\n  model.factors: [4, 8, 16]\nout: sw\n");
  const test::Result killed =
      run_recforge(t.str(), "sweep s.yaml", "RECFORGE_TEST_SWEEP_KILL_AFTER=1");
  ASSERT_EQ(killed.rc, 137) << killed.out;
  const nlohmann::json state = read_json_file(t.file("sw/sweep.json"));
  ASSERT_TRUE(state["data"]["fingerprint"].is_string());
  EXPECT_EQ(state["data"]["fingerprint"],
            read_json_file(t.file("sw/trial-001/run.json"))["data_fingerprint"]);
  const std::string refused = "recforge: error: s.yaml: the data of the sweep in sw changed since "
                              "it began ({} differ from what its trials were trained on), so new "
                              "trials would be scored on another validation set; restore the data "
                              "files, or choose another out: to start a new sweep\n";
  // Another weight (the same pairs and split); then fewer lines.
  std::string weight = csv;
  const std::string first = "\n0,0,1,100\n";
  ASSERT_NE(weight.find(first), std::string::npos);
  weight.replace(weight.find(first), first.size(), "\n0,0,2,100\n");
  write_file(t.file("d.csv"), weight);
  // The refusal is the last line (the data's load is logged before it).
  const auto ends_with = [](const std::string& out, const std::string& tail) {
    return out.size() >= tail.size() && out.compare(out.size() - tail.size(), tail.size(), tail) == 0;
  };
  test::Result r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(ends_with(r.out, fmt::format(fmt::runtime(refused), "its weights or timestamps")))
      << r.out;
  write_file(t.file("d.csv"), csv.substr(0, csv.rfind('\n', csv.size() / 2) + 1));
  r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(ends_with(r.out, fmt::format(fmt::runtime(refused), "its users, items or split")))
      << r.out;
  // A sweep.json of an earlier recforge (no "data"): the trials' run.json say what they trained on.
  nlohmann::json older = read_json_file(t.file("sw/sweep.json"));
  older.erase("data");
  write_file(t.file("sw/sweep.json"), older.dump(2));
  r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(ends_with(r.out, fmt::format(fmt::runtime(refused), "its users, items or split")))
      << r.out;
  // The original data: the sweep continues where it stopped.
  write_file(t.file("d.csv"), csv);
  r = run_recforge(t.str(), "sweep s.yaml");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("3 trials (grid search), 1 already done"), std::string::npos) << r.out;
}

TEST(SweepRun, HelpAndCommandLineMistakes) {
  TempDir t;
  for (const char* verb : {"sweep", "compare"}) {
    const test::Result r = run_recforge(t.str(), std::string(verb) + " --help");
    EXPECT_EQ(r.rc, 0) << verb;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.out;
  }
  write_file(t.file("s.yaml"), tiny_base() + "space:\n  train.threads: [1, 2]\nout: sw\n");
  for (const char* bad : {"0", "abc"}) {  // was CLI11's "not in range 0.000000 to 1.79...e+308"
    const test::Result p = run_recforge(t.str(), std::string("sweep s.yaml --parallel ") + bad);
    EXPECT_NE(p.rc, 0);
    EXPECT_NE(p.out.find(fmt::format("--parallel: must be an integer from 1 to 2147483647, got "
                                     "\"{}\"",
                                     bad)),
              std::string::npos)
        << p.out;
  }
  const test::Result r = run_recforge(t.str(), "sweep s.yaml --parallel 2");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out,
            "recforge: error: s.yaml:9:3: train.threads: --parallel 2 sets the trials' "
            "train.threads itself; search it without --parallel\n");
  EXPECT_FALSE(fs::exists(t.file("sw")));
  const test::Result missing = run_recforge(t.str(), "sweep nothere.yaml");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_EQ(missing.out.rfind("recforge: error: nothere.yaml: cannot open sweep file", 0), 0u)
      << missing.out;
}

TEST(SweepRun, ParallelSplitsThreadsKeepsLogsApartAndMatchesSequential) {
  TempDir t;
  const std::string space =
      "space:\n  model.factors: [4, 8]\n  model.regularization: [0.01, 0.1]\n";
  write_file(t.file("p.yaml"), tiny_base() + space + "out: par\n");
  write_file(t.file("q.yaml"), tiny_base() + space + "out: seq\n");
  const std::string sets = " --set train.threads=4 --set run.log_level=info";
  const test::Result p = run_recforge(t.str(), "sweep p.yaml --parallel 2" + sets);
  ASSERT_EQ(p.rc, 0) << p.out;
  const test::Result q = run_recforge(t.str(), "sweep q.yaml" + sets);
  ASSERT_EQ(q.rc, 0) << q.out;
  for (int i = 1; i <= 4; ++i) {
    const std::string name = fmt::format("trial-00{}", i);
    const config::Config c = config::Config::load(t.file("par/" + name + "/config.yaml"));
    EXPECT_EQ(c.get_int("train.threads"), 2);  // 4 threads / 2 trials
    EXPECT_EQ(c.get_string("train.device"), "cpu");
    EXPECT_EQ(config::Config::load(t.file("seq/" + name + "/config.yaml")).get_int("train.threads"),
              4);
    // Each trial's log holds its own run only.
    const std::string log = test::read_file(t.file("par/" + name + "/log.txt"));
    EXPECT_NE(log.find("run directory par/" + name), std::string::npos) << log;
    for (int j = 1; j <= 4; ++j)
      if (j != i) {
        EXPECT_EQ(log.find(fmt::format("trial-00{}", j)), std::string::npos) << log;
      }
    EXPECT_EQ(log.find("run complete"), log.rfind("run complete"));  // exactly one run
    EXPECT_NE(log.find("run complete"), std::string::npos);
  }
  const std::string sweep_log = test::read_file(t.file("par/sweep.log"));
  EXPECT_NE(sweep_log.find("trial-004 finished"), std::string::npos) << sweep_log;
  EXPECT_EQ(sweep_log.find("iteration 1/4"), std::string::npos) << sweep_log;  // trials' lines
  const auto a = read_csv(t.file("par/results.csv"));
  const auto b = read_csv(t.file("seq/results.csv"));
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  const size_t col = std::find(a[0].begin(), a[0].end(), "ndcg@20") - a[0].begin();
  for (size_t i = 1; i < a.size(); ++i) {
    EXPECT_EQ(a[i][1], "finished");
    EXPECT_NEAR(std::stod(a[i][col]), std::stod(b[i][col]), 1e-6) << a[i][0];
  }
}

// ---- seeds: ----------------------------------------------------------------------------------

// Sample standard deviation (n - 1).
double sample_sd(const std::vector<double>& v) {
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

void expect_rel_near(double got, double want, const std::string& what) {
  EXPECT_LE(std::fabs(got - want), 1e-12 * std::max(1e-300, std::fabs(want)))
      << what << ": got " << got << ", want " << want;
}

// The per-iteration validation ndcg@20 of a run, from its run.json history.
std::vector<std::pair<int, double>> history_curve(const std::string& run_dir) {
  std::vector<std::pair<int, double>> out;
  const nlohmann::json run = read_json_file(run_dir + "/run.json");
  for (const auto& h : run["history"])
    if (h.contains("validation"))
      out.emplace_back(h["iteration"].get<int>(), h["validation"]["ndcg@20"].get<double>());
  return out;
}

TEST(SweepSeeds, EachTrialIsScoredByTheMeanOverItsSeedRuns) {
  TempDir t;
  write_file(t.file("s.yaml"),
             tiny_base() + "space:\n  model.factors: [4, 8]\nseeds: [1, 2, 3]\nout: sw\n");
  const test::Result r = run_recforge(t.str(), "sweep s.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json state = read_json_file(t.file("sw/sweep.json"));
  EXPECT_EQ(state["definition"]["seeds"], nlohmann::json::parse("[1, 2, 3]"));
  ASSERT_EQ(state["trials"].size(), 2u);
  for (const auto& tr : state["trials"]) {
    const std::string name = tr["name"];
    EXPECT_EQ(tr["status"], "finished") << name;
    ASSERT_EQ(tr["seeds"].size(), 3u) << name;
    std::vector<double> scores;
    std::vector<double> recalls;
    for (int seed = 1; seed <= 3; ++seed) {
      const std::string dir = t.file(fmt::format("sw/{}/seed-{}", name, seed));
      ASSERT_TRUE(fs::exists(dir + "/run.json")) << dir;
      EXPECT_EQ(config::Config::load(dir + "/config.yaml").get_int("model.seed"), seed);
      const nlohmann::json m = read_json_file(dir + "/metrics.json");
      EXPECT_FALSE(m.contains("test"));  // trials never look at test
      scores.push_back(m["validation"]["ndcg@20"].get<double>());
      recalls.push_back(m["validation"]["recall@10"].get<double>());
      EXPECT_EQ(tr["seeds"][seed - 1]["seed"], seed);
      EXPECT_EQ(tr["seed_scores"][seed - 1].get<double>(), scores.back());
    }
    // Different seeds give different models.
    EXPECT_EQ(std::set<double>(scores.begin(), scores.end()).size(), 3u) << name;
    const double mean = (scores[0] + scores[1] + scores[2]) / 3;
    expect_rel_near(tr["score"].get<double>(), mean, name + " score");
    expect_rel_near(tr["validation"]["ndcg@20"].get<double>(), mean, name + " ndcg@20");
    expect_rel_near(tr["validation"]["recall@10"].get<double>(),
                    (recalls[0] + recalls[1] + recalls[2]) / 3, name + " recall@10");
    expect_rel_near(tr["score_std"].get<double>(), sample_sd(scores), name + " std");
    EXPECT_GT(tr["score_std"].get<double>(), 0);
    // The curve is the mean of the seeds' curves, point by point.
    const auto c1 = history_curve(t.file("sw/" + name + "/seed-1"));
    const auto c2 = history_curve(t.file("sw/" + name + "/seed-2"));
    const auto c3 = history_curve(t.file("sw/" + name + "/seed-3"));
    ASSERT_EQ(tr["curve"].size(), 4u);
    for (size_t k = 0; k < 4; ++k) {
      EXPECT_EQ(tr["curve"][k][0].get<int>(), c1[k].first);
      expect_rel_near(tr["curve"][k][1].get<double>(),
                      (c1[k].second + c2[k].second + c3[k].second) / 3, name + " curve");
    }
  }

  // results.csv: the mean score, its std and the number of seeds.
  const auto rows = read_csv(t.file("sw/results.csv"));
  ASSERT_EQ(rows.size(), 3u);
  const auto col = [&](const std::string& n) {
    return static_cast<size_t>(std::find(rows[0].begin(), rows[0].end(), n) - rows[0].begin());
  };
  ASSERT_LT(col("score_std"), rows[0].size());
  ASSERT_LT(col("seeds"), rows[0].size());
  for (size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][col("seeds")], "3");
    EXPECT_EQ(std::stod(rows[i][col("score")]), state["trials"][i - 1]["score"].get<double>());
  }
  const std::string md = test::read_file(t.file("sw/results.md"));
  EXPECT_NE(md.find("- seeds: [1, 2, 3]"), std::string::npos) << md;
  EXPECT_NE(md.find(" ± "), std::string::npos) << md;

  // The best trial (highest mean) trained once per seed on test.
  const nlohmann::json report = read_json_file(t.file("sw/best_test_metrics.json"));
  const int best =
      state["trials"][0]["score"].get<double>() >= state["trials"][1]["score"].get<double>() ? 0
                                                                                             : 1;
  EXPECT_EQ(report["trial"], state["trials"][best]["name"]);
  EXPECT_EQ(report["seeds"], nlohmann::json::parse("[1, 2, 3]"));
  ASSERT_EQ(report["per_seed"].size(), 3u);
  std::vector<double> tests;
  double val_sum = 0;
  for (int seed = 1; seed <= 3; ++seed) {
    const nlohmann::json m =
        read_json_file(t.file(fmt::format("sw/best/seed-{}/metrics.json", seed)));
    ASSERT_TRUE(m.contains("test"));
    tests.push_back(m["test"]["ndcg@20"].get<double>());
    val_sum += m["validation"]["ndcg@20"].get<double>();
    EXPECT_EQ(report["per_seed"][seed - 1]["seed"], seed);
    EXPECT_EQ(report["per_seed"][seed - 1]["test"]["ndcg@20"].get<double>(), tests.back());
    EXPECT_EQ(config::Config::load(t.file(fmt::format("sw/best/seed-{}/config.yaml", seed)))
                  .get_int("model.seed"),
              seed);
  }
  EXPECT_EQ(std::set<double>(tests.begin(), tests.end()).size(), 3u);
  expect_rel_near(report["test"]["ndcg@20"].get<double>(), (tests[0] + tests[1] + tests[2]) / 3,
                  "test mean");
  expect_rel_near(report["test_std"]["ndcg@20"].get<double>(), sample_sd(tests), "test std");
  // The retrained seeds reproduce the trial's mean validation score.
  expect_rel_near(report["validation"]["ndcg@20"].get<double>(), val_sum / 3, "validation mean");
  EXPECT_EQ(report["validation_matches_trial"], true);
  EXPECT_GT(report["test"]["ndcg@20"].get<double>(), 0.05);
  EXPECT_NE(r.out.find(fmt::format("test ndcg@20 {:.4f} ± {:.4f} over 3 seeds",
                                   report["test"]["ndcg@20"].get<double>(),
                                   report["test_std"]["ndcg@20"].get<double>())),
            std::string::npos)
      << r.out;
  // best.yaml: model.seed is the first seed, and its header says so.
  EXPECT_EQ(config::Config::load(t.file("sw/best.yaml")).get_int("model.seed"), 1);
  EXPECT_NE(test::read_file(t.file("sw/best.yaml")).find("model.seed here is the first"),
            std::string::npos);
}

TEST(SweepSeeds, BestIterationIsTheArgmaxOfTheMeanCurve) {
  TempDir t;
  const std::string points =
      "search: list\npoints:\n"
      "  - {model.factors: 32, model.regularization: 0.0001, model.unobserved_weight: 1.0}\n"
      "  - {model.factors: 16, model.regularization: 0.001}\n";
  // Trial 1 (as in ListSearchScoredByTheBestIteration...) peaks early and then overfits.
  write_file(t.file("s.yaml"),
             tiny_base(8) + points + "seeds: [5, 6]\nscore: best_iteration\nout: sw\n");
  const test::Result r = run_recforge(t.str(), "sweep s.yaml");
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json state = read_json_file(t.file("sw/sweep.json"));
  std::string best;
  double best_score = -1;
  int best_at = 0;
  for (const auto& tr : state["trials"]) {
    const std::string name = tr["name"];
    const auto a = history_curve(t.file("sw/" + name + "/seed-5"));
    const auto b = history_curve(t.file("sw/" + name + "/seed-6"));
    ASSERT_EQ(a.size(), 8u);
    ASSERT_EQ(b.size(), 8u);
    double peak = -1;
    int at = 0;
    size_t k_at = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      const double m = (a[k].second + b[k].second) / 2;
      if (m > peak) peak = m, at = a[k].first, k_at = k;
    }
    EXPECT_EQ(tr["best_iteration"].get<int>(), at) << name;
    expect_rel_near(tr["score"].get<double>(), peak, name + " score");
    // Each seed's score is its value at the mean curve's best iteration.
    EXPECT_EQ(tr["seed_scores"][0].get<double>(), a[k_at].second);
    EXPECT_EQ(tr["seed_scores"][1].get<double>(), b[k_at].second);
    if (peak > best_score) best_score = peak, best = name, best_at = at;
  }
  const nlohmann::json report = read_json_file(t.file("sw/best_test_metrics.json"));
  EXPECT_EQ(report["trial"], best);
  EXPECT_EQ(report["iterations"].get<int>(), best_at);
  ASSERT_LT(best_at, 8) << "the case needs a best trial whose mean curve peaks early";
  EXPECT_EQ(config::Config::load(t.file("sw/best.yaml")).get_int("model.iterations"), best_at);
  // The best config trained best_at iterations per seed reproduces the mean at that iteration.
  expect_rel_near(report["validation"]["ndcg@20"].get<double>(), best_score, "best validation");
  EXPECT_EQ(report["validation_matches_trial"], true);
}

TEST(SweepSeeds, ABadTrialIsStoppedOnItsMeanCurveAndSkipsItsLaterSeeds) {
  TempDir t;
  run_median_sweep(t, "seeds: [1, 2, 3]\n");
  if (HasFatalFailure()) return;
  // The finished trials' mean curves, as the rule compares them.
  std::vector<nlohmann::json> finished;
  for (int i = 1; i <= 3; ++i) {
    std::vector<std::vector<std::pair<int, double>>> c;
    for (int seed = 1; seed <= 3; ++seed)
      c.push_back(history_curve(t.file(fmt::format("sw/trial-00{}/seed-{}", i, seed))));
    nlohmann::json h = nlohmann::json::array();
    for (size_t k = 0; k < c[0].size(); ++k)
      h.push_back(
          {{"iteration", c[0][k].first},
           {"validation", {{"ndcg@20", (c[0][k].second + c[1][k].second + c[2][k].second) / 3}}}});
    ASSERT_EQ(h.size(), 6u);
    finished.push_back(h);
  }
  // The bad trial stopped during its first seed, on the mean curves, and its later seeds never
  // ran.
  expect_stopped_below_the_median(
      read_json_file(t.file("sw/trial-004/seed-1/run.json"))["history"], finished);
  EXPECT_FALSE(fs::exists(t.file("sw/trial-004/seed-2")));
  EXPECT_FALSE(fs::exists(t.file("sw/trial-004/seed-3")));
  const nlohmann::json state = read_json_file(t.file("sw/sweep.json"));
  EXPECT_EQ(state["trials"][3]["seeds"].size(), 1u);
  EXPECT_NE(read_json_file(t.file("sw/best_test_metrics.json"))["trial"], "trial-004");
}

TEST(SweepSeeds, ResumesAfterAKillInTheMiddleOfATrialsSeeds) {
  TempDir t;
  const std::string body = "space:\n  model.factors: [4, 8, 16]\nseeds: [1, 2]\n";
  write_file(t.file("a.yaml"), tiny_base() + body + "out: a\n");
  write_file(t.file("b.yaml"), tiny_base() + body + "out: b\n");
  // Killed in the second trial's last seed: its first seed run is complete, the second staged.
  const test::Result killed =
      run_recforge(t.str(), "sweep a.yaml", "RECFORGE_TEST_SWEEP_KILL_AFTER=1");
  ASSERT_EQ(killed.rc, 137) << killed.out;
  EXPECT_EQ(statuses(t.file("a")), (std::vector<std::string>{"finished", "running", "pending"}));
  EXPECT_TRUE(fs::exists(t.file("a/trial-002/seed-1/run.json")));
  EXPECT_FALSE(fs::exists(t.file("a/trial-002/seed-2")));
  EXPECT_TRUE(has_partial(t.file("a/trial-002")));
  const auto t1 = mtime(t.file("a/trial-001/seed-2/run.json"));

  const test::Result resumed = run_recforge(t.str(), "sweep a.yaml");
  ASSERT_EQ(resumed.rc, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("3 trials (grid search), 1 already done"), std::string::npos)
      << resumed.out;
  EXPECT_EQ(mtime(t.file("a/trial-001/seed-2/run.json")), t1);
  EXPECT_EQ(statuses(t.file("a")), std::vector<std::string>(3, "finished"));
  EXPECT_FALSE(has_partial(t.file("a/trial-002")));
  EXPECT_TRUE(fs::exists(t.file("a/trial-002/seed-2/run.json")));

  // The same results as an uninterrupted sweep.
  ASSERT_EQ(run_recforge(t.str(), "sweep b.yaml").rc, 0);
  const auto ra = test::without_column(read_csv(t.file("a/results.csv")), "seconds");
  const auto rb = test::without_column(read_csv(t.file("b/results.csv")), "seconds");
  ASSERT_EQ(ra.size(), 4u);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(read_json_file(t.file("a/best_test_metrics.json"))["test"],
            read_json_file(t.file("b/best_test_metrics.json"))["test"]);
}

}  // namespace
}  // namespace recforge
