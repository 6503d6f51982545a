#pragma once
/// @file filtered_search.h
/// Top-k for a batch of users with each user's seen items (and a global exclusion list) removed,
/// through any k-nearest-neighbour search, without one query per user.
///
/// Pass 1 searches the whole batch once for k + |global| + s results, s being the 90th
/// percentile of the batch's seen counts, and filters. Users left with fewer than k results
/// whose search came back full (so more may exist) are searched again for
/// k + |global| + seen(u) results — enough that at least k survive the filter whenever the index
/// holds them — grouped into batches by the power of two above that count. With an exact (flat)
/// search the result therefore equals the exact masked top-k; with an ANN index it is the first
/// k eligible items of what the index returns (fewer only when the index returns fewer).

#include <cstdint>
#include <functional>
#include <vector>

#include "data/csr.h"
#include "eval/topk.h"

namespace recforge::index {

/// A k-NN search: n queries (n × d, row-major) → n × k scores (descending) and labels (item rows,
/// -1 when fewer than k were found).
using SearchFn =
    std::function<void(const float* queries, int64_t n, int k, float* scores, int64_t* labels)>;

/// What a filtered search did (for tests and logs).
struct FilterStats {
  int searches = 0;           ///< calls of the search function
  int64_t first_fetch = 0;    ///< results asked per query in pass 1
  int64_t retried_users = 0;  ///< queries searched again
  int64_t max_fetch = 0;      ///< largest number of results asked for one query
};

/// Top-k of `n` queries (n × d) over `n_items` items through `search`, skipping for query q the
/// items of row rows[q] of `seen` (or row q when `rows` is empty; nullptr: none) and every item
/// of `global_exclude` (any order, duplicates allowed). Returns an eval::TopK padded with -1 /
/// -inf where fewer than k are eligible. Queries are searched in blocks of `block` rows.
eval::TopK search_filtered(const SearchFn& search, const float* queries, int64_t n, int d,
                           int64_t n_items, int k, const data::Csr* seen,
                           const std::vector<data::index_t>& rows = {},
                           const std::vector<data::index_t>* global_exclude = nullptr,
                           FilterStats* stats = nullptr, int64_t block = 4096);

}  // namespace recforge::index
