/// @file check.cpp
/// config::check: every check that relates two or more parameters, in one place, so that
/// `recforge config FILE` refuses exactly what `recforge train` refuses, with the same sentence
/// and the file:line of the offending key. Checks of a single value (type, bounds, enum names)
/// come from the declarations in sections.cpp; checks that need the device or the data (a GPU
/// dtype on the CPU, an empty validation set, a column missing from the file) stay where those
/// facts are known.

#include <algorithm>
#include <charconv>
#include <string>

#include "config/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/retention.h"

namespace recforge::config {
namespace {

bool is_column_index(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void check_run(const Config& cfg) {
  if (cfg.settings().run.dir.empty())
    fail("{}: run.dir is empty; expected the directory in which run directories are created "
         "(`.` for the current one)",
         cfg.where("run.dir"));
  const std::string& name = cfg.settings().run.name;
  // StagedDir's rule, checked here so that `recforge config` refuses it too (empty: the config
  // file's name).
  if (!name.empty() && !valid_run_name(name))
    fail("{}: run.name \"{}\": expected a non-empty name without '/' that does not start with "
         "'.'",
         cfg.where("run.name"), name);
}

// A file setting given as "" would reach the system calls as an empty path ("": no such file),
// named nowhere; unset is how a file setting says "none".
void check_file_settings(const Config& cfg) {
  const Settings& s = cfg.settings();
  const std::pair<const char*, const std::optional<std::string>*> files[] = {
      {"data.path", &s.data.path},
      {"data.test_path", &s.data.test_path},
      {"privacy.opt_out", &s.privacy.opt_out},
      {"export.pseudonym_key_file", &s.export_.pseudonym_key_file},
      {"export.pseudonym_key_env", &s.export_.pseudonym_key_env}};
  for (const auto& [key, value] : files)
    if (*value && (*value)->empty())
      fail("{}: {} is empty; expected a {}, or leave the key out", cfg.where(key), key,
           std::string(key) == "export.pseudonym_key_env" ? "variable name" : "file name");
}

void check_data(const Config& cfg) {
  const Settings& s = cfg.settings();
  const DataSection& d = s.data;
  check_file_settings(cfg);
  if (d.format == "synthetic") {
    // generate_synthetic's checks that relate two settings, so that `recforge config` refuses
    // them too.
    const SyntheticSection& syn = s.synthetic;
    if (syn.interactions < syn.users)
      fail("{}: synthetic.interactions must be at least synthetic.users ({}) since every user "
           "makes at least one draw, got {}",
           cfg.where("synthetic.interactions"), syn.users, syn.interactions);
    if (syn.communities > syn.items)
      fail("{}: synthetic.communities must be between 1 and synthetic.items ({}), got {}",
           cfg.where("synthetic.communities"), syn.items, syn.communities);
  }
  if (d.format == "adjacency" && d.max_age_days > 0)
    fail("{}: data.max_age_days needs timestamps, which data.format adjacency does not have "
         "(one user per line, items only); set data.max_age_days: 0 or use data.format "
         "delimited with data.time_col",
         cfg.where("data.max_age_days"));
  if (d.format == "adjacency" && (d.weight_col || d.time_col))
    fail(
        "{}: data.format adjacency has no weight or time columns; remove data.weight_col and "
        "data.time_col",
        cfg.where(d.weight_col ? "data.weight_col" : "data.time_col"));
  if (d.format == "delimited" && d.user_col == d.item_col)
    fail("{}: data.item_col is \"{}\", the same column as data.user_col; expected two columns",
         cfg.where("data.item_col"), d.item_col);
  if (d.format == "delimited" && !d.header) {
    // A column given by name can only be found in a header line.
    const std::pair<const char*, std::optional<std::string>> columns[] = {
        {"user_col", d.user_col},
        {"item_col", d.item_col},
        {"weight_col", d.weight_col},
        {"time_col", d.time_col}};
    for (const auto& [key, spec] : columns)
      if (spec && !is_column_index(*spec))
        fail(
            "{}: data.{}: column \"{}\" is a name, which needs data.header: true (or give a "
            "0-based column index)",
            cfg.where(std::string("data.") + key), key, *spec);
  }
}

void check_split(const Config& cfg) {
  const Settings& s = cfg.settings();
  const std::string& method = s.split.method;
  const bool given = method == "given";
  if (s.data.format == "synthetic") {
    if (given)
      fail(
          "{}: split.method given needs data files; data.format synthetic generates one set "
          "(use random, leave_last, time or users)",
          cfg.where("split.method"));
    return;
  }
  if (given && !s.data.test_path)
    fail("{}: split.method given needs data.test_path (the test file)", cfg.where("split.method"));
  if (!given && s.data.test_path)
    fail("{}: data.test_path is only read by split.method given (split.method is {})",
         cfg.where("data.test_path"), method);
  if (s.data.format == "adjacency" && (method == "leave_last" || method == "time"))
    fail("{}: split.method {} needs timestamps, which data.format adjacency does not have (one "
         "user per line, items only); use random or users, or data.format delimited with "
         "data.time_col",
         cfg.where("split.method"), method);
  if (s.data.format == "delimited" && (method == "leave_last" || method == "time") &&
      !s.data.time_col)
    fail("{}: split.method {} needs timestamps: set data.time_col", cfg.where("split.method"),
         method);
}

void check_model(const Config& cfg) {
  const ModelSection& m = cfg.settings().model;
  if (m.type == "none") return;  // nothing is trained
  if (m.patience > 0 && m.eval_every == 0)
    fail("{}: model.patience needs model.eval_every > 0", cfg.where("model.patience"));
  if (m.eval_every > 0 && !(cfg.settings().split.validation_fraction > 0))
    fail("{}: model.eval_every needs a validation set; set split.validation_fraction above 0",
         cfg.where("model.eval_every"));
  if (m.type == "ials" && m.regularization == 0 && m.unobserved_weight == 0)
    fail(
        "{}: model.regularization and model.unobserved_weight are both 0, so rows with fewer "
        "interactions than factors have no unique solution; set either above 0",
        cfg.where("model.regularization"));
  if (m.type == "ials" && m.observed_weight == "replaced" && m.unobserved_exp != 0)
    fail("{}: model.observed_weight replaced subtracts one unobserved weight from every observed "
         "pair, which per-item unobserved weights (model.unobserved_exp {}) do not have; set "
         "model.unobserved_exp: 0 or model.observed_weight: added",
         cfg.where("model.observed_weight"), m.unobserved_exp);
  check_model_device(cfg, cfg.settings().train.device);  // where the config names it
  if (m.type != "bpr" && m.type != "softmax" && m.type != "ccl") return;
  if ((m.type == "softmax" || m.type == "ccl") && m.negatives == 0 && !m.in_batch)
    fail(
        "{}: model.negatives is 0 and model.in_batch is false, so the {} has no negatives "
        "to compare each positive with; set model.negatives above 0 or model.in_batch: true",
        cfg.where("model.negatives"), m.type);
  if (m.type == "ccl" && m.item_bias)
    fail(
        "{}: model.item_bias does not apply to ccl, whose scores are cosines (its margin is a "
        "cosine); set it to false, or use model.type: softmax with model.normalize for a "
        "cosine plus an item bias",
        cfg.where("model.item_bias"));
  if (m.history_weight > 0 && m.type != "ccl")
    fail("{}: model.history_weight (user-side aggregation) applies to ccl only (model.type is "
         "{}); remove it or set model.type: ccl",
         cfg.where("model.history_weight"), m.type);
  if (m.dropout > 0 && m.type != "ccl")
    fail("{}: model.dropout applies to ccl only (model.type is {}); remove it or set "
         "model.type: ccl",
         cfg.where("model.dropout"), m.type);
  if (m.type == "ccl" && m.history_weight >= 1)
    fail("{}: model.history_weight is {}, but a user's own row must keep some weight; expected "
         "a value in [0, 1)",
         cfg.where("model.history_weight"), m.history_weight);
  if (m.type == "ccl") {
    // Softmax keys that CCL does not read: a value other than the default is said, not silently
    // ignored (by value: a run's resolved config.yaml spells every default out).
    if (m.temperature != 1.0)
      fail("{}: model.temperature {} applies to softmax only; ccl has no logits to scale (its "
           "margin and negative_weight shape the loss); remove the key",
           cfg.where("model.temperature"), m.temperature);
    if (!m.logq)
      fail("{}: model.logq applies to softmax only; ccl has no logits to correct; remove the key",
           cfg.where("model.logq"));
  }
  if (m.type == "bpr" && m.negatives == 0)
    fail("{}: model.negatives is 0, but BPR needs at least one negative per positive",
         cfg.where("model.negatives"));
  if (m.normalize && m.type == "bpr")
    fail(
        "{}: model.normalize applies to softmax only (BPR has no temperature to scale cosines "
        "with); set it to false or use model.type: softmax",
        cfg.where("model.normalize"));
  if (m.dtype != "float32")
    fail("{}: model.dtype {} applies to iALS only; {} stores float32 factors",
         cfg.where("model.dtype"), m.dtype, m.type);
}

void check_eval(const Config& cfg) {
  const EvalSection& e = cfg.settings().eval;
  // eval.metric's declaration guarantees NAME@K with K made of digits; a K beyond int64 is in
  // no list either (and must not be an internal error).
  const std::string k = e.metric.substr(e.metric.find('@') + 1);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), value);
  const bool parsed = ec == std::errc() && end == k.data() + k.size();
  // Named where the metric was set, or where eval.ks was when the metric is the default.
  const std::string at =
      cfg.where(cfg.where("eval.metric") == "default" ? "eval.ks" : "eval.metric");
  if (!parsed || std::find(e.ks.begin(), e.ks.end(), value) == e.ks.end())
    fail("{}: eval.metric {} uses K = {}, which is not in eval.ks", at, e.metric, k);
  // The metrics are keyed by K: a repeated cutoff would only be caught at the first evaluation,
  // after training.
  for (size_t i = 0; i < e.ks.size(); ++i)
    if (std::find(e.ks.begin(), e.ks.begin() + static_cast<std::ptrdiff_t>(i), e.ks[i]) !=
        e.ks.begin() + static_cast<std::ptrdiff_t>(i))
      fail("{}: eval.ks lists {} twice; expected distinct cutoffs", cfg.where("eval.ks"), e.ks[i]);
}

void check_privacy(const Config& cfg) {
  const Settings& s = cfg.settings();
  const ExportSection& e = s.export_;
  if (e.pseudonymize && !e.pseudonym_key_file && !e.pseudonym_key_env)
    fail("{}: export.pseudonymize needs a key: set export.pseudonym_key_file or "
         "export.pseudonym_key_env",
         cfg.where("export.pseudonymize"));
  if (e.pseudonym_key_file && e.pseudonym_key_env)
    fail("{}: set one of export.pseudonym_key_file and export.pseudonym_key_env, not both",
         cfg.where("export.pseudonym_key_env"));
  if (!e.pseudonymize && (e.pseudonym_key_file || e.pseudonym_key_env))
    fail("{}: a pseudonymisation key is given but export.pseudonymize is false; set it to true "
         "or remove the key setting",
         cfg.where(e.pseudonym_key_file ? "export.pseudonym_key_file" : "export.pseudonym_key_env"));
  const DataSection& d = s.data;
  if (d.max_age_days > 0 && d.format != "synthetic" && !d.time_col)
    fail("{}: data.max_age_days needs timestamps: set data.time_col", cfg.where("data.max_age_days"));
  if (!d.max_age_from.empty() && d.max_age_days == 0)
    fail("{}: data.max_age_from is only read with data.max_age_days > 0",
         cfg.where("data.max_age_from"));
  if (!d.max_age_from.empty()) {
    const std::string& v = d.max_age_from;
    const bool digits = std::all_of(v.begin() + (v[0] == '-' ? 1 : 0), v.end(),
                                    [](char c) { return c >= '0' && c <= '9'; }) &&
                        v != "-";
    const bool date_shape = v.size() == 10 && v[4] == '-' && v[7] == '-' &&
                            std::all_of(v.begin(), v.end(), [](char c) {
                              return (c >= '0' && c <= '9') || c == '-';
                            });
    if (!digits && !date_shape)
      fail("{}: data.max_age_from \"{}\": expected a UTC date YYYY-MM-DD or an integer "
           "timestamp",
           cfg.where("data.max_age_from"), v);
    if (date_shape && !data::utc_date_days(v))
      fail("{}: data.max_age_from \"{}\": not a valid date; expected a UTC date YYYY-MM-DD such "
           "as 2024-01-31",
           cfg.where("data.max_age_from"), v);
  }
}

void check_export(const Config& cfg) {
  const Settings& s = cfg.settings();
  if (!s.export_.enabled || s.model.type == "none") return;
  // The exported index needs pq_m to divide the factor dimension (the item bias adds a column).
  const bool bias = (s.model.type == "bpr" || s.model.type == "softmax") && s.model.item_bias;
  const int64_t dim = s.model.factors + (bias ? 1 : 0);
  if (s.index.type == "ivf_pq" && s.index.pq_m > 0 && dim % s.index.pq_m != 0)
    fail("{}: index.pq_m {}: expected a divisor of the factor dimension {} (or 0 to choose one)",
         cfg.where("index.pq_m"), s.index.pq_m, dim);
}

}  // namespace

void check_model_device(const Config& cfg, const std::string& device) {
  const ModelSection& m = cfg.settings().model;
  if (m.type != "ials") return;
  const bool replaced = m.observed_weight == "replaced";
  if (replaced && device.rfind("cuda", 0) == 0)
    fail("{}: model.observed_weight replaced trains on the CPU only (the CUDA kernels weigh "
         "observed pairs as `added`); set train.device: cpu or model.observed_weight: added",
         cfg.where("model.observed_weight"));
  // Replaced keeps the run on the CPU whatever the device: a CUDA device is no way out there.
  if (m.dtype != "float32" && (device == "cpu" || replaced))
    fail("{}: model.dtype {} needs a CUDA device, but this run trains on the CPU{}, which stores "
         "factors in float32 only; set model.dtype: float32{}",
         cfg.where("model.dtype"), m.dtype,
         replaced                                   ? " (model.observed_weight replaced)"
         : cfg.settings().train.device == "cpu" ? " (train.device cpu)"
                                                    : "",
         replaced ? "" : " or train.device: cuda");
}

void check(const Config& cfg) {
  check_run(cfg);
  check_data(cfg);
  check_split(cfg);
  check_model(cfg);
  check_eval(cfg);
  check_export(cfg);
  check_privacy(cfg);
}

}  // namespace recforge::config
