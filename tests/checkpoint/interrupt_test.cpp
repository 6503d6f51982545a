// pipeline::TrainOptions::interrupted (what the Python package's Ctrl-C uses): asked before the
// data, before each iteration and before the results; true stops train with
// pipeline::Interrupted and leaves no run directory, only the checkpoint written before.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
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

}  // namespace
}  // namespace recforge
