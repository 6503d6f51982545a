// Fuzz target: resuming a training run from its checkpoint (src/pipeline/checkpoint.cpp, the
// pipeline's resume and each model's resume: the factors, the optimiser state and the training
// loop's progress). At start-up, for each of four small synthetic runs (iALS with validation and
// patience, BPR with Adam and an item bias, CCL with user-side aggregation and dropout, the
// sampled softmax with Adagrad; 3 iterations, a checkpoint after each), training is interrupted
// after iteration 2 and the checkpoint it left (checkpoint.json and the .npy arrays) is kept as
// that run's template (its arrays' directory renamed "arrays", the name the inputs use).
//
// The first byte of an input picks the run (mod 4); the rest is checkpoint.json, optionally
// followed by sections "\n--8<-- NAME\n<bytes>" that replace the array file NAME ("users.npy",
// "model.item_m.npy", ...) of the template; an empty rest is the template's own checkpoint.json.
// The checkpoint is written where the run looks for it, and the run is trained again: it resumes
// and finishes, or stops with a recforge::Error (a damaged checkpoint, one of other settings or
// data). Any other exception (an InternalError of a broken invariant included), a crash, a
// sanitizer report or a hang is a finding.
// RECFORGE_FUZZ_SEED_DIR=DIR writes each run's template checkpoint.json to DIR (the seed corpus).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "fuzz_common.h"
#include "pipeline/checkpoint.h"
#include "pipeline/train.h"

namespace {

using namespace recforge;
namespace fs = std::filesystem;

/// The model sections of the four runs.
constexpr const char* kModels[] = {
    "model: {type: ials, factors: 4, iterations: 3, eval_every: 1, patience: 5}\n"
    "split: {method: leave_last, validation_fraction: 0.2}\n",
    "model: {type: bpr, factors: 4, iterations: 3, optimizer: adam, item_bias: true, "
    "batch_size: 64}\n"
    "split: {method: leave_last}\n",
    "model: {type: ccl, factors: 4, iterations: 3, negatives: 20, history_weight: 0.5, "
    "dropout: 0.2, batch_size: 64}\n"
    "split: {method: leave_last}\n",
    "model: {type: softmax, factors: 4, iterations: 3, negatives: 20, optimizer: adagrad, "
    "batch_size: 64}\n"
    "split: {method: leave_last}\n",
};
constexpr int kRuns = static_cast<int>(sizeof kModels / sizeof kModels[0]);
/// The arrays' directory inside the checkpoint (its "arrays_dir").
constexpr const char* kArraysDir = "arrays";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// One run: its config and the checkpoint it left after iteration 2.
struct Run {
  config::Config cfg;
  std::string checkpoint_dir;
  std::string meta;                           ///< checkpoint.json
  std::map<std::string, std::string> arrays;  ///< file name -> bytes
};

const std::vector<Run>& runs() {
  static const std::vector<Run> out = [] {
    std::vector<Run> rs;
    for (int r = 0; r < kRuns; ++r) {
      const std::string name = "run" + std::to_string(r);
      const std::string yaml = "run: {name: " + name + ", dir: '" + fuzz::scratch().string() +
                               "', progress: off, exists: overwrite, seed: 5}\n"
                               "data: {format: synthetic, cache: false}\n"
                               "synthetic: {users: 60, items: 40, interactions: 900}\n"
                               "train: {threads: 1, checkpoint_every: 1}\n"
                               "eval: {ks: [5], metric: ndcg@5}\n" +
                               std::string(kModels[r]);
      Run run{config::Config::parse(yaml, name + ".yaml"), "", "", {}};
      run.checkpoint_dir = pipeline::checkpoint_dir(run.cfg);
      // Asked before the data, then before each iteration: the 4th answer stops the run
      // before iteration 3, with the checkpoint of iteration 2 in place.
      int asked = 0;
      pipeline::TrainOptions o;
      o.interrupted = [&asked] { return ++asked == 4; };
      try {
        pipeline::train(run.cfg, o);
        std::fprintf(stderr, "checkpoint_fuzz: run %d was not interrupted\n", r);
        std::abort();
      } catch (const pipeline::Interrupted&) {
      }
      nlohmann::json j =
          nlohmann::json::parse(read_file(fs::path(run.checkpoint_dir) / "checkpoint.json"));
      const std::string arrays_dir = j.at("arrays_dir").get<std::string>();
      for (const auto& e : fs::directory_iterator(fs::path(run.checkpoint_dir) / arrays_dir))
        run.arrays[e.path().filename().string()] = read_file(e.path());
      // The arrays' directory name holds the writer's process id; the inputs name a fixed one.
      j["arrays_dir"] = kArraysDir;
      run.meta = j.dump(1) + "\n";
      if (const char* seed = std::getenv("RECFORGE_FUZZ_SEED_DIR"))
        fuzz::write_file(fs::path(seed) / (name + ".json"),
                         std::string(1, static_cast<char>(r)) + run.meta);
      rs.push_back(std::move(run));
    }
    return rs;
  }();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<Run>& rs = runs();
  if (size == 0) return 0;
  const Run& run = rs[data[0] % kRuns];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const fuzz::Sections sections = fuzz::split_sections(input);
  std::string meta(sections.head);
  if (meta.empty()) meta = run.meta;
  std::map<std::string, std::string> arrays = run.arrays;
  for (const auto& [name, body] : sections.files)
    if (arrays.count(name)) arrays[name] = std::string(body);
  const fs::path dir = run.checkpoint_dir;
  std::error_code ec;
  // libFuzzer's -timeout alarm can interrupt the removal (EINTR): try again.
  for (int attempt = 0; attempt == 0 || (ec == std::errc::interrupted && attempt < 100); ++attempt)
    fs::remove_all(dir, ec);
  fs::create_directories(dir / kArraysDir, ec);
  if (ec) {
    std::fprintf(stderr, "checkpoint_fuzz: creating %s: %s\n", dir.c_str(), ec.message().c_str());
    std::abort();
  }
  for (const auto& [name, bytes] : arrays) fuzz::write_file(dir / kArraysDir / name, bytes);
  fuzz::write_file(dir / "checkpoint.json", meta);
  fuzz::expect_user_errors_only([&] { pipeline::train(run.cfg); });
  return 0;
}
