/// @file report.cpp
/// results.csv and results.md of a sweep.

#include <fmt/format.h>

#include <algorithm>

#include "eval/metrics.h"
#include "sweep/sweep.h"

namespace recforge::sweep {
namespace {

/// Every validation metric name of the trials (NAME@K for each K of the base's eval.ks), in the
/// order of metrics.json.
std::vector<std::string> metric_names(const SweepSpec& spec) {
  eval::Metrics m;
  for (int64_t k : spec.base.settings().eval.ks) m.ks.push_back(static_cast<int>(k));
  return m.names();
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

std::string metric_value(const nlohmann::json& metrics, const std::string& name, bool exact) {
  if (!metrics.is_object() || !metrics.contains(name) || !metrics[name].is_number()) return "";
  const double v = metrics[name].get<double>();
  return exact ? fmt::format("{}", v) : fmt::format("{:.4f}", v);
}

/// Whether a trial can be the best (Runner::choose_best): finished, with a score.
bool eligible(const TrialRecord& t) { return t.status == "finished" && t.score.has_value(); }

/// The finished trials with a score first (best first, then by id), then the stopped ones with
/// a score (never the best, however good their score so far), then the others by id.
std::vector<const TrialRecord*> ranked(const SweepSpec& spec,
                                       const std::vector<TrialRecord>& trials) {
  std::vector<const TrialRecord*> out;
  for (const TrialRecord& t : trials) out.push_back(&t);
  const auto group = [](const TrialRecord* t) { return eligible(*t) ? 0 : t->score ? 1 : 2; };
  std::stable_sort(out.begin(), out.end(), [&](const TrialRecord* a, const TrialRecord* b) {
    if (group(a) != group(b)) return group(a) < group(b);
    if (!a->score) return false;
    return spec.maximize ? *a->score > *b->score : *a->score < *b->score;
  });
  return out;
}

std::string status_text(const std::string& s) { return s == "stopped_early" ? "stopped early" : s; }

// The iterations a trial trained: for seeds, the range over its seed runs when they differ (a
// seed stopped early trains fewer than the seeds before it, and the metrics average them all),
// "A-B" (`dash` between).
std::string iterations_text(const TrialRecord& t, const char* dash) {
  int lo = t.iterations, hi = t.iterations;
  for (const SeedRun& r : t.seed_runs) {
    if (r.status == "failed") continue;
    lo = std::min(lo, r.iterations);
    hi = std::max(hi, r.iterations);
  }
  return lo == hi ? std::to_string(hi) : fmt::format("{}{}{}", lo, dash, hi);
}

}  // namespace

std::string results_csv(const SweepSpec& spec, const std::vector<TrialRecord>& trials) {
  const std::vector<std::string> names = metric_names(spec);
  std::string out = "trial,status";
  for (const Dimension& d : spec.space) out += "," + csv_cell(d.path);
  for (const std::string& n : names) out += "," + n;
  const bool seeded = !spec.seeds.empty();
  const bool peak = spec.score == Score::kBestIteration || seeded;
  if (peak) out += ",score";
  if (seeded) out += ",score_std,seeds";
  out += ",best_iteration,iterations,seconds,error\n";
  for (const TrialRecord& t : trials) {
    out += t.name + "," + t.status;
    for (size_t i = 0; i < spec.space.size(); ++i)
      out += "," + csv_cell(i < t.values.size() ? value_label(t.values[i]) : "");
    for (const std::string& n : names) out += "," + metric_value(t.validation, n, true);
    if (peak) out += "," + (t.score ? fmt::format("{}", *t.score) : std::string());
    const bool done = t.status == "finished" || t.status == "stopped_early";
    if (seeded) {
      out += "," + (t.score_std ? fmt::format("{}", *t.score_std) : std::string());
      out += "," + (done || t.status == "failed" ? std::to_string(t.seed_runs.size()) : "");
    }
    out += "," + (done ? std::to_string(t.best_iteration) : std::string());
    out += "," + (done ? iterations_text(t, "-") : std::string());
    out +=
        "," + (t.status == "pending" || t.status == "running" ? std::string()
                                                              : fmt::format("{:.2f}", t.seconds));
    out += "," + csv_cell(t.error) + "\n";
  }
  return out;
}

std::string results_md(const SweepSpec& spec, const std::vector<TrialRecord>& trials,
                       const nlohmann::json& best_test) {
  int finished = 0, stopped = 0, failed = 0, waiting = 0;
  for (const TrialRecord& t : trials) {
    if (t.status == "finished")
      ++finished;
    else if (t.status == "stopped_early")
      ++stopped;
    else if (t.status == "failed")
      ++failed;
    else
      ++waiting;
  }
  const std::string k = spec.metric.substr(spec.metric.find('@') + 1);
  std::vector<std::string> shown = {spec.metric};
  for (const std::string& m : {"recall@" + k, "ndcg@" + k})
    if (std::find(shown.begin(), shown.end(), m) == shown.end()) shown.push_back(m);

  std::string out = fmt::format("# Sweep {}\n\n", spec.file);
  out += fmt::format("- search: {}, {} trials: {} finished, {} stopped early, {} failed{}\n",
                     spec.search == Search::kRandom ? fmt::format("random (seed {})", spec.seed)
                                                    : std::string(search_name(spec.search)),
                     trials.size(), finished, stopped, failed,
                     waiting ? fmt::format(", {} not run yet", waiting) : "");
  out += fmt::format(
      "- metric: {} on the validation split ({} is better); the test split is "
      "evaluated once, for the best config only\n",
      spec.metric, spec.maximize ? "higher" : "lower");
  if (spec.score == Score::kBestIteration)
    out +=
        "- score: a trial's best per-iteration value of the metric (the `score` column; the "
        "metric columns are its final model's); the best config trains its best iteration "
        "count\n";
  if (!spec.seeds.empty()) {
    std::string list;
    for (int64_t x : spec.seeds) list += (list.empty() ? "" : ", ") + std::to_string(x);
    out += fmt::format(
        "- seeds: [{}]: each trial trains once per model.seed; its score, metrics and curve are "
        "the means over its seeds (score ± sample std, n - 1)\n",
        list);
  }
  const EarlyStop& es = spec.early_stop;
  out += "- early stop: " + es.name();
  if (es.rule == EarlyStop::Rule::kMedian)
    out += fmt::format(" (min_trials {}, grace {})", es.min_trials, es.grace);
  if (es.rule == EarlyStop::Rule::kHalving)
    out += fmt::format(" (eta {}, min_trials {}, grace {})", es.eta, es.min_trials, es.grace);
  out += "\n";
  out += "- base: " + (spec.base.source().empty() ? spec.base_where : spec.base.source()) + "\n";

  out += "\n## Trials, best first\n\n| rank | trial | status |";
  std::string rule = "|---:|---|---|";
  for (const Dimension& d : spec.space) {
    out += " " + md_cell(d.path) + " |";
    rule += "---:|";
  }
  const bool seeded = !spec.seeds.empty();
  const bool peak = spec.score == Score::kBestIteration || seeded;
  if (peak) {
    out += seeded ? " score (mean ± std) | seeds |" : " score |";
    rule += seeded ? "---:|---:|" : "---:|";
  }
  for (const std::string& m : shown) {
    out += " " + m + " |";
    rule += "---:|";
  }
  out += " best iteration | iterations | seconds |\n" + rule + "---:|---:|---:|\n";
  int rank = 0;
  for (const TrialRecord* t : ranked(spec, trials)) {
    out += fmt::format("| {} | {} | {} |", eligible(*t) ? std::to_string(++rank) : "", t->name,
                       status_text(t->status));
    for (size_t i = 0; i < spec.space.size(); ++i)
      out += " " + md_cell(i < t->values.size() ? value_label(t->values[i]) : "") + " |";
    if (peak && seeded) {
      std::string score;
      if (t->score) score = mean_std_text(*t->score, t->score_std);
      out += fmt::format(" {} | {} |", score, t->seed_runs.size());
    } else if (peak) {
      out += " " + (t->score ? fmt::format("{:.4f}", *t->score) : std::string()) + " |";
    }
    for (const std::string& m : shown) out += " " + metric_value(t->validation, m, false) + " |";
    const bool done = t->status == "finished" || t->status == "stopped_early";
    out += fmt::format(" {} | {} | {} |\n", done ? std::to_string(t->best_iteration) : "",
                       done ? iterations_text(*t, "–") : "",
                       done || t->status == "failed" ? fmt::format("{:.1f}", t->seconds) : "");
  }
  for (const TrialRecord& t : trials)
    if (t.status == "failed") out += fmt::format("\n- {} failed: {}", t.name, md_cell(t.error));
  if (failed) out += "\n";

  out += "\n## Best config\n\n";
  if (!best_test.is_object()) {
    out +=
        "Not chosen yet: the best finished trial is chosen, and its config evaluated on test "
        "once, when every trial has run.\n";
    return out;
  }
  const std::string trial = best_test.value("trial", "");
  std::string params;
  const nlohmann::json parameters = best_test.value("parameters", nlohmann::json::object());
  for (const auto& [path, v] : parameters.items())
    params += (params.empty() ? "" : ", ") + path + " " + value_label(v);
  if (best_test.contains("iterations") && best_test["iterations"].is_number())
    params += fmt::format(", model.iterations {} (its best iteration)",
                          best_test["iterations"].get<int64_t>());
  if (seeded)
    out += fmt::format(
        "{} ({}), written to `best.yaml` (model.seed: the first seed). Its test metrics were "
        "measured by training `best.yaml` (the trial's config with `eval.test: true`, the same "
        "split) once per seed into `best/seed-S`; `recforge train best.yaml --set model.seed=S` "
        "reproduces seed S's run.\n\n",
        trial, params);
  else
    out += fmt::format(
        "{} ({}), written to `best.yaml`. Its test metrics were measured once, by training "
        "`best.yaml` (the trial's config with `eval.test: true`, the same split) into `best/`; "
        "`recforge train best.yaml` reproduces them.\n\n",
        trial, params);
  const nlohmann::json& val = best_test["validation"];
  const nlohmann::json& test = best_test["test"];
  if (seeded) {
    const nlohmann::json val_std = best_test.value("validation_std", nlohmann::json());
    const nlohmann::json test_std = best_test.value("test_std", nlohmann::json());
    auto cell = [](const nlohmann::json& mean, const nlohmann::json& std, const std::string& m) {
      const std::string v = metric_value(mean, m, false);
      const std::string s = metric_value(std, m, false);
      return v.empty() || s.empty() ? v : v + " ± " + s;
    };
    out += fmt::format("The means over the {} seeds ± their sample standard deviation:\n\n",
                       spec.seeds.size());
    out += "| metric | validation | test |\n|---|---:|---:|\n";
    for (const std::string& m : metric_names(spec))
      out += fmt::format("| {} | {} | {} |\n", m, cell(val, val_std, m), cell(test, test_std, m));
    return out;
  }
  out += "| metric | validation | test |\n|---|---:|---:|\n";
  for (const std::string& m : metric_names(spec))
    out += fmt::format("| {} | {} | {} |\n", m, metric_value(val, m, false),
                       metric_value(test, m, false));
  return out;
}

}  // namespace recforge::sweep
