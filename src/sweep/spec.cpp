/// @file spec.cpp
/// Reading and checking sweep files. Parameter values are checked by the config itself (a
/// value goes through Config::set, so the sweep accepts exactly what a config accepts), and
/// each error is re-anchored at the value's location in the sweep file.

#include "sweep/spec.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/utf8.h"

namespace recforge::sweep {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kTopKeys = {"base",      "space", "points",     "search",
                                           "trials",    "seed",  "seeds",      "metric",
                                           "direction", "score", "early_stop", "out"};
const std::vector<std::string> kEarlyStopKeys = {"rule", "min_trials", "eta", "grace"};

/// Settings a sweep sets itself in every trial, or that would give trials different validation
/// sets (so that their scores could not be compared): refused in `space`.
std::string refused_reason(const std::string& path) {
  const std::string section = path.substr(0, path.find('.'));
  if (path == "run.name" || path == "run.dir" || path == "run.exists")
    return "the sweep names and places the trial runs itself";
  if (path == "eval.validation_sample")
    return "trials would be scored on different samples of the validation users; set it in the "
           "base config, where it applies to every trial";
  if (path == "eval.test" || path == "eval.metric" || path == "eval.ks")
    return "the sweep sets it (trials never evaluate on test, and the metric is the sweep's "
           "`metric:`)";
  if (section == "export")
    return "trials do not export; best.yaml keeps the base's export settings";
  if (path == "run.seed")
    return "run.seed also seeds the split, so trials would be scored on different validation "
           "sets; vary model.seed instead";
  if (section == "privacy")
    return "privacy settings are the base's for every trial (an opt-out list that differed "
           "between trials would change the data they are scored on)";
  if (section == "data" || section == "synthetic" || section == "split")
    return "it changes the data or the split, so trials would be scored on different validation "
           "sets";
  return "";
}

std::string location(const std::string& name, const YAML::Mark& m) {
  if (m.is_null()) return name;
  return fmt::format("{}:{}:{}", name, m.line + 1, m.column + 1);
}

bool is_plain(const YAML::Node& n) { return n.Tag() == "?"; }

/// A node as shown in "got ..." texts.
std::string render(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "null";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return is_plain(n) ? n.Scalar() : nlohmann::json(n.Scalar()).dump();
}

/// A node as the value text of a Config::set assignment (flow YAML).
std::string node_text(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "";
  if (n.IsSequence()) {
    std::string out = "[";
    for (size_t i = 0; i < n.size(); ++i) out += (i ? ", " : "") + node_text(n[i]);
    return out + "]";
  }
  if (is_plain(n)) return n.Scalar();
  return nlohmann::json(n.Scalar()).dump();
}

std::string suggestion(const std::string& word, const std::vector<std::string>& options) {
  size_t best = std::string::npos;
  std::string near;
  for (const std::string& o : options) {
    const size_t d = config::edit_distance(word, o);
    if (d < best) best = d, near = o;
  }
  if (best <= std::max<size_t>(2, word.size() / 3))
    return fmt::format("; did you mean \"{}\"?", near);
  std::string all;
  for (const std::string& o : options) all += (all.empty() ? "" : ", ") + o;
  return "; expected one of " + all;
}

std::string type_text(const config::Param& p) {
  switch (p.type) {
    case config::Type::kInt:
      return "an integer";
    case config::Type::kFloat:
      return "a number";
    case config::Type::kBool:
      return "a boolean";
    case config::Type::kString:
      return "a string";
    case config::Type::kEnum: {
      std::string c;
      for (const std::string& s : p.choices) c += (c.empty() ? "" : ", ") + s;
      return "one of " + c;
    }
    case config::Type::kIntList:
      return "a list of integers";
  }
  return "";
}

/// The value of parameter `p` in `c`, as JSON (null when unset).
nlohmann::json read_value(const config::Config& c, const config::Param& p) {
  if (!c.is_set(p.path)) return nullptr;
  switch (p.type) {
    case config::Type::kInt:
      return c.get_int(p.path);
    case config::Type::kFloat:
      return c.get_float(p.path);
    case config::Type::kBool:
      return c.get_bool(p.path);
    case config::Type::kString:
    case config::Type::kEnum:
      return c.get_string(p.path);
    case config::Type::kIntList:
      return c.get_int_list(p.path);
  }
  return nullptr;
}

/// Applies `path=text` to `c`, re-anchoring the config's error message at `where`.
void set_at(config::Config& c, const std::string& path, const std::string& text,
            const std::string& where) {
  const std::string assignment = path + "=" + text;
  try {
    c.set(assignment);
  } catch (const Error& e) {
    std::string msg = e.what();
    const std::string prefix = "--set " + assignment + ": ";
    if (msg.rfind(prefix, 0) == 0) msg.erase(0, prefix.size());
    throw Error(where + ": " + msg);
  }
  // Later checks of the trial's config (config::check) name the sweep file, not a --set.
  c.set_where(path, where);
}

/// Checks one value node against parameter `p` (through the config's own validation) and returns
/// it typed.
nlohmann::json typed_value(const config::Config& base, const config::Param& p, const YAML::Node& n,
                           const std::string& name) {
  const std::string where = location(name, n.Mark());
  if (n.IsMap()) fail("{}: {}: expected a value, got a mapping", where, p.path);
  config::Config c = base;
  set_at(c, p.path, node_text(n), where);
  return read_value(c, p);
}

/// Parses a number node (a distribution bound).
double number(const YAML::Node& n, const std::string& name, const std::string& path,
              const std::string& dist) {
  static const std::regex re("[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  if (!n.IsScalar() || !is_plain(n) || !std::regex_match(n.Scalar(), re))
    fail("{}: {}: {} bounds must be numbers, got {}", location(name, n.Mark()), path, dist,
         render(n));
  // from_chars, not std::stod: that throws std::out_of_range (no user error) beyond a double.
  const std::string& s = n.Scalar();
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data() + (s[0] == '+'), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    fail("{}: {}: {} bound {} is out of the range of a double", location(name, n.Mark()), path,
         dist, s);
  return v;
}

int64_t integer_field(const YAML::Node& n, const std::string& name, const std::string& key,
                      int64_t min) {
  static const std::regex re("[-+]?[0-9]+");
  if (!n.IsScalar() || !is_plain(n) || !std::regex_match(n.Scalar(), re))
    fail("{}: {}: expected an integer >= {}, got {}", location(name, n.Mark()), key, min,
         render(n));
  int64_t v = 0;
  try {
    v = std::stoll(n.Scalar());
  } catch (const std::exception&) {
    fail("{}: {}: expected an integer >= {}, got {}", location(name, n.Mark()), key, min,
         render(n));
  }
  if (v < min)
    fail("{}: {}: expected an integer >= {}, got {}", location(name, n.Mark()), key, min, v);
  return v;
}

std::string word(const YAML::Node& n, const std::string& name, const std::string& key,
                 const std::vector<std::string>& choices) {
  if (!n.IsScalar() || std::find(choices.begin(), choices.end(), n.Scalar()) == choices.end()) {
    std::string c;
    for (const std::string& s : choices) c += (c.empty() ? "" : ", ") + s;
    fail("{}: {}: expected one of {}, got {}", location(name, n.Mark()), key, c, render(n));
  }
  return n.Scalar();
}

/// The values listed for `p` (a list, or the argument of `choice`); each is checked.
std::vector<nlohmann::json> list_values(const config::Config& base, const config::Param& p,
                                        const YAML::Node& list, const std::string& name,
                                        const std::string& where) {
  if (!list.IsSequence())
    fail("{}: {}: expected a list of values, got {}", where, p.path, render(list));
  if (list.size() == 0)
    fail("{}: {}: the list of values is empty; expected at least one value", where, p.path);
  std::vector<nlohmann::json> out;
  for (const YAML::Node& e : list) {
    nlohmann::json v = typed_value(base, p, e, name);
    for (const nlohmann::json& prev : out)
      if (prev.dump() == v.dump())
        fail("{}: {}: the value {} is listed twice", location(name, e.Mark()), p.path,
             value_label(v));
    out.push_back(std::move(v));
  }
  return out;
}

/// The declared, searchable parameter named by `key` (a `space:` or `points:` key); `section` is
/// "space" or "points", for messages.
const config::Param& searchable(const config::Config& base, const YAML::Node& key,
                                const std::string& name, const std::string& section) {
  const std::string where = location(name, key.Mark());
  if (!key.IsScalar())
    fail("{}: {}: expected a parameter path, got {}", where, section, render(key));
  const std::string path = key.Scalar();
  const config::Param* p = config::find_param(path);
  if (!p) {
    if (path.find('.') == std::string::npos) {
      for (const config::Param& q : config::params())
        if (q.path.substr(q.path.find('.') + 1) == path)
          fail("{}: {}: expected a parameter path section.key; did you mean \"{}\"?", where, path,
               q.path);
      fail("{}: {}: expected a parameter path section.key (see docs/configuration.md)", where,
           path);
    }
    config::Config c = base;
    set_at(c, path, "", where);  // throws the config's "unknown key; did you mean" sentence
    fail("{}: {}: unknown key", where, path);
  }
  const std::string why = refused_reason(path);
  if (!why.empty()) fail("{}: {}: cannot be searched: {}", where, path, why);
  return *p;
}

/// One `space:` entry.
Dimension parse_dimension(const config::Config& base, const YAML::Node& key,
                          const YAML::Node& value, const std::string& name, Search search) {
  const config::Param* p = &searchable(base, key, name, "space");
  Dimension d;
  d.where = location(name, key.Mark());
  d.path = p->path;
  d.type = p->type;

  if (value.IsSequence()) {
    d.values = list_values(base, *p, value, name, d.where);
    return d;
  }
  if (!value.IsMap() || value.size() != 1)
    fail(
        "{}: {}: expected a list of values ([a, b, ...]) or one distribution ({{uniform: [a, b]}}, "
        "{{log_uniform: [a, b]}}, {{int_range: [a, b]}}, {{choice: [...]}}), got {}; a fixed "
        "value belongs in the base config",
        d.where, d.path, render(value));
  const YAML::Node dist_key = value.begin()->first;
  const YAML::Node arg = value.begin()->second;
  const std::string dist = dist_key.IsScalar() ? dist_key.Scalar() : "";
  const std::string at = location(name, dist_key.Mark());
  if (dist == "choice") {
    d.values = list_values(base, *p, arg, name, at);
    return d;
  }
  if (dist != "uniform" && dist != "log_uniform" && dist != "int_range")
    fail("{}: {}: unknown distribution {}{}", at, d.path, render(dist_key),
         suggestion(dist, {"uniform", "log_uniform", "int_range", "choice"}));
  d.kind = dist == "uniform"       ? Dimension::Kind::kUniform
           : dist == "log_uniform" ? Dimension::Kind::kLogUniform
                                   : Dimension::Kind::kIntRange;
  if (p->type != config::Type::kInt && p->type != config::Type::kFloat)
    fail("{}: {}: {} needs a numeric parameter, but {} is {}; list its values instead", at, d.path,
         dist, d.path, type_text(*p));
  if (!arg.IsSequence() || arg.size() != 2)
    fail("{}: {}: {} expects [low, high], got {}", at, d.path, dist,
         arg.IsSequence() ? fmt::format("a list of {}", arg.size()) : render(arg));
  d.low = number(arg[0], name, d.path, dist);
  d.high = number(arg[1], name, d.path, dist);
  if (d.kind == Dimension::Kind::kIntRange)
    for (int i = 0; i < 2; ++i)
      if (!std::regex_match(arg[i].Scalar(), std::regex("[-+]?[0-9]+")))
        fail("{}: {}: int_range bounds must be integers, got {}", location(name, arg[i].Mark()),
             d.path, arg[i].Scalar());
  // enumerate() counts in int64 from the bounds, which are doubles: keep them exact.
  if (d.kind == Dimension::Kind::kIntRange)
    for (int i = 0; i < 2; ++i)
      if (std::fabs(i == 0 ? d.low : d.high) > 9007199254740992.0)
        fail("{}: {}: int_range bound {} is too large; expected integers between -2^53 and 2^53",
             location(name, arg[i].Mark()), d.path, arg[i].Scalar());
  if (d.low > d.high)
    fail("{}: {}: {} low {} is above high {}; expected [low, high] with low <= high", at, d.path,
         dist, arg[0].Scalar(), arg[1].Scalar());
  if (d.kind == Dimension::Kind::kLogUniform && d.low <= 0)
    fail("{}: {}: log_uniform needs low > 0, got {}", at, d.path, arg[0].Scalar());
  // Both ends must be valid values of the parameter (its type and bounds).
  typed_value(base, *p, arg[0], name);
  typed_value(base, *p, arg[1], name);
  if (search == Search::kGrid && d.kind != Dimension::Kind::kIntRange)
    fail(
        "{}: {}: grid search enumerates values and {} has infinitely many; give a list, or set "
        "search: random",
        at, d.path, dist);
  if (d.kind == Dimension::Kind::kIntRange && d.high - d.low >= 1e6)
    fail("{}: {}: int_range [{}, {}] has more than a million values", at, d.path, arg[0].Scalar(),
         arg[1].Scalar());
  return d;
}

/// `points:` of a list search: each entry a mapping of parameters to one value each. Fills
/// `s.space` (a kValues dimension per parameter, in order of first appearance, holding the
/// distinct values) and `s.points` (a parameter a point leaves out keeps the base's value).
void parse_points(SweepSpec& s, const YAML::Node& list, const std::string& name) {
  const std::string at = location(name, list.Mark());
  if (!list.IsSequence() || list.size() == 0)
    fail(
        "{}: points: expected a non-empty list of trials, each a mapping of parameter paths to "
        "one value ({{model.factors: 64, model.regularization: 0.1}}), got {}",
        at, list.IsSequence() ? "an empty list" : render(list));
  std::vector<std::map<size_t, nlohmann::json>> given;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node entry = list[i];
    const std::string where = location(name, entry.Mark());
    if (!entry.IsMap() || entry.size() == 0)
      fail("{}: points: trial {} must be a non-empty mapping of parameter paths to values, got {}",
           where, i + 1, entry.IsMap() ? "an empty mapping" : render(entry));
    std::map<size_t, nlohmann::json> values;
    for (const auto& kv : entry) {
      const config::Param& p = searchable(s.base, kv.first, name, "points");
      size_t dim = 0;
      while (dim < s.space.size() && s.space[dim].path != p.path) ++dim;
      if (dim == s.space.size()) {
        Dimension d;
        d.path = p.path;
        d.type = p.type;
        d.where = location(name, kv.first.Mark());
        s.space.push_back(std::move(d));
      }
      if (values.count(dim)) fail("{}: {}: duplicate key", location(name, kv.first.Mark()), p.path);
      values[dim] = typed_value(s.base, p, kv.second, name);
    }
    given.push_back(std::move(values));
  }
  for (size_t i = 0; i < given.size(); ++i) {
    std::vector<nlohmann::json> point;
    for (size_t dim = 0; dim < s.space.size(); ++dim) {
      Dimension& d = s.space[dim];
      const auto it = given[i].find(dim);
      nlohmann::json v =
          it != given[i].end() ? it->second : read_value(s.base, *config::find_param(d.path));
      if (std::none_of(d.values.begin(), d.values.end(),
                       [&](const nlohmann::json& u) { return u.dump() == v.dump(); }))
        d.values.push_back(v);
      point.push_back(std::move(v));
    }
    for (size_t j = 0; j < s.points.size(); ++j)
      if (nlohmann::json(s.points[j]).dump() == nlohmann::json(point).dump())
        fail("{}: points: trial {} is the same as trial {}", location(name, list[i].Mark()), i + 1,
             j + 1);
    s.points.push_back(std::move(point));
  }
}

/// `seeds:`: a non-empty list of distinct integers >= 0 (at most kMaxSeeds), the model.seed
/// values each trial trains with.
std::vector<int64_t> parse_seeds(const YAML::Node& n, const std::string& name) {
  const std::string at = location(name, n.Mark());
  if (!n.IsSequence())
    fail("{}: seeds: expected a list of model.seed values ([1, 2, 3]), got {}", at, render(n));
  if (n.size() == 0)
    fail("{}: seeds: the list is empty; expected at least one model.seed value, or no seeds: key",
         at);
  if (n.size() > kMaxSeeds)
    fail("{}: seeds: {} seeds listed; expected at most {}", at, n.size(), kMaxSeeds);
  std::vector<int64_t> out;
  std::vector<std::string> where;
  for (const YAML::Node& e : n) {
    if (e.IsSequence() || e.IsMap())
      fail("{}: seeds: expected an integer >= 0, got {}", location(name, e.Mark()), render(e));
    const int64_t v = integer_field(e, name, "seeds", 0);
    const auto dup = std::find(out.begin(), out.end(), v);
    if (dup != out.end())
      fail("{}: seeds: the seed {} is listed twice (first at {}); expected distinct seeds",
           location(name, e.Mark()), v, where[static_cast<size_t>(dup - out.begin())]);
    out.push_back(v);
    where.push_back(location(name, e.Mark()));
  }
  return out;
}

EarlyStop parse_early_stop(const YAML::Node& n, const std::string& name) {
  EarlyStop e;
  const std::vector<std::string> rules = {"none", "median", "halving"};
  auto rule = [&](const YAML::Node& r, const std::string& key) {
    const std::string w = word(r, name, key, rules);
    return w == "median"    ? EarlyStop::Rule::kMedian
           : w == "halving" ? EarlyStop::Rule::kHalving
                            : EarlyStop::Rule::kNone;
  };
  if (n.IsScalar()) {
    e.rule = rule(n, "early_stop");
    return e;
  }
  if (!n.IsMap())
    fail(
        "{}: early_stop: expected none, median, halving or a mapping {{rule: ..., min_trials: "
        "..., eta: ..., grace: ...}}, got {}",
        location(name, n.Mark()), render(n));
  bool has_rule = false;
  std::vector<std::pair<std::string, std::string>> given;  // (key, location) besides rule
  for (const auto& kv : n) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "";
    const std::string at = location(name, kv.first.Mark());
    if (k != "rule") given.emplace_back(k, at);
    if (k == "rule") {
      e.rule = rule(kv.second, "early_stop.rule");
      has_rule = true;
    } else if (k == "min_trials") {
      e.min_trials = integer_field(kv.second, name, "early_stop.min_trials", 1);
    } else if (k == "eta") {
      e.eta = integer_field(kv.second, name, "early_stop.eta", 2);
    } else if (k == "grace") {
      e.grace = integer_field(kv.second, name, "early_stop.grace", 0);
    } else {
      fail("{}: early_stop.{}: unknown key{}", at, k, suggestion(k, kEarlyStopKeys));
    }
  }
  if (!has_rule)
    fail("{}: early_stop: the rule is missing; add rule: median or rule: halving",
         location(name, n.Mark()));
  // A key the rule does not read was accepted and dropped (eta with median, any with none).
  for (const auto& [k, at] : given) {
    const bool read = e.rule == EarlyStop::Rule::kHalving ||
                      (e.rule == EarlyStop::Rule::kMedian && k != "eta");
    if (!read)
      fail("{}: early_stop.{}: the rule {} does not use it ({}); remove it", at, k, e.name(),
           e.rule == EarlyStop::Rule::kMedian ? "median takes min_trials and grace"
                                               : "none stops nothing");
  }
  return e;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open sweep file: {}", path, std::strerror(errno));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The base config written inline in the sweep file, parsed from the sweep file's own text with
/// everything but the base's block blanked out, so that errors keep their line and column.
config::Config inline_base(const std::string& text, const YAML::Node& root, const YAML::Node& base,
                           const std::string& name, const std::vector<std::string>& sets) {
  const size_t start = static_cast<size_t>(std::max(0, base.Mark().pos));
  size_t end = text.size();
  for (const auto& kv : root) {
    const int pos = kv.first.Mark().pos;
    if (pos > static_cast<int>(start)) end = std::min(end, static_cast<size_t>(pos));
  }
  const size_t line_start = text.rfind('\n', end == 0 ? 0 : end - 1);
  if (end < text.size()) end = line_start == std::string::npos ? 0 : line_start + 1;
  std::string masked = text;
  for (size_t i = 0; i < masked.size(); ++i)
    if ((i < start || i >= end) && masked[i] != '\n') masked[i] = ' ';
  return config::Config::parse(masked, name, sets, config::Config::Checks::kValuesOnly);
}

}  // namespace

// ---- Dimension, EarlyStop, SweepSpec ------------------------------------------------------------

std::vector<nlohmann::json> Dimension::enumerate() const {
  if (kind == Kind::kValues) return values;
  std::vector<nlohmann::json> out;
  if (kind == Kind::kIntRange)
    for (int64_t v = static_cast<int64_t>(low); v <= static_cast<int64_t>(high); ++v)
      out.push_back(type == config::Type::kFloat ? nlohmann::json(static_cast<double>(v))
                                                 : nlohmann::json(v));
  return out;
}

nlohmann::json Dimension::to_json() const {
  if (kind == Kind::kValues) return {{"path", path}, {"values", values}};
  const char* k = kind == Kind::kUniform      ? "uniform"
                  : kind == Kind::kLogUniform ? "log_uniform"
                                              : "int_range";
  return {{"path", path}, {"kind", k}, {"low", low}, {"high", high}};
}

const char* search_name(Search s) {
  return s == Search::kGrid ? "grid" : s == Search::kRandom ? "random" : "list";
}

std::string EarlyStop::name() const {
  return rule == Rule::kMedian ? "median" : rule == Rule::kHalving ? "halving" : "none";
}

nlohmann::json EarlyStop::to_json() const {
  if (rule == Rule::kNone) return "none";
  nlohmann::json j = {{"rule", name()}, {"min_trials", min_trials}, {"grace", grace}};
  if (rule == Rule::kHalving) j["eta"] = eta;
  return j;
}

nlohmann::json SweepSpec::definition() const {
  nlohmann::json dims = nlohmann::json::array();
  for (const Dimension& d : space) dims.push_back(d.to_json());
  nlohmann::json base_json = base.to_json();
  base_json["run"].erase("log_level");  // cosmetic: may change between runs of one sweep
  base_json["run"].erase("progress");
  nlohmann::json def = {{"base", base_json},
                        {"space", dims},
                        {"search", search_name(search)},
                        {"trials", trials},
                        {"seed", seed},
                        {"metric", metric},
                        {"direction", maximize ? "max" : "min"},
                        {"early_stop", early_stop.to_json()}};
  // Only when not the defaults, so that sweeps started before these keys existed still resume.
  if (search == Search::kList) def["points"] = points;
  if (score == Score::kBestIteration) def["score"] = "best_iteration";
  if (!seeds.empty()) def["seeds"] = seeds;
  return def;
}

// ---- Parsing ----------------------------------------------------------------------------------

SweepSpec load_sweep(const std::string& path, const std::vector<std::string>& sets) {
  return parse_sweep(read_text(path), path, sets);
}

SweepSpec parse_sweep(const std::string& text, const std::string& name,
                      const std::vector<std::string>& sets) {
  SweepSpec s;
  s.file = name;
  require_utf8(text, name);  // values and messages are rendered through JSON
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", location(name, e.mark), e.msg);
  }
  config::require_utf8_scalars(root, name);
  if (!root.IsMap())
    fail(
        "{}: expected a mapping with base:, space:, search:, metric: ... (see docs/sweeps.md), "
        "got {}",
        name, render(root));
  std::map<std::string, YAML::Node> top;
  std::map<std::string, std::string> where;
  for (const auto& kv : root) {
    const std::string at = location(name, kv.first.Mark());
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "";
    if (std::find(kTopKeys.begin(), kTopKeys.end(), k) == kTopKeys.end())
      fail("{}: {}: unknown key{}", at, k.empty() ? render(kv.first) : k, suggestion(k, kTopKeys));
    if (top.count(k)) fail("{}: {}: duplicate key, first given at {}", at, k, where[k]);
    top[k] = kv.second;
    where[k] = at;
  }

  // base: a config file (relative to the sweep file) or an inline config. Its values are
  // checked one by one, not their combinations: every trial replaces some of them (eval.metric,
  // the searched parameters, ...) and pipeline::train runs config::check on each trial.
  if (!top.count("base"))
    fail("{}: base: missing; expected the path of a config file or an inline config mapping", name);
  const YAML::Node base = top["base"];
  s.base_where = where["base"];
  if (base.IsScalar()) {
    fs::path p(base.Scalar());
    if (p.is_relative()) p = fs::path(name).parent_path() / p;
    const std::string path = p.lexically_normal().string();
    std::error_code ec;  // e.g. a name too long for the file system: no filesystem_error
    if (!fs::is_regular_file(path, ec)) {
      if (ec && ec != std::errc::no_such_file_or_directory)
        fail("{}: base: cannot read {}: {}", location(name, base.Mark()), path, ec.message());
      fail(
          "{}: base: {} does not exist (a relative base is read from the sweep file's "
          "directory)",
          location(name, base.Mark()), path);
    }
    s.base = config::Config::load(path, sets, config::Config::Checks::kValuesOnly);
  } else if (base.IsMap()) {
    s.base = inline_base(text, root, base, name, sets);
  } else {
    fail("{}: base: expected the path of a config file or an inline config mapping, got {}",
         location(name, base.Mark()), render(base));
  }
  auto base_loc = [&](const std::string& path) {
    const std::string w = s.base.where(path);
    return w == "default" ? s.base_where + ": base" : w;
  };
  if (s.base.settings().model.type == "none")
    fail("{}: model.type is none, so there is nothing to tune; set a model in the base config",
         base_loc("model.type"));
  if (!(s.base.settings().split.validation_fraction > 0))
    fail(
        "{}: split.validation_fraction is 0, so trials would have no validation set to be "
        "scored on; set it above 0 in the base config (a sweep never scores trials on test)",
        base_loc("split.validation_fraction"));

  if (top.count("search")) {
    const std::string w = word(top["search"], name, "search", {"grid", "random", "list"});
    s.search = w == "grid" ? Search::kGrid : w == "random" ? Search::kRandom : Search::kList;
  }
  if (top.count("trials")) s.trials = integer_field(top["trials"], name, "trials", 1);
  if (top.count("seed"))
    s.seed = static_cast<uint64_t>(integer_field(top["seed"], name, "seed", 0));
  if (s.search == Search::kRandom && s.trials == 0)
    fail("{}: trials: random search needs a budget; add trials: N",
         top.count("search") ? where["search"] : name);

  // space, or the points of a list search
  if (s.search == Search::kList) {
    if (top.count("space"))
      fail(
          "{}: space: a list search runs the trials under points: and has no space; write each "
          "trial under points:, or use search: grid",
          where["space"]);
    if (!top.count("points"))
      fail(
          "{}: points: missing; search: list needs a list of trials, each a mapping of parameter "
          "paths to one value",
          where["search"]);
    parse_points(s, top["points"], name);
  } else if (top.count("points")) {
    fail("{}: points: only a list search takes points; set search: list (and no space:)",
         where["points"]);
  }
  if (s.search != Search::kList && !top.count("space"))
    fail("{}: space: missing; expected a mapping of parameter paths to lists or distributions",
         name);
  const YAML::Node space =
      s.search == Search::kList ? YAML::Node(YAML::NodeType::Map) : top["space"];
  if (s.search != Search::kList && (!space.IsMap() || space.size() == 0))
    fail(
        "{}: space: expected a non-empty mapping of parameter paths to lists or distributions, "
        "got {}",
        location(name, space.Mark()), space.IsMap() ? "an empty mapping" : render(space));
  std::set<std::string> seen;
  for (const auto& kv : space) {
    Dimension d = parse_dimension(s.base, kv.first, kv.second, name, s.search);
    if (!seen.insert(d.path).second) fail("{}: {}: duplicate key", d.where, d.path);
    s.space.push_back(std::move(d));
  }

  // seeds: one run per model.seed value, so model.seed is not searched as well
  if (top.count("seeds")) {
    s.seeds = parse_seeds(top["seeds"], name);
    s.seeds_where = where["seeds"];
    for (const Dimension& d : s.space)
      if (d.path == "model.seed")
        fail(
            "{}: model.seed: the sweep lists seeds: (at {}) and also searches model.seed; list the "
            "seeds under seeds: or search model.seed, not both",
            d.where, s.seeds_where);
  }

  // metric and direction
  const config::Param* metric_param = config::find_param("eval.metric");
  if (top.count("metric")) {
    const YAML::Node m = top["metric"];
    const std::string why = m.IsScalar() ? metric_param->check(m.Scalar()) : "expected NAME@K";
    if (!why.empty()) fail("{}: metric: {}, got {}", location(name, m.Mark()), why, render(m));
    s.metric = m.Scalar();
  } else {
    s.metric = s.base.settings().eval.metric;
  }
  // NAME@K with K made of digits (checked above or by the base config); a K beyond int64 is in
  // no list either (and must not be an internal error).
  const std::string k = s.metric.substr(s.metric.find('@') + 1);
  int64_t k_value = 0;
  const auto [k_end, k_ec] = std::from_chars(k.data(), k.data() + k.size(), k_value);
  const std::vector<int64_t> ks = s.base.settings().eval.ks;
  if (k_ec != std::errc() || k_end != k.data() + k.size() ||
      std::find(ks.begin(), ks.end(), k_value) == ks.end()) {
    std::string list;
    for (int64_t x : ks) list += (list.empty() ? "" : ", ") + std::to_string(x);
    fail("{}: metric: {} uses K = {}, which is not in the base config's eval.ks [{}]",
         top.count("metric") ? where["metric"] : base_loc("eval.metric"), s.metric, k, list);
  }
  if (top.count("direction"))
    s.maximize = word(top["direction"], name, "direction", {"max", "min"}) == "max";

  if (top.count("score"))
    s.score = word(top["score"], name, "score", {"final", "best_iteration"}) == "final"
                  ? Score::kFinal
                  : Score::kBestIteration;

  // A --set of a searched parameter changed the base's value, which every trial replaces: it
  // was recorded in sweep.json's base and never trained with.
  for (const std::string& a : sets) {
    const size_t eq = a.find('=');
    std::string key = eq == std::string::npos ? a : a.substr(0, eq);
    key.erase(0, key.find_first_not_of(" \t"));
    key.erase(key.find_last_not_of(" \t") + 1);
    for (const Dimension& d : s.space)
      if (d.path == key)
        fail("--set {}: {} is searched by the sweep ({}: {}), so each trial sets it; remove the "
             "--set, or the parameter from the sweep",
             a, key, d.where, s.search == Search::kList ? "points" : "space");
  }

  // early stopping and scoring by the best iteration need per-iteration validation metrics
  if (top.count("early_stop")) s.early_stop = parse_early_stop(top["early_stop"], name);
  const std::string needs = s.early_stop.rule != EarlyStop::Rule::kNone
                                ? "early_stop " + s.early_stop.name()
                                : "score: best_iteration";
  const std::string needs_base = s.early_stop.rule != EarlyStop::Rule::kNone
                                     ? "early_stop: " + s.early_stop.name()
                                     : "score: best_iteration";
  const std::string needs_at =
      s.early_stop.rule != EarlyStop::Rule::kNone ? where["early_stop"] : where["score"];
  if (s.early_stop.rule != EarlyStop::Rule::kNone || s.score == Score::kBestIteration) {
    const auto* every = [&]() -> const Dimension* {
      for (const Dimension& d : s.space)
        if (d.path == "model.eval_every") return &d;
      return nullptr;
    }();
    if (every) {
      const bool zero = every->kind == Dimension::Kind::kValues
                            ? std::any_of(every->values.begin(), every->values.end(),
                                          [](const nlohmann::json& v) { return v == 0; })
                            : every->low < 1;
      if (zero)
        fail("{}: model.eval_every: {} needs model.eval_every > 0 in every trial", every->where,
             needs);
    } else if (s.base.settings().model.eval_every == 0) {
      fail(
          "{}: {} needs per-iteration validation metrics, but the base config has "
          "model.eval_every 0; set it above 0 (e.g. 1) in the base config",
          needs_at, needs_base);
    }
  }

  if (top.count("out")) {
    const YAML::Node o = top["out"];
    if (!o.IsScalar() || o.Scalar().empty())
      fail("{}: out: expected a directory path, got {}", location(name, o.Mark()), render(o));
    s.out = o.Scalar();
  } else {
    s.out = "sweeps/" + fs::path(name).stem().string();
  }
  return s;
}

// ---- Values and trial configs -----------------------------------------------------------------

std::string value_text(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.dump();
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + value_text(v[i]);
    return out + "]";
  }
  return v.dump();
}

std::string value_label(const nlohmann::json& v) {
  if (v.is_null()) return "unset";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + value_label(v[i]);
    return out + "]";
  }
  if (v.is_number_float()) return fmt::format("{}", v.get<double>());
  return v.dump();
}

config::Config trial_config(const SweepSpec& spec, const std::vector<nlohmann::json>& point,
                            const std::string& dir, const std::string& name, int threads) {
  config::Config c = spec.base;
  for (size_t i = 0; i < spec.space.size(); ++i)
    set_at(c, spec.space[i].path, value_text(point.at(i)), spec.space[i].where);
  c.set("eval.test=false");
  c.set("eval.metric=" + spec.metric);
  c.set("export.enabled=false");
  c.set("run.dir=" + value_text(dir));
  c.set("run.name=" + value_text(name));
  c.set("run.exists=overwrite");
  if (threads > 0) c.set("train.threads=" + std::to_string(threads));
  return c;
}

config::Config best_config(const SweepSpec& spec, const std::vector<nlohmann::json>& point,
                           int64_t iterations) {
  config::Config c = spec.base;
  for (size_t i = 0; i < spec.space.size(); ++i)
    set_at(c, spec.space[i].path, value_text(point.at(i)), spec.space[i].where);
  if (iterations > 0) c.set("model.iterations=" + std::to_string(iterations));
  if (!spec.seeds.empty()) c.set("model.seed=" + std::to_string(spec.seeds.front()));
  c.set("eval.test=true");
  c.set("eval.metric=" + spec.metric);
  const std::string& base_name = spec.base.settings().run.name;
  c.set(
      "run.name=" +
      value_text((base_name.empty() ? fs::path(spec.file).stem().string() : base_name) + "-best"));
  return c;
}

}  // namespace recforge::sweep
