#include "pipeline/run.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "core/npy.h"

namespace recforge::pipeline {
namespace fs = std::filesystem;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
}

nlohmann::json read_run_json(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}: no such run directory", dir);
  const std::string path = dir + "/run.json";
  if (!fs::exists(path)) fail("{}: not a recforge run directory (run.json is missing)", dir);
  return read_json(path);
}

OpenedRun open_run(const std::string& dir, const std::string& verb) {
  OpenedRun r{dir, config::Config::defaults(), read_run_json(dir), {}, nullptr};
  if (r.run["model"].is_null())
    fail("{}: this run has no trained model, so there is nothing to {} (it was trained with "
         "model.type: none)",
         dir, verb);
  r.config = config::Config::load(dir + "/config.yaml");
  set_progress_mode(r.config.get_string("run.progress"));
  const Context ctx = Context::create("cpu", static_cast<int>(r.config.get_int("train.threads")));
  r.data = prepare_dataset(r.config);
  const std::string expected = r.run.value("data_fingerprint", "");
  if (r.data.fingerprint() != expected)
    fail("{}: the data named in config.yaml is no longer what this run was trained on (its "
         "fingerprint changed); retrain, or restore the original files",
         dir);
  // Reopened runs compute on the CPU, which holds float32 factors: a run trained on a GPU with
  // float16 or bfloat16 storage saved its factors as float32 (the stored values, exactly).
  config::Config cpu_config = r.config;
  if (cpu_config.get_string("model.dtype") != "float32") {
    log().debug("{}: factors were stored as {} on the GPU; reopened as float32 on the CPU", dir,
                cpu_config.get_string("model.dtype"));
    cpu_config.set("model.dtype=float32");
  }
  r.model = models::make_model(cpu_config, ctx);
  Matrix users = read_npy(dir + "/user_factors.npy");
  Matrix items = read_npy(dir + "/item_factors.npy");
  const int dim = models::embedding_dimension(r.config);
  if (users.rows != r.data.users.size() || items.rows != r.data.items.size() ||
      users.cols != items.cols || users.cols != dim)
    fail("{}: factor files have shapes ({}, {}) and ({}, {}), expected ({}, {}) and ({}, {})", dir,
         users.rows, users.cols, items.rows, items.cols, r.data.users.size(), dim,
         r.data.items.size(), dim);
  r.model->set_factors(std::move(users), std::move(items));
  return r;
}

}  // namespace recforge::pipeline
