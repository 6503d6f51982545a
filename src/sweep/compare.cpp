/// @file compare.cpp
/// Side-by-side comparison of run directories.

#include "sweep/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "pipeline/run.h"
#include "sweep/spec.h"

namespace recforge::sweep {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kMetricOrder = {"recall", "precision", "ndcg",
                                               "map",    "hit_rate",  "coverage"};

/// Metric names of the objects in `parts`, in metrics.json order (metric, then K).
std::vector<std::string> metric_names(const std::vector<const nlohmann::json*>& parts) {
  std::vector<std::pair<std::pair<size_t, int>, std::string>> keyed;
  for (const nlohmann::json* p : parts) {
    if (!p || !p->is_object()) continue;
    for (const auto& [name, v] : p->items()) {
      const size_t at = name.find('@');
      if (at == std::string::npos || !v.is_number()) continue;
      const auto m = std::find(kMetricOrder.begin(), kMetricOrder.end(), name.substr(0, at));
      const std::pair<size_t, int> key{static_cast<size_t>(m - kMetricOrder.begin()),
                                       std::atoi(name.c_str() + at + 1)};
      if (std::none_of(keyed.begin(), keyed.end(), [&](const auto& e) { return e.second == name; }))
        keyed.push_back({key, name});
    }
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<std::string> out;
  for (const auto& e : keyed) out.push_back(e.second);
  return out;
}

std::string json_label(const nlohmann::json& v) {
  return v.is_string() && v.get<std::string>().empty() ? "\"\"" : value_label(v);
}

}  // namespace

std::vector<RunInfo> read_runs(const std::vector<std::string>& dirs) {
  if (dirs.empty()) fail("compare: give at least one run directory");
  std::vector<RunInfo> runs;
  std::map<std::string, int> names;
  for (const std::string& d : dirs) {
    RunInfo r;
    r.dir = d;
    r.run = pipeline::read_run_json(d);
    r.config = config::Config::load(d + "/config.yaml");
    if (fs::exists(d + "/metrics.json")) r.metrics = pipeline::read_json(d + "/metrics.json");
    std::string name = fs::path(d).lexically_normal().filename().string();
    if (name.empty()) name = fs::path(d).lexically_normal().parent_path().filename().string();
    r.label = name.empty() ? d : name;
    ++names[r.label];
    runs.push_back(std::move(r));
  }
  for (RunInfo& r : runs)
    if (names[r.label] > 1) r.label = r.dir;
  return runs;
}

Comparison compare(const std::vector<RunInfo>& runs, const std::string& metric) {
  Comparison c;
  for (const RunInfo& r : runs) c.labels.push_back(r.label);
  std::vector<nlohmann::json> configs;
  for (const RunInfo& r : runs) configs.push_back(r.config.to_json());
  for (const config::Param& p : config::params()) {
    if (p.path == "run.name") continue;
    const std::string section = p.path.substr(0, p.path.find('.'));
    const std::string key = p.path.substr(p.path.find('.') + 1);
    std::vector<std::string> cells;
    bool differ = false;
    for (const nlohmann::json& j : configs) {
      const nlohmann::json& v = j[section][key];
      differ = differ || v.dump() != configs.front()[section][key].dump();
      cells.push_back(json_label(v));
    }
    if (differ) c.config.emplace_back(p.path, std::move(cells));
  }

  std::vector<std::string> iterations, seconds, best;
  for (const RunInfo& r : runs) {
    const nlohmann::json h = r.run.value("history", nlohmann::json::array());
    iterations.push_back(r.run["model"].is_null() ? "-" : std::to_string(h.size()));
    seconds.push_back(r.run.contains("train_seconds") && r.run["train_seconds"].is_number()
                          ? fmt::format("{:.2f}", r.run["train_seconds"].get<double>())
                          : "-");
    int best_it = 0;
    double best_v = 0;
    for (const nlohmann::json& e : h)
      if (e.contains("validation") && e["validation"].contains(metric)) {
        const double v = e["validation"][metric].get<double>();
        if (best_it == 0 || v > best_v) best_it = e["iteration"].get<int>(), best_v = v;
      }
    best.push_back(best_it ? fmt::format("{} ({:.4f})", best_it, best_v) : "-");
  }
  c.training.emplace_back("iterations trained", iterations);
  c.training.emplace_back("train seconds", seconds);
  c.training.emplace_back("best validation " + metric + " at iteration", best);

  for (const char* part : {"validation", "test"}) {
    std::vector<const nlohmann::json*> parts;
    for (const RunInfo& r : runs)
      parts.push_back(r.metrics.is_object() && r.metrics.contains(part) ? &r.metrics[part]
                                                                        : nullptr);
    for (const std::string& name : metric_names(parts)) {
      std::vector<std::string> cells;
      for (const nlohmann::json* p : parts)
        cells.push_back(p && p->contains(name) ? fmt::format("{:.4f}", (*p)[name].get<double>())
                                               : "-");
      c.metrics.emplace_back(std::string(part) + " " + name, std::move(cells));
    }
  }
  return c;
}

std::string format_comparison(const Comparison& c) {
  using Rows = std::vector<std::pair<std::string, std::vector<std::string>>>;
  size_t first = 0;
  std::vector<size_t> width(c.labels.size());
  for (size_t j = 0; j < c.labels.size(); ++j) width[j] = c.labels[j].size();
  for (const Rows* rows : {&c.config, &c.training, &c.metrics})
    for (const auto& [name, cells] : *rows) {
      first = std::max(first, name.size() + 2);
      for (size_t j = 0; j < cells.size(); ++j) width[j] = std::max(width[j], cells[j].size());
    }
  first = std::max<size_t>(first, 8);
  auto line = [&](const std::string& name, const std::vector<std::string>& cells) {
    std::string s = fmt::format("{:<{}}", name, first);
    for (size_t j = 0; j < cells.size(); ++j) s += fmt::format("  {:>{}}", cells[j], width[j]);
    return s + "\n";
  };
  std::string out = line("", c.labels);
  auto section = [&](const std::string& title, const Rows& rows, const std::string& empty) {
    out += title + "\n";
    if (rows.empty()) out += "  " + empty + "\n";
    for (const auto& [name, cells] : rows) out += line("  " + name, cells);
  };
  section("config (keys that differ)", c.config, "(none: the configs are equal but for run.name)");
  section("training", c.training, "");
  section("metrics", c.metrics, "(no metrics.json)");
  return out;
}

std::string curves_csv(const std::vector<RunInfo>& runs) {
  std::vector<nlohmann::json> validations;
  for (const RunInfo& r : runs)
    for (const nlohmann::json& h : r.run.value("history", nlohmann::json::array()))
      if (h.contains("validation")) validations.push_back(h["validation"]);
  std::vector<const nlohmann::json*> parts;
  for (const nlohmann::json& v : validations) parts.push_back(&v);
  const std::vector<std::string> names = metric_names(parts);
  std::string out = "run,iteration,seconds,loss";
  for (const std::string& n : names) out += "," + n;
  out += "\n";
  for (const RunInfo& r : runs)
    for (const nlohmann::json& h : r.run.value("history", nlohmann::json::array())) {
      std::string label = r.label;
      if (label.find_first_of(",\"") != std::string::npos) {
        std::string q = "\"";
        for (char ch : label) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        label = q + "\"";
      }
      out += fmt::format("{},{},{},{}", label, h.value("iteration", 0), h.value("seconds", 0.0),
                         h.value("loss", 0.0));
      for (const std::string& n : names)
        out += "," + (h.contains("validation") && h["validation"].contains(n)
                          ? fmt::format("{}", h["validation"][n].get<double>())
                          : std::string());
      out += "\n";
    }
  return out;
}

}  // namespace recforge::sweep
