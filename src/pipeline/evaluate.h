#pragma once
/// @file evaluate.h
/// Evaluation of a trained model on a held-out part of a Dataset: exact top-k over all items
/// with the user's known items masked, then metrics at several cutoffs.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eval/metrics.h"
#include "models/model.h"
#include "pipeline/dataset.h"

namespace recforge::pipeline {

/// Which held-out part to score.
enum class Part { kValidation, kTest };

/// "validation" or "test".
const char* part_name(Part p);

/// Metrics of `model` on `part`. Users with at least one held-out item are ranked against all
/// items; with `sample` < 1 only those in_validation_sample(id, sample) selects, and the result's
/// sampled_from is how many the part has (throws recforge::Error naming eval.validation_sample
/// when the part has users and the sample none). Masked: the training items, and for the test
/// part the validation items too. For the held-out-user split, each user's factors are folded in
/// from their fold-in interactions, which are masked instead. Returns metrics with users == 0
/// when the part is empty.
eval::Metrics evaluate(const models::Model& model, const Dataset& data, Part part,
                       const std::vector<int>& ks, double sample = 1.0);

/// evaluate() as the config asks: at eval.ks, and the validation part on the sample of
/// eval.validation_sample (test: every user).
eval::Metrics evaluate(const models::Model& model, const Dataset& data, Part part,
                       const config::Config& cfg);

/// A part's metrics with each user's values, for a paired comparison of two runs: every user
/// with a held-out item (no sample), scored on the CPU.
struct UserMetrics {
  eval::Metrics metrics;         ///< as evaluate() gives them
  eval::PerUserMetrics per_user;  ///< the values of each scored user
  std::vector<std::string> users;  ///< the external id of each (per_user.queries order)
  /// A hash (stable_hash64) of each one's held-out items by external id: equal in two runs
  /// when they hold out the same items for the user.
  std::vector<uint64_t> truth;
  /// Each one's activity: the interactions its ranking came from (its training interactions,
  /// or for held-out users its fold-in interactions).
  std::vector<int64_t> activity;
};
UserMetrics evaluate_per_user(const models::Model& model, const Dataset& data, Part part,
                              const std::vector<int>& ks);

/// The users of a UserMetrics whose activity is in [low, high] (high -1: no upper bound), and
/// the mean of each per-user metric over them (per_user.names order; 0 when users is 0).
struct ActivityBucket {
  int64_t low = 0;
  int64_t high = -1;
  int64_t users = 0;
  std::vector<double> means;
};

/// Throws recforge::Error, in one sentence starting with `what`, unless `edges` are increasing
/// whole numbers >= 1 (by_activity's edges).
void check_activity_edges(const std::vector<int64_t>& edges, const std::string& what);

/// Buckets of activity split after each of `edges` (increasing, each >= 1): [0, e0],
/// [e0 + 1, e1], ..., [e_last + 1, no bound]; every bucket is returned, empty ones with 0 users.
/// Each mean is summed in the users' order, so a bucket's means equal the metrics of an
/// evaluation of its users alone, to the bit. Throws recforge::Error for edges that are not
/// increasing positive integers.
std::vector<ActivityBucket> by_activity(const UserMetrics& m, const std::vector<int64_t>& edges);

/// by_activity's buckets as `recforge evaluate --by-activity` writes them ("test_by_activity"):
/// one object per bucket, {"min", "max" (null for the last), "users", and each metric's mean
/// (null in an empty bucket)}.
nlohmann::json activity_json(const UserMetrics& m, const std::vector<ActivityBucket>& buckets);

/// Whether eval.validation_sample = `fraction` scores the user with external id `id`: when a
/// fixed hash of the id (stable_hash64, salted) is below fraction × 2^64. So the same users at
/// every evaluation and in every run on data with these ids, whatever order they are numbered
/// in (distributed runs too), and the users of a smaller fraction are among those of a larger.
bool in_validation_sample(std::string_view id, double fraction);

/// The rows of `truth` (held-out items of users first, first + 1, ... of `users`) that have a
/// held-out item, as `population`, and of those the ones in_validation_sample(id, sample)
/// selects, as `rows` (all of them for sample >= 1). Shared by evaluate, the distributed
/// evaluation (its rank's users start at `first`) and the counts before training.
struct ScoredRows {
  std::vector<data::index_t> rows;
  int64_t population = 0;
};
ScoredRows scored_rows(const data::Csr& truth, const data::IdMap& users, int64_t first,
                       double sample);

/// Before training, with eval.validation_sample < 1 and `users` users with a validation item of
/// which it selects `sampled` (a whole run's figures, summed over ranks in a distributed one):
/// refuses a sample of none, in one sentence naming the key, or logs the counts.
void check_validation_sample(const config::Config& cfg, int64_t users, int64_t sampled);

/// How many of the users with a validation item eval.validation_sample selects: {users, sampled}.
std::pair<int64_t, int64_t> validation_sample_size(const Dataset& data, const config::Config& cfg);

/// "N users", or "N of M users, a sample" when m is a sample: for log lines.
std::string users_scored(const eval::Metrics& m);

/// The cutoffs of `eval.ks` as ints.
std::vector<int> eval_ks(const config::Config& cfg);

}  // namespace recforge::pipeline
