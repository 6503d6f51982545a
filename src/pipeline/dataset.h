#pragma once
/// @file dataset.h
/// From a validated config to model-ready data: load (file or synthetic), clean, split,
/// weight, and build the user×item CSR and its transpose.

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "config/config.h"
#include "data/csr.h"
#include "data/exclusion.h"
#include "data/load.h"
#include "data/split.h"
#include "data/synthetic.h"
#include "data/weight.h"

namespace recforge::pipeline {

/// Everything a model needs from the data side of a run.
struct Dataset {
  data::IdMap users, items;            ///< external ↔ dense ids (shared by all parts)
  data::Split split;                   ///< train / validation / test (and fold-in parts)
  data::LoadReport load_report;        ///< what loading did (lines, skips, filters, cache)
  data::WeightOptions weighting;       ///< how confidences were computed (for fold-in rows)
  std::vector<float> confidence;       ///< confidence of each training interaction
  data::Csr user_items;                ///< train users × items, values = confidence
  data::Csr item_users;                ///< its transpose
  /// When users were excluded (privacy.opt_out, or a given exclusion): the salt and the hashes
  /// of the excluded users that occurred in the data (run.json's "excluded_users"); else empty.
  std::optional<data::UserExclusion> excluded;
  /// Distinct ids listed in the privacy.opt_out file when it was read (0 otherwise).
  int64_t opt_out_listed = 0;
  /// Dataset statistics (stats.json): counts, density, quantiles, load report.
  nlohmann::json stats() const;
  /// SHA-256 of the id maps and the split, to check that a saved run still matches its data.
  std::string fingerprint() const;
  /// The same check without the order of the interactions: SHA-256 of the id maps and of a
  /// PairDigest of the split's parts. What a distributed run, which holds the split in pieces,
  /// writes (run.json "data_fingerprint_kind": "unordered").
  std::string unordered_fingerprint() const;
  /// What both fingerprints leave out: the split's weights and timestamps, as the hex of a
  /// PairDigest::add_values of its parts (order-free, so a distributed run writes the same).
  /// run.json "data_values"; checked when a run is reopened.
  std::string values_digest() const;
};

/// An order-free digest of the (part, user, item) triples of a split: two 64-bit sums of a
/// mixing hash of each triple, modulo 2^64, so pieces digested apart (the ranks of a
/// distributed run) add up to the digest of the whole. `part`: 0 train, 1 validation, 2 test,
/// 3 validation fold-in, 4 test fold-in.
struct PairDigest {
  uint64_t sum[2] = {0, 0};
  void add(int part, data::index_t user, data::index_t item);
  void add(int part, const data::Interactions& x);
  /// Adds each interaction's (part, user, item, weight, timestamp): a digest of the values
  /// that `add` leaves out (Dataset::values_digest; kept apart from it, so that the
  /// fingerprints of runs written before it stay valid).
  void add_values(int part, const data::Interactions& x);
  /// The two sums as 32 hexadecimal digits.
  std::string hex() const;
  /// Adds another digest (of other pieces).
  void merge(const PairDigest& other) {
    sum[0] += other.sum[0];
    sum[1] += other.sum[1];
  }
};

/// PairDigest::add of every part of `split` (numbered as Split::parts), and PairDigest::add_values
/// of them: a split's pieces (a rank's) digested apart add up to the whole split's digests.
PairDigest pair_digest(const data::Split& split);
PairDigest values_digest(const data::Split& split);

/// The unordered fingerprint (Dataset::unordered_fingerprint) of id maps and a split's digest.
std::string unordered_fingerprint(const data::IdMap& users, const data::IdMap& items,
                                  const PairDigest& digest);

/// Loader options from the `data` section.
data::LoadOptions load_options(const config::Config& cfg);
/// Synthetic generator options from the `synthetic` section.
data::SyntheticOptions synthetic_options(const config::Config& cfg);
/// Split options from the `split` section (seeded by run.seed).
data::SplitOptions split_options(const config::Config& cfg);
/// Weighting options from the `weighting` section.
data::WeightOptions weight_options(const config::Config& cfg);
/// Throws recforge::Error when a confidence of `conf` (the weighting of `x`, whose indices are
/// those of `users` and `items`) is not finite, naming the first such interaction's user and
/// item, its weight and what made it overflow: duplicate weights summed past float32
/// (data.duplicates: sum) or the weighting scheme. Before training, so that no iteration runs
/// on an input that cannot train.
void check_confidences(const config::Config& cfg, const data::Interactions& x,
                       const std::vector<float>& conf, const data::IdMap& users,
                       const data::IdMap& items);

/// Checks `cfg` (config::check), then loads (or generates), cleans, splits, weights and builds
/// the matrices.
///
/// Users are excluded from the data (before ids are numbered and any filter, data::load) when
/// `exclusion` is given (its salt and hashes: a run's stored "excluded_users", or forget's) or
/// when `read_opt_out` and privacy.opt_out names a file, whose ids are added to the opt-out set
/// (hashed with `exclusion`'s salt, or with the salt of the data files' content,
/// data::UserExclusion::salt_for_sources). The file is read as data::read_user_id_file reads it;
/// with integer ids, its entries are compared in canonical form ("+042" is 42).
Dataset prepare_dataset(const config::Config& cfg,
                        std::shared_ptr<const data::UserExclusion> exclusion = nullptr,
                        bool read_opt_out = true);

/// The exclusion prepare_dataset applies: `given` (or a new one salted for the data) with the
/// ids of the privacy.opt_out file added when `read_opt_out`; nullptr when there is neither.
/// `listed` gets the hashes of the file's ids.
std::shared_ptr<const data::UserExclusion> user_exclusion(
    const config::Config& cfg, const std::shared_ptr<const data::UserExclusion>& given,
    bool read_opt_out, std::vector<std::string>& listed);

/// The data files of `cfg`: data.path, and data.test_path with split.method given (none for
/// synthetic data).
std::vector<std::string> data_paths(const config::Config& cfg);

/// The salt of a new user exclusion for `cfg`'s data: data::UserExclusion::salt_for_sources of
/// the data files' content SHA-256 (for synthetic data, of the generator's options).
std::string exclusion_salt(const config::Config& cfg);

/// A user id as the loader of `cfg`'s data writes it: integer ids in canonical form ("+042" is
/// "42"), text ids as they are.
std::string canonical_user_id(const config::Config& cfg, std::string id);

/// The ids of the file privacy.opt_out names, as they are now (data::read_user_id_file's rules),
/// each in canonical form (canonical_user_id), sorted and unique; empty without the setting. The
/// one reader of the list: training, exports (opt_out.txt) and the Recommender of a run use it.
std::vector<std::string> opt_out_ids(const config::Config& cfg);

/// The content SHA-256 of the data files `cfg` names (data.path, and data.test_path with
/// split.method given); empty for synthetic data.
std::vector<std::string> data_source_hashes(const config::Config& cfg);

}  // namespace recforge::pipeline
