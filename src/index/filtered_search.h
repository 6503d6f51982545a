#pragma once
/// @file filtered_search.h
/// Top-k for a batch of users with each user's seen items (and a global exclusion list) removed,
/// through any k-nearest-neighbour search, without one query per user.
///
/// Each query is searched for k + |global| + seen(q) results, rounded up to a power of two (at
/// most every item): enough that at least k survive the filter whenever the index holds them.
/// Queries of the same count are searched together. With an exact (flat) search the result
/// therefore equals the exact masked top-k; with an ANN index it is the first k eligible items
/// of what the index returns (fewer only when the index returns fewer). Since the count depends
/// on the query alone, so does its list: a query gets the same list alone and in any batch (an
/// HNSW search explores max(ef_search, count) candidates, so a count shared by the batch would
/// have made a light user's list depend on its heavy neighbours).

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
  int searches = 0;       ///< calls of the search function
  int groups = 0;         ///< distinct numbers of results asked (one or more calls each)
  int64_t max_fetch = 0;  ///< largest number of results asked for one query
  /// Queries whose list has fewer than k items because the index returned fewer candidates
  /// than asked (an IVF search finds only the items of the cells it probes), not because fewer
  /// are eligible.
  int64_t short_lists = 0;
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
