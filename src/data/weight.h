#pragma once
/// @file weight.h
/// Confidence weighting of implicit feedback: turns raw interaction weights (counts, plays, ...)
/// into the per-interaction confidences that models fit.

#include <cstdint>
#include <vector>

#include "data/interactions.h"

namespace recforge::data {

/// How raw weights become confidences.
enum class WeightScheme {
  kNone,    ///< c = w
  kLinear,  ///< c = 1 + alpha·w (Hu, Koren & Volinsky)
  kLog,     ///< c = 1 + alpha·log(1 + w/eps)
  kBm25,    ///< BM25 with users as documents and items as terms, as implicit's bm25_weight
};

/// Options of `confidence`.
struct WeightOptions {
  WeightScheme scheme = WeightScheme::kNone;  ///< the formula
  double alpha = 1.0;      ///< linear/log: scale of the weight term (unused by bm25)
  double eps = 1.0;        ///< log: weight scale inside the logarithm (> 0)
  double bm25_k1 = 100.0;  ///< bm25: term-frequency saturation k1 (>= 0)
  double bm25_b = 0.8;     ///< bm25: length normalisation b (0 .. 1)
};

/// Confidence per interaction of `x`: none → w; linear → 1 + alpha·w; log → 1 + alpha·log(1 +
/// w/eps); bm25 → implicit's bm25_weight with users as documents and items as terms:
/// idf_i = log(n_users) - log1p(count_i) (count_i = interactions of item i),
/// length_norm_u = (1 - b) + b · rowsum_u / mean(rowsum) (rowsum_u = sum of u's weights, the mean
/// taken over all n_users rows, empty ones included, as implicit does),
/// c = w·(k1 + 1)/(k1·length_norm_u + w)·idf_i (alpha unused for bm25). Computed in double,
/// returned as float, one value per interaction in the order of `x`. Throws recforge::Error for
/// invalid options.
std::vector<float> confidence(const Interactions& x, int64_t n_users, int64_t n_items,
                              const WeightOptions& o);

/// What bm25 takes from the whole set it weights besides each row: the number of users (rows),
/// the sum of all raw weights (the mean row length is total / users) and each item's number of
/// interactions.
struct Bm25Corpus {
  int64_t users = 0;                 ///< rows of the set, empty ones included
  double total_weight = 0;           ///< sum of the raw weights, added in order
  std::vector<int64_t> item_counts;  ///< interactions per item
};

/// The bm25 statistics of `x` (n_users × n_items), summed in the order of `x` as confidence()
/// sums them.
Bm25Corpus bm25_corpus(const Interactions& x, int64_t n_users, int64_t n_items);

/// Confidences of rows `x` that were not part of `corpus` (a new user folded in), as training
/// weighted its rows: linear, log and none as confidence(); bm25 with the idf and mean row length
/// of `corpus` and each row's own length. A row of the corpus weighted this way gets exactly the
/// confidences confidence() gave it. (confidence() of a lone row would take that row as the whole
/// set: idf log(1) - log1p(1) < 0.)
std::vector<float> confidence(const Interactions& x, int64_t n_users, int64_t n_items,
                              const WeightOptions& o, const Bm25Corpus& corpus);

}  // namespace recforge::data
