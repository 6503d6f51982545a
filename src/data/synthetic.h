#pragma once
/// @file synthetic.h
/// A generator of realistic implicit-feedback data with planted structure (item popularity,
/// user communities, user activity, timestamps), for tests, benchmarks and demos.

#include <cstdint>
#include <string>
#include <vector>

#include "data/interactions.h"

namespace recforge::data {

/// What `generate_synthetic` produces. The generator is deterministic in `seed` and does not
/// depend on the number of threads.
struct SyntheticOptions {
  int64_t users = 20000;             ///< number of users (ids "0" .. users-1)
  int64_t items = 10000;             ///< number of items (ids "0" .. items-1)
  int64_t interactions = 1000000;    ///< target number of draws before duplicates are combined
  int communities = 16;              ///< number of user/item communities (1 .. items)
  double community_strength = 0.8;   ///< probability that a draw comes from the user's community
  double popularity_exponent = 1.0;  ///< Zipf exponent of item popularity (0 = uniform)
  double activity_sigma = 1.0;       ///< sigma of the log-normal per-user activity
  int64_t days = 365;                ///< time span of the timestamps, from 2020-01-01 UTC
  bool binary_weights = false;       ///< weight 1 per (user, item) instead of the draw count
  uint64_t seed = 1;                 ///< seed of every random choice
};

/// Generated data: dense ids 0..n-1 (external ids are the same integers as text), the combined
/// interactions sorted by (user, item), and the planted community of every user and item.
struct SyntheticData {
  IdMap users;                      ///< external user ids "0", "1", ...
  IdMap items;                      ///< external item ids "0", "1", ...
  Interactions x;                   ///< combined interactions with timestamps
  std::vector<int> user_community;  ///< community of each user
  std::vector<int> item_community;  ///< community of each item
};

/// First timestamp of synthetic data: 2020-01-01 00:00:00 UTC in unix seconds.
inline constexpr int64_t kSyntheticStartTime = 1577836800;

/// Generates a realistic implicit-feedback set with planted structure.
///
/// Items get a Zipf popularity (p ∝ (rank+1)^-popularity_exponent over a seeded random ranking)
/// and are dealt to communities round-robin along that ranking, with the community order
/// reshuffled every round, so each community holds items of every popularity level. Each user
/// belongs to one community and makes a log-normal number of draws (at least 1; scaled so the
/// total is close to `interactions`); each draw picks, with probability community_strength, an
/// item of the user's community by popularity, else an item by global popularity (alias tables,
/// O(1) per draw). Weights count repeated draws of a pair (or are 1 with binary_weights).
/// Each user starts at a random time in the first half of the span; their draws follow in order
/// with exponential gaps scaled to end before the span does, so every timestamp lies in
/// [kSyntheticStartTime, kSyntheticStartTime + days·86400); a combined pair keeps its latest time.
/// Every user has its own random stream derived from (seed, user). Throws recforge::Error for
/// invalid options.
SyntheticData generate_synthetic(const SyntheticOptions& o);

/// Writes `d` as CSV with header "user,item,weight,timestamp" (external ids), atomically: the
/// text goes to a temporary file beside `path` that is then renamed. Throws recforge::Error
/// naming the path on failure.
void write_synthetic_csv(const SyntheticData& d, const std::string& path);

}  // namespace recforge::data
