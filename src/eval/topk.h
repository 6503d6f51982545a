#pragma once
/// @file topk.h
/// Exact top-k retrieval by inner product over all items, with per-query and global masks. This
/// is the reference that every faster retrieval (GPU, Faiss) is tested against.

#include <cstdint>
#include <functional>
#include <vector>

#include "data/csr.h"
#include "data/interactions.h"

namespace recforge::eval {

/// Top-k result for n queries: row q holds k item indices (best first) and their scores; when
/// fewer than k items are eligible the row is padded with item -1 and score -inf.
struct TopK {
  int64_t n = 0;                     ///< number of queries (rows)
  int k = 0;                         ///< entries per row
  std::vector<data::index_t> items;  ///< n × k item indices, row-major; -1 pads a row
  std::vector<float> scores;         ///< n × k scores, row-major; -inf pads a row

  /// Item at rank `j` (0-based) of query `q`.
  data::index_t item(int64_t q, int j) const { return items[static_cast<size_t>(q * k + j)]; }
  /// Score at rank `j` (0-based) of query `q`.
  float score(int64_t q, int j) const { return scores[static_cast<size_t>(q * k + j)]; }
};

/// Exact top-k of query·item inner products. queries: n_q × d row-major; items: n_items × d
/// row-major. exclude (optional): a CSR with one column per item whose row query_rows[q] (or q
/// when query_rows is empty) lists items to mask for query q (columns sorted). global_exclude
/// (optional, sorted item indices) is masked for every query. Ties are broken by lower item index
/// (deterministic); NaN scores count as -inf (eligible, but never above a finite score). k >= 1;
/// k > n_items is allowed (rows are padded). Memory is bounded independently of n_items: scores
/// are computed in tiles of queries × items with cblas_sgemm and merged per query.
///
/// The reported scores are exact_score's, and so is the ranking: the GEMM's float scores only
/// pick the items worth an exact score (those within the GEMM's rounding bound of the k-th
/// best). A query's list and scores therefore do not depend on the other queries of the call,
/// the thread count, the BLAS kernels or the CPU, and equal topk_naive's bit for bit.
/// max_item_norm: the largest Euclidean norm of an item row (max_row_norm), which bounds that
/// rounding; a caller that scores the same items many times passes it, else (< 0) it is
/// computed here, one pass over the items.
TopK topk(const float* queries, int64_t n_q, const float* items, int64_t n_items, int d, int k,
          const data::Csr* exclude = nullptr, const std::vector<data::index_t>& query_rows = {},
          const std::vector<data::index_t>* global_exclude = nullptr,
          double max_item_norm = -1);

/// `topk` of the rows `rows` of the row-major matrix `rows_of` (d floats each) as queries, each
/// masked by its own row of `exclude` (query_rows = rows), without gathering every query row at
/// once: about 64 MiB of them at a time (at least 1,024), the largest item norm computed once. A
/// query's list does not depend on the other queries of a call, so the result is one call's.
TopK topk_rows(const float* rows_of, const std::vector<data::index_t>& rows, const float* items,
               int64_t n_items, int d, int k, const data::Csr* exclude = nullptr);

/// The score that `topk` and `topk_naive` report for a query and an item row of d floats:
/// Σ query_c · item_c summed in double in a fixed order, then rounded to float. It does not
/// depend on the CPU, the compiler's vectorisation or FMA contraction (products of floats are
/// exact in double).
float exact_score(const float* query, const float* item, int d);

/// The largest Euclidean norm of the n rows of d floats (computed in double); NaN if a row
/// holds NaN.
double max_row_norm(const float* rows, int64_t n, int d);

/// Checks `topk`'s arguments (shared by every top-k implementation, CPU and GPU, so that bad
/// input gets the same sentence on each device); throws recforge::Error.
void validate_topk_arguments(const float* queries, int64_t n_q, const float* items,
                             int64_t n_items, int d, int k, const data::Csr* exclude,
                             const std::vector<data::index_t>& query_rows,
                             const std::vector<data::index_t>* global_exclude);

namespace detail {
/// Fills tile[i * w + j] with the float score of query q0 + i and item t0 + j, for i < nb and
/// j < w (what topk's GEMM computes).
using TileScores =
    std::function<void(int64_t q0, int64_t nb, int64_t t0, int64_t w, float* tile)>;
/// `topk` with its GEMM tiles replaced by `tile_scores` (when set): for tests that feed it
/// float scores as far from the exact ones as rounding may put them.
TopK topk_scored(const float* queries, int64_t n_q, const float* items, int64_t n_items, int d,
                 int k, const data::Csr* exclude, const std::vector<data::index_t>& query_rows,
                 const std::vector<data::index_t>* global_exclude, double max_item_norm,
                 const TileScores& tile_scores);
}  // namespace detail

/// The naive reference for `topk` (same contract): every item's exact_score, masked, then fully
/// sorted. O(n_items) memory per query and slow; for tests.
TopK topk_naive(const float* queries, int64_t n_q, const float* items, int64_t n_items, int d,
                int k, const data::Csr* exclude = nullptr,
                const std::vector<data::index_t>& query_rows = {},
                const std::vector<data::index_t>* global_exclude = nullptr);

}  // namespace recforge::eval
