#include "data/weight.h"

#include <cmath>

#include "core/error.h"

namespace recforge::data {

std::vector<float> confidence(const Interactions& x, int64_t n_users, int64_t n_items,
                              const WeightOptions& o) {
  const offset_t n = x.size();
  std::vector<float> c(static_cast<size_t>(n));
  switch (o.scheme) {
    case WeightScheme::kNone:
      return x.weights;
    case WeightScheme::kLinear:
      if (!std::isfinite(o.alpha)) fail("weighting.alpha must be a finite number, got {}", o.alpha);
#pragma omp parallel for schedule(static)
      for (offset_t k = 0; k < n; ++k)
        c[k] = static_cast<float>(1.0 + o.alpha * static_cast<double>(x.weights[k]));
      return c;
    case WeightScheme::kLog:
      if (!std::isfinite(o.alpha)) fail("weighting.alpha must be a finite number, got {}", o.alpha);
      if (!(o.eps > 0.0) || !std::isfinite(o.eps))
        fail("weighting.eps must be a finite number above 0, got {}", o.eps);
#pragma omp parallel for schedule(static)
      for (offset_t k = 0; k < n; ++k)
        c[k] = static_cast<float>(1.0 + o.alpha * std::log1p(x.weights[k] / o.eps));
      return c;
    case WeightScheme::kBm25:
      break;
  }
  if (!(o.bm25_k1 >= 0.0) || !std::isfinite(o.bm25_k1))
    fail("weighting.bm25_k1 must be a finite number >= 0, got {}", o.bm25_k1);
  if (!(o.bm25_b >= 0.0 && o.bm25_b <= 1.0))
    fail("weighting.bm25_b must be between 0 and 1, got {}", o.bm25_b);
  if (n == 0) return c;
  RF_ASSERT(n_users > 0 && n_items > 0, "confidence: no users or items");

  // Sequential sums: the result must not depend on the thread count.
  std::vector<double> row_sum(static_cast<size_t>(n_users), 0.0);
  std::vector<int64_t> item_count(static_cast<size_t>(n_items), 0);
  double total = 0;
  for (offset_t k = 0; k < n; ++k) {
    RF_ASSERT(x.users[k] >= 0 && x.users[k] < n_users && x.items[k] >= 0 && x.items[k] < n_items,
              "confidence: index out of range");
    row_sum[x.users[k]] += x.weights[k];
    ++item_count[x.items[k]];
    total += x.weights[k];
  }
  // implicit: average_length = row_sums.mean() over every row of the matrix, so users without
  // interactions count in the mean.
  const double mean_length = total / static_cast<double>(n_users);
  if (!(mean_length > 0))
    fail("weighting.scheme bm25 needs positive interaction weights, got a mean user weight of {}",
         mean_length);
  const double log_n = std::log(static_cast<double>(n_users));
  const double k1 = o.bm25_k1, b = o.bm25_b;
#pragma omp parallel for schedule(static)
  for (offset_t k = 0; k < n; ++k) {
    const double w = x.weights[k];
    const double idf = log_n - std::log1p(static_cast<double>(item_count[x.items[k]]));
    const double length_norm = (1.0 - b) + b * row_sum[x.users[k]] / mean_length;
    c[k] = static_cast<float>(w * (k1 + 1.0) / (k1 * length_norm + w) * idf);
  }
  return c;
}

}  // namespace recforge::data
