#pragma once
/// @file csr.h
/// Compressed sparse rows with 64-bit offsets, built from COO in O(nnz + rows + cols).

#include <cstdint>
#include <vector>

#include "data/interactions.h"

namespace recforge::data {

/// A rows×cols sparse matrix. Row r holds columns indices[indptr[r] .. indptr[r+1]) in
/// increasing order, with values in `data`.
struct Csr {
  int64_t rows = 0;               ///< number of rows
  int64_t cols = 0;               ///< number of columns
  std::vector<offset_t> indptr;   ///< rows + 1 offsets (64-bit: nnz may exceed 2^31)
  std::vector<index_t> indices;   ///< column of each stored value
  std::vector<float> data;        ///< stored values

  /// Number of stored values.
  offset_t nnz() const { return indptr.empty() ? 0 : indptr.back(); }
  /// Number of stored values in row r.
  int64_t row_size(int64_t r) const { return indptr[r + 1] - indptr[r]; }

  /// Builds from COO triplets in O(nnz + rows + cols). Columns come out sorted within each row;
  /// repeated (row, col) pairs are kept as separate entries (combine them beforehand).
  static Csr from_coo(int64_t rows, int64_t cols, const std::vector<index_t>& row_idx,
                      const std::vector<index_t>& col_idx, const std::vector<float>& values);
  /// Builds the user×item matrix of an interaction set, with `values` (one per interaction).
  static Csr from_interactions(int64_t n_users, int64_t n_items, const Interactions& x,
                               const std::vector<float>& values);
  /// The transpose (cols×rows), in O(nnz + rows + cols), columns sorted within rows.
  Csr transpose() const;
};

static_assert(sizeof(offset_t) == 8, "CSR offsets must be 64-bit");

}  // namespace recforge::data
