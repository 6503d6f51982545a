/// @file sweep.cpp
/// The sweep runner: state (sweep.json), trials on worker threads, early stopping through
/// pipeline::TrainOptions, the best config and its one test evaluation.

#include "sweep/sweep.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <omp.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/blas.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"
#include "pipeline/dataset.h"
#include "pipeline/evaluate.h"
#include "pipeline/run.h"
#include "pipeline/train.h"

namespace recforge::sweep {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

/// The sweep's own messages: the process logger's sinks (stderr, and the calling thread's log
/// file) at info level whatever level the trials' configs set on the process logger.
spdlog::logger& slog() {
  static spdlog::logger logger = [] {
    spdlog::logger l("sweep", log().sinks().begin(), log().sinks().end());
    l.set_level(spdlog::level::info);
    l.flush_on(spdlog::level::info);
    return l;
  }();
  return logger;
}

/// "trial-007" (at least three digits).
std::string trial_name(int id, size_t total) {
  const int width = std::max<int>(3, static_cast<int>(std::to_string(total).size()));
  return fmt::format("trial-{:0{}}", id, width);
}

std::string point_text(const SweepSpec& spec, const Point& p) {
  std::string out;
  for (size_t i = 0; i < spec.space.size(); ++i)
    out += fmt::format("{}{} {}", i ? ", " : "", spec.space[i].path, value_label(p[i]));
  return out;
}

/// Holds an exclusive lock on the sweep directory while the sweep runs.
class DirLock {
 public:
  explicit DirLock(const std::string& dir) {
    const std::string path = dir + "/.sweep.lock";
    fd_ = open_or_create_file(path, 0);  // privacy.file_mode when new, as the sweep's files
    if (fd_ < 0) fail("{}: cannot create the sweep's lock file", path);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fail("{}: another recforge sweep is running in this directory; wait for it or stop it", dir);
    }
  }
  ~DirLock() { ::close(fd_); }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

/// Runs `f` on a new thread whose log messages go to the sweep's log file (a trial's own log
/// replaces it while the trial trains); rethrows what `f` throws.
template <typename F>
void on_thread(const std::string& sweep_log, F f) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      log_to_file(sweep_log);
      f();
    } catch (...) {
      error = std::current_exception();
    }
    close_log_file();
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

/// What a finished run directory holds for the sweep: its final validation metrics, its
/// curve of `metric`, its iteration count and whether it was stopped early.
struct RunReadout {
  nlohmann::json validation;
  Curve curve;
  int iterations = 0;
  bool stopped = false;
};

Curve curve_of(const nlohmann::json& history, const std::string& metric) {
  Curve c;
  for (const nlohmann::json& h : history)
    if (h.contains("validation") && h["validation"].contains(metric))
      c.emplace_back(h["iteration"].get<int>(), h["validation"][metric].get<double>());
  return c;
}

RunReadout read_run(const std::string& dir, const std::string& metric) {
  const nlohmann::json run = pipeline::read_json(dir + "/run.json");
  const nlohmann::json metrics = pipeline::read_json(dir + "/metrics.json");
  RunReadout r;
  r.validation = metrics.value("validation", nlohmann::json());
  const nlohmann::json history = run.value("history", nlohmann::json::array());
  r.iterations = static_cast<int>(history.size());
  r.curve = curve_of(history, metric);
  r.stopped = !history.empty() && history.back().value("stopped_early", false);
  return r;
}

std::optional<double> metric_of(const nlohmann::json& metrics, const std::string& metric) {
  if (metrics.is_object() && metrics.contains(metric) && metrics[metric].is_number())
    return metrics[metric].get<double>();
  return std::nullopt;
}

/// The iteration of the best value of `c` (the first on a tie), and that value.
std::optional<std::pair<int, double>> best_point(const Curve& c, bool maximize) {
  std::optional<std::pair<int, double>> best;
  for (const auto& p : c)
    if (!best || (maximize ? p.second > best->second : p.second < best->second)) best = p;
  return best;
}

/// "seed-7".
std::string seed_name(int64_t seed) { return fmt::format("seed-{}", seed); }

class Runner {
 public:
  Runner(const SweepSpec& spec, const SweepOptions& options) : spec_(spec), options_(options) {}

  SweepResult run();

 private:
  void prepare_state();
  void check_same_data(const nlohmann::json& old, const nlohmann::json& now) const;
  void save_locked();
  void worker();
  void run_trial(size_t i);
  void run_seeds(size_t i, bool kill, TrialRecord& result);
  bool keep_going(size_t i, int iteration, const nlohmann::json& validation, int64_t eval_every,
                  Curve* seed_curve = nullptr, const std::vector<Curve>* done = nullptr);
  void record_run(TrialRecord& t, const std::string& dir) const;
  void summarize_seeds(TrialRecord& t) const;
  int choose_best() const;
  void evaluate_best(int best);
  void evaluate_best_seeds(const TrialRecord& t, const std::string& best_yaml, int64_t iterations);

  const SweepSpec& spec_;
  SweepOptions options_;
  std::string state_path_, sweep_log_;
  std::vector<Point> points_;
  std::vector<TrialRecord> trials_;
  nlohmann::json best_test_;
  nlohmann::json data_;  // the data's fingerprint and values digest (sweep.json "data")
  std::mutex mu_;
  size_t next_ = 0;
  int threads_ = 0;          // per trial; 0: the base config's
  int64_t kill_after_ = -1;  // test hook: RECFORGE_TEST_SWEEP_KILL_AFTER
  int64_t started_here_ = 0;
};

// ---- State ------------------------------------------------------------------------------------

// "base config (model.iterations, ...)": the keys of the base config (sections of keys, as
// SweepSpec::definition writes it) whose values differ from those the sweep began with.
std::string base_change(const nlohmann::json& old_definition, const nlohmann::json& now) {
  const nlohmann::json was = old_definition.is_object() && old_definition.contains("base")
                                 ? old_definition["base"]
                                 : nlohmann::json::object();
  std::vector<std::string> keys;
  auto add = [&](const std::string& section, const std::string& key) {
    const std::string path = section + "." + key;
    if (std::find(keys.begin(), keys.end(), path) == keys.end()) keys.push_back(path);
  };
  for (const nlohmann::json* side : {&was, &now}) {
    if (!side->is_object()) continue;
    const nlohmann::json& other = side == &was ? now : was;
    for (const auto& [section, values] : side->items()) {
      if (!values.is_object()) continue;
      for (const auto& [key, v] : values.items()) {
        const bool same = other.is_object() && other.contains(section) &&
                          other[section].is_object() && other[section].contains(key) &&
                          other[section][key].dump() == v.dump();
        if (!same) add(section, key);
      }
    }
  }
  if (keys.empty()) return "base config";
  constexpr size_t kShown = 5;
  std::string list = fmt::format("{}", fmt::join(keys.begin(), keys.begin() +
                                                 static_cast<std::ptrdiff_t>(std::min(keys.size(), kShown)), ", "));
  if (keys.size() > kShown) list += fmt::format(", and {} more", keys.size() - kShown);
  return fmt::format("base config ({})", list);
}

// The data fingerprint a finished run of an older sweep (whose sweep.json has no "data") was
// trained on: any trial's run.json, or a seed run's; "" when none finished.
std::string trained_fingerprint(const std::string& out) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("trial-", 0) != 0) continue;
    std::vector<fs::path> runs = {e.path()};
    for (const auto& s : fs::directory_iterator(e.path(), ec))
      if (s.is_directory() && s.path().filename().string().rfind("seed-", 0) == 0)
        runs.push_back(s.path());
    for (const fs::path& r : runs) {
      const fs::path file = r / "run.json";
      if (!fs::exists(file, ec)) continue;
      const nlohmann::json run = pipeline::read_json(file.string());
      if (run.value("data_fingerprint", nlohmann::json()).is_string())
        return run["data_fingerprint"].get<std::string>();
    }
  }
  return "";
}

void Runner::check_same_data(const nlohmann::json& old, const nlohmann::json& now) const {
  if (old.is_null()) return;
  std::string what;
  if (old.contains("data") && old["data"].is_object()) {
    if (old["data"].value("fingerprint", "") != now["fingerprint"])
      what = "its users, items or split";
    else if (old["data"].value("values", "") != now["values"])
      what = "its weights or timestamps";
  } else if (const std::string fp = trained_fingerprint(spec_.out);
             !fp.empty() && fp != now["fingerprint"].get<std::string>()) {
    what = "its users, items or split";
  }
  if (!what.empty())
    fail("{}: the data of the sweep in {} changed since it began ({} differ from what its "
         "trials were trained on), so new trials would be scored on another validation set; "
         "restore the data files, or choose another out: to start a new sweep",
         spec_.file, spec_.out, what);
}

void Runner::prepare_state() {
  nlohmann::json old;
  if (fs::exists(state_path_)) old = pipeline::read_json(state_path_);
  trials_.clear();
  for (size_t i = 0; i < points_.size(); ++i) {
    TrialRecord t;
    t.id = static_cast<int>(i) + 1;
    t.name = trial_name(t.id, points_.size());
    t.values = points_[i];
    trials_.push_back(std::move(t));
  }
  if (old.is_object() && old.contains("trials")) {
    for (const nlohmann::json& j : old["trials"]) {
      TrialRecord t;
      try {  // recforge writes it whole (atomically); a field of another type is damage
        t = TrialRecord::from_json(j);
      } catch (const nlohmann::json::exception& e) {
        fail("{}: a trial's record is damaged ({}); restore the file, or choose another out: to "
             "start a new sweep",
             state_path_, e.what());
      }
      if (t.id < 1 || t.id > static_cast<int>(trials_.size())) continue;
      TrialRecord& now = trials_[t.id - 1];
      if (nlohmann::json(t.values).dump() != nlohmann::json(now.values).dump())
        fail(
            "{}: {} was run with {}, but the sweep file now gives {}; choose another out: to "
            "start a new sweep",
            state_path_, now.name, point_text(spec_, t.values), point_text(spec_, now.values));
      const bool done = t.status == "finished" || t.status == "stopped_early";
      bool missing = false;
      if (spec_.seeds.empty()) {
        missing = !fs::exists(spec_.out + "/" + t.name + "/run.json");
      } else {
        missing = t.seed_runs.empty();
        for (const SeedRun& r : t.seed_runs)
          missing = missing ||
                    !fs::exists(spec_.out + "/" + t.name + "/" + seed_name(r.seed) + "/run.json");
      }
      if (done && missing) {
        slog().warn("{}: the run directory of {} is missing; running it again", spec_.out, t.name);
        continue;
      }
      if (done) now = std::move(t);  // running (killed) and failed trials run again
    }
    if (old.contains("best") && old["best"].is_object()) best_test_ = old["best"];
  }
}

void Runner::save_locked() {
  nlohmann::json trials = nlohmann::json::array();
  for (const TrialRecord& t : trials_) trials.push_back(t.to_json());
  const nlohmann::json def = spec_.definition();
  Sha256 h;
  h.update(def.dump());
  const nlohmann::json state = {{"recforge_version", RECFORGE_VERSION},
                                {"sweep_file", spec_.file},
                                {"updated", utc_now()},
                                {"definition", def},
                                {"hash", h.hex()},
                                {"data", data_},
                                {"trials", trials},
                                {"best", best_test_}};
  write_file_atomic(state_path_, state.dump(2) + "\n");
  write_file_atomic(spec_.out + "/results.csv", results_csv(spec_, trials_));
  write_file_atomic(spec_.out + "/results.md", results_md(spec_, trials_, best_test_));
}

// ---- Trials -----------------------------------------------------------------------------------

void Runner::record_run(TrialRecord& t, const std::string& dir) const {
  RunReadout r = read_run(dir, spec_.metric);
  t.validation = r.validation;
  t.score = metric_of(t.validation, spec_.metric);
  t.iterations = r.iterations;
  t.curve = std::move(r.curve);
  t.best_iteration = t.iterations;
  const auto best = best_point(t.curve, spec_.maximize);
  if (best) t.best_iteration = best->first;
  if (spec_.score == Score::kBestIteration && best) t.score = best->second;
  t.status = r.stopped ? "stopped_early" : "finished";
  t.error.clear();
}

// A seeded trial's record from its seed runs: the status of the last one (a stopped or failed
// seed ends the trial), the mean curve and its best iteration, each seed's score (its final
// metric, or its value at that best iteration), their mean and sample std, the mean metrics.
void Runner::summarize_seeds(TrialRecord& t) const {
  t.score.reset();
  t.score_std.reset();
  t.validation = nullptr;
  t.error.clear();
  if (t.seed_runs.empty()) return;
  const SeedRun& last = t.seed_runs.back();
  std::vector<const Curve*> curves;
  for (const SeedRun& r : t.seed_runs)
    if (r.status != "failed") curves.push_back(&r.curve);
  t.curve = curves.empty() ? Curve() : mean_curve(curves);
  if (last.status == "failed") {
    t.status = "failed";
    t.error = fmt::format("seed {}: {}", last.seed, last.error);
    t.curve.clear();
    return;
  }
  t.status = last.status;
  t.iterations = last.iterations;
  t.best_iteration = t.iterations;
  const auto best = best_point(t.curve, spec_.maximize);
  if (best) t.best_iteration = best->first;
  std::vector<double> scores;
  std::vector<nlohmann::json> validations;
  for (SeedRun& r : t.seed_runs) {
    r.score = metric_of(r.validation, spec_.metric);
    if (spec_.score == Score::kBestIteration && best) {
      r.score.reset();
      for (const auto& [it, v] : r.curve)
        if (it == best->first) r.score = v;
    }
    if (r.score) scores.push_back(*r.score);
    validations.push_back(r.validation);
  }
  t.validation = mean_metrics(validations);
  if (scores.size() == t.seed_runs.size()) {
    double sum = 0;
    for (double v : scores) sum += v;
    t.score = sum / static_cast<double>(scores.size());
    t.score_std = sample_std(scores);
  }
}

bool Runner::keep_going(size_t i, int iteration, const nlohmann::json& validation,
                        int64_t eval_every, Curve* seed_curve, const std::vector<Curve>* done) {
  if (!validation.contains(spec_.metric)) return true;
  const double v = validation[spec_.metric].get<double>();
  std::lock_guard<std::mutex> lock(mu_);
  TrialRecord& t = trials_[i];
  if (seed_curve) {
    // The trial's curve is the mean over its seeds so far: the finished seeds' values and the
    // running seed's, at each iteration the running seed reached.
    seed_curve->emplace_back(iteration, v);
    std::vector<const Curve*> curves;
    for (const Curve& c : *done) curves.push_back(&c);
    curves.push_back(seed_curve);
    t.curve = mean_curve(curves);
  } else {
    t.curve.emplace_back(iteration, v);
  }
  if (spec_.early_stop.rule == EarlyStop::Rule::kNone) return true;
  std::vector<Curve> others;
  for (const TrialRecord& o : trials_) {
    if (o.id == t.id || o.curve.empty()) continue;
    const bool use =
        spec_.early_stop.rule == EarlyStop::Rule::kMedian
            ? o.status == "finished"
            : o.status == "finished" || o.status == "stopped_early" || o.status == "running";
    if (use) others.push_back(o.curve);
  }
  const bool stop =
      spec_.early_stop.rule == EarlyStop::Rule::kMedian
          ? median_stop(t.curve, others, spec_.early_stop, spec_.maximize)
          : halving_stop(t.curve, others, spec_.early_stop, eval_every, spec_.maximize);
  if (stop && seed_curve)
    slog().info(
        "sweep: {} is stopped early at iteration {} of seed {} of {} (mean {} over its seeds "
        "{:.4f}; rule {})",
        t.name, iteration, done->size() + 1, spec_.seeds.size(), spec_.metric,
        t.curve.back().second, spec_.early_stop.name());
  else if (stop)
    slog().info("sweep: {} is stopped early at iteration {} ({} {:.4f}; rule {})", t.name,
                iteration, spec_.metric, v, spec_.early_stop.name());
  return !stop;
}

void Runner::run_trial(size_t i) {
  std::string name;
  bool kill = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TrialRecord& t = trials_[i];
    t.status = "running";
    t.curve.clear();
    name = t.name;
    kill = kill_after_ >= 0 && started_here_ >= kill_after_;
    ++started_here_;
    save_locked();
  }
  slog().info("sweep: {} of {} starts: {}", name, trials_.size(), point_text(spec_, points_[i]));
  const auto t0 = Clock::now();
  TrialRecord result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    result = trials_[i];
  }
  if (!spec_.seeds.empty()) {
    run_seeds(i, kill, result);
  } else {
    try {
      config::Config cfg = trial_config(spec_, points_[i], spec_.out, name, threads_);
      if (options_.parallel > 1) cfg.set("train.device=cpu");
      // The test hook simulates a kill in the middle of a trial (after its staging directory
      // exists), to test resuming.
      if (kill && cfg.settings().model.eval_every == 0) std::_Exit(137);
      pipeline::TrainOptions to;
      const int64_t every = cfg.settings().model.eval_every;
      to.on_validation = [&](int it, const nlohmann::json& v) {
        if (kill) std::_Exit(137);
        return keep_going(i, it, v, every);
      };
      // A trial killed mid-training continues from its checkpoint: its curve so far is that of
      // the iterations before it, which the early-stopping rules compare.
      to.on_resume = [&](int it, const nlohmann::json& history) {
        std::lock_guard<std::mutex> lock(mu_);
        TrialRecord& t = trials_[i];
        t.curve = curve_of(history, spec_.metric);
        slog().info("sweep: {} continues from its checkpoint at iteration {}", t.name, it);
      };
      const std::string dir = pipeline::train(cfg, to);
      log_to_file(sweep_log_);  // train closed this thread's log file (its run's)
      record_run(result, dir);
    } catch (const std::exception& e) {
      log_to_file(sweep_log_);
      result.status = "failed";
      result.error = e.what();
      result.validation = nullptr;
      result.score.reset();
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(mu_);
  trials_[i] = std::move(result);
  const TrialRecord& t = trials_[i];
  if (t.status == "failed")
    slog().warn("sweep: {} failed: {}", t.name, t.error);
  else if (!spec_.seeds.empty())
    slog().info(
        "sweep: {} {} after {} seed run{} in {:.1f} s: validation {} {} (mean over its seeds)",
        t.name, t.status == "finished" ? "finished" : "stopped early", t.seed_runs.size(),
        t.seed_runs.size() == 1 ? "" : "s", t.seconds, spec_.metric,
        t.score ? mean_std_text(*t.score, t.score_std) : "n/a");
  else
    slog().info("sweep: {} {} after {} iterations in {:.1f} s: validation {} {}", t.name,
                t.status == "finished" ? "finished" : "stopped early", t.iterations, t.seconds,
                spec_.metric, t.score ? fmt::format("{:.4f}", *t.score) : "n/a");
  save_locked();
}

// A trial of a sweep with seeds: one run per seed, one after the other, into
// OUT/trial-NNN/seed-S with model.seed S. The early-stopping rules see the trial's mean curve
// over its seeds so far; a stopped or failed seed ends the trial (later seeds do not run).
void Runner::run_seeds(size_t i, bool kill, TrialRecord& result) {
  const std::string trial_dir = spec_.out + "/" + result.name;
  result.seed_runs.clear();
  std::vector<Curve> done;  // the finished seeds' curves
  for (size_t s = 0; s < spec_.seeds.size(); ++s) {
    const int64_t seed = spec_.seeds[s];
    SeedRun run;
    run.seed = seed;
    Curve current;
    const auto s0 = Clock::now();
    slog().info("sweep: {} seed {} ({} of {})", result.name, seed, s + 1, spec_.seeds.size());
    try {
      config::Config cfg = trial_config(spec_, points_[i], trial_dir, seed_name(seed), threads_);
      cfg.set("model.seed=" + std::to_string(seed));
      if (options_.parallel > 1) cfg.set("train.device=cpu");
      // The test hook kills the process in the middle of the trial's last seed, so that the
      // finished seed runs of an unfinished trial exist when the sweep resumes.
      const bool kill_here = kill && s + 1 == spec_.seeds.size();
      if (kill_here && cfg.settings().model.eval_every == 0) std::_Exit(137);
      pipeline::TrainOptions to;
      const int64_t every = cfg.settings().model.eval_every;
      to.on_validation = [&](int it, const nlohmann::json& v) {
        if (kill_here) std::_Exit(137);
        return keep_going(i, it, v, every, &current, &done);
      };
      to.on_resume = [&](int it, const nlohmann::json& history) {
        std::lock_guard<std::mutex> lock(mu_);
        current = curve_of(history, spec_.metric);
        std::vector<const Curve*> curves;
        for (const Curve& c : done) curves.push_back(&c);
        curves.push_back(&current);
        trials_[i].curve = mean_curve(curves);
        slog().info("sweep: {} seed {} continues from its checkpoint at iteration {}", result.name,
                    seed, it);
      };
      const std::string dir = pipeline::train(cfg, to);
      log_to_file(sweep_log_);  // train closed this thread's log file (its run's)
      RunReadout r = read_run(dir, spec_.metric);
      run.validation = std::move(r.validation);
      run.curve = std::move(r.curve);
      run.iterations = r.iterations;
      run.status = r.stopped ? "stopped_early" : "finished";
    } catch (const std::exception& e) {
      log_to_file(sweep_log_);
      run.status = "failed";
      run.error = e.what();
    }
    run.seconds = std::chrono::duration<double>(Clock::now() - s0).count();
    result.seed_runs.push_back(std::move(run));
    const SeedRun& last = result.seed_runs.back();
    if (last.status != "finished") break;
    done.push_back(last.curve);
    std::lock_guard<std::mutex> lock(mu_);  // between seeds, others see the finished seeds' mean
    std::vector<const Curve*> curves;
    for (const Curve& c : done) curves.push_back(&c);
    trials_[i].curve = mean_curve(curves);
  }
  summarize_seeds(result);
}

void Runner::worker() {
  for (;;) {
    size_t i;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (next_ < trials_.size() &&
             (trials_[next_].status == "finished" || trials_[next_].status == "stopped_early"))
        ++next_;
      if (next_ >= trials_.size()) return;
      i = next_++;
    }
    run_trial(i);
  }
}

int Runner::choose_best() const {
  int best = 0;
  double value = 0;
  for (const TrialRecord& t : trials_) {
    if (t.status != "finished" || !t.score) continue;
    if (best == 0 || (spec_.maximize ? *t.score > value : *t.score < value)) {
      best = t.id;
      value = *t.score;
    }
  }
  return best;
}

// The best config, written to best.yaml, trained once with test evaluation into <out>/best.
void Runner::evaluate_best(int best) {
  const TrialRecord& t = trials_[best - 1];
  const std::string best_yaml = spec_.out + "/best.yaml";
  const int64_t iterations = spec_.score == Score::kBestIteration ? t.best_iteration : 0;
  const config::Config cfg = best_config(spec_, t.values, iterations);
  write_file_atomic(
      best_yaml,
      fmt::format(
          "# Best trial of the sweep {} ({}: validation {} {}{}), written by recforge "
          "sweep.\n"
          "# The trial's own config with eval.test: true{}: `recforge train` of this "
          "file trains the same\n"
          "# model on the same split (validation carved from train as in the base) and "
          "reproduces\n"
          "# {}.\n{}",
          spec_.file, t.name, spec_.metric, t.score ? fmt::format("{}", *t.score) : "n/a",
          iterations > 0 ? fmt::format(" at iteration {}", iterations) : "",
          iterations > 0 ? fmt::format(" and model.iterations: {}, its best iteration", iterations)
                         : "",
          spec_.seeds.empty() ? "best_test_metrics.json"
                              : "best/" + seed_name(spec_.seeds.front()) +
                                    " (--set model.seed=S: "
                                    "best/seed-S)",
          spec_.seeds.empty()
              ? std::string()
              : fmt::format("# The trial's score is its mean over the sweep's seeds {}; "
                            "model.seed here is the first\n"
                            "# of them. The sweep trained this file once per seed (best/seed-S, "
                            "model.seed S) and\n"
                            "# best_test_metrics.json holds each seed's metrics and their mean "
                            "and std.\n",
                            nlohmann::json(spec_.seeds).dump())) +
          cfg.to_yaml());
  if (!spec_.seeds.empty()) {
    evaluate_best_seeds(t, best_yaml, iterations);
    return;
  }
  const std::string run_dir = spec_.out + "/best";
  if (best_test_.is_object() && best_test_.value("trial", "") == t.name &&
      fs::exists(run_dir + "/metrics.json")) {
    slog().info("sweep: the best config ({}) was already evaluated on test", t.name);
    return;
  }
  slog().info("sweep: training the best config ({}) once with test evaluation into {}", t.name,
              run_dir);
  on_thread(sweep_log_, [&] {
    const config::Config final_cfg =
        config::Config::load(best_yaml, {"run.dir=" + value_text(spec_.out), "run.name=best",
                                         "run.exists=overwrite", "export.enabled=false"});
    pipeline::train(final_cfg);
  });
  const nlohmann::json metrics = pipeline::read_json(run_dir + "/metrics.json");
  const nlohmann::json validation = metrics.value("validation", nlohmann::json());
  const double v = validation.value(spec_.metric, std::nan(""));
  const bool same = t.score && std::fabs(v - *t.score) <= 1e-9 * std::max(1.0, std::fabs(v));
  if (!same)
    slog().warn(
        "sweep: the best config's validation {} is {} now and was {} in {} (a different "
        "thread count can change the last digits)",
        spec_.metric, v, t.score ? *t.score : std::nan(""), t.name);
  best_test_ = {{"trial", t.name},
                {"parameters", nullptr},
                {"config", best_yaml},
                {"run_dir", run_dir},
                {"metric", spec_.metric},
                {"trial_validation", t.score ? nlohmann::json(*t.score) : nlohmann::json()},
                {"validation", validation},
                {"validation_matches_trial", same},
                {"test", metrics.value("test", nlohmann::json())},
                {"how", "best.yaml trained once into best/ with eval.test: true"}};
  nlohmann::json params = nlohmann::json::object();
  for (size_t i = 0; i < spec_.space.size(); ++i) params[spec_.space[i].path] = t.values[i];
  best_test_["parameters"] = params;
  if (iterations > 0) best_test_["iterations"] = iterations;
}

// With seeds: best.yaml trained once per seed into OUT/best/seed-S (model.seed S); the report
// holds each seed's validation and test metrics and their means and sample stds.
void Runner::evaluate_best_seeds(const TrialRecord& t, const std::string& best_yaml,
                                 int64_t iterations) {
  const std::string run_dir = spec_.out + "/best";
  bool evaluated = best_test_.is_object() && best_test_.value("trial", "") == t.name;
  for (int64_t seed : spec_.seeds)
    evaluated = evaluated && fs::exists(run_dir + "/" + seed_name(seed) + "/metrics.json");
  if (evaluated) {
    slog().info("sweep: the best config ({}) was already evaluated on test", t.name);
    return;
  }
  slog().info(
      "sweep: training the best config ({}) once per seed ({} seeds) with test evaluation into "
      "{}/seed-S",
      t.name, spec_.seeds.size(), run_dir);
  std::vector<nlohmann::json> validations, tests;
  nlohmann::json per_seed = nlohmann::json::array();
  for (int64_t seed : spec_.seeds) {
    on_thread(sweep_log_, [&] {
      const config::Config final_cfg = config::Config::load(
          best_yaml,
          {"run.dir=" + value_text(run_dir), "run.name=" + seed_name(seed), "run.exists=overwrite",
           "export.enabled=false", "model.seed=" + std::to_string(seed)});
      pipeline::train(final_cfg);
    });
    const std::string dir = run_dir + "/" + seed_name(seed);
    const nlohmann::json metrics = pipeline::read_json(dir + "/metrics.json");
    validations.push_back(metrics.value("validation", nlohmann::json()));
    tests.push_back(metrics.value("test", nlohmann::json()));
    per_seed.push_back({{"seed", seed},
                        {"run_dir", dir},
                        {"validation", validations.back()},
                        {"test", tests.back()}});
  }
  const nlohmann::json validation = mean_metrics(validations);
  const double v = validation.value(spec_.metric, std::nan(""));
  const bool same = t.score && std::fabs(v - *t.score) <= 1e-9 * std::max(1.0, std::fabs(v));
  if (!same)
    slog().warn(
        "sweep: the best config's mean validation {} over its seeds is {} now and was {} in {} "
        "(a different thread count, or Hogwild training, can change the last digits)",
        spec_.metric, v, t.score ? *t.score : std::nan(""), t.name);
  nlohmann::json params = nlohmann::json::object();
  for (size_t i = 0; i < spec_.space.size(); ++i) params[spec_.space[i].path] = t.values[i];
  best_test_ = {
      {"trial", t.name},
      {"parameters", params},
      {"config", best_yaml},
      {"run_dir", run_dir},
      {"metric", spec_.metric},
      {"seeds", spec_.seeds},
      {"trial_validation", t.score ? nlohmann::json(*t.score) : nlohmann::json()},
      {"trial_validation_std", t.score_std ? nlohmann::json(*t.score_std) : nlohmann::json()},
      {"validation", validation},
      {"validation_std", mean_metrics(validations, true)},
      {"validation_matches_trial", same},
      {"test", mean_metrics(tests)},
      {"test_std", mean_metrics(tests, true)},
      {"per_seed", per_seed},
      {"how",
       "best.yaml trained once per seed into best/seed-S (model.seed S) with "
       "eval.test: true; validation and test are the means over the seeds, *_std the "
       "sample standard deviations (n - 1)"}};
  if (iterations > 0) best_test_["iterations"] = iterations;
}

SweepResult Runner::run() {
  if (options_.parallel < 1)
    fail("--parallel {}: expected a number of trials >= 1", options_.parallel);
  const std::string& device = spec_.base.settings().train.device;
  if (options_.parallel > 1 && device != "auto" && device != "cpu")
    fail(
        "--parallel {}: trials run side by side on the CPU, but the base config asks for "
        "train.device {}; use --parallel 1, or train.device: cpu",
        options_.parallel, device);
  if (options_.parallel > 1)
    for (const Dimension& d : spec_.space)
      if (d.path == "train.threads" || d.path == "train.device")
        fail("{}: {}: --parallel {} sets the trials' {} itself; search it without --parallel",
             d.where, d.path, options_.parallel, d.path);
  points_ = expand(spec_);
  if (points_.empty()) fail("{}: the sweep has no trials", spec_.file);
  // Each trial's combination of values, checked as `recforge train` would check it, before any
  // trial runs (a list search's point that broke a check failed when its turn came).
  for (size_t i = 0; i < points_.size(); ++i) {
    const config::Config c =
        trial_config(spec_, points_[i], spec_.out, trial_name(static_cast<int>(i + 1), points_.size()),
                     0);
    try {
      config::check(c);
    } catch (const Error& e) {
      fail("{}: {} ({}) cannot run: {}", spec_.file,
           trial_name(static_cast<int>(i + 1), points_.size()), point_text(spec_, points_[i]),
           e.what());
    }
  }
  state_path_ = spec_.out + "/sweep.json";
  sweep_log_ = spec_.out + "/sweep.log";

  // Refuse a directory that is not this sweep's before anything runs.
  nlohmann::json old;
  if (fs::exists(state_path_)) {
    old = pipeline::read_json(state_path_);
    const nlohmann::json def = spec_.definition();
    std::vector<std::string> changed;
    for (const auto& [key, value] : def.items())
      if (!old.contains("definition") || !old["definition"].contains(key) ||
          old["definition"][key].dump() != value.dump())
        changed.push_back(key == "base" ? base_change(old["definition"], value) : key);
    if (!changed.empty())
      fail(
          "{}: the sweep in {} was started with a different {} (sweep.json keeps the definition "
          "it was made with); restore the sweep file, or choose another out: to start a new "
          "sweep",
          spec_.file, spec_.out, fmt::format("{}", fmt::join(changed, ", ")));
  } else if (fs::exists(spec_.out) && !fs::is_empty(spec_.out)) {
    fail(
        "{}: out: {} exists and is not a sweep directory (it has no sweep.json); choose another "
        "out:",
        spec_.file, spec_.out);
  }
  const int total = spec_.base.settings().train.threads > 0
                        ? static_cast<int>(spec_.base.settings().train.threads)
                        : omp_get_num_procs();
  threads_ = options_.parallel > 1 ? std::max(1, total / options_.parallel) : 0;
  if (const char* k = std::getenv("RECFORGE_TEST_SWEEP_KILL_AFTER")) kill_after_ = std::atoll(k);

  // The data must give a validation set; checked once, before any trial.
  {
    const config::Config probe = trial_config(spec_, points_[0], spec_.out, "probe", threads_);
    const pipeline::Dataset data = pipeline::prepare_dataset(probe);
    if (data.split.validation.size() == 0)
      fail(
          "{}: the base config's split (split.method {}, split.validation_fraction {}) gives no "
          "validation interactions, so trials could not be scored",
          spec_.base_where, spec_.base.settings().split.method,
          spec_.base.settings().split.validation_fraction);
    if (probe.settings().eval.validation_sample < 1) {
      const auto [users, sampled] = pipeline::validation_sample_size(data, probe);
      pipeline::check_validation_sample(probe, users, sampled);
    }
    // Every trial trains on this data (data.*, split.* and run.seed are not searched): a sweep
    // resumed on other data would rank trials scored on different validation sets.
    data_ = {{"fingerprint", data.fingerprint()}, {"values", data.values_digest()}};
    check_same_data(old, data_);
  }

  // The sweep directory, its lock and its reports take the base's privacy.file_mode, as the
  // trials do (the directory took the umask).
  set_file_mode(file_mode_from(spec_.base.settings().privacy.file_mode));
  std::error_code ec;
  recforge::create_directories(spec_.out, ec);
  if (ec) fail("{}: cannot create the sweep directory: {}", spec_.out, ec.message());
  DirLock lock(spec_.out);
  // Runs killed while staged, or between the two renames of an overwrite (the old run is moved
  // back when it is all there is). Under the lock nothing else writes here, whatever the pids.
  remove_stale_run_debris(spec_.out, true);
  if (!spec_.seeds.empty())  // seed runs are staged inside their trial's directory (and best/)
    for (const auto& e : fs::directory_iterator(spec_.out)) {
      const std::string f = e.path().filename().string();
      if (e.is_directory() && (f.rfind("trial-", 0) == 0 || f == "best"))
        remove_stale_run_debris(e.path().string(), true);
    }
  log_to_file(sweep_log_);
  struct CloseLog {
    ~CloseLog() { close_log_file(); }
  } close_log;
  prepare_state();
  const size_t done = std::count_if(trials_.begin(), trials_.end(), [](const TrialRecord& t) {
    return t.status == "finished" || t.status == "stopped_early";
  });
  slog().info(
      "sweep {}: {} trials ({} search), {} already done; metric {} ({}) on validation, "
      "early stop {}, {} at a time; directory {}",
      spec_.file, trials_.size(), search_name(spec_.search), done, spec_.metric,
      spec_.maximize ? "max" : "min", spec_.early_stop.name(), options_.parallel, spec_.out);
  {
    std::lock_guard<std::mutex> guard(mu_);
    save_locked();
  }

  const int blas_threads = openblas_get_num_threads();
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(options_.parallel));
  for (int w = 0; w < options_.parallel; ++w)
    workers.emplace_back([this, w, &errors] {
      try {
        log_to_file(sweep_log_);
        worker();
      } catch (...) {
        errors[static_cast<size_t>(w)] = std::current_exception();
      }
      close_log_file();
    });
  for (std::thread& t : workers) t.join();
  openblas_set_num_threads(blas_threads);
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);

  const int best = choose_best();
  if (best == 0) {
    std::lock_guard<std::mutex> guard(mu_);
    save_locked();
    fail("{}: no trial finished (see {}/results.md), so there is no best config", spec_.file,
         spec_.out);
  }
  evaluate_best(best);
  {
    std::lock_guard<std::mutex> guard(mu_);
    save_locked();
  }
  write_file_atomic(spec_.out + "/best_test_metrics.json", best_test_.dump(2) + "\n");
  const nlohmann::json& test = best_test_["test"];
  if (!spec_.seeds.empty()) {
    const TrialRecord& b = trials_[best - 1];
    const nlohmann::json& test_std = best_test_["test_std"];
    const std::optional<double> tm = metric_of(test, spec_.metric);
    const std::optional<double> ts = metric_of(test_std, spec_.metric);
    slog().info(
        "sweep: best {} (validation {} {} over {} seeds); test {} {} over {} seeds; results in "
        "{}/results.md",
        b.name, spec_.metric, mean_std_text(*b.score, b.score_std), b.seed_runs.size(),
        spec_.metric, tm ? mean_std_text(*tm, ts) : "n/a", spec_.seeds.size(), spec_.out);
    return SweepResult{spec_.out, trials_, best, best_test_};
  }
  slog().info("sweep: best {} (validation {} {:.4f}); test {} {}; results in {}/results.md",
              trials_[best - 1].name, spec_.metric, *trials_[best - 1].score, spec_.metric,
              test.is_object() && test.contains(spec_.metric)
                  ? fmt::format("{:.4f}", test[spec_.metric].get<double>())
                  : "n/a",
              spec_.out);
  return SweepResult{spec_.out, trials_, best, best_test_};
}

}  // namespace

// ---- TrialRecord ------------------------------------------------------------------------------

namespace {
nlohmann::json curve_to_json(const Curve& c) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [it, v] : c) out.push_back({it, v});
  return out;
}
Curve curve_from_json(const nlohmann::json& j) {
  Curve c;
  for (const nlohmann::json& p : j) c.emplace_back(p[0].get<int>(), p[1].get<double>());
  return c;
}
nlohmann::json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}
}  // namespace

nlohmann::json SeedRun::to_json() const {
  return {{"seed", seed},
          {"status", status},
          {"score", optional_json(score)},
          {"validation", validation},
          {"iterations", iterations},
          {"seconds", seconds},
          {"error", error},
          {"curve", curve_to_json(curve)}};
}

SeedRun SeedRun::from_json(const nlohmann::json& j) {
  SeedRun r;
  r.seed = j.value("seed", int64_t{0});
  r.status = j.value("status", "");
  if (j.contains("score") && j["score"].is_number()) r.score = j["score"].get<double>();
  r.validation = j.value("validation", nlohmann::json());
  r.iterations = j.value("iterations", 0);
  r.seconds = j.value("seconds", 0.0);
  r.error = j.value("error", "");
  r.curve = curve_from_json(j.value("curve", nlohmann::json::array()));
  return r;
}

Curve mean_curve(const std::vector<const Curve*>& curves) {
  Curve out;
  if (curves.empty()) return out;
  for (const auto& [it, last_value] : *curves.back()) {
    double sum = 0;
    int n = 0;
    for (const Curve* c : curves) {
      const auto p =
          std::find_if(c->begin(), c->end(), [it = it](const auto& q) { return q.first == it; });
      if (p == c->end()) continue;
      sum += p->second;
      ++n;
    }
    out.emplace_back(it, sum / n);
  }
  return out;
}

std::string mean_std_text(double mean, const std::optional<double>& std, int decimals) {
  return std ? fmt::format("{:.{}f} ± {:.{}f}", mean, decimals, *std, decimals)
             : fmt::format("{:.{}f}", mean, decimals);
}

std::optional<double> sample_std(const std::vector<double>& values) {
  if (values.size() < 2) return std::nullopt;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double ss = 0;
  for (double v : values) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / static_cast<double>(values.size() - 1));
}

nlohmann::json mean_metrics(const std::vector<nlohmann::json>& metrics, bool std) {
  if (metrics.empty() || !metrics.front().is_object()) return nullptr;
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, first] : metrics.front().items()) {
    if (!first.is_number()) {
      if (!std) out[name] = first;
      continue;
    }
    std::vector<double> values;
    for (const nlohmann::json& m : metrics)
      if (m.is_object() && m.contains(name) && m[name].is_number())
        values.push_back(m[name].get<double>());
    if (std) {
      out[name] = optional_json(sample_std(values));
    } else {
      double sum = 0;
      for (double v : values) sum += v;
      out[name] = sum / static_cast<double>(values.size());
    }
  }
  return out;
}

nlohmann::json TrialRecord::to_json() const {
  nlohmann::json curve_json = curve_to_json(curve);
  nlohmann::json j = {{"id", id},
                      {"name", name},
                      {"values", values},
                      {"status", status},
                      {"validation", validation},
                      {"score", score ? nlohmann::json(*score) : nlohmann::json()},
                      {"best_iteration", best_iteration},
                      {"iterations", iterations},
                      {"seconds", seconds},
                      {"error", error},
                      {"curve", curve_json}};
  if (!seed_runs.empty()) {
    nlohmann::json runs = nlohmann::json::array(), scores = nlohmann::json::array();
    for (const SeedRun& r : seed_runs) {
      runs.push_back(r.to_json());
      scores.push_back(optional_json(r.score));
    }
    j["seeds"] = runs;
    j["seed_scores"] = scores;
    j["score_std"] = optional_json(score_std);
  }
  return j;
}

TrialRecord TrialRecord::from_json(const nlohmann::json& j) {
  TrialRecord t;
  t.id = j.value("id", 0);
  t.name = j.value("name", "");
  for (const nlohmann::json& v : j.value("values", nlohmann::json::array())) t.values.push_back(v);
  t.status = j.value("status", "pending");
  t.validation = j.value("validation", nlohmann::json());
  if (j.contains("score") && j["score"].is_number()) t.score = j["score"].get<double>();
  t.best_iteration = j.value("best_iteration", 0);
  t.iterations = j.value("iterations", 0);
  t.seconds = j.value("seconds", 0.0);
  t.error = j.value("error", "");
  t.curve = curve_from_json(j.value("curve", nlohmann::json::array()));
  for (const nlohmann::json& r : j.value("seeds", nlohmann::json::array()))
    t.seed_runs.push_back(SeedRun::from_json(r));
  if (j.contains("score_std") && j["score_std"].is_number())
    t.score_std = j["score_std"].get<double>();
  return t;
}

SweepResult run_sweep(const SweepSpec& spec, const SweepOptions& options) {
  return Runner(spec, options).run();
}

}  // namespace recforge::sweep
