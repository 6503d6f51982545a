#include "index/filtered_search.h"

#include <algorithm>
#include <limits>
#include <map>

#include "core/error.h"

namespace recforge::index {

using data::index_t;

namespace {

/// Upper bound on labels held at once by one search call (12 bytes each: about 100 MB).
constexpr int64_t kMaxResultEntries = int64_t{8} << 20;

/// The smallest power of two >= v (v >= 1).
int64_t pow2_at_least(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

eval::TopK search_filtered(const SearchFn& search, const float* queries, int64_t n, int d,
                           int64_t n_items, int k, const data::Csr* seen,
                           const std::vector<index_t>& rows,
                           const std::vector<index_t>* global_exclude, FilterStats* stats,
                           int64_t block) {
  if (k < 1) fail("filtered search: k is {}; expected k >= 1", k);
  if (!rows.empty() && static_cast<int64_t>(rows.size()) != n)
    fail("filtered search: {} row indices for {} queries; expected one per query", rows.size(), n);
  auto row_of = [&](int64_t q) -> int64_t {
    return rows.empty() ? q : rows[static_cast<size_t>(q)];
  };
  if (seen != nullptr)
    for (int64_t q = 0; q < n; ++q)
      if (row_of(q) < 0 || row_of(q) >= seen->rows)
        fail("filtered search: query {} uses seen-items row {}; expected a row from 0 to {}", q,
             row_of(q), seen->rows - 1);
  std::vector<index_t> global;
  if (global_exclude != nullptr) {
    global = *global_exclude;
    std::sort(global.begin(), global.end());
    global.erase(std::unique(global.begin(), global.end()), global.end());
  }
  const int64_t n_global = static_cast<int64_t>(global.size());
  FilterStats local;
  FilterStats& st = stats ? *stats : local;
  st = FilterStats{};

  eval::TopK out;
  out.n = n;
  out.k = k;
  out.items.assign(static_cast<size_t>(n * k), -1);
  out.scores.assign(static_cast<size_t>(n * k), -std::numeric_limits<float>::infinity());
  if (n == 0 || n_items == 0) return out;

  auto seen_count = [&](int64_t q) -> int64_t { return seen ? seen->row_size(row_of(q)) : 0; };
  auto excluded = [&](int64_t q, index_t item) {
    if (seen != nullptr) {
      const int64_t r = row_of(q);
      const index_t* b = seen->indices.data() + seen->indptr[r];
      const index_t* e = seen->indices.data() + seen->indptr[r + 1];
      if (std::binary_search(b, e, item)) return true;
    }
    return std::binary_search(global.begin(), global.end(), item);
  };
  // Results for query q that survive the filter go into row q of `out`.
  auto fill = [&](int64_t q, const float* sc, const int64_t* lab, int64_t fetched) {
    int placed = 0;
    for (int64_t j = 0; j < fetched && placed < k; ++j) {
      if (lab[j] < 0) {
        ++st.short_lists;
        break;
      }
      const index_t item = static_cast<index_t>(lab[j]);
      if (excluded(q, item)) continue;
      out.items[static_cast<size_t>(q * k + placed)] = item;
      out.scores[static_cast<size_t>(q * k + placed)] = sc[j];
      ++placed;
    }
  };
  // Searches the listed queries for `fetch` results each, in batches that bound the buffers,
  // and fills their rows.
  std::vector<float> sc;
  std::vector<int64_t> lab;
  std::vector<float> gathered;
  auto run = [&](const std::vector<int64_t>& qs, int64_t fetch) {
    const int64_t per_call = std::max<int64_t>(1, std::min(block, kMaxResultEntries / fetch));
    st.max_fetch = std::max(st.max_fetch, fetch);
    for (size_t b = 0; b < qs.size(); b += static_cast<size_t>(per_call)) {
      const int64_t nb = std::min<int64_t>(per_call, static_cast<int64_t>(qs.size() - b));
      gathered.resize(static_cast<size_t>(nb * d));
      for (int64_t i = 0; i < nb; ++i)
        std::copy_n(queries + qs[b + i] * d, d, gathered.data() + i * d);
      sc.resize(static_cast<size_t>(nb * fetch));
      lab.resize(static_cast<size_t>(nb * fetch));
      search(gathered.data(), nb, static_cast<int>(fetch), sc.data(), lab.data());
      ++st.searches;
      for (int64_t i = 0; i < nb; ++i)
        fill(qs[b + i], sc.data() + i * fetch, lab.data() + i * fetch, fetch);
    }
  };

  // Each query fetches the power of two at or above k + |global| + its own seen count (at most
  // every item): enough that k survive its filter whenever the index holds them, and a number
  // that depends on the query alone, so that its list does not depend on the other queries of
  // the batch (an HNSW search explores max(ef_search, fetch) candidates). Queries of one fetch
  // are searched together, in increasing order of fetch.
  std::map<int64_t, std::vector<int64_t>> groups;
  for (int64_t q = 0; q < n; ++q) {
    const int64_t need = std::min(n_items, k + n_global + seen_count(q));
    groups[std::min(n_items, pow2_at_least(need))].push_back(q);
  }
  st.groups = static_cast<int>(groups.size());
  for (const auto& [fetch, qs] : groups) run(qs, fetch);
  return out;
}

}  // namespace recforge::index
