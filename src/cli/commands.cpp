#include "cli/commands.h"

#include <omp.h>

#include <faiss/Index.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "data/synthetic.h"
#include "pipeline/dataset.h"
#include "pipeline/train.h"

namespace recforge::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string config_path;
  std::vector<std::string> sets;
  std::string run_dir, out, user, name, device;
  int64_t k = 10;
  int64_t users = 0, items = 0, interactions = 0, seed = -1;
  bool markdown = false;
};

Options g;
std::map<std::string, std::function<int()>> g_actions;

config::Config load_config(const std::string& path, std::vector<std::string> sets) {
  return path.empty() ? [&] {
    config::Config c = config::Config::defaults();
    for (const auto& s : sets) c.set(s);
    return c;
  }()
                      : config::Config::load(path, sets);
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
}

// A finished run directory: run.json must exist and say "complete".
nlohmann::json open_run(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}: no such run directory", dir);
  const std::string run = dir + "/run.json";
  if (!fs::exists(run)) fail("{}: not a recforge run directory (run.json is missing)", dir);
  return read_json(run);
}

// Verbs that need trained factors refuse runs that have none, naming what is missing.
void require_model(const std::string& dir, const char* verb) {
  const nlohmann::json run = open_run(dir);
  if (run["model"].is_null())
    fail("{}: this run has no trained model, so there is nothing to {} (it was made before any "
         "model type existed, or with no model configured)",
         dir, verb);
}

int cmd_train() {
  std::vector<std::string> sets = g.sets;
  if (!g.name.empty()) sets.push_back("run.name=" + g.name);
  if (!g.device.empty()) sets.push_back("train.device=" + g.device);
  const config::Config cfg = config::Config::load(g.config_path, sets);
  const std::string dir = pipeline::train(cfg);
  std::printf("%s\n", dir.c_str());
  return 0;
}

int cmd_datagen() {
  std::vector<std::string> sets = g.sets;
  if (g.users > 0) sets.push_back("synthetic.users=" + std::to_string(g.users));
  if (g.items > 0) sets.push_back("synthetic.items=" + std::to_string(g.items));
  if (g.interactions > 0) sets.push_back("synthetic.interactions=" + std::to_string(g.interactions));
  if (g.seed >= 0) sets.push_back("synthetic.seed=" + std::to_string(g.seed));
  const config::Config cfg = load_config(g.config_path, sets);
  set_progress_mode(cfg.get_string("run.progress"));
  const auto data = data::generate_synthetic(pipeline::synthetic_options(cfg));
  data::write_synthetic_csv(data, g.out);
  log().info("wrote {} interactions ({} users, {} items) to {}", data.x.size(), data.users.size(),
             data.items.size(), g.out);
  return 0;
}

int cmd_config() {
  if (g.markdown) {
    std::fputs(config::markdown_reference().c_str(), stdout);
    return 0;
  }
  const config::Config cfg = load_config(g.config_path, g.sets);
  std::fputs(cfg.to_yaml().c_str(), stdout);
  return 0;
}

int cmd_info() {
  if (!g.run_dir.empty()) {
    const nlohmann::json run = open_run(g.run_dir);
    std::printf("run        %s\n", g.run_dir.c_str());
    std::printf("created    %s with recforge %s\n", run.value("created", "?").c_str(),
                run.value("recforge_version", "?").c_str());
    std::printf("device     %s, %d threads\n", run.value("device", "?").c_str(),
                run.value("threads", 0));
    std::printf("model      %s\n", run["model"].is_null() ? "none" : run["model"].dump().c_str());
    const std::string stats_path = g.run_dir + "/stats.json";
    if (fs::exists(stats_path)) {
      const nlohmann::json s = read_json(stats_path);
      std::printf("users      %lld\nitems      %lld\n", s["users"].get<long long>(),
                  s["items"].get<long long>());
      for (const char* part : {"train", "validation", "test"}) {
        if (!s.contains(part)) continue;
        std::printf("%-10s %lld interactions, density %.3g\n", part,
                    s[part]["interactions"].get<long long>(), s[part]["density"].get<double>());
      }
    }
    return 0;
  }
  std::printf("recforge   %s\n", RECFORGE_VERSION);
  std::printf("cuda       %s\n", backend::cuda_version_text().c_str());
  const int n = backend::cuda_device_count();
  std::printf("gpus       %d\n", n);
  for (int d = 0; d < n; ++d) std::printf("           %s\n", backend::cuda_device_description(d).c_str());
  std::printf("cpu        %d threads (OpenMP)\n", omp_get_num_procs());
  std::printf("faiss      %d.%d.%d (CPU)\n", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
              FAISS_VERSION_PATCH);
  std::printf("cache dir  %s\n", data::default_cache_dir().c_str());
  return 0;
}

int cmd_evaluate() {
  require_model(g.run_dir, "evaluate");
  return 0;
}

int cmd_recommend() {
  require_model(g.run_dir, "recommend from");
  return 0;
}

int cmd_export() {
  require_model(g.run_dir, "export");
  return 0;
}

void add_sets(CLI::App* c) {
  c->add_option("--set", g.sets,
                "Override a config value, e.g. --set model.factors=128 (repeatable)")
      ->type_name("KEY=VALUE");
}

}  // namespace

void register_commands(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train a model from a YAML config into runs/<name>/");
  train->add_option("config", g.config_path, "YAML config file")->required();
  add_sets(train);
  train->add_option("--name", g.name, "Run name (same as --set run.name=NAME)");
  train->add_option("--device", g.device, "auto, cpu, cuda or cuda:N (same as --set train.device=...)");
  g_actions["train"] = cmd_train;

  auto* datagen = app.add_subcommand(
      "datagen", "Write a synthetic implicit-feedback set (planted communities, power-law "
                 "popularity, activity skew, timestamps) as CSV");
  datagen->add_option("--out", g.out, "Output CSV file (user,item,weight,timestamp)")->required();
  datagen->add_option("--config", g.config_path, "Take the synthetic: section from this config");
  datagen->add_option("--users", g.users, "Number of users (synthetic.users)");
  datagen->add_option("--items", g.items, "Number of items (synthetic.items)");
  datagen->add_option("--interactions", g.interactions, "Target interactions (synthetic.interactions)");
  datagen->add_option("--seed", g.seed, "Random seed (synthetic.seed)");
  add_sets(datagen);
  g_actions["datagen"] = cmd_datagen;

  auto* evaluate = app.add_subcommand("evaluate", "Recompute a run's metrics from its saved factors");
  evaluate->add_option("run_dir", g.run_dir, "Run directory")->required();
  g_actions["evaluate"] = cmd_evaluate;

  auto* recommend = app.add_subcommand("recommend", "Top-k items for a user of a trained run");
  recommend->add_option("run_dir", g.run_dir, "Run directory")->required();
  recommend->add_option("--user", g.user, "External user id");
  recommend->add_option("--k", g.k, "Number of items")->check(CLI::PositiveNumber);
  g_actions["recommend"] = cmd_recommend;

  auto* exp = app.add_subcommand("export", "Write the serving artifact of a trained run");
  exp->add_option("run_dir", g.run_dir, "Run directory")->required();
  exp->add_option("--out", g.out, "Export directory")->required();
  g_actions["export"] = cmd_export;

  auto* info = app.add_subcommand("info", "Show this build (CUDA, GPUs, Faiss) or a run directory");
  info->add_option("run_dir", g.run_dir, "Run directory to describe");
  g_actions["info"] = cmd_info;

  auto* cfg = app.add_subcommand("config", "Print the fully resolved config, or the parameter reference");
  cfg->add_option("config", g.config_path, "YAML config file (defaults when omitted)");
  add_sets(cfg);
  cfg->add_flag("--markdown", g.markdown, "Print docs/configuration.md (the parameter reference)");
  g_actions["config"] = cmd_config;
}

int run_selected(CLI::App& app) {
  for (auto* sub : app.get_subcommands()) return g_actions.at(sub->get_name())();
  return 2;
}

}  // namespace recforge::cli
