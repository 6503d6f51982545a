#pragma once
/// @file split.h
/// Train/validation/test splits of an interaction set. Every split is deterministic in its seed
/// and independent of the number of threads: each user draws from its own random stream.

#include <array>
#include <cstdint>
#include <optional>

#include "data/interactions.h"

namespace recforge::data {

/// How the test (and validation) interactions are chosen.
enum class SplitMethod {
  /// The test set is a separate, given file: train = all, test = the given set.
  kGiven,
  /// Per user with n interactions, h = round(n · test_fraction) of them, chosen uniformly at
  /// random, go to test; at least one stays in train (h <= n-1, so users with n = 1 keep
  /// everything in train).
  kRandom,
  /// Per user, the last leave_k interactions by timestamp (ties: the later in input order counts
  /// as later) go to test; users with n <= leave_k keep everything in train. Needs timestamps.
  kLeaveLast,
  /// One global cutoff: interactions with time >= cutoff go to test, the rest to train. The
  /// cutoff is `cutoff` when set, else the cutoff_quantile quantile of all timestamps (linear
  /// interpolation between order statistics, like numpy.quantile's default). Test interactions of
  /// users without any train interaction stay in test (evaluation decides). Needs timestamps.
  kTime,
  /// A random fraction heldout_users of the users with at least one interaction (at least 1, at
  /// most all but one of them) is held out: every other user's interactions go to train; each
  /// held-out user's interactions are split at random, round(n · test_fraction) to test and the
  /// rest (at least one) to test_foldin, the history the model sees at evaluation time.
  kUsers,
  /// No split: train = all.
  kNone,
};

/// Options of `split_interactions`.
///
/// With validation_fraction > 0, validation is carved from the train part produced by the test
/// split, by the same method: random/given/none → a random per-user holdout of
/// round(n_train · validation_fraction) (at least one kept in train); leave_last → the last
/// leave_k of each user's remaining train interactions (validation_fraction only switches it
/// on); time → a cutoff at the (1 - validation_fraction) quantile of the train timestamps;
/// users → a fraction validation_fraction of the train users is held out, their train
/// interactions split by test_fraction into validation and validation_foldin.
struct SplitOptions {
  SplitMethod method = SplitMethod::kRandom;  ///< how test interactions are chosen
  double test_fraction = 0.2;        ///< random/users: fraction of a user's interactions in test
  int leave_k = 1;                   ///< leave_last: interactions per user in test
  std::optional<int64_t> cutoff;     ///< time: explicit cutoff timestamp
  double cutoff_quantile = 0.8;      ///< time: quantile of all timestamps used without `cutoff`
  double heldout_users = 0.1;        ///< users: fraction of users held out
  double validation_fraction = 0.0;  ///< > 0: also carve a validation set from train
  uint64_t seed = 42;                ///< seed of every random choice
};

/// train: what models fit; validation/test: held-out interactions; *_foldin: for held-out-user
/// methods, the part of the held-out users' history given to the model at evaluation time (empty
/// otherwise). Every part keeps the input order of `all` (so also within each user) and its
/// timestamp layout.
struct Split {
  Interactions train;              ///< interactions models are fitted on
  Interactions validation;         ///< held-out interactions for tuning (may be empty)
  Interactions test;               ///< held-out interactions for the final evaluation
  Interactions validation_foldin;  ///< users method: validation users' visible history
  Interactions test_foldin;        ///< users method: test users' visible history
  /// The five parts in their fixed order (0 train, 1 validation, 2 test, 3 validation fold-in,
  /// 4 test fold-in): the order fingerprints and digests number them by.
  std::array<const Interactions*, 5> parts() const {
    return {&train, &validation, &test, &validation_foldin, &test_foldin};
  }
};

/// Splits `all` (users 0..n_users-1). For kGiven, pass the given test set as `given_test` (then
/// `all` is the train file); for others it must be null. No interaction is lost or duplicated:
/// every interaction of `all` lands in exactly one part (plus the given test set for kGiven).
/// Each user's choices come from Rng(derive_seed(seed, stream + user)), with distinct stream
/// offsets for the test and the validation split. Throws recforge::Error for invalid options or
/// when a method needs timestamps that `all` lacks, and (check_parts) when a part the options ask
/// for came out empty (require_split_parts).
Split split_interactions(const Interactions& all, int64_t n_users, const SplitOptions& o,
                         const Interactions* given_test = nullptr, bool check_parts = true);

/// Throws recforge::Error, one sentence naming the setting, when a part the options ask for is
/// empty: the test set for every method but none, the validation set when
/// validation_fraction > 0 (0 means no validation set). A distributed run checks the sizes
/// summed over its processes, as one process checks its split.
void require_split_parts(int64_t test_size, int64_t validation_size, const SplitOptions& o);

}  // namespace recforge::data
