#include "dist/dataset_dist.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/hash.h"
#include "dist/errors.h"
#include "core/log.h"
#include "core/text.h"
#include "data/load.h"
#include "data/retention.h"
#include "data/split.h"
#include "data/weight.h"
#include "pipeline/dataset.h"

namespace recforge::dist {

using data::index_t;
using data::offset_t;

void check_distributable(const config::Config& cfg) {
  const config::Settings& s = cfg.settings();
  if (s.model.type != "ials")
    fail_collective("{}: model.type is {}, but only ials trains across processes (mpirun -np P); run {} "
         "models without mpirun, or with -np 1",
         cfg.where("model.type"), s.model.type, s.model.type);
  if (s.data.format == "synthetic")
    fail_collective("{}: data.format synthetic is generated whole by each process; write the set to a file "
         "with `recforge datagen` and train on the file to train across processes",
         cfg.where("data.format"));
  if (s.split.method == "users")
    fail_collective("{}: split.method users chooses held-out users over the whole data set, which no "
         "process of a distributed run holds; use random, leave_last, given or none",
         cfg.where("split.method"));
  if (s.split.method == "time" && !s.split.cutoff)
    fail_collective("{}: split.method time without split.cutoff takes a quantile of all timestamps, which "
         "no process of a distributed run holds; set split.cutoff to a timestamp",
         cfg.where("split.method"));
}

namespace {

// One interaction on its way to another rank.
struct Rec {
  index_t user, item;
  float weight;
  int32_t pad = 0;
  int64_t time;
};

// The global id map: every rank's distinct ids, merged and numbered as data::load numbers them
// (numeric order for integer ids, byte order for text). `local` is a shard's map.
data::IdMap merge_ids(const Comm& comm, const data::IdMap& local, bool string_ids) {
  if (!string_ids) {
    std::vector<int64_t> mine;
    mine.reserve(static_cast<size_t>(local.size()));
    for (const std::string& id : local.ids()) {
      const std::optional<int64_t> v = parse_int64(id);
      RF_ASSERT(v.has_value(), "merge_ids: an integer id map holds " + id);
      mine.push_back(*v);
    }
    std::vector<int64_t> all = comm.allgatherv(mine);
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    std::vector<std::string> ids;
    ids.reserve(all.size());
    for (const int64_t v : all) ids.push_back(std::to_string(v));
    return data::IdMap(std::move(ids));
  }
  std::vector<int64_t> lengths;
  std::vector<char> bytes;
  for (const std::string& id : local.ids()) {
    lengths.push_back(static_cast<int64_t>(id.size()));
    bytes.insert(bytes.end(), id.begin(), id.end());
  }
  const std::vector<int64_t> all_lengths = comm.allgatherv(lengths);
  const std::vector<char> all_bytes = comm.allgatherv(bytes);
  std::vector<std::string> ids;
  ids.reserve(all_lengths.size());
  size_t pos = 0;
  for (const int64_t n : all_lengths) {
    ids.emplace_back(all_bytes.data() + pos, static_cast<size_t>(n));
    pos += static_cast<size_t>(n);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return data::IdMap(std::move(ids));
}

// The global index of each id of `local` in `global`.
std::vector<index_t> to_global(const data::IdMap& local, const data::IdMap& global) {
  std::vector<index_t> map(static_cast<size_t>(local.size()));
  for (int64_t j = 0; j < local.size(); ++j) {
    const std::optional<index_t> g = global.find(local.external(static_cast<index_t>(j)));
    RF_ASSERT(g.has_value(), "to_global: an id missing from the merged map");
    map[static_cast<size_t>(j)] = *g;
  }
  return map;
}

// Sends each interaction of `x` to the rank that owns its user (or item, by_item) under
// `parts`; returns what this rank receives, in rank order (so in file order when the ranks
// hold consecutive pieces of the file in rank order).
data::Interactions redistribute(const Comm& comm, data::Interactions&& x, const Partition& parts,
                                bool by_item) {
  const int P = comm.size();
  const bool times = x.has_times();
  std::vector<int64_t> counts(static_cast<size_t>(P), 0);
  std::vector<int> owner(static_cast<size_t>(x.size()));
  for (offset_t k = 0; k < x.size(); ++k) {
    owner[static_cast<size_t>(k)] = parts.owner(by_item ? x.items[k] : x.users[k]);
    ++counts[static_cast<size_t>(owner[static_cast<size_t>(k)])];
  }
  std::vector<int64_t> at(static_cast<size_t>(P), 0);
  for (int r = 1; r < P; ++r) at[r] = at[r - 1] + counts[r - 1];
  std::vector<Rec> send(static_cast<size_t>(x.size()));
  for (offset_t k = 0; k < x.size(); ++k)
    send[static_cast<size_t>(at[owner[static_cast<size_t>(k)]]++)] =
        Rec{x.users[k], x.items[k], x.weights[k], 0, times ? x.times[k] : 0};
  owner = {};
  data::Interactions out = x.empty_like();
  x = data::Interactions();  // at most two copies of the shard at any moment
  std::vector<Rec> got = comm.alltoallv(send, counts);
  send = {};
  out.reserve(static_cast<offset_t>(got.size()), times);
  for (const Rec& r : got) out.push(r.user, r.item, r.weight, r.time);
  return out;
}

// Drops the interactions below options.min_weight; returns how many.
offset_t drop_light(data::Interactions& x, double min_weight) {
  if (min_weight <= 0) return 0;
  data::Interactions kept = x.empty_like();
  for (offset_t k = 0; k < x.size(); ++k)
    if (x.weights[k] >= min_weight) kept.push_from(x, k);
  const offset_t dropped = x.size() - kept.size();
  x = std::move(kept);
  return dropped;
}

// A CSR of rows [range) of `x` (rows relative to range.begin), `cols` columns, `values`
// (1 when empty); by_item swaps the roles of users and items.
data::Csr local_csr(const data::Interactions& x, Range range, int64_t cols,
                    const std::vector<float>& values, bool by_item) {
  std::vector<index_t> rows(static_cast<size_t>(x.size())), columns(static_cast<size_t>(x.size()));
  for (offset_t k = 0; k < x.size(); ++k) {
    const index_t r = by_item ? x.items[k] : x.users[k];
    rows[static_cast<size_t>(k)] = static_cast<index_t>(r - range.begin);
    columns[static_cast<size_t>(k)] = by_item ? x.users[k] : x.items[k];
  }
  return data::Csr::from_coo(range.size(), cols, rows, columns,
                             values.empty() ? std::vector<float>(static_cast<size_t>(x.size()), 1.f)
                                            : values);
}

// Combines this rank's partial digest with the others' (sums modulo 2^64, exactly).
pipeline::PairDigest sum_digest(const Comm& comm, const pipeline::PairDigest& mine) {
  // Each 64-bit lane in two 32-bit halves: P of them sum in int64 without overflow.
  int64_t v[4];
  for (int j = 0; j < 2; ++j) {
    v[2 * j] = static_cast<int64_t>(mine.sum[j] >> 32);
    v[2 * j + 1] = static_cast<int64_t>(mine.sum[j] & 0xFFFFFFFFULL);
  }
  comm.allreduce_sum(v, 4);
  pipeline::PairDigest all;
  for (int j = 0; j < 2; ++j)
    all.sum[j] = (static_cast<uint64_t>(v[2 * j]) << 32) + static_cast<uint64_t>(v[2 * j + 1]);
  return all;
}

// The first rank whose value differs from rank 0's, or -1.
int first_other(const std::vector<std::string>& values) {
  for (size_t r = 1; r < values.size(); ++r)
    if (values[r] != values[0]) return static_cast<int>(r);
  return -1;
}

constexpr const char* kSameInputs =
    "every process must run the same command on the same files, seen at the same path "
    "(docs/distributed.md)";

// Every rank reads the same version of each data file: the same size and the same sampled
// digest (sha256_file_sample: a file that differs only between its sampled blocks passes). A
// file missing on some ranks is one error, said once.
void check_same_files(const Comm& comm, const std::vector<std::string>& paths) {
  std::vector<std::string> mine(paths.size());
  std::string error;
  try {
    for (size_t f = 0; f < paths.size(); ++f) {
      int64_t size = 0;
      mine[f] = sha256_file_sample(paths[f], &size);
      mine[f] = std::to_string(size) + " " + mine[f];
    }
  } catch (const Error& e) {
    error = e.what();
  }
  agree(comm, error);
  for (size_t f = 0; f < paths.size(); ++f) {
    const std::vector<std::string> all = allgather_strings(comm, mine[f]);
    const int r = first_other(all);
    if (r < 0) continue;
    const std::string size0 = all[0].substr(0, all[0].find(' ')), size = all[r].substr(0, all[r].find(' '));
    fail_collective("{}: process {} of {} reads another version of the file than process 0 ({}); {}",
                    paths[f], r, comm.size(),
                    size == size0 ? "the same size, other bytes"
                                  : fmt::format("{} bytes, process 0 {} bytes", size, size0),
                    kSameInputs);
  }
}

// Every rank excludes the same users: the same salt (which follows the data files' whole
// content), the same opt-out ids and the same forgotten users.
void check_same_exclusion(const Comm& comm, const config::Config& cfg,
                          const std::vector<std::string>& listed, const data::UserExclusion* excl) {
  const std::vector<std::string> salts = allgather_strings(comm, excl ? excl->salt() : std::string());
  if (const int r = first_other(salts); r >= 0)
    fail_collective("process {} of {} reads other data than process 0: the SHA-256 of its data "
                    "files differs (the salt of the excluded users' hashes follows it); {}",
                    r, comm.size(), kSameInputs);
  Sha256 h;
  for (const std::string& id : listed) h.update(id.data(), id.size());
  const std::vector<std::string> opt_out = allgather_strings(comm, h.hex());
  if (const int r = first_other(opt_out); r >= 0)
    fail_collective("{}: process {} of {} reads other user ids from the file than process 0; {}",
                    cfg.settings().privacy.opt_out.value_or("privacy.opt_out"), r, comm.size(),
                    kSameInputs);
  const std::vector<std::string> all = allgather_strings(comm, excl ? excl->fingerprint() : std::string());
  if (const int r = first_other(all); r >= 0)
    fail_collective("process {} of {} forgets other users than process 0; {}", r, comm.size(),
                    kSameInputs);
}

}  // namespace

void check_same_input(const Comm& comm, const std::string& what, const std::string& digest) {
  const std::vector<std::string> all = allgather_strings(comm, digest);
  const int r = first_other(all);
  if (r < 0) return;
  if (all[r].empty() != all[0].empty())
    fail_collective("{}: process {} of {} {} it but process 0 {}; {}", what, r, comm.size(),
                    all[r].empty() ? "does not use" : "uses", all[r].empty() ? "does" : "does not",
                    kSameInputs);
  fail_collective("{}: process {} of {} reads another version of it than process 0; {}", what, r,
                  comm.size(), kSameInputs);
}

void check_same_config(const Comm& comm, const config::Config& cfg) {
  // What one host may set for itself: its device (cuda:N pins a rank's GPU), its threads, and
  // what it logs; none changes what is computed.
  nlohmann::json mine = cfg.to_json();
  for (const char* key : {"train.device", "train.threads", "run.log_level", "run.progress"}) {
    const std::string k = key, section = k.substr(0, k.find('.'));
    if (mine.contains(section)) mine[section].erase(k.substr(k.find('.') + 1));
  }
  const std::vector<std::string> all = allgather_strings(comm, mine.dump());
  const int r = first_other(all);
  if (r < 0) return;
  const nlohmann::json a = nlohmann::json::parse(all[0]), b = nlohmann::json::parse(all[r]);
  for (const auto& [section, keys] : a.items())
    for (const auto& [key, value] : keys.items())
      if (!b.contains(section) || !b[section].contains(key) || b[section][key] != value)
        fail_collective("{}.{} is {} in process {} of {} but {} in process 0; {}", section, key,
                        b.contains(section) && b[section].contains(key) ? b[section][key].dump()
                                                                         : std::string("unset"),
                        r, comm.size(), value.dump(), kSameInputs);
  fail_collective("the configuration of process {} of {} differs from process 0's; {}", r,
                  comm.size(), kSameInputs);
}

ShardedDataset prepare_sharded(const config::Config& cfg, const Comm& comm,
                               std::shared_ptr<const data::UserExclusion> exclusion) {
  config::check(cfg);
  check_distributable(cfg);
  const config::Settings& s = cfg.settings();
  const int P = comm.size(), me = comm.rank();
  const data::SplitOptions so = pipeline::split_options(cfg);
  const bool given = so.method == data::SplitMethod::kGiven;
  check_same_config(comm, cfg);
  if (!s.data.path)
    fail_collective("{}: data.path is not set; data.format {} reads interactions from a file",
         cfg.source().empty() ? std::string("config") : cfg.source(), s.data.format);
  const std::vector<std::string> paths = pipeline::data_paths(cfg);
  check_same_files(comm, paths);
  std::vector<std::string> listed;
  std::shared_ptr<const data::UserExclusion> excl;
  {
    std::string error;
    try {
      excl = pipeline::user_exclusion(cfg, exclusion, true, listed);
    } catch (const Error& e) {
      error = e.what();
    }
    agree(comm, error);
  }
  check_same_exclusion(comm, cfg, listed, excl.get());
  data::LoadOptions lo = pipeline::load_options(cfg);
  lo.exclusion = excl;
  lo.use_cache = false;
  if (me == 0 && cfg.settings().data.cache)
    log().info("data.cache is not used by a distributed run (each process parses only its byte "
               "range of the files)");

  // 1. This rank's byte ranges, its users excluded.
  data::Loaded local = data::load_shard(paths, lo, data::Shard{me, P});
  data::LoadReport& rep = local.report;
  for (size_t f = 0; f < paths.size(); ++f) {
    const int64_t n = comm.sum(static_cast<int64_t>(local.parts[f].size()));
    if (n == 0)
      fail_collective("{}: no valid interactions in the file{}", paths[f],
           comm.sum(rep.opt_out_users + rep.forgotten_users) > 0
               ? " after excluding the opted-out and forgotten users"
               : "");
  }

  // 3. Retention, counted back from the newest timestamp of all ranks.
  if (lo.max_age_days > 0) {
    int64_t newest = std::numeric_limits<int64_t>::min();
    bool missing = false;
    for (const data::Interactions& x : local.parts) {
      if (!x.has_times() && x.size() > 0) missing = true;
      for (const int64_t t : x.times) newest = std::max(newest, t);
    }
    if (comm.any(missing))
      fail_collective("{}: data.max_age_days needs a timestamp on every interaction; set data.time_col to "
           "the timestamp column",
           paths.front());
    newest = comm.max(newest);
    const int64_t reference =
        lo.max_age_from.empty() ? newest : data::retention_reference(lo.max_age_from, lo.time_unit);
    const int64_t cutoff = data::retention_cutoff(reference, lo.max_age_days, lo.time_unit);
    int64_t dropped = 0;
    for (data::Interactions& x : local.parts) {
      data::Interactions kept = x.empty_like();
      for (offset_t k = 0; k < x.size(); ++k)
        if (x.times[k] >= cutoff) kept.push_from(x, k);
      dropped += x.size() - kept.size();
      x = std::move(kept);
    }
    rep.retention_max_age_days = lo.max_age_days;
    rep.retention_reference = reference;
    rep.retention_cutoff = cutoff;
    rep.retention_dropped = dropped;
    const int64_t dropped_all = comm.sum(dropped);
    if (me == 0)  // the line one process logs (pipeline::prepare_dataset), with every rank's count
      log().info("retention: dropped {} interaction(s) with a timestamp before {} ({} days before "
                 "{}, data.max_age_days)",
                 dropped_all, cutoff, lo.max_age_days, reference);
    if (comm.sum(static_cast<int64_t>(local.parts.front().size())) == 0)
      fail_collective("{}: data.max_age_days {} drops every interaction: none is at or after the cutoff {} "
           "({} days before {}; the newest is {}); raise data.max_age_days or change "
           "data.max_age_from",
           paths.front(), lo.max_age_days, cutoff, lo.max_age_days, reference, newest);
  }

  // 2. The global id maps, and the shard's interactions renumbered into them.
  data::IdMap users = merge_ids(comm, local.users, lo.string_ids);
  data::IdMap items = merge_ids(comm, local.items, lo.string_ids);
  {
    const std::vector<index_t> um = to_global(local.users, users), im = to_global(local.items, items);
    for (data::Interactions& x : local.parts) x.remap(um, im);
    local.users = data::IdMap();
    local.items = data::IdMap();
  }
  const int64_t nu0 = users.size(), ni0 = items.size();

  // 4. Every interaction to its user's rank, then cleaning as data::clean does.
  const Partition pre_users = Partition::even(nu0, P);
  const Range pre_own = pre_users.range(me);
  std::vector<data::Interactions> parts;
  for (data::Interactions& x : local.parts) parts.push_back(redistribute(comm, std::move(x), pre_users, false));
  local.parts.clear();
  int64_t duplicates = 0, light = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    data::Interactions& x = parts[p];
    duplicates += data::combine_duplicates(x, nu0, lo.duplicates);
    data::check_combined_weights(x, users, items, paths[std::min(p, paths.size() - 1)]);
    light += drop_light(x, lo.min_weight);
  }
  data::Interactions& train0 = parts.front();
  std::vector<uint8_t> keep_own(static_cast<size_t>(pre_own.size()), 1), keep_i(static_cast<size_t>(ni0), 1);
  std::vector<int64_t> cu(static_cast<size_t>(pre_own.size())), ci(static_cast<size_t>(ni0));
  const offset_t before = comm.sum(static_cast<int64_t>(train0.size()));
  int rounds = 0;
  for (;;) {
    ++rounds;
    std::fill(cu.begin(), cu.end(), 0);
    std::fill(ci.begin(), ci.end(), 0);
    for (offset_t k = 0; k < train0.size(); ++k) {
      const int64_t u = train0.users[k] - pre_own.begin;
      if (keep_own[u] && keep_i[train0.items[k]]) {
        ++cu[u];
        ++ci[train0.items[k]];
      }
    }
    comm.allreduce_sum(ci.data(), ni0);
    bool changed = false;
    for (int64_t u = 0; u < pre_own.size(); ++u)
      if (keep_own[u] && cu[u] < lo.min_user_interactions) keep_own[u] = 0, changed = true;
    for (int64_t i = 0; i < ni0; ++i)
      if (keep_i[i] && ci[i] < lo.min_item_interactions) keep_i[i] = 0, changed = true;
    if (!comm.any(changed)) break;
  }
  cu = {};
  ci = {};
  std::vector<uint8_t> keep_u = comm.allgatherv(keep_own);
  const std::vector<index_t> user_map = users.compact(keep_u);
  const std::vector<index_t> item_map = items.compact(keep_i);
  int64_t unknown[2] = {0, 0};
  for (size_t k = 1; k < parts.size(); ++k)
    for (offset_t j = 0; j < parts[k].size(); ++j) {
      if (user_map[parts[k].users[j]] < 0) ++unknown[0];
      else if (item_map[parts[k].items[j]] < 0) ++unknown[1];
    }
  for (data::Interactions& x : parts) x.remap(user_map, item_map);
  const int64_t nu = users.size(), ni = items.size();
  const int64_t after_filters = comm.sum(static_cast<int64_t>(train0.size()));
  // The rank's users after compaction: still one contiguous range per rank, in rank order.
  int64_t kept_own = 0;
  for (const uint8_t k : keep_own) kept_own += k;
  std::vector<int64_t> kept = comm.allgatherv(std::vector<int64_t>{kept_own});
  std::vector<int64_t> starts(static_cast<size_t>(P) + 1, 0);
  for (int r = 0; r < P; ++r) starts[r + 1] = starts[r] + kept[r];
  ShardedDataset d;
  d.ials.n_users = nu;
  d.ials.n_items = ni;
  d.ials.user_parts = Partition(std::move(starts));
  d.ials.item_parts = Partition::even(ni, P);
  d.ials.users = d.ials.user_parts.range(me);
  d.ials.items = d.ials.item_parts.range(me);
  if (after_filters == 0)
    fail_collective("{}: no interactions left after filtering (min_weight {}, min_user_interactions {}, "
         "min_item_interactions {})",
         paths.front(), lo.min_weight, lo.min_user_interactions, lo.min_item_interactions);
  if (given) {
    comm.allreduce_sum(unknown, 2);
    if (comm.sum(static_cast<int64_t>(parts[1].size())) == 0)
      fail_collective("{}: no test interactions left for split.method given: {} have a user and {} an item "
           "that is not in the (filtered) training data {}; expected at least one",
           paths[1], unknown[0], unknown[1], paths[0]);
    if (unknown[0] + unknown[1] > 0 && me == 0)
      log().warn("{}: dropped {} test interaction(s) whose user and {} whose item is not in the "
                 "(filtered) training data {}",
                 paths[1], unknown[0], unknown[1], paths[0]);
  }

  // 5. Split, weight, and the rows of the rank's users and items.
  // The parts' emptiness is decided over all ranks (one rank's users may leave a part empty).
  data::Split split = data::split_interactions(train0, nu, so, given ? &parts[1] : nullptr, false);
  parts.clear();
  d.train_size = comm.sum(static_cast<int64_t>(split.train.size()));
  d.validation_size = comm.sum(static_cast<int64_t>(split.validation.size()));
  d.test_size = comm.sum(static_cast<int64_t>(split.test.size()));
  try {
    data::require_split_parts(d.test_size, d.validation_size, so);
  } catch (const Error& e) {
    throw CollectiveError(e.what());
  }
  if (d.train_size == 0) fail_collective("the split left no training interactions");
  {
    double w = 0;
    for (const float x : split.train.weights) w += x;
    d.train_weight_total = comm.sum(w);
  }
  const data::WeightOptions wo = pipeline::weight_options(cfg);
  std::vector<float> conf;
  if (wo.scheme == data::WeightScheme::kBm25) {
    data::Bm25Corpus corpus = data::bm25_corpus(split.train, nu, ni);
    corpus.users = nu;
    corpus.total_weight = comm.sum(corpus.total_weight);
    comm.allreduce_sum(corpus.item_counts.data(), ni);
    conf = data::confidence(split.train, nu, ni, wo, corpus);
  } else {
    conf = data::confidence(split.train, nu, ni, wo);
  }
  pipeline::check_confidences(cfg, split.train, conf, users, items);  // this rank's own: it ends the job
  const Range own_u = d.ials.users;
  d.ials.user_items = local_csr(split.train, own_u, ni, conf, false);
  {
    data::Interactions weighted = split.train;
    for (offset_t k = 0; k < weighted.size(); ++k) weighted.weights[k] = conf[k];
    data::Interactions mine = redistribute(comm, std::move(weighted), d.ials.item_parts, true);
    d.ials.item_users = local_csr(mine, d.ials.items, nu, mine.weights, true);
  }
  std::vector<int64_t> own_counts(static_cast<size_t>(d.ials.items.size()));
  for (int64_t i = 0; i < d.ials.items.size(); ++i) own_counts[i] = d.ials.item_users.row_size(i);
  d.ials.item_counts = comm.allgatherv(own_counts);
  d.test = local_csr(split.test, own_u, ni, {}, false);
  d.validation = local_csr(split.validation, own_u, ni, {}, false);
  if (d.validation_size > 0) {
    data::Interactions both = split.train;
    for (offset_t k = 0; k < split.validation.size(); ++k) both.push_from(split.validation, k);
    d.train_and_validation = local_csr(both, own_u, ni, {}, false);
  }

  // What was excluded (hashes only), the fingerprint, the statistics.
  if (excl) {
    std::vector<char> mine;
    for (const auto* set : {&rep.opt_out_matched, &rep.forgotten_matched}) {
      for (const std::string& h : *set) mine.insert(mine.end(), h.begin(), h.end());
      mine.push_back('\n');
    }
    // Each rank's two lists as "h h ...\n" blocks of 64-character hashes.
    std::vector<int64_t> counts;
    const std::vector<char> all = comm.allgatherv(mine, &counts);
    data::UserExclusion matched(excl->salt());
    size_t pos = 0;
    for (int r = 0; r < P; ++r) {
      const size_t end = pos + static_cast<size_t>(counts[r]);
      int set = 0;
      for (size_t p = pos; p < end;) {
        if (all[p] == '\n') {
          ++set;
          ++p;
          continue;
        }
        matched.add_hash(set == 0 ? data::UserExclusion::Set::kOptOut
                                  : data::UserExclusion::Set::kForgotten,
                         std::string(all.data() + p, 64));
        p += 64;
      }
      pos = end;
    }
    d.excluded = std::move(matched);
  }
  d.fingerprint =
      pipeline::unordered_fingerprint(users, items, sum_digest(comm, pipeline::pair_digest(split)));
  d.values = sum_digest(comm, pipeline::values_digest(split)).hex();

  int64_t sums[10] = {rep.lines,
                      rep.skipped_lines,
                      rep.raw_interactions,
                      duplicates,
                      light,
                      rep.retention_dropped,
                      rep.opt_out_interactions,
                      rep.forgotten_interactions,
                      0,
                      0};
  comm.allreduce_sum(sums, 10);
  // Users and items with training interactions (users are split between ranks; items not).
  std::vector<uint8_t> item_seen(static_cast<size_t>(ni), 0);
  for (const index_t i : split.train.items) item_seen[static_cast<size_t>(i)] = 1;
  comm.allreduce_or(item_seen.data(), ni);
  int64_t train_users = 0;
  for (int64_t u = 0; u < own_u.size(); ++u) train_users += d.ials.user_items.row_size(u) > 0;
  train_users = comm.sum(train_users);
  const int64_t train_items = std::count(item_seen.begin(), item_seen.end(), uint8_t{1});
  const double density = static_cast<double>(d.train_size) / (static_cast<double>(nu) * ni);
  d.stats = {{"users", nu},
             {"items", ni},
             {"train", {{"interactions", d.train_size}, {"users", train_users},
                        {"items", train_items}, {"density", density}}},
             {"load", {{"lines", sums[0]},
                       {"skipped_lines", sums[1]},
                       {"raw_interactions", sums[2]},
                       {"duplicates_combined", sums[3]},
                       {"below_min_weight", sums[4]},
                       {"filtered_interactions", before - after_filters},
                       {"filtered_users", nu0 - nu},
                       {"filtered_items", ni0 - ni},
                       {"test_unknown_user_interactions", unknown[0]},
                       {"test_unknown_item_interactions", unknown[1]},
                       {"filter_rounds", rounds},
                       {"from_cache", false}}},
             {"distributed", {{"ranks", P}}}};
  if (d.validation_size) d.stats["validation"] = {{"interactions", d.validation_size}};
  if (d.test_size) d.stats["test"] = {{"interactions", d.test_size}};
  if (excl && d.excluded)
    d.stats["privacy"] = {{"opt_out_users", d.excluded->of(data::UserExclusion::Set::kOptOut).size()},
                          {"opt_out_interactions", sums[6]},
                          {"forgotten_users", d.excluded->of(data::UserExclusion::Set::kForgotten).size()},
                          {"forgotten_interactions", sums[7]}};
  if (rep.retention_max_age_days > 0)
    d.stats["retention"] = {{"max_age_days", rep.retention_max_age_days},
                            {"reference", rep.retention_reference},
                            {"cutoff", rep.retention_cutoff},
                            {"dropped_interactions", sums[5]}};
  d.users = std::move(users);
  d.items = std::move(items);
  return d;
}

}  // namespace recforge::dist
