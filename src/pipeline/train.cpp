#include "pipeline/train.h"

#include <chrono>
#include <ctime>
#include <filesystem>

#include "core/clock.h"
#include "core/context.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/export.h"
#include "pipeline/run.h"

namespace recforge::pipeline {

std::string run_name(const config::Config& cfg) {
  const std::string& name = cfg.get_string("run.name");
  if (!name.empty()) return name;
  if (!cfg.source().empty()) return std::filesystem::path(cfg.source()).stem().string();
  return "run";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Closes the run's log file when the run ends, whichever way.
struct LogFileGuard {
  ~LogFileGuard() { close_log_file(); }
};

// The validation metric must be computed at one of the configured cutoffs.
void check_metric(const config::Config& cfg, const std::vector<int>& ks) {
  const std::string& metric = cfg.get_string("eval.metric");
  const int k = std::stoi(metric.substr(metric.find('@') + 1));
  if (std::find(ks.begin(), ks.end(), k) == ks.end())
    fail("{}: eval.metric {} uses K = {}, which is not in eval.ks", cfg.where("eval.metric"),
         metric, k);
}

// Trains `model`, evaluating on validation every eval_every iterations and stopping after
// `patience` evaluations without improvement (restoring the best factors). Returns the history.
nlohmann::json fit(models::Model& model, const Dataset& data, const config::Config& cfg,
                   const TrainOptions& options) {
  const std::vector<int> ks = eval_ks(cfg);
  const std::string& metric = cfg.get_string("eval.metric");
  const int64_t every = cfg.get_int("model.eval_every");
  const int64_t patience = cfg.get_int("model.patience");
  const bool has_validation = data.split.validation.size() > 0;
  if (every > 0 && !has_validation)
    fail("{}: model.eval_every needs a validation set; set split.validation_fraction above 0",
         cfg.where("model.eval_every"));
  if (patience > 0 && every == 0)
    fail("{}: model.patience needs model.eval_every > 0", cfg.where("model.patience"));
  nlohmann::json history = nlohmann::json::array();
  double best = -1;
  int best_iter = 0;
  int64_t since_best = 0;
  Matrix best_users, best_items;
  const int iterations = model.iterations();
  for (int it = 1; it <= iterations; ++it) {
    const auto t0 = Clock::now();
    model.iterate(data.user_items, data.item_users);
    const double secs = seconds_since(t0);
    const double loss = model.loss(data.user_items, data.item_users);
    nlohmann::json h = {{"iteration", it}, {"seconds", secs}, {"loss", loss}};
    std::string line = fmt::format("iteration {}/{}: loss {:.6g}, {:.3f} s", it, iterations, loss, secs);
    if (every > 0 && (it % every == 0 || it == iterations)) {
      const eval::Metrics m = evaluate(model, data, Part::kValidation, ks);
      const double v = m.get(metric);
      h["validation"] = m.to_json();
      line += fmt::format(", validation {} {:.4f}", metric, v);
      if (v > best) {
        best = v;
        best_iter = it;
        since_best = 0;
        if (patience > 0) {
          best_users = model.user_factors();
          best_items = model.item_factors();
        }
      } else if (patience > 0 && ++since_best >= patience) {
        history.push_back(h);
        log().info("{} — no improvement in {} evaluations, stopping; keeping iteration {}", line,
                   patience, best_iter);
        model.set_factors(std::move(best_users), std::move(best_items));
        return history;
      }
      if (options.on_validation && !options.on_validation(it, h["validation"]) && it < iterations) {
        h["stopped_early"] = true;
        history.push_back(h);
        log().info("{} — stopped early by the caller", line);
        if (patience > 0 && best_iter != it)
          model.set_factors(std::move(best_users), std::move(best_items));
        return history;
      }
    }
    log().info("{}", line);
    history.push_back(h);
  }
  if (patience > 0 && best_iter > 0 && best_iter != iterations) {
    log().info("keeping the factors of iteration {} (best validation {} {:.4f})", best_iter, metric, best);
    model.set_factors(std::move(best_users), std::move(best_items));
  }
  return history;
}

}  // namespace

std::string train(const config::Config& cfg, const TrainOptions& options) {
  const auto t0 = Clock::now();
  set_log_level(cfg.get_string("run.log_level"));
  set_progress_mode(cfg.get_string("run.progress"));
  const Context ctx = Context::create(cfg.get_string("train.device"),
                                      static_cast<int>(cfg.get_int("train.threads")));
  const std::vector<int> ks = eval_ks(cfg);
  check_metric(cfg, ks);
  auto model = models::make_model(cfg, ctx);
  if (model && cfg.get_bool("export.enabled"))  // refuse index settings before training, not after
    index::check_dimension(index::options_from_config(cfg), models::embedding_dimension(cfg));
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

  nlohmann::json run = {{"recforge_version", RECFORGE_VERSION},
                        {"created", utc_now()},
                        {"config_source", cfg.source()},
                        {"device", ctx.device().name()},
                        {"threads", ctx.threads()},
                        {"data_fingerprint", data.fingerprint()},
                        {"model", nullptr}};
  if (model) {
    const auto tt = Clock::now();
    model->init(data.users.size(), data.items.size());
    run["history"] = fit(*model, data, cfg, options);
    run["train_seconds"] = seconds_since(tt);
    run["model"] = model->describe();
    write_npy(dir.file("user_factors.npy"), model->user_factors());
    write_npy(dir.file("item_factors.npy"), model->item_factors());
    nlohmann::json metrics = nlohmann::json::object();
    for (Part part : {Part::kValidation, Part::kTest}) {
      if (part == Part::kTest && !cfg.get_bool("eval.test")) continue;
      const auto te = Clock::now();
      const eval::Metrics m = evaluate(*model, data, part, ks);
      if (m.users == 0) continue;
      metrics[part_name(part)] = m.to_json();
      std::string shown;
      for (int k : ks)
        shown += fmt::format(" recall@{} {:.4f} ndcg@{} {:.4f}", k, m.get(fmt::format("recall@{}", k)),
                             k, m.get(fmt::format("ndcg@{}", k)));
      log().info("{} ({} users, {:.2f} s):{}", part_name(part), m.users, seconds_since(te), shown);
    }
    write_file_atomic(dir.file("metrics.json"), metrics.dump(2) + "\n");
    if (cfg.get_bool("export.enabled")) {
      // Inside the run directory (staged with it) unless export.out names another place.
      const std::string& out = cfg.get_string("export.out");
      run["export"] = out.empty() ? dir.final_path() + "/export" : out;
      artifact::write(export_input(cfg, data, *model, metrics, dir.final_path(), data.fingerprint()),
                      out.empty() ? dir.file("export") : out, run["export"].get<std::string>());
    }
  }
  run["seconds"] = seconds_since(t0);
  run["status"] = "complete";
  run["files"] = run_file_checksums(dir.staging());  // verified by open_run
  write_file_atomic(dir.file("run.json"), run.dump(2) + "\n");
  log().info("run complete in {:.2f} s", run["seconds"].get<double>());
  close_log_file();
  return dir.commit();
}

}  // namespace recforge::pipeline
