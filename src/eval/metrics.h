#pragma once
/// @file metrics.h
/// Ranking metrics at several cutoffs (recall, precision, NDCG, MAP, hit rate, coverage) under
/// the LightGCN/BARS protocol. Definitions and formulas: docs/metrics.md.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/csr.h"
#include "eval/topk.h"

namespace recforge::eval {

/// Metrics at several cutoffs for ranked lists against held-out truth.
struct MetricsOptions {
  std::vector<int> ks = {20};  ///< cutoffs K (each >= 1, no repeats)
};

/// Per cutoff K: recall, precision, ndcg, map, hit_rate, coverage; plus `users` evaluated.
/// Vectors are parallel to `ks`.
struct Metrics {
  int64_t users = 0;              ///< users with >= 1 truth item (the averaging population)
  std::vector<int> ks;            ///< the cutoffs, in the order of MetricsOptions::ks
  std::vector<double> recall;     ///< mean hits@K / |T_u|
  std::vector<double> precision;  ///< mean hits@K / K
  std::vector<double> ndcg;       ///< mean DCG@K / IDCG@K (binary relevance)
  std::vector<double> map;        ///< mean AP@K
  std::vector<double> hit_rate;   ///< fraction of users with hits@K > 0
  std::vector<double> coverage;   ///< |union of top-K lists| / n_items
  /// When a sample of the part's users was scored (eval.validation_sample < 1): how many users
  /// the part has (those with >= 1 truth item); `users` is the sample. 0: every user.
  int64_t sampled_from = 0;

  /// {"users": n, "recall@20": .., "precision@20": .., "ndcg@20": .., "map@20": ..,
  /// "hit_rate@20": .., "coverage@20": .., ...} with one entry per metric and cutoff, and
  /// "sampled_from" when it is not 0.
  nlohmann::json to_json() const;
  /// The value of a metric named NAME@K ("recall@20"); throws recforge::Error listing the valid
  /// names when there is no such metric or cutoff.
  double get(const std::string& name) const;
  /// The valid names for `get`, in order (metric-major: recall@K for every K, then precision...).
  std::vector<std::string> names() const;
};

/// The per-user values behind the means of Metrics (every metric but coverage, which is not a
/// mean over users), for a paired comparison of two models on the same users.
struct PerUserMetrics {
  /// The ranked list (query index q) of each scored user, in order: the users with >= 1 truth
  /// item.
  std::vector<int64_t> queries;
  /// "recall@K", ... "hit_rate@K": Metrics::names() without coverage, in that order.
  std::vector<std::string> names;
  /// values[m][u]: metric names[m] of user queries[u]. Their mean (summed in this order, divided
  /// by the count) is the Metrics value, to the bit.
  std::vector<std::vector<double>> values;
};

/// `ranked`: top-k lists (k >= max ks) for the queries, as returned by `topk` (best first, -1
/// padding); `query_rows[q]` the row of `truth` (held-out items, CSR, one column per item) for
/// query q, or q itself when query_rows is empty; n_items for coverage. Users whose truth row is
/// empty are skipped; averages are over users with >= 1 truth item (all 0 when there are none).
/// Checks the cutoffs (non-empty, each >= 1, distinct) and returns the largest; throws
/// recforge::Error. Shared by compute_metrics and the GPU metrics. With `per_user`,
/// compute_metrics also fills it (replacing what it held).
int validate_cutoffs(const MetricsOptions& o);

Metrics compute_metrics(const TopK& ranked, const std::vector<data::index_t>& query_rows,
                        const data::Csr& truth, int64_t n_items, const MetricsOptions& o,
                        PerUserMetrics* per_user = nullptr);

}  // namespace recforge::eval
