/// @file runs.cpp
/// recforge.train and recforge.Export (python/recforge/runs.py wraps these): a run from a config
/// (pipeline::train, with Ctrl-C checked between iterations), a run's resolved config, and the
/// query engine recommend::Recommender over an export or a run directory.
///
/// Every engine call runs without the GIL; Python objects are only touched with it held. The
/// Recommender's query methods are const and thread-safe, so concurrent queries from Python
/// threads run in parallel.

#include <fmt/ranges.h>
#include <pybind11/stl.h>

#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "config/config.h"
#include "core/error.h"
#include "core/secret.h"
#include "pipeline/evaluate.h"
#include "pipeline/run.h"
#include "pipeline/train.h"
#include "recommend/explain.h"
#include "recommend/recommend.h"
#include "sweep/compare.h"

namespace recforge::python {

namespace {

// The origin given to a config built from a dict: its values' "file:line:column" becomes just
// this name, as the lines of the generated YAML mean nothing to the caller.
constexpr const char* kDictOrigin = "config dict";

std::string without_dict_lines(const std::string& message) {
  static const std::regex lines(std::string(kDictOrigin) + ":[0-9]+:[0-9]+");
  return std::regex_replace(message, lines, kDictOrigin);
}

// Runs `f` on a config from `path` (a YAML file) or `yaml` (text generated from a dict), with
// the errors of a dict naming "config dict" and the key, not lines of the generated text.
template <typename F>
auto with_config(const std::optional<std::string>& path, const std::string& yaml,
                 const std::vector<std::string>& overrides, F&& f) {
  try {
    const config::Config cfg = path ? config::Config::load(*path, overrides)
                                    : config::Config::parse(yaml, kDictOrigin, overrides);
    return f(cfg);
  } catch (const Error& e) {
    if (path) throw;
    throw Error(without_dict_lines(e.what()));
  }
}

// pipeline::train without the GIL; a pending signal (Ctrl-C) is checked before each iteration
// and its Python exception (KeyboardInterrupt) raised once the staged run is removed.
std::string train(const std::optional<std::string>& path, const std::string& yaml,
                  const std::vector<std::string>& overrides) {
  std::optional<py::error_already_set> signal_error;
  pipeline::TrainOptions options;
  options.interrupted = [&signal_error] {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    signal_error.emplace();  // takes the exception the handler raised
    return true;
  };
  try {
    py::gil_scoped_release release;
    return with_config(path, yaml, overrides,
                       [&](const config::Config& cfg) { return pipeline::train(cfg, options); });
  } catch (const pipeline::Interrupted&) {
    if (signal_error) throw *signal_error;
    throw;
  }
}

// A run's config.yaml, resolved, as JSON text (nested by section).
std::string config_json(const std::string& path) {
  py::gil_scoped_release release;
  return config::Config::load(path, {}, config::Config::Checks::kValuesOnly).to_json().dump();
}

recommend::Metric parse_metric(const std::string& s) {
  if (s == "default") return recommend::Metric::kDefault;
  if (s == "dot") return recommend::Metric::kDot;
  if (s == "cosine") return recommend::Metric::kCosine;
  fail("metric: expected \"default\", \"dot\" or \"cosine\", got \"{}\"", s);
}

// A Result as (lists, unknown, k, exact): lists of (query, ids, scores float32, personalised),
// unknown of (id, field).
py::tuple to_python(const recommend::Result& r) {
  py::list lists;
  for (const recommend::List& l : r.lists) {
    py::list ids;
    py::array_t<float> scores(static_cast<py::ssize_t>(l.items.size()));
    float* s = scores.mutable_data();
    for (size_t j = 0; j < l.items.size(); ++j) {
      ids.append(py::str(l.items[j].id));
      s[j] = l.items[j].score;
    }
    lists.append(py::make_tuple(l.query, ids, scores, l.personalised));
  }
  py::list unknown;
  for (const recommend::Unknown& u : r.unknown) unknown.append(py::make_tuple(u.id, u.field));
  return py::make_tuple(lists, unknown, r.k, r.exact);
}

recommend::Options request(int k, std::vector<std::string> exclude,
                           std::optional<std::vector<std::string>> candidates,
                           bool include_seen, bool exact) {
  recommend::Options o;
  o.k = k;
  o.exclude = std::move(exclude);
  o.candidates = std::move(candidates);
  o.include_seen = include_seen;
  o.exact = exact;
  return o;
}

// The engine's Recommender; the Python class recforge.Export adds argument handling and
// docstrings.
class Source {
 public:
  Source(const std::string& path, const std::optional<std::string>& key_file,
         const std::optional<std::string>& key_env) {
    recommend::OpenOptions o;
    o.verb = "serve from";
    if (key_file && key_env)
      fail("pseudonym_key_file and pseudonym_key_env: give one of them, not both");
    if (key_file) {
      o.pseudonym_key = SecretKey::from_file(*key_file, "pseudonym_key_file");
      o.key_where = "pseudonym_key_file " + *key_file;
    } else if (key_env) {
      o.pseudonym_key = SecretKey::from_env(*key_env, "pseudonym_key_env");
      o.key_where = "pseudonym_key_env " + *key_env;
    }
    py::gil_scoped_release release;
    r_ = std::make_unique<recommend::Recommender>(recommend::Recommender::open(path, o));
  }

  const recommend::Recommender& r() const { return *r_; }

 private:
  std::unique_ptr<recommend::Recommender> r_;
};

}  // namespace

// similar_items or similar_users of `s` (a Recommender member) without the GIL.
template <typename Ids>  // one id (similar_items, similar_users) or several (similar_items_batch)
py::tuple similar(const Source& s,
                  recommend::Result (recommend::Recommender::*query)(
                      const Ids&, int, const recommend::SimilarOptions&) const,
                  const Ids& id, int k, const std::string& metric, bool exact) {
  recommend::SimilarOptions o;
  o.metric = parse_metric(metric);
  o.exact = exact;
  recommend::Result r;
  {
    py::gil_scoped_release release;
    r = (s.r().*query)(id, k, o);
  }
  return to_python(r);
}

// sweep::paired_comparison of run directories (seed runs grouped unless `each`), at the first
// run's eval.ks, without the GIL; one dict per row, as `recforge compare --paired` writes
// paired.csv.
py::list compare_paired(const std::vector<std::string>& dirs, bool each, double level) {
  sweep::PairedComparison p;
  {
    py::gil_scoped_release release;
    const std::vector<sweep::RunInfo> runs = sweep::read_runs(dirs);
    p = sweep::paired_comparison(
        sweep::compare(runs, runs.front().config.settings().eval.metric, !each),
        pipeline::eval_ks(runs.front().config), level);
  }
  py::list out;
  for (const sweep::PairedComparison::Row& r : p.rows) {
    py::dict d;
    d["column"] = p.labels[r.column];
    d["baseline"] = p.labels[0];
    d["metric"] = r.metric;
    d["users"] = r.d.n;
    d["mean_difference"] = r.d.mean;
    d["ci_low"] = r.d.low;
    d["ci_high"] = r.d.high;
    d["level"] = p.level;
    d["t"] = r.d.t;
    d["p"] = r.d.p;
    d["p_holm"] = r.p_holm;
    out.append(d);
  }
  return out;
}

// The test metrics of a run by user activity, as `recforge evaluate RUN --by-activity` gives
// them (pipeline::activity_json, JSON text), without the GIL.
std::string by_activity(const std::string& dir, const std::vector<int64_t>& edges) {
  py::gil_scoped_release release;
  pipeline::check_activity_edges(edges, fmt::format("edges {}", fmt::join(edges, ",")));
  const pipeline::OpenedRun r = pipeline::open_run(dir, "evaluate");
  const pipeline::UserMetrics m = pipeline::evaluate_per_user(
      *r.model, r.data, pipeline::Part::kTest, pipeline::eval_ks(r.config));
  if (m.metrics.users == 0)
    fail("{}: the run has no test users to evaluate (split or eval.test)", dir);
  return pipeline::activity_json(m, pipeline::by_activity(m, edges)).dump();
}

void bind_runs(py::module_& m) {
  m.def("_train", &train, py::arg("path"), py::arg("yaml"), py::arg("overrides"),
        "pipeline::train on a config file (path) or YAML text (yaml, named \"config dict\"); "
        "returns the run directory.");
  m.def("_compare_paired", &compare_paired, py::arg("dirs"), py::arg("each"), py::arg("level"),
        "sweep::paired_comparison of run directories: one dict per metric and column.");
  m.def("_by_activity", &by_activity, py::arg("dir"), py::arg("edges"),
        "Test metrics by activity bucket of a run directory, as JSON text.");
  m.def("_config_json", &config_json, py::arg("path"),
        "A run's config.yaml, resolved, as JSON text.");

  py::class_<Source>(m, "_Source", "recommend::Recommender (use recforge.Export)")
      .def(py::init<const std::string&, const std::optional<std::string>&,
                    const std::optional<std::string>&>(),
           py::arg("path"), py::arg("key_file"), py::arg("key_env"))
      .def_property_readonly("path", [](const Source& s) { return s.r().path(); })
      .def_property_readonly("is_export", [](const Source& s) { return s.r().is_export(); })
      .def_property_readonly("can_fold_in", [](const Source& s) { return s.r().can_fold_in(); })
      .def_property_readonly(
          "metric", [](const Source& s) { return recommend::metric_name(s.r().default_metric()); })
      .def_property_readonly("manifest_json",
                             [](const Source& s) -> std::optional<std::string> {
                               const nlohmann::json* j = s.r().manifest();
                               if (!j) return std::nullopt;
                               return j->dump();
                             })
      .def_property_readonly("user_ids", [](const Source& s) { return s.r().user_ids().ids(); })
      .def_property_readonly("item_ids", [](const Source& s) { return s.r().item_ids().ids(); })
      .def_property_readonly("user_factors",
                             [](py::object self) {
                               const Source& s = self.cast<const Source&>();
                               return matrix_view(s.r().user_factors(), self, false);
                             })
      .def_property_readonly("item_factors",
                             [](py::object self) {
                               const Source& s = self.cast<const Source&>();
                               return matrix_view(s.r().item_factors(), self, false);
                             })
      .def_property_readonly("opt_out_size", [](const Source& s) { return s.r().opt_out_size(); })
      .def("knows_user", [](const Source& s, const std::string& id) { return s.r().knows_user(id); })
      .def("opted_out", [](const Source& s, const std::string& id) { return s.r().opted_out(id); })
      .def("recommend",
           [](const Source& s, const std::vector<std::string>& users, int k,
              std::vector<std::string> exclude, std::optional<std::vector<std::string>> candidates,
              bool include_seen, bool exact) {
             const recommend::Options o =
                 request(k, std::move(exclude), std::move(candidates), include_seen, exact);
             recommend::Result r;
             {
               py::gil_scoped_release release;
               r = s.r().recommend(users, o);
             }
             return to_python(r);
           })
      .def("recommend_new_user",
           [](const Source& s, const std::vector<std::string>& items,
              const std::vector<float>& weights, int k, std::vector<std::string> exclude,
              std::optional<std::vector<std::string>> candidates, bool include_seen, bool exact) {
             const recommend::Options o =
                 request(k, std::move(exclude), std::move(candidates), include_seen, exact);
             recommend::Result r;
             {
               py::gil_scoped_release release;
               r = s.r().recommend_new_user(items, weights, o);
             }
             return to_python(r);
           })
      .def("fold_in",
           [](const Source& s, const std::vector<std::string>& items,
              const std::vector<float>& weights) {
             std::vector<recommend::Unknown> unknown;
             Matrix v;
             {
               py::gil_scoped_release release;
               v = s.r().fold_in(items, weights, &unknown);
             }
             py::array_t<float> out(static_cast<py::ssize_t>(v.cols));
             std::copy(v.data.begin(), v.data.end(), out.mutable_data());
             py::list u;
             for (const recommend::Unknown& x : unknown) u.append(py::make_tuple(x.id, x.field));
             return py::make_tuple(out, u);
           })
      .def("similar_items",
           [](const Source& s, const std::string& item, int k, const std::string& metric,
              bool exact) {
             return similar(s, &recommend::Recommender::similar_items, item, k, metric, exact);
           })
      .def("similar_items_batch",
           [](const Source& s, const std::vector<std::string>& items, int k,
              const std::string& metric, bool exact) {
             return similar(s, &recommend::Recommender::similar_items_batch, items, k, metric,
                            exact);
           })
      .def("similar_users",
           [](const Source& s, const std::string& user, int k, const std::string& metric,
              bool exact) {
             return similar(s, &recommend::Recommender::similar_users, user, k, metric, exact);
           })
      .def("explain", [](const Source& s, const std::string& user,
                         const std::vector<std::string>& items, int top) {
        std::vector<std::string> out;
        {
          py::gil_scoped_release release;
          for (const recommend::ItemExplanation& e : recommend::explain(s.r(), user, items))
            out.push_back(recommend::to_json(e, top).dump());
        }
        return out;
      });
}

}  // namespace recforge::python
