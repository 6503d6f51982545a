#pragma once
/// @file dataset_dist.h
/// The data of a distributed run, prepared by every rank for its shard: the same result as
/// pipeline::prepare_dataset, restricted to the rank's users and items, without any rank
/// parsing or holding the whole data set.
///
///   1. each rank parses its byte range of each file (data::load_shard), with the opt-out and
///      forgotten users excluded as the single-process loader excludes them;
///   2. the id maps are merged: every rank gathers the distinct ids of all shards (ids only,
///      not interactions), so every rank numbers users and items as one process would;
///   3. retention (data.max_age_days) counts back from the newest timestamp of all ranks;
///   4. each interaction goes to the rank that owns its user (an all-to-all), arriving in file
///      order; duplicates are combined there, and the per-user/item minimums are applied with
///      item counts summed over ranks, until stable, as data::clean does;
///   5. each rank splits its users' interactions (every split method draws per user from its
///      own stream, so a user's split does not depend on who splits it; time-quantile and
///      held-out-user splits need the whole set and are refused), weights them (bm25 with
///      corpus statistics summed over ranks), and sends each training interaction to the rank
///      that owns its item, for the item rows.
/// Every rank holds: the id maps (O(users + items) ids), its users' interactions (train and
/// held-out) and its items' training interactions.

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config/config.h"
#include "data/csr.h"
#include "data/exclusion.h"
#include "data/interactions.h"
#include "dist/comm.h"
#include "dist/ials_dist.h"

namespace recforge::dist {

/// One rank's share of the data of a distributed run.
struct ShardedDataset {
  data::IdMap users, items;  ///< the global id maps (the same on every rank)
  IalsShard ials;            ///< training rows of the rank's users and items
  /// The rank's users' held-out interactions: rows = its users (local index), columns = global
  /// items, values 1.
  data::Csr validation, test;
  /// The training and validation interactions of the rank's users (what a test evaluation
  /// removes from the rankings when there is a validation set; empty otherwise).
  data::Csr train_and_validation;
  /// Totals over ranks: dataset statistics for stats.json (counts; the quantiles of the
  /// single-process stats.json need the whole set and are left out).
  nlohmann::json stats;
  /// Sum of the training interactions' raw weights over ranks (bm25 fold-in in exports).
  double train_weight_total = 0;
  /// Interactions over ranks, per part.
  int64_t train_size = 0, validation_size = 0, test_size = 0;
  /// The excluded users' hashes that matched the data (union over ranks), when users were
  /// excluded; run.json's "excluded_users".
  std::optional<data::UserExclusion> excluded;
  /// The data fingerprint of pipeline::Dataset::unordered_fingerprint, the same on every rank.
  std::string fingerprint;
  /// The digest of the split's weights and timestamps (pipeline::Dataset::values_digest), the
  /// same on every rank.
  std::string values;
};

/// Refuses, with one sentence naming the setting, what a distributed run cannot do: synthetic
/// data (write it to a file with `recforge datagen` first), split.method users, split.method
/// time without split.cutoff, and models other than iALS. The same on every rank.
void check_distributable(const config::Config& cfg);

/// Refuses (CollectiveError, said once) a job whose ranks run different settings after --set,
/// naming the first key that differs and the ranks; train.device, train.threads, run.log_level
/// and run.progress may differ per host. Collective: the first thing a distributed run does, so
/// that every later decision from the config is the same on every rank.
void check_same_config(const Comm& comm, const config::Config& cfg);

/// Refuses (CollectiveError, said once) a job whose ranks read different versions of one input
/// other than the data files: `digest` is this rank's (empty when it has none), `what` names the
/// input ("model.init_from exp"). Collective.
void check_same_input(const Comm& comm, const std::string& what, const std::string& digest);

/// Prepares the rank's share (see the file comment). Collective. `exclusion` as in
/// pipeline::prepare_dataset.
ShardedDataset prepare_sharded(const config::Config& cfg, const Comm& comm,
                               std::shared_ptr<const data::UserExclusion> exclusion = nullptr);

}  // namespace recforge::dist
