// pipeline::TrainOptions::interrupted (what the Python package's Ctrl-C uses): asked before the
// data, before each iteration and before the results; true stops train with
// pipeline::Interrupted and leaves no run directory, only the checkpoint written before.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "pipeline/checkpoint.h"
#include "pipeline/train.h"
#include "test_util.h"

namespace recforge {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

config::Config small_config(const TempDir& t, bool checkpoints) {
  config::Config cfg = config::Config::defaults();
  for (const std::string& s : std::vector<std::string>{
           "data.format=synthetic", "synthetic.users=200", "synthetic.items=100",
           "synthetic.interactions=3000", "run.dir=" + t.file("runs"), "run.name=r", "data.cache_dir=" + t.file("cache"),
           "run.progress=off", "model.factors=4", "model.iterations=4",
           "train.checkpoint_every=" + std::string(checkpoints ? "1" : "0")})
    cfg.set(s);
  return cfg;
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

TEST(TrainInterrupt, AskedBeforeDataEachIterationAndResults) {
  TempDir t;
  const config::Config cfg = small_config(t, false);
  pipeline::TrainOptions options;
  int asked = 0;
  options.interrupted = [&] {
    ++asked;
    return false;
  };
  const std::string dir = pipeline::train(cfg, options);
  EXPECT_EQ(asked, 1 + 4 + 1);  // data, 4 iterations, results
  EXPECT_TRUE(fs::exists(dir + "/run.json"));
}

TEST(TrainInterrupt, StopsWithinAnIterationAndLeavesNoRunDirectory) {
  for (const int stop_at : {1, 3, 6}) {  // before the data, before iteration 2, before results
    SCOPED_TRACE(stop_at);
    TempDir t;
    const config::Config cfg = small_config(t, false);
    pipeline::TrainOptions options;
    int asked = 0;
    options.interrupted = [&] { return ++asked == stop_at; };
    EXPECT_THROW(pipeline::train(cfg, options), pipeline::Interrupted);
    EXPECT_EQ(asked, stop_at);
    // Neither the run nor its staging directory (nor any other debris) is left.
    EXPECT_EQ(entries(t.file("runs")), std::vector<std::string>{});
  }
}

TEST(TrainInterrupt, KeepsTheCheckpointWrittenBeforeAndTheRerunResumesFromIt) {
  TempDir t;
  const config::Config cfg = small_config(t, true);
  pipeline::TrainOptions options;
  int asked = 0;
  options.interrupted = [&] { return ++asked == 4; };  // before iteration 3
  EXPECT_THROW(pipeline::train(cfg, options), pipeline::Interrupted);
  ASSERT_TRUE(pipeline::has_checkpoint(pipeline::checkpoint_dir(cfg)));
  int resumed = -1;
  pipeline::TrainOptions again;
  again.on_resume = [&](int iteration, const nlohmann::json&) { resumed = iteration; };
  const std::string dir = pipeline::train(cfg, again);
  EXPECT_EQ(resumed, 2);
  EXPECT_EQ(fs::path(dir).filename().string(), "r");
}

TEST(TrainInterrupt, ACheckpointWithDamagedProgressIsRefusedAndKept) {
  // The training loop's progress in checkpoint.json: one history entry per iteration done, and
  // a best validation no later than the checkpoint's iteration.
  TempDir t;
  config::Config cfg = small_config(t, true);
  cfg.set("split.validation_fraction=0.2");
  cfg.set("model.eval_every=1");
  cfg.set("model.patience=3");
  pipeline::TrainOptions options;
  int asked = 0;
  options.interrupted = [&] { return ++asked == 4; };  // before iteration 3
  EXPECT_THROW(pipeline::train(cfg, options), pipeline::Interrupted);
  const std::string dir = pipeline::checkpoint_dir(cfg);
  const std::string meta = dir + "/checkpoint.json";
  const std::string good = test::read_file(meta);
  const auto refused = [&](const std::function<void(nlohmann::json&)>& damage,
                           const std::string& what) {
    nlohmann::json j = nlohmann::json::parse(good);
    damage(j);
    test::write_file(meta, j.dump());
    try {
      pipeline::train(cfg);
      ADD_FAILURE() << "resumed from a checkpoint whose " << what;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind(dir + ": the checkpoint is damaged (" + what, 0), 0u) << m;
    }
    EXPECT_TRUE(pipeline::has_checkpoint(dir));
  };
  refused([](nlohmann::json& j) { j["fit"]["history"].erase(1); },
          "its history is not one entry per iteration done, 2)");
  refused([](nlohmann::json& j) { j["fit"]["history"][1]["iteration"] = 5; },
          "its history is not one entry per iteration done, 2)");
  refused([](nlohmann::json& j) { j["fit"]["best_iteration"] = 3; },
          "its best validation, iteration 3 with");
  refused([](nlohmann::json& j) { j["fit"]["since_best"] = -1; },
          "its best validation, iteration");
  refused(
      [](nlohmann::json& j) {
        nlohmann::json kept = nlohmann::json::array();
        for (const auto& a : j["arrays"])
          if (a != "best_users") kept.push_back(a);
        j["arrays"] = kept;
        j["fit"]["best_iteration"] = 2;
      },
      "its best validation, iteration 2, has no factors kept for it, which model.patience needs");
  test::write_file(meta, good);
  EXPECT_EQ(fs::path(pipeline::train(cfg)).filename().string(), "r");
}

// The checkpoint goes with the name the run claimed: a run that got `r.1` (run.exists: suffix,
// as a second run started beside a training `r` does) checkpoints to `.r.1.checkpoint`, never
// into the other run's, and running it again, or resuming runs/r.1, continues from there.
TEST(TrainInterrupt, ARunGivenASuffixedNameKeepsItsOwnCheckpoint) {
  TempDir t;
  const config::Config cfg = small_config(t, true);
  ASSERT_EQ(fs::path(pipeline::train(cfg)).filename().string(), "r");
  pipeline::TrainOptions options;
  int asked = 0;
  options.interrupted = [&] { return ++asked == 4; };  // before iteration 3
  EXPECT_THROW(pipeline::train(cfg, options), pipeline::Interrupted);
  EXPECT_TRUE(pipeline::has_checkpoint(t.file("runs/.r.1.checkpoint")));
  EXPECT_FALSE(fs::exists(t.file("runs/.r.checkpoint")));
  int resumed = -1;
  pipeline::TrainOptions again;
  again.on_resume = [&](int iteration, const nlohmann::json&) { resumed = iteration; };
  EXPECT_EQ(fs::path(pipeline::train(cfg, again)).filename().string(), "r.1");
  EXPECT_EQ(resumed, 2);
  EXPECT_FALSE(fs::exists(t.file("runs/.r.1.checkpoint")));  // removed when the run completed
}

// A warm-started run whose model.init_from is past model.init_from_max_age_days when it is
// resumed would start from random factors now: continuing the checkpoint's warm-started factors
// would carry the old chain past its bound while the run recorded a cold start. Refused, kept.
TEST(TrainInterrupt, AWarmStartPastItsAgeBoundIsNotContinuedFromItsCheckpoint) {
  TempDir t;
  config::Config source = small_config(t, false);
  source.set("run.name=src");
  source.set("export.enabled=true");
  const std::string src = pipeline::train(source);
  config::Config cfg = small_config(t, true);
  cfg.set("model.init_from=" + nlohmann::json(src).dump());
  cfg.set("model.init_from_max_age_days=30");
  pipeline::TrainOptions options;
  int asked = 0;
  options.interrupted = [&] { return ++asked == 4; };
  EXPECT_THROW(pipeline::train(cfg, options), pipeline::Interrupted);
  const std::string checkpoint = t.file("runs/.r.checkpoint");
  ASSERT_TRUE(pipeline::has_checkpoint(checkpoint));
  // The export's chain began 400 days ago: a run started now trains from random factors.
  const std::string manifest = src + "/export/v-1/manifest.json";
  nlohmann::json m = nlohmann::json::parse(test::read_file(manifest));
  m["source"]["lineage"]["started"] = "2020-01-01T00:00:00Z";
  test::write_file(manifest, m.dump(1));
  try {
    pipeline::train(cfg);
    ADD_FAILURE() << "the checkpoint's warm-started factors were continued";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(checkpoint + ": this checkpoint continues factors that started from the "
                                     "export "),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("but this run would start from random factors now "
                        "(model.init_from_max_age_days, or model.init_from changed); remove " +
                        checkpoint + " to start the run over"),
              std::string::npos)
        << what;
  }
  EXPECT_TRUE(pipeline::has_checkpoint(checkpoint));
}

}  // namespace
}  // namespace recforge
