#include "pipeline/dataset.h"

#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "data/stats.h"
#include "data/weight.h"

namespace recforge::pipeline {
namespace {

char delimiter_from(const std::string& name) {
  if (name == "auto") return 0;
  if (name == "comma") return ',';
  if (name == "tab") return '\t';
  if (name == "space" || name == "whitespace") return ' ';
  if (name == "semicolon") return ';';
  if (name == "pipe") return '|';
  RF_ASSERT(false, "unknown delimiter " + name);
}

data::Duplicates duplicates_from(const std::string& name) {
  if (name == "sum") return data::Duplicates::kSum;
  if (name == "max") return data::Duplicates::kMax;
  return data::Duplicates::kLast;
}

std::optional<std::string> optional_string(const config::Config& cfg, const std::string& key) {
  if (!cfg.is_set(key)) return std::nullopt;
  return cfg.get_string(key);
}

}  // namespace

data::LoadOptions load_options(const config::Config& cfg) {
  data::LoadOptions o;
  const std::string& format = cfg.get_string("data.format");
  o.format = format == "adjacency" ? data::Format::kAdjacency : data::Format::kDelimited;
  o.delimiter = delimiter_from(cfg.get_string("data.delimiter"));
  o.header = cfg.get_bool("data.header");
  o.user_col = cfg.get_string("data.user_col");
  o.item_col = cfg.get_string("data.item_col");
  o.weight_col = optional_string(cfg, "data.weight_col");
  o.time_col = optional_string(cfg, "data.time_col");
  o.string_ids = cfg.get_string("data.id_type") == "string";
  o.duplicates = duplicates_from(cfg.get_string("data.duplicates"));
  o.min_weight = cfg.get_float("data.min_weight");
  o.min_user_interactions = cfg.get_int("data.min_user_interactions");
  o.min_item_interactions = cfg.get_int("data.min_item_interactions");
  o.skip_errors = cfg.get_string("data.on_error") == "skip";
  o.use_cache = cfg.get_bool("data.cache");
  o.cache_dir = cfg.get_string("data.cache_dir");
  if (o.cache_dir.empty()) o.cache_dir = data::default_cache_dir();
  if (o.format == data::Format::kAdjacency && (o.weight_col || o.time_col))
    fail("{}: data.format adjacency has no weight or time columns; remove data.weight_col and "
         "data.time_col",
         cfg.where(o.weight_col ? "data.weight_col" : "data.time_col"));
  return o;
}

data::SyntheticOptions synthetic_options(const config::Config& cfg) {
  data::SyntheticOptions o;
  o.users = cfg.get_int("synthetic.users");
  o.items = cfg.get_int("synthetic.items");
  o.interactions = cfg.get_int("synthetic.interactions");
  o.communities = static_cast<int>(cfg.get_int("synthetic.communities"));
  o.community_strength = cfg.get_float("synthetic.community_strength");
  o.popularity_exponent = cfg.get_float("synthetic.popularity_exponent");
  o.activity_sigma = cfg.get_float("synthetic.activity_sigma");
  o.days = cfg.get_int("synthetic.days");
  o.binary_weights = cfg.get_string("synthetic.weights") == "binary";
  o.seed = static_cast<uint64_t>(cfg.get_int("synthetic.seed"));
  return o;
}

data::SplitOptions split_options(const config::Config& cfg) {
  data::SplitOptions o;
  const std::string& m = cfg.get_string("split.method");
  using M = data::SplitMethod;
  o.method = m == "given" ? M::kGiven
             : m == "random" ? M::kRandom
             : m == "leave_last" ? M::kLeaveLast
             : m == "time" ? M::kTime
             : m == "users" ? M::kUsers
                            : M::kNone;
  o.test_fraction = cfg.get_float("split.test_fraction");
  o.leave_k = static_cast<int>(cfg.get_int("split.leave_k"));
  if (cfg.is_set("split.cutoff")) o.cutoff = cfg.get_float("split.cutoff");
  o.cutoff_quantile = cfg.get_float("split.cutoff_quantile");
  o.heldout_users = cfg.get_float("split.heldout_users");
  o.validation_fraction = cfg.get_float("split.validation_fraction");
  o.seed = static_cast<uint64_t>(cfg.get_int("run.seed"));
  return o;
}

data::WeightOptions weight_options(const config::Config& cfg) {
  data::WeightOptions o;
  const std::string& s = cfg.get_string("weighting.scheme");
  using W = data::WeightScheme;
  o.scheme = s == "linear" ? W::kLinear : s == "log" ? W::kLog : s == "bm25" ? W::kBm25 : W::kNone;
  o.alpha = cfg.get_float("weighting.alpha");
  o.eps = cfg.get_float("weighting.eps");
  o.bm25_k1 = cfg.get_float("weighting.bm25_k1");
  o.bm25_b = cfg.get_float("weighting.bm25_b");
  return o;
}

Dataset prepare_dataset(const config::Config& cfg) {
  const std::string& format = cfg.get_string("data.format");
  const data::SplitOptions so = split_options(cfg);
  const bool given = so.method == data::SplitMethod::kGiven;
  data::Loaded loaded;
  if (format == "synthetic") {
    if (given)
      fail("{}: split.method given needs data files; data.format synthetic generates one set "
           "(use random, leave_last, time or users)",
           cfg.where("split.method"));
    auto syn = data::generate_synthetic(synthetic_options(cfg));
    loaded.users = std::move(syn.users);
    loaded.items = std::move(syn.items);
    loaded.parts.push_back(std::move(syn.x));
    loaded.report.raw_interactions = loaded.parts.front().size();
    data::LoadOptions lo = load_options(cfg);
    data::clean(loaded, lo);
  } else {
    if (!cfg.is_set("data.path"))
      fail("{}: data.path is not set; data.format {} reads interactions from a file",
           cfg.source().empty() ? std::string("config") : cfg.source(), format);
    std::vector<std::string> paths{cfg.get_string("data.path")};
    if (given) {
      if (!cfg.is_set("data.test_path"))
        fail("{}: split.method given needs data.test_path (the test file)",
             cfg.where("split.method"));
      paths.push_back(cfg.get_string("data.test_path"));
    } else if (cfg.is_set("data.test_path")) {
      fail("{}: data.test_path is only read by split.method given (split.method is {})",
           cfg.where("data.test_path"), cfg.get_string("split.method"));
    }
    loaded = data::load(paths, load_options(cfg));
    const auto& r = loaded.report;
    if (given && loaded.parts[1].size() == 0)
      fail("{}: no test interactions left for split.method given: {} have a user and {} an item "
           "that is not in the (filtered) training data {}; expected at least one",
           paths[1], r.test_unknown_user_interactions, r.test_unknown_item_interactions, paths[0]);
    if (given && r.test_unknown_user_interactions + r.test_unknown_item_interactions > 0)
      log().warn(
          "{}: dropped {} test interaction(s) whose user and {} whose item is not in the "
          "(filtered) training data {}",
          paths[1], r.test_unknown_user_interactions, r.test_unknown_item_interactions, paths[0]);
  }

  Dataset d;
  d.users = std::move(loaded.users);
  d.items = std::move(loaded.items);
  d.load_report = loaded.report;
  const int64_t nu = d.users.size(), ni = d.items.size();
  d.split = data::split_interactions(loaded.parts[0], nu, so, given ? &loaded.parts[1] : nullptr);
  if (d.split.train.size() == 0) fail("the split left no training interactions");
  log().info("split ({}): {} train, {} validation, {} test interactions",
             cfg.get_string("split.method"), d.split.train.size(), d.split.validation.size(),
             d.split.test.size());
  d.weighting = weight_options(cfg);
  d.confidence = data::confidence(d.split.train, nu, ni, d.weighting);
  d.user_items = data::Csr::from_interactions(nu, ni, d.split.train, d.confidence);
  d.item_users = d.user_items.transpose();
  return d;
}

nlohmann::json Dataset::stats() const {
  const int64_t nu = users.size(), ni = items.size();
  nlohmann::json s;
  s["users"] = nu;
  s["items"] = ni;
  s["train"] = data::interaction_stats(split.train, nu, ni);
  if (split.validation.size()) s["validation"] = data::interaction_stats(split.validation, nu, ni);
  if (split.validation_foldin.size())
    s["validation_foldin"] = data::interaction_stats(split.validation_foldin, nu, ni);
  if (split.test.size()) s["test"] = data::interaction_stats(split.test, nu, ni);
  if (split.test_foldin.size()) s["test_foldin"] = data::interaction_stats(split.test_foldin, nu, ni);
  std::vector<double> conf(confidence.begin(), confidence.end());
  s["train"]["confidence"] = data::quantiles(conf);
  const auto& r = load_report;
  s["load"] = {{"lines", r.lines},
               {"skipped_lines", r.skipped_lines},
               {"raw_interactions", r.raw_interactions},
               {"duplicates_combined", r.duplicates_combined},
               {"below_min_weight", r.below_min_weight},
               {"filtered_interactions", r.filtered_interactions},
               {"filtered_users", r.filtered_users},
               {"filtered_items", r.filtered_items},
               {"test_unknown_user_interactions", r.test_unknown_user_interactions},
               {"test_unknown_item_interactions", r.test_unknown_item_interactions},
               {"filter_rounds", r.filter_rounds},
               {"parse_seconds", r.parse_seconds},
               {"lines_per_second", r.lines_per_second},
               {"from_cache", r.from_cache}};
  return s;
}

}  // namespace recforge::pipeline

namespace recforge::pipeline {

std::string Dataset::fingerprint() const {
  Sha256 h;
  for (const auto* ids : {&users.ids(), &items.ids()}) {
    for (const auto& s : *ids) {
      h.update(s);
      h.update("\n", 1);
    }
    h.update("--\n", 3);
  }
  for (const auto* x : {&split.train, &split.validation, &split.test, &split.validation_foldin,
                        &split.test_foldin}) {
    h.update(x->users.data(), x->users.size() * sizeof(data::index_t));
    h.update(x->items.data(), x->items.size() * sizeof(data::index_t));
    h.update("|", 1);
  }
  return h.hex();
}

}  // namespace recforge::pipeline
