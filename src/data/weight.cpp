#include "data/weight.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace recforge::data {

namespace {

/// linear, log and none (filled into `c`, returning true), or false for bm25 after checking its
/// options.
bool simple_scheme(const Interactions& x, const WeightOptions& o, std::vector<float>& c) {
  const offset_t n = x.size();
  c.resize(static_cast<size_t>(n));
  switch (o.scheme) {
    case WeightScheme::kNone:
      c = x.weights;
      return true;
    case WeightScheme::kLinear:
      if (!std::isfinite(o.alpha)) fail("weighting.alpha must be a finite number, got {}", o.alpha);
#pragma omp parallel for schedule(static)
      for (offset_t k = 0; k < n; ++k)
        c[k] = static_cast<float>(1.0 + o.alpha * static_cast<double>(x.weights[k]));
      return true;
    case WeightScheme::kLog:
      if (!std::isfinite(o.alpha)) fail("weighting.alpha must be a finite number, got {}", o.alpha);
      if (!(o.eps > 0.0) || !std::isfinite(o.eps))
        fail("weighting.eps must be a finite number above 0, got {}", o.eps);
#pragma omp parallel for schedule(static)
      for (offset_t k = 0; k < n; ++k)
        c[k] = static_cast<float>(1.0 + o.alpha * std::log1p(x.weights[k] / o.eps));
      return true;
    case WeightScheme::kBm25:
      break;
  }
  if (!(o.bm25_k1 >= 0.0) || !std::isfinite(o.bm25_k1))
    fail("weighting.bm25_k1 must be a finite number >= 0, got {}", o.bm25_k1);
  if (!(o.bm25_b >= 0.0 && o.bm25_b <= 1.0))
    fail("weighting.bm25_b must be between 0 and 1, got {}", o.bm25_b);
  return false;
}

/// bm25 of `x` with the statistics of `corpus`; row lengths are those of `x`.
std::vector<float> bm25(const Interactions& x, int64_t n_users, int64_t n_items,
                        const WeightOptions& o, const Bm25Corpus& corpus) {
  const offset_t n = x.size();
  std::vector<float> c(static_cast<size_t>(n));
  if (n == 0) return c;
  RF_ASSERT(n_users > 0 && n_items > 0 && corpus.users > 0 &&
                static_cast<int64_t>(corpus.item_counts.size()) == n_items,
            "confidence: no users or items, or a corpus of other items");
  // Sequential sums: the result must not depend on the thread count.
  std::vector<double> row_sum(static_cast<size_t>(n_users), 0.0);
  for (offset_t k = 0; k < n; ++k) {
    RF_ASSERT(x.users[k] >= 0 && x.users[k] < n_users && x.items[k] >= 0 && x.items[k] < n_items,
              "confidence: index out of range");
    row_sum[x.users[k]] += x.weights[k];
  }
  // implicit: average_length = row_sums.mean() over every row of the matrix, so users without
  // interactions count in the mean.
  const double mean_length = corpus.total_weight / static_cast<double>(corpus.users);
  if (!(mean_length > 0))
    fail("weighting.scheme bm25 needs positive interaction weights, got a mean user weight of {}",
         mean_length);
  const double log_n = std::log(static_cast<double>(corpus.users));
  const double k1 = o.bm25_k1, b = o.bm25_b;
#pragma omp parallel for schedule(static)
  for (offset_t k = 0; k < n; ++k) {
    const double w = x.weights[k];
    const double idf = log_n - std::log1p(static_cast<double>(corpus.item_counts[x.items[k]]));
    const double length_norm = (1.0 - b) + b * row_sum[x.users[k]] / mean_length;
    c[k] = static_cast<float>(w * (k1 + 1.0) / (k1 * length_norm + w) * idf);
  }
  return c;
}

}  // namespace

Bm25Corpus bm25_corpus(const Interactions& x, int64_t n_users, int64_t n_items) {
  Bm25Corpus s;
  s.users = n_users;
  s.item_counts.assign(static_cast<size_t>(std::max<int64_t>(n_items, 0)), 0);
  for (offset_t k = 0; k < x.size(); ++k) {
    RF_ASSERT(x.items[k] >= 0 && x.items[k] < n_items, "bm25_corpus: item out of range");
    ++s.item_counts[static_cast<size_t>(x.items[k])];
    s.total_weight += x.weights[k];
  }
  return s;
}

std::vector<float> confidence(const Interactions& x, int64_t n_users, int64_t n_items,
                              const WeightOptions& o) {
  std::vector<float> c;
  if (simple_scheme(x, o, c) || x.size() == 0) return c;
  return bm25(x, n_users, n_items, o, bm25_corpus(x, n_users, n_items));
}

std::vector<float> confidence(const Interactions& x, int64_t n_users, int64_t n_items,
                              const WeightOptions& o, const Bm25Corpus& corpus) {
  std::vector<float> c;
  if (simple_scheme(x, o, c) || x.size() == 0) return c;
  return bm25(x, n_users, n_items, o, corpus);
}

}  // namespace recforge::data
