#pragma once
/// @file load.h
/// Loading interaction files: delimited text (CSV/TSV/space) and adjacency lists
/// (`user item item ...`), external ids mapped to dense indices, duplicates combined, filters
/// applied until stable, malformed lines reported or skipped, and a binary cache.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/exclusion.h"
#include "data/interactions.h"
#include "data/retention.h"

namespace recforge::data {

/// File layout.
enum class Format { kDelimited, kAdjacency };

/// Everything that decides what `load` produces (all of it is part of the cache key).
struct LoadOptions {
  Format format = Format::kDelimited;
  /// Field separator: 0 = detect from the first line, ' ' = runs of spaces/tabs, else the byte.
  char delimiter = 0;
  bool header = false;                    ///< the first line names the columns
  std::string user_col = "0";             ///< column name (with header) or 0-based index
  std::string item_col = "1";             ///< column name (with header) or 0-based index
  std::optional<std::string> weight_col;  ///< weight column; weight 1 when absent
  std::optional<std::string> time_col;    ///< integer timestamp column
  bool string_ids = false;                ///< ids are text (else 64-bit integers)
  Duplicates duplicates = Duplicates::kSum;  ///< how repeated (user, item) pairs combine
  double min_weight = 0.0;                ///< combined weights below this are dropped
  int64_t min_user_interactions = 1;      ///< users with fewer (in the first file) are dropped
  int64_t min_item_interactions = 1;      ///< items with fewer (in the first file) are dropped
  bool skip_errors = false;               ///< on_error: skip (count) instead of fail
  /// Retention: interactions older than this many days before the reference are dropped from
  /// every file after numbering, before cleaning (0 = keep all; data/retention.h).
  int64_t max_age_days = 0;
  std::string max_age_from;               ///< reference: "" = newest timestamp, a date or a time
  TimeUnit time_unit = TimeUnit::kSeconds;  ///< unit of the timestamps
  bool use_cache = true;                  ///< reuse/write the binary cache
  std::string cache_dir;                  ///< where cache files live ("" = no cache)
  /// Users whose interactions are dropped from every file before anything else
  /// (`exclude_users`); part of the cache key through its fingerprint. nullptr: none.
  std::shared_ptr<const UserExclusion> exclusion;
  /// The most distinct user ids, and item ids, the files may hold (indices are 32-bit:
  /// kMaxIds); a file with more is refused at the line of the first id beyond. Tests lower it.
  int64_t max_ids = kMaxIds;

  /// A canonical text of the options, hashed into the cache key.
  std::string fingerprint() const;
};

/// What happened while loading.
struct LoadReport {
  int64_t lines = 0;                 ///< data lines read (all files, header excluded)
  int64_t skipped_lines = 0;         ///< malformed lines skipped (on_error: skip)
  int64_t raw_interactions = 0;      ///< interactions parsed before combining/filtering
  int64_t duplicates_combined = 0;   ///< interactions merged into an earlier (user, item)
  int64_t below_min_weight = 0;      ///< interactions dropped by min_weight
  int64_t filtered_interactions = 0; ///< interactions dropped by the per-user/item minimums
  int64_t filtered_users = 0;        ///< users dropped (no or too few training interactions)
  int64_t filtered_items = 0;        ///< items dropped (no or too few training interactions)
  /// Interactions of the later files (a given test set) dropped because their user is not in
  /// the training data (absent from the first file, or removed by the filters).
  int64_t test_unknown_user_interactions = 0;
  /// ... because their user is known but their item is not.
  int64_t test_unknown_item_interactions = 0;
  int filter_rounds = 0;             ///< passes until the minimums were stable
  int64_t retention_max_age_days = 0;  ///< data.max_age_days applied (0 = no retention)
  int64_t retention_reference = 0;     ///< the moment counted back from (timestamp units)
  int64_t retention_cutoff = 0;        ///< interactions before this timestamp were dropped
  int64_t retention_dropped = 0;       ///< interactions dropped by retention (all files)
  double parse_seconds = 0;          ///< time spent parsing text
  double lines_per_second = 0;       ///< parse speed
  bool from_cache = false;           ///< loaded from the binary cache
  bool exclusion_applied = false;    ///< LoadOptions::exclusion was given (even if empty)
  /// Users (distinct, in any file) and interactions (all files) dropped by the exclusion, per
  /// set: a user in both sets is counted in both.
  int64_t opt_out_users = 0, opt_out_interactions = 0;
  int64_t forgotten_users = 0, forgotten_interactions = 0;
  /// The exclusion's hashes that matched a user of the data, sorted (what run.json stores).
  std::vector<std::string> opt_out_matched, forgotten_matched;
  std::string cache_file;            ///< cache file used or written ("" when off)
};

/// Loaded interactions: one part per input file, sharing the id maps.
struct Loaded {
  IdMap users, items;
  std::vector<Interactions> parts;
  LoadReport report;
};

/// Loads `paths` (e.g. {train} or {train, test}) with shared id maps. Filters are computed on the
/// first file; ids removed there are removed from every part. Throws recforge::Error with
/// "file:line: what is wrong: \"the line\"" for malformed input when skip_errors is false.
Loaded load(const std::vector<std::string>& paths, const LoadOptions& options);

/// One process's share of the input files in a distributed run: shard `index` of `count`.
struct Shard {
  int index = 0;  ///< 0 .. count - 1
  int count = 1;  ///< number of shards
};

/// Shard `shard` of `paths`: of each file of size S, the lines whose first byte lies in
/// [S·index/count, S·(index+1)/count) (a line starts at byte 0 and after every '\n'), so every
/// line belongs to exactly one shard and shards 0, 1, ... in order give the file in order. Only
/// those bytes are read (plus the file's first line, which every shard reads to detect the
/// delimiter and the header, and the bytes before the range only when a message needs a line
/// number), never the whole file. The ids found in the shard are numbered in
/// sorted order as `load` numbers them (numeric for integer ids), `options.exclusion` is applied
/// as `load` applies it, and nothing else: no cache, no retention, no duplicate combining, no
/// filters (the caller does those across shards). An empty shard is not an error, and neither
/// are files without data lines (the caller checks the totals); malformed lines throw (or are
/// skipped) naming the file and the line's true line number.
Loaded load_shard(const std::vector<std::string>& paths, const LoadOptions& options, Shard shard);

/// Drops every interaction of the users `exclusion` excludes from every part (hashing each
/// distinct user once), and removes those users, and the items left with no interaction in any
/// part, from the id maps (the rest keep their order): the result is what parsing files without
/// those lines gives. Fills the report's exclusion counts and matched hashes.
void exclude_users(Loaded& data, const UserExclusion& exclusion);

/// The content SHA-256 of each file, after checking that each exists and is a regular file (a
/// FIFO or /dev/zero would never end): the cache key and UserExclusion's salt derive from it.
std::vector<std::string> source_hashes(const std::vector<std::string>& paths);

/// Applies duplicate combining, min_weight and the per-user/item minimums to already-mapped
/// interactions (used by `load` and by in-memory data such as the synthetic generator).
/// `paths` names the source of each part in errors (the last one names any further parts).
void clean(Loaded& data, const LoadOptions& options, const std::vector<std::string>& paths);

/// The cache directory used when `data.cache_dir` is empty: $XDG_CACHE_HOME/recforge or
/// ~/.cache/recforge.
std::string default_cache_dir();

}  // namespace recforge::data
