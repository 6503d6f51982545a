#include "pipeline/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/text.h"
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

}  // namespace

std::vector<std::string> data_paths(const config::Config& cfg) {
  const config::Settings& s = cfg.settings();
  std::vector<std::string> paths;
  if (s.data.format == "synthetic" || !s.data.path) return paths;
  paths.push_back(*s.data.path);
  if (split_options(cfg).method == data::SplitMethod::kGiven && s.data.test_path)
    paths.push_back(*s.data.test_path);
  return paths;
}

namespace {

// A description of the synthetic generator's options: what the salt of synthetic data derives
// from (there are no files to hash).
std::string synthetic_source(const data::SyntheticOptions& o) {
  Sha256 h;
  h.update(fmt::format("synthetic;users={};items={};interactions={};communities={};"
                       "strength={:.17g};popularity={:.17g};activity={:.17g};days={};binary={};"
                       "seed={}",
                       o.users, o.items, o.interactions, o.communities, o.community_strength,
                       o.popularity_exponent, o.activity_sigma, o.days, o.binary_weights, o.seed));
  return h.hex();
}

}  // namespace

std::shared_ptr<const data::UserExclusion> user_exclusion(
    const config::Config& cfg, const std::shared_ptr<const data::UserExclusion>& given,
    bool read_opt_out, std::vector<std::string>& listed) {
  const config::Settings& s = cfg.settings();
  listed.clear();
  const bool opt_out = read_opt_out && s.privacy.opt_out.has_value();
  if (!given && !opt_out) return nullptr;
  auto e = std::make_shared<data::UserExclusion>();
  *e = given ? *given : data::UserExclusion(exclusion_salt(cfg));
  if (opt_out) {
    for (const std::string& id : opt_out_ids(cfg)) listed.push_back(e->hash(id));
    for (const std::string& h : listed) e->add_hash(data::UserExclusion::Set::kOptOut, h);
  }
  return e;
}

std::string exclusion_salt(const config::Config& cfg) {
  if (cfg.settings().data.format == "synthetic")
    return data::UserExclusion::salt_for_sources({synthetic_source(synthetic_options(cfg))});
  return data::UserExclusion::salt_for_sources(data_source_hashes(cfg));
}

std::string canonical_user_id(const config::Config& cfg, std::string id) {
  const config::Settings& s = cfg.settings();
  if (s.data.id_type == "string" && s.data.format != "synthetic") return id;
  std::string_view v = id;
  if (v.size() > 1 && v.front() == '+') v.remove_prefix(1);
  if (const std::optional<int64_t> x = parse_int64(v)) return std::to_string(*x);
  return id;
}

std::vector<std::string> opt_out_ids(const config::Config& cfg) {
  const config::Settings& s = cfg.settings();
  if (!s.privacy.opt_out) return {};
  const std::string setting =
      fmt::format("privacy.opt_out (set at {})", cfg.where("privacy.opt_out"));
  std::set<std::string> ids;
  const bool integers = s.data.id_type != "string" || s.data.format == "synthetic";
  int64_t entry = 0, hashes = 0, not_integers = 0, first_bad = 0;
  for (std::string& id : data::read_user_id_file(*s.privacy.opt_out, setting)) {
    ++entry;
    if (!integers && id.find(" #") != std::string::npos) ++hashes;
    std::string canonical = canonical_user_id(cfg, std::move(id));
    // An id that cannot match any user (1.67e2, "167 # asked in May" for integer ids) kept
    // the user in training with only an info line counting unmatched ids. (A shared list may
    // hold other systems' ids too: they stay, warned about.) canonical_user_id rewrites every
    // integer id, so one that is no integer comes back unparsed.
    if (integers && !parse_int64(canonical) && ++not_integers == 1) first_bad = entry;
    ids.insert(std::move(canonical));
  }
  if (not_integers > 0)
    log().warn("{}: {} id(s) are not integers (the first is id {} of the file), so they can "
               "match no user (data.id_type is int): a decimal point, an exponent or a comment "
               "after the id makes it another id ('#' starts a comment only at the start of a "
               "line)",
               *s.privacy.opt_out, not_integers, first_bad);
  if (hashes > 0)
    log().warn("{}: {} id(s) hold \" #\" ('#' starts a comment only at the start of a line): "
               "each is taken whole as one user id",
               *s.privacy.opt_out, hashes);
  return {ids.begin(), ids.end()};
}

std::vector<std::string> data_source_hashes(const config::Config& cfg) {
  return data::source_hashes(data_paths(cfg));
}

data::LoadOptions load_options(const config::Config& cfg) {
  const config::DataSection& d = cfg.settings().data;
  data::LoadOptions o;
  o.format = d.format == "adjacency" ? data::Format::kAdjacency : data::Format::kDelimited;
  o.delimiter = delimiter_from(d.delimiter);
  o.header = d.header;
  o.user_col = d.user_col;
  o.item_col = d.item_col;
  o.weight_col = d.weight_col;
  o.time_col = d.time_col;
  o.string_ids = d.id_type == "string";
  o.duplicates = duplicates_from(d.duplicates);
  o.min_weight = d.min_weight;
  o.min_user_interactions = d.min_user_interactions;
  o.min_item_interactions = d.min_item_interactions;
  o.skip_errors = d.on_error == "skip";
  o.max_age_days = d.max_age_days;
  o.max_age_from = d.max_age_from;
  // Synthetic timestamps are unix seconds, whatever data.time_unit says.
  o.time_unit = d.format == "synthetic" ? data::TimeUnit::kSeconds : data::time_unit_from(d.time_unit);
  o.use_cache = d.cache;
  o.cache_dir = d.cache_dir;
  if (o.cache_dir.empty()) o.cache_dir = data::default_cache_dir();
  return o;
}

data::SyntheticOptions synthetic_options(const config::Config& cfg) {
  const config::SyntheticSection& g = cfg.settings().synthetic;
  data::SyntheticOptions o;
  o.users = g.users;
  o.items = g.items;
  o.interactions = g.interactions;
  o.communities = static_cast<int>(g.communities);
  o.community_strength = g.community_strength;
  o.popularity_exponent = g.popularity_exponent;
  o.activity_sigma = g.activity_sigma;
  o.days = g.days;
  o.binary_weights = g.weights == "binary";
  o.seed = static_cast<uint64_t>(g.seed);
  return o;
}

data::SplitOptions split_options(const config::Config& cfg) {
  const config::SplitSection& p = cfg.settings().split;
  data::SplitOptions o;
  const std::string& m = p.method;
  using M = data::SplitMethod;
  o.method = m == "given" ? M::kGiven
             : m == "random" ? M::kRandom
             : m == "leave_last" ? M::kLeaveLast
             : m == "time" ? M::kTime
             : m == "users" ? M::kUsers
                            : M::kNone;
  o.test_fraction = p.test_fraction;
  o.leave_k = static_cast<int>(p.leave_k);
  o.cutoff = p.cutoff;
  o.cutoff_quantile = p.cutoff_quantile;
  o.heldout_users = p.heldout_users;
  o.validation_fraction = p.validation_fraction;
  o.seed = static_cast<uint64_t>(cfg.settings().run.seed);
  return o;
}

data::WeightOptions weight_options(const config::Config& cfg) {
  const config::WeightingSection& w = cfg.settings().weighting;
  data::WeightOptions o;
  using W = data::WeightScheme;
  o.scheme = w.scheme == "linear" ? W::kLinear
             : w.scheme == "log"  ? W::kLog
             : w.scheme == "bm25" ? W::kBm25
                                  : W::kNone;
  o.alpha = w.alpha;
  o.eps = w.eps;
  o.bm25_k1 = w.bm25_k1;
  o.bm25_b = w.bm25_b;
  return o;
}

void check_confidences(const config::Config& cfg, const data::Interactions& x,
                       const std::vector<float>& conf, const data::IdMap& users,
                       const data::IdMap& items) {
  data::offset_t k = 0;
  while (k < static_cast<data::offset_t>(conf.size()) && std::isfinite(conf[k])) ++k;
  if (k == static_cast<data::offset_t>(conf.size())) return;
  const config::Settings& s = cfg.settings();
  // The user by the length of their id: errors and logs hold no raw user ids (docs/privacy.md).
  const std::string user = users.external(x.users[k]), item = items.external(x.items[k]);
  if (!std::isfinite(x.weights[k]))  // each weight was read in range: a sum of duplicates
    fail("{}: the weights of a user (an id of {} byte{}) and item \"{}\" sum to {}, past "
         "float32's largest value 3.4e38 (data.duplicates: {} adds the weights of repeated "
         "pairs); lower the weights or set data.duplicates: max",
         s.data.path ? *s.data.path : std::string("the data"), user.size(),
         user.size() == 1 ? "" : "s", item, x.weights[k], s.data.duplicates);
  fail("{}: weighting.scheme {} turns the weight {} of a user (an id of {} byte{}) and item "
       "\"{}\" into the confidence {}, past float32's largest value 3.4e38; lower "
       "weighting.alpha ({}) or the weights",
       cfg.where("weighting.scheme"), s.weighting.scheme, x.weights[k], user.size(),
       user.size() == 1 ? "" : "s", item, conf[k], s.weighting.alpha);
}

Dataset prepare_dataset(const config::Config& cfg,
                        std::shared_ptr<const data::UserExclusion> exclusion, bool read_opt_out) {
  config::check(cfg);  // a config made by Config::set may not have been checked yet
  const config::Settings& s = cfg.settings();
  set_file_mode(file_mode_from(s.privacy.file_mode));  // of the data cache it may write
  const data::SplitOptions so = split_options(cfg);
  const bool given = so.method == data::SplitMethod::kGiven;
  std::vector<std::string> opt_out_listed;  // hashes of the ids in the privacy.opt_out file
  const std::shared_ptr<const data::UserExclusion> excl =
      user_exclusion(cfg, exclusion, read_opt_out, opt_out_listed);
  data::Loaded loaded;
  // config::check refused the combinations of data.format, split.method and the file and
  // column settings that cannot work (so `given` has a data.test_path); what is left to check
  // here is that a file is named.
  if (s.data.format == "synthetic") {
    auto syn = data::generate_synthetic(synthetic_options(cfg));
    loaded.users = std::move(syn.users);
    loaded.items = std::move(syn.items);
    loaded.parts.push_back(std::move(syn.x));
    loaded.report.raw_interactions = loaded.parts.front().size();
    data::LoadOptions lo = load_options(cfg);
    if (excl) data::exclude_users(loaded, *excl);
    data::apply_retention(loaded, lo, "synthetic data");  // data.max_age_days
    data::clean(loaded, lo, {"synthetic data"});
  } else {
    if (!s.data.path)
      fail("{}: data.path is not set; data.format {} reads interactions from a file",
           cfg.source().empty() ? std::string("config") : cfg.source(), s.data.format);
    std::vector<std::string> paths{*s.data.path};
    if (given) paths.push_back(*s.data.test_path);
    data::LoadOptions lo = load_options(cfg);
    lo.exclusion = excl;
    loaded = data::load(paths, lo);
    const auto& r = loaded.report;
    if (given && loaded.parts[1].size() == 0)
      fail("{}: no test interactions left for split.method given: {} have a user and {} an item "
           "that is not in the (filtered) training data {}{}; expected at least one",
           paths[1], r.test_unknown_user_interactions, r.test_unknown_item_interactions, paths[0],
           r.retention_max_age_days > 0
               ? fmt::format(", and data.max_age_days dropped {} interaction(s) of the files "
                             "before the cutoff {}",
                             r.retention_dropped, r.retention_cutoff)
               : std::string());
    if (given && r.test_unknown_user_interactions + r.test_unknown_item_interactions > 0)
      log().warn(
          "{}: dropped {} test interaction(s) whose user and {} whose item is not in the "
          "(filtered) training data {}",
          paths[1], r.test_unknown_user_interactions, r.test_unknown_item_interactions, paths[0]);
  }

  if (const auto& r = loaded.report; r.retention_max_age_days > 0)
    log().info("retention: dropped {} interaction(s) with a timestamp before {} ({} days before "
               "{}, data.max_age_days)",
               r.retention_dropped, r.retention_cutoff, r.retention_max_age_days,
               r.retention_reference);

  Dataset d;
  d.users = std::move(loaded.users);
  d.items = std::move(loaded.items);
  d.load_report = loaded.report;
  if (excl) {
    const data::LoadReport& r = d.load_report;
    data::UserExclusion matched(excl->salt());
    for (const auto& h : r.opt_out_matched) matched.add_hash(data::UserExclusion::Set::kOptOut, h);
    for (const auto& h : r.forgotten_matched)
      matched.add_hash(data::UserExclusion::Set::kForgotten, h);
    d.excluded = std::move(matched);
    d.opt_out_listed = static_cast<int64_t>(opt_out_listed.size());
    const int64_t not_found = std::count_if(
        opt_out_listed.begin(), opt_out_listed.end(), [&](const std::string& h) {
          return !std::binary_search(r.opt_out_matched.begin(), r.opt_out_matched.end(), h);
        });
    // Counts only: never an id.
    log().info("privacy: dropped {} opted-out user(s) ({} interactions) and {} forgotten user(s) "
               "({} interactions) from the data{}",
               r.opt_out_users, r.opt_out_interactions, r.forgotten_users,
               r.forgotten_interactions,
               not_found > 0
                   ? fmt::format("; {} id(s) listed in privacy.opt_out are not in the data",
                                 not_found)
                   : std::string());
  }
  const int64_t nu = d.users.size(), ni = d.items.size();
  d.split = data::split_interactions(loaded.parts[0], nu, so, given ? &loaded.parts[1] : nullptr);
  if (d.split.train.size() == 0) fail("the split left no training interactions");
  log().info("split ({}): {} train, {} validation, {} test interactions", s.split.method,
             d.split.train.size(), d.split.validation.size(), d.split.test.size());
  d.weighting = weight_options(cfg);
  d.confidence = data::confidence(d.split.train, nu, ni, d.weighting);
  check_confidences(cfg, d.split.train, d.confidence, d.users, d.items);
  for (const data::Interactions* x : {&d.split.validation_foldin, &d.split.test_foldin})
    if (x->size() > 0)  // weighted as evaluate() weights them
      check_confidences(cfg, *x, data::confidence(*x, nu, ni, d.weighting), d.users, d.items);
  d.user_items = data::Csr::from_interactions(nu, ni, d.split.train, d.confidence);
  d.item_users = d.user_items.transpose();
  // Held-out users without a training interaction (a time split's new users; the users split
  // folds its held-out users in instead): the model has no embedding of theirs, yet they are
  // scored. Said, so that nobody reads their arbitrary lists as the model's quality.
  if (so.method != data::SplitMethod::kUsers)
    for (const auto& [part, name] : {std::pair{&d.split.validation, "validation"},
                                     std::pair{&d.split.test, "test"}}) {
      std::vector<char> held(static_cast<size_t>(nu), 0);
      for (const data::index_t u : part->users) held[static_cast<size_t>(u)] = 1;
      int64_t users = 0, cold = 0;
      for (int64_t u = 0; u < nu; ++u) {
        if (!held[static_cast<size_t>(u)]) continue;
        ++users;
        cold += d.user_items.row_size(u) == 0;
      }
      if (cold > 0)
        log().warn(
            "split ({}): {} of the {} {} users have no training interaction: the model learns "
            "no embedding of theirs (their lists are arbitrary), yet they count in the {} "
            "metrics; split.method users evaluates new users by folding in part of their "
            "interactions",
            s.split.method, cold, users, name, name);
    }
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
  if (excluded)  // counts only, never ids
    s["privacy"] = {{"opt_out_users", r.opt_out_users},
                    {"opt_out_interactions", r.opt_out_interactions},
                    {"forgotten_users", r.forgotten_users},
                    {"forgotten_interactions", r.forgotten_interactions}};
  if (r.retention_max_age_days > 0)
    s["retention"] = {{"max_age_days", r.retention_max_age_days},
                      {"reference", r.retention_reference},
                      {"cutoff", r.retention_cutoff},
                      {"dropped_interactions", r.retention_dropped}};
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
  for (const data::Interactions* x : split.parts()) {
    h.update(x->users.data(), x->users.size() * sizeof(data::index_t));
    h.update(x->items.data(), x->items.size() * sizeof(data::index_t));
    h.update("|", 1);
  }
  return h.hex();
}

}  // namespace recforge::pipeline

namespace recforge::pipeline {

namespace {
// splitmix64's finaliser: a bijective mix of 64 bits.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
}  // namespace

void PairDigest::add(int part, data::index_t user, data::index_t item) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(user)) << 32) |
                       static_cast<uint32_t>(item);
  const uint64_t h = mix64(key ^ mix64(static_cast<uint64_t>(part) + 1));
  sum[0] += h;
  sum[1] += mix64(h ^ 0xD1B54A32D192ED03ULL);
}

void PairDigest::add(int part, const data::Interactions& x) {
  for (data::offset_t k = 0; k < x.size(); ++k) add(part, x.users[k], x.items[k]);
}

void PairDigest::add_values(int part, const data::Interactions& x) {
  const uint64_t salt = mix64(static_cast<uint64_t>(part) ^ 0x76616C7565733031ULL);  // "values01"
  for (data::offset_t k = 0; k < x.size(); ++k) {
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(x.users[k])) << 32) |
                         static_cast<uint32_t>(x.items[k]);
    uint32_t w = 0;
    std::memcpy(&w, &x.weights[k], sizeof w);
    const uint64_t t = x.has_times() ? static_cast<uint64_t>(x.times[k]) : 0;
    const uint64_t h = mix64(mix64(key ^ salt) + mix64(w ^ (salt << 1)) + mix64(t ^ (salt >> 1)));
    sum[0] += h;
    sum[1] += mix64(h ^ 0xD1B54A32D192ED03ULL);
  }
}

std::string PairDigest::hex() const { return fmt::format("{:016x}{:016x}", sum[0], sum[1]); }

std::string unordered_fingerprint(const data::IdMap& users, const data::IdMap& items,
                                  const PairDigest& digest) {
  Sha256 h;
  h.update("unordered-v1\n", 13);
  for (const auto* ids : {&users.ids(), &items.ids()}) {
    for (const auto& s : *ids) {
      h.update(s);
      h.update("\n", 1);
    }
    h.update("--\n", 3);
  }
  h.update(digest.hex());
  return h.hex();
}

PairDigest pair_digest(const data::Split& split) {
  PairDigest d;
  int part = 0;
  for (const data::Interactions* x : split.parts()) d.add(part++, *x);
  return d;
}

PairDigest values_digest(const data::Split& split) {
  PairDigest d;
  int part = 0;
  for (const data::Interactions* x : split.parts()) d.add_values(part++, *x);
  return d;
}

std::string Dataset::unordered_fingerprint() const {
  return pipeline::unordered_fingerprint(users, items, pair_digest(split));
}

std::string Dataset::values_digest() const { return pipeline::values_digest(split).hex(); }

}  // namespace recforge::pipeline
