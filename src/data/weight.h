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

}  // namespace recforge::data
