#include "pipeline/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>

#include "artifact/artifact.h"
#include "core/clock.h"
#include "core/context.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "pipeline/checkpoint.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/export.h"
#include "pipeline/options.h"
#include "pipeline/run.h"
#include "pipeline/warm_start.h"

namespace recforge::pipeline {

std::string run_name(const config::Config& cfg) {
  const std::string& name = cfg.settings().run.name;
  if (!name.empty()) return name;
  if (!cfg.source().empty()) return std::filesystem::path(cfg.source()).stem().string();
  return "run";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// `s` as one word for a POSIX shell (quoted when it holds anything but safe characters).
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_./:@%+=,-") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Closes the run's log file when the run ends, whichever way.
struct LogFileGuard {
  ~LogFileGuard() { close_log_file(); }
};

// What the run's factors started from, as a checkpoint records it: "random", or the
// model.init_from export version (run.json's init_from, set before fit).
nlohmann::json start_of(const nlohmann::json& run) {
  if (!run.contains("init_from")) return "random";
  const nlohmann::json& i = run["init_from"];
  return {{"export", i.value("export", "")},
          {"version", i.value("version", "")},
          {"created", i.value("created", "")}};
}

std::string start_text(const nlohmann::json& start) {
  if (!start.is_object()) return "random factors";
  const std::string version = start.value("version", "");
  return fmt::format("the export {}{}", start.value("export", ""),
                     version.empty() ? "" : " (" + version + ")");
}

// Writes the checkpoint of the training state after iteration `it`; `start` is start_of(run).
void save_checkpoint(const std::string& dir, const models::Model& model, const Dataset& data,
                     const config::Config& cfg, int it, const FitProgress& p,
                     const nlohmann::json& start) {
  const auto t0 = Clock::now();
  Checkpoint c;
  c.iteration = it;
  c.start = start;
  c.iterations = model.iterations();
  c.model_type = model.type();
  c.config_hash = config_hash(cfg);
  c.config = checkpoint_config(cfg);
  c.config_yaml = cfg.to_yaml();
  c.config_origins = cfg.origins();
  c.data_fingerprint = data.fingerprint();
  c.data_values = data.values_digest();
  c.users = model.user_factors();
  c.items = model.item_factors();
  c.model = model.training_state();
  c.fit.history = p.history;
  c.fit.best = p.best;
  c.fit.best_iter = p.best_iter;
  c.fit.since_best = p.since_best;
  c.fit.best_users = p.best_users;
  c.fit.best_items = p.best_items;
  write_checkpoint(dir, c);
  log().debug("checkpoint of iteration {} written to {} in {:.3f} s", it, dir, seconds_since(t0));
}

// Restores model and progress from the checkpoint in `dir` when there is one; returns the
// iteration it reached (0 without a checkpoint).
int resume_from(const std::string& dir, models::Model& model, const Dataset& data,
                const config::Config& cfg, FitProgress& p, const TrainOptions& options,
                const nlohmann::json& start) {
  if (!has_checkpoint(dir)) return 0;
  Checkpoint c = read_checkpoint(dir);
  check_checkpoint(c, cfg, data.fingerprint(), data.values_digest(), dir);
  // The checkpoint's factors go on from what the run started from then; this run would start
  // from something else now (model.init_from_max_age_days passed since, or another version of
  // the export is in place): resuming would record one start and continue another, and carry a
  // warm start past its age bound. Checkpoints of earlier builds record no start.
  if (!c.start.is_null() && c.start != start)
    fail("{}: this checkpoint continues factors that started from {}, but this run would start "
         "from {} now{}; remove {} to start the run over",
         dir, start_text(c.start), start_text(start),
         start.is_object() ? "" : " (model.init_from_max_age_days, or model.init_from changed)",
         dir);
  if (!model.can_checkpoint())
    fail("{}: {} models on this device cannot resume from a checkpoint; remove {} to start the "
         "run over",
         dir, model.type(), dir);
  if (c.users.rows != static_cast<int64_t>(data.users.size()) ||
      c.items.rows != static_cast<int64_t>(data.items.size()) ||
      c.users.cols != embedding_dimension(cfg.settings()) || c.model_type != model.type() ||
      c.iterations != model.iterations())
    checkpoint_damaged(dir, "its factors do not fit this run's data and model");
  const int it = c.iteration;
  // read_checkpoint checked the progress in itself; with model.patience a best validation also
  // needs the factors kept for it.
  if (cfg.settings().model.patience > 0 && c.fit.best_iter > 0 &&
      (c.fit.best_users.rows == 0 || c.fit.best_items.rows == 0))
    checkpoint_damaged(dir, fmt::format("its best validation, iteration {}, has no factors kept "
                                        "for it, which model.patience needs",
                                        c.fit.best_iter));
  try {  // the model checks its state (optimiser arrays and values) against its settings
    model.resume(std::move(c.users), std::move(c.items), it, std::move(c.model));
  } catch (const Error& e) {
    checkpoint_damaged(dir, e.what());
  }
  p = std::move(c.fit);
  log().info("resuming from iteration {} of {} (checkpoint {})", it, model.iterations(), dir);
  if (options.on_resume) options.on_resume(it, p.history);
  return it;
}

void stop_if_interrupted(const TrainOptions& options) {
  if (options.interrupted && options.interrupted()) throw Interrupted();
}

// Trains `model`, evaluating on validation every eval_every iterations and stopping after
// `patience` evaluations without improvement (restoring the best factors). With
// train.checkpoint_every, writes a checkpoint every that many iterations and continues from
// the run's checkpoint `checkpoint` when there is one (noting that in `run`). Returns the
// history.
nlohmann::json fit(models::Model& model, const Dataset& data, const config::Config& cfg,
                   const TrainOptions& options, nlohmann::json& run,
                   const std::string& checkpoint) {
  const config::Settings& s = cfg.settings();
  const std::string& metric = s.eval.metric;
  const int64_t every = s.model.eval_every;
  const int64_t patience = s.model.patience;
  const int64_t checkpoint_every = s.train.checkpoint_every;
  const bool has_validation = data.split.validation.size() > 0;
  // config::check refused eval_every without split.validation_fraction; a fraction can still
  // leave the validation set empty only through the data, which the split reports itself.
  if (every > 0 && !has_validation)
    fail("{}: model.eval_every needs a validation set; set split.validation_fraction above 0",
         cfg.where("model.eval_every"));
  if (checkpoint_every > 0 && !model.can_checkpoint())
    fail("{}: train.checkpoint_every is {}, but {} models on this device cannot write "
         "checkpoints; set it to 0",
         cfg.where("train.checkpoint_every"), checkpoint_every, model.type());
  FitProgress p;
  const nlohmann::json started_from = start_of(run);
  const int start = resume_from(checkpoint, model, data, cfg, p, options, started_from);
  if (start > 0) run["resumed_from_iteration"] = start;  // train_seconds are this process's
  nlohmann::json& history = p.history;
  const int iterations = model.iterations();
  for (int it = start + 1; it <= iterations; ++it) {
    stop_if_interrupted(options);
    const auto t0 = Clock::now();
    model.iterate(data.user_items, data.item_users);
    const double secs = seconds_since(t0);
    const double loss = model.loss(data.user_items, data.item_users);
    if (!std::isfinite(loss))  // a run with an overflowed objective is not a result
      fail("loss became {} at iteration {}: {}", loss, it,
           nonfinite_loss_cause(s, data.user_items));
    nlohmann::json h = {{"iteration", it}, {"seconds", secs}, {"loss", loss}};
    std::string line = fmt::format("iteration {}/{}: loss {:.6g}, {:.3f} s", it, iterations, loss, secs);
    if (every > 0 && (it % every == 0 || it == iterations)) {
      const eval::Metrics m = evaluate(model, data, Part::kValidation, cfg);
      const double v = m.get(metric);
      h["validation"] = m.to_json();
      line += fmt::format(", validation {} {:.4f}", metric, v);
      if (v > p.best) {
        p.best = v;
        p.best_iter = it;
        p.since_best = 0;
        if (patience > 0) {
          p.best_users = model.user_factors();
          p.best_items = model.item_factors();
        }
      } else if (patience > 0 && ++p.since_best >= patience) {
        history.push_back(h);
        log().info("{} — no improvement in {} evaluations, stopping; keeping iteration {}", line,
                   patience, p.best_iter);
        model.set_factors(std::move(p.best_users), std::move(p.best_items));
        return history;
      }
      if (options.on_validation && !options.on_validation(it, h["validation"]) && it < iterations) {
        h["stopped_early"] = true;
        history.push_back(h);
        log().info("{} — stopped early by the caller", line);
        if (patience > 0 && p.best_iter != it)
          model.set_factors(std::move(p.best_users), std::move(p.best_items));
        return history;
      }
    }
    log().info("{}", line);
    history.push_back(h);
    if (checkpoint_every > 0 && it % checkpoint_every == 0 && it < iterations)
      save_checkpoint(checkpoint, model, data, cfg, it, p, started_from);
  }
  if (patience > 0 && p.best_iter > 0 && p.best_iter != iterations) {
    log().info("keeping the factors of iteration {} (best validation {} {:.4f})", p.best_iter,
               metric, p.best);
    model.set_factors(std::move(p.best_users), std::move(p.best_items));
  }
  return history;
}

}  // namespace

std::string train(const config::Config& cfg, const TrainOptions& options) {
  const auto t0 = Clock::now();
  // The same cross-field checks as `recforge config` (a config built by Config::set, such as
  // a sweep's trial, has not been through them yet).
  config::check(cfg);
  const config::Settings& s = cfg.settings();
  set_file_mode(file_mode_from(s.privacy.file_mode));  // of the run directory, checkpoints, export
  set_log_level(s.run.log_level);
  set_progress_mode(s.run.progress);
  const Context ctx = Context::create(training_device(s), static_cast<int>(s.train.threads));
  const std::vector<int> ks = eval_ks(cfg);
  auto model = make_model(cfg, ctx);
  const bool exporting = model && s.export_.enabled;
  const std::string& export_out = s.export_.out;
  if (exporting) {  // refuse what would fail the export before training, not after
    index::check_dimension(index_options(s), embedding_dimension(s));
    if (!export_out.empty()) artifact::check_target(export_out, options.export_out_option);
    pseudonym_key(cfg);  // a missing or short key fails now, not after training
  }
  if (!model && !s.model.init_from.empty())
    fail("{}: model.init_from is set, but model.type none trains no model to start",
         cfg.where("model.init_from"));
  // model.init_from is opened and checked against the model before the data is read.
  nlohmann::json init_skipped;  // model.init_from_max_age_days: why the run starts cold
  const auto t_init = Clock::now();
  const std::optional<InitSource> init =
      model ? open_init_from(cfg, std::time(nullptr), &init_skipped) : std::nullopt;
  const double init_seconds = seconds_since(t_init);
  // Claims the final name by creating the staging directory (so run.dir must be writable).
  StagedDir dir(s.run.dir, run_name(cfg), s.run.exists);
  // The checkpoint goes with the name claimed (`name.1` when run.exists: suffix gave one, also
  // to a run started beside one of that name that still trains): two runs never share one, and
  // `train --resume runs/name.1` or the same command again finds it.
  const std::string checkpoint =
      checkpoint_dir(s.run.dir, std::filesystem::path(dir.final_path()).filename().string());
  if (exporting && !export_out.empty()) {  // an export there would take the run's place
    namespace fs = std::filesystem;
    const fs::path out = fs::weakly_canonical(fs::absolute(export_out));
    const fs::path run_dir = fs::weakly_canonical(fs::absolute(dir.final_path()));
    const auto [r, o] = std::mismatch(run_dir.begin(), run_dir.end(), out.begin(), out.end());
    if (r == run_dir.end())
      fail("{}: export.out {} is inside the run directory {}; leave export.out empty to export "
           "into the run directory, or choose a path outside it",
           cfg.where("export.out"), export_out, dir.final_path());
  }
  LogFileGuard guard;
  log_to_file(dir.file("log.txt"));
  log().info("recforge {} train: config {}, run directory {}, device {}, {} threads",
             RECFORGE_VERSION, cfg.source().empty() ? "(defaults)" : cfg.source(),
             dir.final_path(), ctx.device().name(), ctx.threads());
  write_file_atomic(dir.file("config.yaml"), cfg.to_yaml());

  stop_if_interrupted(options);
  const Dataset data = prepare_dataset(cfg, options.exclusion);
  nlohmann::json stats = data.stats();
  write_file_atomic(dir.file("stats.json"), stats.dump(2) + "\n");
  log().info("dataset: {} users, {} items, {} train interactions (density {:.3g})",
             data.users.size(), data.items.size(), data.split.train.size(),
             stats["train"]["density"].get<double>());
  // The index settings that depend on the number of items, now that it is known.
  if (exporting) index::check_item_count(index_options(s), data.items.size());

  nlohmann::json run = {{"recforge_version", RECFORGE_VERSION},
                        {"id", random_id()},  // which run an export came from (run_exports)
                        {"created", utc_now()},
                        {"config_source", cfg.source()},
                        {"device", ctx.device().name()},
                        {"threads", ctx.threads()},
                        {"data_fingerprint", data.fingerprint()},
                        {"data_values", data.values_digest()},
                        {"model", nullptr}};
  // Who was excluded, as salted hashes only, so that open_run re-prepares the same data.
  if (data.excluded && !data.excluded->empty()) run["excluded_users"] = data.excluded->to_json();
  if (model && cfg.settings().eval.validation_sample < 1) {
    const auto [users, sampled] = validation_sample_size(data, cfg);
    check_validation_sample(cfg, users, sampled);
  }
  if (options.on_dataset) options.on_dataset(data, run);
  if (!init_skipped.is_null()) run["init_from_skipped"] = init_skipped;
  std::optional<WarmStart> warm;
  if (init) {
    const auto t_match = Clock::now();
    warm = match_init_from(*init, cfg, data.users, data.items, opt_out_ids(cfg));
    warm->record["seconds"] = init_seconds + seconds_since(t_match);  // opened and matched
    run["init_from"] = warm->record;
  }
  std::string export_to, export_error;  // where the export goes; why it failed
  bool export_error_is_users = false;
  if (model) {
    const auto tt = Clock::now();
    model->init(data.users.size(), data.items.size());
    if (warm) {  // the matched rows from the export, the others as init() drew them
      Matrix users = model->user_factors(), items = model->item_factors();
      apply_warm_start(*init, *warm, users, items);
      model->set_factors(std::move(users), std::move(items));
    }
    run["history"] = fit(*model, data, cfg, options, run, checkpoint);
    stop_if_interrupted(options);
    run["train_seconds"] = seconds_since(tt);
    run["model"] = model->describe();
    if (warm && !warm->chain.hashes.empty())  // for `recforge export RUN` (open_run)
      write_file_atomic(dir.file(kChainUsersFile),
                        artifact::chain_users_text(warm->chain.hashes));
    write_npy(dir.file("user_factors.npy"), model->user_factors());
    write_npy(dir.file("item_factors.npy"), model->item_factors());
    nlohmann::json metrics = nlohmann::json::object();
    for (Part part : {Part::kValidation, Part::kTest}) {
      if (part == Part::kTest && !s.eval.test) continue;
      const auto te = Clock::now();
      const eval::Metrics m = evaluate(*model, data, part, cfg);
      if (m.users == 0) continue;
      metrics[part_name(part)] = m.to_json();
      std::string shown;
      for (int k : ks)
        shown += fmt::format(" recall@{} {:.4f} ndcg@{} {:.4f}", k, m.get(fmt::format("recall@{}", k)),
                             k, m.get(fmt::format("ndcg@{}", k)));
      log().info("{} ({}, {:.2f} s):{}", part_name(part), users_scored(m), seconds_since(te), shown);
    }
    write_file_atomic(dir.file("metrics.json"), metrics.dump(2) + "\n");
    if (exporting) {
      // Inside the run directory (staged with it) unless export.out names another place.
      export_to = export_out.empty() ? dir.final_path() + "/export" : export_out;
      try {
        artifact::ExportInput in =
            export_input(cfg, data, *model, metrics, dir.final_path(), data.fingerprint(), run,
                         warm ? warm->chain.hashes : std::vector<Digest>{});
        in.out_option = options.export_out_option;
        artifact::write(in, export_out.empty() ? dir.file("export") : export_out, export_to);
        run["export"] = export_to;
        record_export(dir.staging(), export_to);  // absolute, whatever directory reads it later
      } catch (const std::exception& e) {
        // The trained run is kept: it can be exported again without training again.
        export_error = e.what();
        export_error_is_users = dynamic_cast<const Error*>(&e) != nullptr;
        run["export_error"] = export_error;
        log().error("export to {} failed: {}", export_to, export_error);
      }
    }
  }
  run["seconds"] = seconds_since(t0);
  run["status"] = export_error.empty() ? "complete" : "export_failed";
  run["files"] = run_file_checksums(dir.staging());  // verified by open_run
  write_file_atomic(dir.file("run.json"), run.dump(2) + "\n");
  if (export_error.empty())
    log().info("run complete in {:.2f} s", run["seconds"].get<double>());
  else
    log().warn("run saved without its export in {:.2f} s", run["seconds"].get<double>());
  close_log_file();
  const std::string final_dir = dir.commit();
  remove_checkpoint(checkpoint);  // the run is complete: nothing to resume
  if (!export_error.empty()) {
    const std::string message = fmt::format(
        "export to {} failed after training: {}; the trained run is kept in {}, export it again "
        "with: recforge export {} --out {}",
        export_to, export_error, final_dir, shell_word(final_dir), shell_word(export_to));
    if (export_error_is_users) throw Error(message);
    throw std::runtime_error(message);  // an internal error (exit status 3)
  }
  return final_dir;
}

}  // namespace recforge::pipeline
