#include "eval/metrics.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <iterator>

#include "core/error.h"

namespace recforge::eval {

using data::index_t;

namespace {

/// Metric names in output order, with the member holding each one's values.
struct Field {
  const char* name;
  std::vector<double> Metrics::*values;
};
constexpr Field kFields[] = {
    {"recall", &Metrics::recall},     {"precision", &Metrics::precision},
    {"ndcg", &Metrics::ndcg},         {"map", &Metrics::map},
    {"hit_rate", &Metrics::hit_rate}, {"coverage", &Metrics::coverage},
};

}  // namespace

std::vector<std::string> Metrics::names() const {
  std::vector<std::string> out;
  for (const Field& f : kFields)
    for (int k : ks) out.push_back(fmt::format("{}@{}", f.name, k));
  return out;
}

nlohmann::json Metrics::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  j["users"] = users;
  if (sampled_from > 0) j["sampled_from"] = sampled_from;
  for (const Field& f : kFields)
    for (size_t c = 0; c < ks.size(); ++c)
      j[fmt::format("{}@{}", f.name, ks[c])] = (this->*f.values)[c];
  return j;
}

double Metrics::get(const std::string& name) const {
  for (const Field& f : kFields)
    for (size_t c = 0; c < ks.size(); ++c)
      if (name == fmt::format("{}@{}", f.name, ks[c])) return (this->*f.values)[c];
  fail("metric \"{}\" was not computed; expected one of {}", name, fmt::join(names(), ", "));
}

int validate_cutoffs(const MetricsOptions& o) {
  if (o.ks.empty()) fail("metrics: the list of cutoffs ks is empty; expected at least one K");
  for (size_t c = 0; c < o.ks.size(); ++c) {
    if (o.ks[c] < 1) fail("metrics: cutoff ks[{}] is {}; expected K >= 1", c, o.ks[c]);
    for (size_t e = 0; e < c; ++e)
      if (o.ks[e] == o.ks[c])
        fail("metrics: cutoff {} is listed twice in ks; expected distinct K", o.ks[c]);
  }
  return *std::max_element(o.ks.begin(), o.ks.end());
}

Metrics compute_metrics(const TopK& ranked, const std::vector<index_t>& query_rows,
                        const data::Csr& truth, int64_t n_items, const MetricsOptions& o,
                        PerUserMetrics* per_user) {
  const int max_k = validate_cutoffs(o);
  if (ranked.k < max_k)
    fail(
        "metrics: the ranked lists hold {} items per user; expected at least the largest cutoff "
        "({})",
        ranked.k, max_k);
  RF_ASSERT(static_cast<int64_t>(ranked.items.size()) == ranked.n * ranked.k,
            "metrics: ranked.items does not hold n × k entries");
  if (n_items < 1) fail("metrics: n_items is {}; expected the number of items (>= 1)", n_items);
  if (truth.cols > n_items)
    fail("metrics: the truth matrix has {} columns; expected at most n_items ({})", truth.cols,
         n_items);
  if (!query_rows.empty() && static_cast<int64_t>(query_rows.size()) != ranked.n)
    fail("metrics: query_rows has {} entries; expected one per ranked list ({})", query_rows.size(),
         ranked.n);
  if (query_rows.empty() && ranked.n > truth.rows)
    fail(
        "metrics: {} ranked lists but the truth matrix has {} rows; expected at least one row "
        "per list (or query_rows)",
        ranked.n, truth.rows);

  const size_t nk = o.ks.size();
  Metrics m;
  m.ks = o.ks;
  std::vector<double> recall(nk), precision(nk), ndcg(nk), map(nk), hit(nk);
  // discount[j] = 1 / log2(j + 2): the DCG weight of 0-based rank j.
  std::vector<double> discount(static_cast<size_t>(max_k));
  for (int j = 0; j < max_k; ++j) discount[j] = 1.0 / std::log2(j + 2.0);
  // first_rank[i]: best 0-based rank of item i over the evaluated users (max_k when never
  // ranked within max_k); coverage@K counts the items with first_rank < K.
  std::vector<int> first_rank(static_cast<size_t>(n_items), max_k);
  std::vector<uint8_t> rel(static_cast<size_t>(max_k));
  std::vector<std::pair<int, size_t>> order;  // (K, index in ks), increasing K
  for (size_t c = 0; c < nk; ++c) order.emplace_back(o.ks[c], c);
  std::sort(order.begin(), order.end());
  // The per-user metrics, in kFields order; values[f * nk + c] for field f and cutoff index c.
  constexpr size_t kPerUserFields = 5;  // all of kFields but coverage, the last
  static_assert(std::size(kFields) == kPerUserFields + 1);
  if (per_user) {
    *per_user = PerUserMetrics{};
    for (size_t f = 0; f < kPerUserFields; ++f)
      for (int k : o.ks) per_user->names.push_back(fmt::format("{}@{}", kFields[f].name, k));
    per_user->values.resize(per_user->names.size());
  }

  for (int64_t q = 0; q < ranked.n; ++q) {
    const int64_t r = query_rows.empty() ? q : query_rows[static_cast<size_t>(q)];
    if (r < 0 || r >= truth.rows)
      fail("metrics: query_rows[{}] is {}; expected a row of the truth matrix (0 to {})", q, r,
           truth.rows - 1);
    const index_t* t_begin = truth.indices.data() + truth.indptr[r];
    const index_t* t_end = truth.indices.data() + truth.indptr[r + 1];
    // |T_u|: distinct items of the (sorted) truth row.
    int64_t n_truth = 0;
    for (const index_t* p = t_begin; p != t_end; ++p)
      if (p == t_begin || *p != p[-1]) ++n_truth;
    if (n_truth == 0) continue;
    ++m.users;
    if (per_user) per_user->queries.push_back(q);

    for (int j = 0; j < max_k; ++j) {
      const index_t item = ranked.item(q, j);
      if (item < -1 || item >= n_items)
        fail(
            "metrics: ranked item {} (list {}, rank {}) is outside 0 to {}; expected an item "
            "index or -1 padding",
            item, q, j + 1, n_items - 1);
      rel[j] = item >= 0 && std::binary_search(t_begin, t_end, item);
      if (item >= 0) first_rank[item] = std::min(first_rank[item], j);
    }
    // One pass over ranks, closing each cutoff when its K is reached.
    int64_t hits = 0;
    double dcg = 0, idcg = 0, ap_sum = 0;
    int next_rank = 0;
    for (const auto& [K, c] : order) {
      for (; next_rank < K; ++next_rank) {
        const int j = next_rank;
        if (j < n_truth) idcg += discount[j];
        if (rel[j]) {
          ++hits;
          dcg += discount[j];
          ap_sum += static_cast<double>(hits) / (j + 1);  // Precision@(j+1) · rel
        }
      }
      const double v[kPerUserFields] = {
          static_cast<double>(hits) / n_truth, static_cast<double>(hits) / K, dcg / idcg,
          ap_sum / static_cast<double>(std::min<int64_t>(n_truth, K)), hits > 0 ? 1.0 : 0.0};
      recall[c] += v[0];
      precision[c] += v[1];
      ndcg[c] += v[2];
      map[c] += v[3];
      hit[c] += v[4];
      if (per_user)
        for (size_t f = 0; f < kPerUserFields; ++f) per_user->values[f * nk + c].push_back(v[f]);
    }
  }

  const double n = m.users > 0 ? static_cast<double>(m.users) : 1.0;
  for (size_t c = 0; c < nk; ++c) {
    m.recall.push_back(recall[c] / n);
    m.precision.push_back(precision[c] / n);
    m.ndcg.push_back(ndcg[c] / n);
    m.map.push_back(map[c] / n);
    m.hit_rate.push_back(hit[c] / n);
    const int K = o.ks[c];
    const int64_t covered =
        std::count_if(first_rank.begin(), first_rank.end(), [K](int f) { return f < K; });
    m.coverage.push_back(static_cast<double>(covered) / static_cast<double>(n_items));
  }
  return m;
}

}  // namespace recforge::eval
