#include "pipeline/train.h"

#include <chrono>
#include <ctime>
#include <filesystem>

#include "core/context.h"
#include "core/fs.h"
#include "core/log.h"
#include "pipeline/dataset.h"

namespace recforge::pipeline {

std::string run_name(const config::Config& cfg) {
  const std::string& name = cfg.get_string("run.name");
  if (!name.empty()) return name;
  if (!cfg.source().empty()) return std::filesystem::path(cfg.source()).stem().string();
  return "run";
}

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Closes the run's log file when the run ends, whichever way.
struct LogFileGuard {
  ~LogFileGuard() { close_log_file(); }
};

}  // namespace

std::string train(const config::Config& cfg) {
  const auto t0 = std::chrono::steady_clock::now();
  set_log_level(cfg.get_string("run.log_level"));
  set_progress_mode(cfg.get_string("run.progress"));
  const Context ctx = Context::create(cfg.get_string("train.device"),
                                      static_cast<int>(cfg.get_int("train.threads")));
  StagedDir dir(cfg.get_string("run.dir"), run_name(cfg), cfg.get_string("run.exists"));
  LogFileGuard guard;
  log_to_file(dir.file("log.txt"));
  log().info("recforge {} train: config {}, run directory {}, device {}, {} threads",
             RECFORGE_VERSION, cfg.source().empty() ? "(defaults)" : cfg.source(),
             dir.final_path(), ctx.device().name(), ctx.threads());
  write_file_atomic(dir.file("config.yaml"), cfg.to_yaml());

  const Dataset data = prepare_dataset(cfg);
  nlohmann::json stats = data.stats();
  write_file_atomic(dir.file("stats.json"), stats.dump(2) + "\n");
  log().info("dataset: {} users, {} items, {} train interactions (density {:.3g})",
             data.users.size(), data.items.size(), data.split.train.size(),
             stats["train"]["density"].get<double>());

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json run = {{"recforge_version", RECFORGE_VERSION},
                        {"created", utc_now()},
                        {"config_source", cfg.source()},
                        {"device", ctx.device().name()},
                        {"threads", ctx.threads()},
                        {"model", nullptr},
                        {"seconds", secs},
                        {"status", "complete"}};
  write_file_atomic(dir.file("run.json"), run.dump(2) + "\n");
  log().info("run complete in {:.2f} s", secs);
  close_log_file();
  return dir.commit();
}

}  // namespace recforge::pipeline
