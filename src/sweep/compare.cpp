/// @file compare.cpp
/// Side-by-side comparison of run directories.

#include "sweep/compare.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <optional>
#include <cctype>
#include <filesystem>
#include <map>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/log.h"
#include "pipeline/evaluate.h"
#include "pipeline/run.h"
#include "sweep/spec.h"
#include "sweep/sweep.h"

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
      // A structured binding cannot be captured before C++20 (clang refuses it).
      const std::string& metric = name;
      if (std::none_of(keyed.begin(), keyed.end(), [&](const auto& e) { return e.second == metric; }))
        keyed.push_back({key, name});
    }
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<std::string> out;
  for (const auto& e : keyed) out.push_back(e.second);
  return out;
}

/// A CSV cell: quoted (with doubled quotes) when it holds a comma or a quote.
std::string csv_cell(const std::string& text) {
  if (text.find_first_of(",\"") == std::string::npos) return text;
  std::string q = "\"";
  for (char ch : text) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string json_label(const nlohmann::json& v) {
  return v.is_string() && v.get<std::string>().empty() ? "\"\"" : value_label(v);
}

/// Throws recforge::Error naming `file` unless `j` is an object of metric values (numbers), as
/// recforge writes a metrics part ("test") or an iteration's "validation".
void check_metric_object(const nlohmann::json& j, const std::string& file, const std::string& what) {
  if (!j.is_object()) fail("{}: {} is {}; expected an object of metric values", file, what, j.dump());
  for (const auto& [name, v] : j.items())
    if (!v.is_number())
      fail("{}: {}'s {} is {}; expected a number", file, what, name, v.dump());
}

/// The parts of run.json and metrics.json that compare reads, checked: a hand-edited or damaged
/// file is refused with a sentence instead of failing on a value of another type.
void check_run_files(const RunInfo& r) {
  const std::string run_file = r.dir + "/run.json", metrics_file = r.dir + "/metrics.json";
  if (!r.run.is_object()) fail("{}: expected a JSON object", run_file);
  if (r.run.contains("history")) {
    const nlohmann::json& h = r.run["history"];
    if (!h.is_array()) fail("{}: history is {}; expected an array of iterations", run_file, h.dump());
    for (size_t k = 0; k < h.size(); ++k) {
      const nlohmann::json& e = h[k];
      const std::string where = fmt::format("history[{}]", k);
      if (!e.is_object() || !e.contains("iteration") || !e["iteration"].is_number_integer())
        fail("{}: {} is not an object with an integer iteration", run_file, where);
      for (const char* key : {"seconds", "loss"})
        if (e.contains(key) && !e[key].is_number())
          fail("{}: {}.{} is {}; expected a number", run_file, where, key, e[key].dump());
      if (e.contains("validation")) check_metric_object(e["validation"], run_file, where + ".validation");
    }
  }
  if (r.metrics.is_null()) return;
  if (!r.metrics.is_object()) fail("{}: expected a JSON object of metric parts", metrics_file);
  for (const auto& [part, m] : r.metrics.items()) check_metric_object(m, metrics_file, part);
}

}  // namespace

std::vector<RunInfo> read_runs(const std::vector<std::string>& dirs) {
  if (dirs.empty()) fail("compare: give at least one run directory");
  std::vector<RunInfo> runs;
  std::map<std::string, int> names;
  std::map<std::string, std::string> given;  // the same directory named twice: one run
  for (const std::string& d : dirs) {
    std::error_code ec;
    const fs::path canonical = fs::weakly_canonical(d, ec);
    if (!ec) {
      const auto [at, fresh] = given.emplace(canonical.string(), d);
      if (!fresh)
        fail("compare: {} is given twice (as {} and {}); give each run once", at->first,
             at->second, d);
    }
    RunInfo r;
    r.dir = d;
    r.run = pipeline::read_run_json(d);
    r.config = config::Config::load(d + "/config.yaml");
    if (fs::exists(d + "/metrics.json")) r.metrics = pipeline::read_json(d + "/metrics.json");
    check_run_files(r);
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

std::vector<std::vector<size_t>> seed_groups(const std::vector<RunInfo>& runs) {
  static const char* const kIgnored[][2] = {{"model", "seed"},    {"run", "name"},
                                            {"run", "dir"},       {"run", "exists"},
                                            {"run", "log_level"}, {"run", "progress"}};
  std::vector<std::string> keys;
  for (const RunInfo& r : runs) {
    nlohmann::json j = r.config.to_json();
    for (const auto& k : kIgnored)
      if (j.contains(k[0])) j[k[0]].erase(k[1]);
    keys.push_back(j.dump());
  }
  std::vector<std::vector<size_t>> groups;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto g = std::find_if(groups.begin(), groups.end(),
                                [&](const auto& m) { return keys[m.front()] == keys[i]; });
    if (g == groups.end())
      groups.push_back({i});
    else
      g->push_back(i);
  }
  return groups;
}

namespace {

/// A group's column title: the common start of its runs' labels without a trailing separator
/// or "seed" ("ccl-seed-1", "ccl-seed-2" give "ccl"), else the first run's parent directory
/// ("trial-003" for trial-003/seed-1, ...), else the first label; then " ×N".
std::string group_label(const std::vector<RunInfo>& runs, const std::vector<size_t>& group) {
  if (group.size() == 1) return runs[group.front()].label;
  std::string prefix = runs[group.front()].label;
  for (size_t i : group) {
    const std::string& l = runs[i].label;
    size_t n = 0;
    while (n < prefix.size() && n < l.size() && prefix[n] == l[n]) ++n;
    prefix.resize(n);
  }
  auto trim = [&] {
    while (!prefix.empty() && std::string_view("-_. /").find(prefix.back()) != std::string::npos)
      prefix.pop_back();
  };
  trim();
  if (prefix.size() >= 4) {
    std::string tail = prefix.substr(prefix.size() - 4);
    std::transform(tail.begin(), tail.end(), tail.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (tail == "seed") prefix.resize(prefix.size() - 4), trim();
  }
  if (prefix.empty())
    prefix = fs::path(runs[group.front()].dir).lexically_normal().parent_path().filename().string();
  if (prefix.empty()) prefix = runs[group.front()].label;
  return fmt::format("{} ×{}", prefix, group.size());
}

/// The best point of a group's mean validation curve (`curves`: the curves of its `size` runs
/// that have one) among the iterations that every run evaluated: a point that only some runs
/// reached (the others stopped early, or trained fewer iterations) is the mean of fewer runs and
/// not comparable with the others. When no iteration has every run, the best point of all,
/// marked " (n of N)".
std::string best_group_point(std::vector<Curve> curves, size_t size) {
  if (curves.empty()) return "-";
  std::stable_sort(curves.begin(), curves.end(),
                   [](const Curve& a, const Curve& b) { return a.size() < b.size(); });
  std::vector<const Curve*> ptrs;
  for (const Curve& cv : curves) ptrs.push_back(&cv);
  const Curve mean = mean_curve(ptrs);
  std::vector<size_t> runs(mean.size(), 0);
  for (size_t k = 0; k < mean.size(); ++k)
    for (const Curve& cv : curves)
      runs[k] += std::any_of(cv.begin(), cv.end(),
                             [&](const auto& q) { return q.first == mean[k].first; });
  const bool any_full = std::find(runs.begin(), runs.end(), size) != runs.end();
  std::optional<size_t> best;
  for (size_t k = 0; k < mean.size(); ++k)
    if ((!any_full || runs[k] == size) && (!best || mean[k].second > mean[*best].second)) best = k;
  std::string out = fmt::format("{} ({:.4f})", mean[*best].first, mean[*best].second);
  if (runs[*best] < size) out += fmt::format(" ({} of {})", runs[*best], size);
  return out;
}

/// "mean ± std" of `values` over a group of `size` runs ("-" for none; " (n of N)" when some
/// runs have no value).
std::string group_cell(const std::vector<double>& values, size_t size, int decimals) {
  if (values.empty()) return "-";
  double sum = 0;
  for (double v : values) sum += v;
  std::string s =
      mean_std_text(sum / static_cast<double>(values.size()), sample_std(values), decimals);
  if (values.size() < size) s += fmt::format(" ({} of {})", values.size(), size);
  return s;
}

}  // namespace

Comparison compare(const std::vector<RunInfo>& runs, const std::string& metric, bool group_seeds) {
  std::vector<std::vector<size_t>> groups;
  if (group_seeds) {
    groups = seed_groups(runs);
  } else {
    for (size_t i = 0; i < runs.size(); ++i) groups.push_back({i});
  }
  Comparison c;
  for (const auto& g : groups) {
    std::string label = group_label(runs, g);
    if (std::count(c.labels.begin(), c.labels.end(), label) > 0)
      label = fmt::format("{} ×{}", runs[g.front()].label, g.size());
    c.labels.push_back(std::move(label));
    c.members.emplace_back();
    for (size_t i : g) c.members.back().push_back(runs[i].dir);
  }
  std::vector<nlohmann::json> configs;
  for (const RunInfo& r : runs) configs.push_back(r.config.to_json());
  for (const config::Param& p : config::params()) {
    if (p.path == "run.name") continue;
    const std::string section = p.path.substr(0, p.path.find('.'));
    const std::string key = p.path.substr(p.path.find('.') + 1);
    std::vector<std::string> cells;
    bool show = false;
    for (const auto& g : groups) {
      std::vector<std::string> values;
      for (size_t i : g) {
        const std::string v = json_label(configs[i][section][key]);
        if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
      }
      show = show || values.size() > 1;
      cells.push_back(fmt::format("{}", fmt::join(values, ", ")));
    }
    show = show || std::any_of(cells.begin(), cells.end(),
                               [&](const std::string& x) { return x != cells.front(); });
    if (show) c.config.emplace_back(p.path, std::move(cells));
  }

  std::vector<std::string> iterations, seconds, best;
  for (const auto& g : groups) {
    std::vector<int> its;
    std::vector<double> secs;
    std::vector<Curve> curves;
    for (size_t i : g) {
      const nlohmann::json& run = runs[i].run;
      const nlohmann::json h = run.value("history", nlohmann::json::array());
      if (run.contains("model") && !run["model"].is_null()) its.push_back(static_cast<int>(h.size()));
      if (run.contains("train_seconds") && run["train_seconds"].is_number())
        secs.push_back(run["train_seconds"].get<double>());
      Curve curve;
      for (const nlohmann::json& e : h)
        if (e.contains("validation") && e["validation"].contains(metric))
          curve.emplace_back(e["iteration"].get<int>(), e["validation"][metric].get<double>());
      if (!curve.empty()) curves.push_back(std::move(curve));
    }
    if (its.empty()) {
      iterations.push_back("-");
    } else {
      const auto [lo, hi] = std::minmax_element(its.begin(), its.end());
      iterations.push_back(*lo == *hi ? std::to_string(*lo) : fmt::format("{}–{}", *lo, *hi));
    }
    seconds.push_back(group_cell(secs, g.size(), 2));
    best.push_back(best_group_point(std::move(curves), g.size()));
  }
  c.training.emplace_back("iterations trained", iterations);
  c.training.emplace_back("train seconds", seconds);
  c.training.emplace_back(
      (groups.size() < runs.size() ? "best mean validation " : "best validation ") + metric +
          " at iteration",
      best);

  for (const char* part : {"validation", "test"}) {
    std::vector<const nlohmann::json*> parts;
    for (const RunInfo& r : runs)
      parts.push_back(r.metrics.is_object() && r.metrics.contains(part) ? &r.metrics[part]
                                                                        : nullptr);
    for (const std::string& name : metric_names(parts)) {
      std::vector<std::string> cells;
      for (const auto& g : groups) {
        std::vector<double> values;
        for (size_t i : g)
          if (parts[i] && parts[i]->contains(name))
            values.push_back((*parts[i])[name].get<double>());
        cells.push_back(group_cell(values, g.size(), 4));
      }
      c.metrics.emplace_back(std::string(part) + " " + name, std::move(cells));
    }
  }
  return c;
}

std::string format_comparison(const Comparison& c) {
  using Rows = std::vector<std::pair<std::string, std::vector<std::string>>>;
  // Columns on a terminal: UTF-8 code points (cells hold "±", "×" and "–").
  auto columns = [](const std::string& s) {
    return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char ch) {
      return (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    }));
  };
  auto pad = [&](const std::string& s, size_t width, bool right) {
    const std::string fill(width > columns(s) ? width - columns(s) : 0, ' ');
    return right ? fill + s : s + fill;
  };
  size_t first = 0;
  std::vector<size_t> width(c.labels.size());
  for (size_t j = 0; j < c.labels.size(); ++j) width[j] = columns(c.labels[j]);
  for (const Rows* rows : {&c.config, &c.training, &c.metrics})
    for (const auto& [name, cells] : *rows) {
      first = std::max(first, columns(name) + 2);
      for (size_t j = 0; j < cells.size(); ++j) width[j] = std::max(width[j], columns(cells[j]));
    }
  first = std::max<size_t>(first, 8);
  auto line = [&](const std::string& name, const std::vector<std::string>& cells) {
    std::string s = pad(name, first, false);
    for (size_t j = 0; j < cells.size(); ++j) s += "  " + pad(cells[j], width[j], true);
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
  bool grouped = false;
  for (size_t j = 0; j < c.labels.size(); ++j)
    if (c.members.size() > j && c.members[j].size() > 1) {
      if (!grouped)
        out += "seed runs (one column each: mean ± sample standard deviation (n - 1))\n";
      grouped = true;
      out += fmt::format("  {}: {}\n", c.labels[j], fmt::join(c.members[j], ", "));
    }
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
      out += fmt::format("{},{},{},{}", csv_cell(r.label), h.value("iteration", 0), h.value("seconds", 0.0),
                         h.value("loss", 0.0));
      for (const std::string& n : names)
        out += "," + (h.contains("validation") && h["validation"].contains(n)
                          ? fmt::format("{}", h["validation"][n].get<double>())
                          : std::string());
      out += "\n";
    }
  return out;
}

PairedComparison paired_comparison(const Comparison& c, const std::vector<int>& ks,
                                   double level) {
  if (c.labels.size() < 2)
    fail("compare --paired: one column ({}); expected at least two runs or groups of seed runs "
         "to compare",
         c.labels.empty() ? "none" : c.labels[0]);
  if (!(level > 0 && level < 1))
    fail("compare --paired: confidence level {}; expected a value in (0, 1)", level);
  PairedComparison out;
  out.labels = c.labels;
  out.level = level;
  // The first run's users (in its order) and held-out items; every run must have the same.
  std::string first_dir;
  std::vector<std::string> users;
  std::vector<uint64_t> truth;
  std::unordered_map<std::string, size_t> index;
  std::vector<std::string> names;
  // sums[column][metric][user]: the column's per-user values summed over its runs.
  std::vector<std::vector<std::vector<double>>> sums(c.labels.size());
  for (size_t col = 0; col < c.members.size(); ++col) {
    for (const std::string& dir : c.members[col]) {
      log().info("compare --paired: scoring the test users of {}", dir);
      const pipeline::OpenedRun r = pipeline::open_run(dir, "score for compare --paired");
      const pipeline::UserMetrics um =
          pipeline::evaluate_per_user(*r.model, r.data, pipeline::Part::kTest, ks);
      if (um.users.empty())
        fail("compare --paired: {} has no test part (no user has a held-out test item); a paired "
             "test compares the runs' metrics on the same test users",
             dir);
      if (first_dir.empty()) {
        first_dir = dir;
        users = um.users;
        truth = um.truth;
        names = um.per_user.names;
        for (size_t u = 0; u < users.size(); ++u) index.emplace(users[u], u);
      } else {
        const auto differs = [&](const std::string& why) {
          fail("compare --paired: {} holds out other test items than {} ({}); a paired test "
               "needs runs on the same data and split (equal data.*, split.* and run.seed)",
               dir, first_dir, why);
        };
        for (size_t u = 0; u < um.users.size(); ++u) {
          const auto at = index.find(um.users[u]);
          if (at == index.end())
            differs(fmt::format("a user (an id of {} byte{}) is a test user of {} only",
                                um.users[u].size(), um.users[u].size() == 1 ? "" : "s", dir));
          else if (truth[at->second] != um.truth[u])
            differs(fmt::format("a user (an id of {} byte{}) has other test items",
                                um.users[u].size(), um.users[u].size() == 1 ? "" : "s"));
        }
        if (um.users.size() != users.size()) {  // fewer: name one of the first run's missing
          const std::unordered_set<std::string> have(um.users.begin(), um.users.end());
          for (const std::string& id : users)
            if (!have.count(id))
              differs(fmt::format("a user (an id of {} byte{}) is a test user of {} only",
                                  id.size(), id.size() == 1 ? "" : "s", first_dir));
        }
      }
      std::vector<std::vector<double>>& sum = sums[col];
      if (sum.empty()) sum.assign(names.size(), std::vector<double>(users.size(), 0.0));
      std::vector<size_t> slot(um.users.size());  // each user's place in the first run's order
      for (size_t u = 0; u < um.users.size(); ++u) slot[u] = index.at(um.users[u]);
      for (size_t m = 0; m < names.size(); ++m)
        for (size_t u = 0; u < um.users.size(); ++u) sum[m][slot[u]] += um.per_user.values[m][u];
    }
    const double runs = static_cast<double>(c.members[col].size());
    if (runs > 1)
      for (auto& v : sums[col])
        for (double& x : v) x /= runs;
  }
  out.users = static_cast<int64_t>(users.size());
  std::vector<double> p;
  for (size_t col = 1; col < sums.size(); ++col)
    for (size_t m = 0; m < names.size(); ++m) {
      PairedComparison::Row row;
      row.metric = names[m];
      row.column = col;
      row.d = eval::paired_difference(sums[0][m], sums[col][m], level);
      p.push_back(row.d.p);
      out.rows.push_back(row);
    }
  const std::vector<double> holm = eval::holm_adjust(p);
  for (size_t i = 0; i < out.rows.size(); ++i) out.rows[i].p_holm = holm[i];
  return out;
}

namespace {

std::string p_label(double p) { return p < 1e-16 ? "<1e-16" : fmt::format("{:.2g}", p); }

}  // namespace

std::string format_paired(const PairedComparison& p) {
  std::string out = fmt::format(
      "paired test on the {} test users (each column minus {}; mean difference [{:g}% interval], "
      "two-sided paired t-test p, and p adjusted by Holm's method over the {} tests)\n",
      p.users, p.labels.at(0), p.level * 100, p.rows.size());
  size_t width = 0;
  for (const auto& r : p.rows) width = std::max(width, r.metric.size());
  size_t column = 0;
  for (const auto& r : p.rows) {
    if (r.column != column) {
      column = r.column;
      out += fmt::format("  {} - {}\n", p.labels[column], p.labels[0]);
    }
    out += fmt::format("    test {:<{}}  {:+.4f}  [{:+.4f}, {:+.4f}]  p {:<7}  Holm {}\n", r.metric,
                       width, r.d.mean, r.d.low, r.d.high, p_label(r.d.p), p_label(r.p_holm));
  }
  return out;
}

std::string paired_csv(const PairedComparison& p) {
  std::string out = "column,baseline,metric,users,mean_difference,ci_low,ci_high,level,t,p,p_holm\n";
  for (const auto& r : p.rows)
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{}\n", csv_cell(p.labels[r.column]),
                       csv_cell(p.labels[0]),
                       r.metric, r.d.n, r.d.mean, r.d.low, r.d.high, p.level, r.d.t, r.d.p,
                       r.p_holm);
  return out;
}

}  // namespace recforge::sweep
