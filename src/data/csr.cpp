#include "data/csr.h"

#include <numeric>

#include "core/error.h"

namespace recforge::data {
namespace {

// Counting sort of (row, col, value) triplets by `key` into CSR arrays. Stable: entries with the
// same key keep their input order. O(n + n_keys).
void bucket(int64_t n_keys, const index_t* key, const index_t* other, const float* values,
            offset_t n, std::vector<offset_t>& indptr, std::vector<index_t>& out_other,
            std::vector<float>& out_values) {
  indptr.assign(static_cast<size_t>(n_keys) + 1, 0);
  for (offset_t k = 0; k < n; ++k) ++indptr[key[k] + 1];
  std::partial_sum(indptr.begin(), indptr.end(), indptr.begin());
  out_other.resize(n);
  out_values.resize(n);
  std::vector<offset_t> pos(indptr.begin(), indptr.end() - 1);
  for (offset_t k = 0; k < n; ++k) {
    const offset_t p = pos[key[k]]++;
    out_other[p] = other[k];
    out_values[p] = values[k];
  }
}

}  // namespace

Csr Csr::from_coo(int64_t rows, int64_t cols, const std::vector<index_t>& row_idx,
                  const std::vector<index_t>& col_idx, const std::vector<float>& values) {
  RF_ASSERT(row_idx.size() == col_idx.size() && row_idx.size() == values.size(),
            "Csr::from_coo: array sizes differ");
  const offset_t n = static_cast<offset_t>(row_idx.size());
  for (offset_t k = 0; k < n; ++k) {
    RF_ASSERT(row_idx[k] >= 0 && row_idx[k] < rows && col_idx[k] >= 0 && col_idx[k] < cols,
              "Csr::from_coo: index out of range");
  }
  // Two stable counting passes (by column, then by row) leave columns sorted within each row.
  Csr by_col;
  by_col.rows = cols;
  by_col.cols = rows;
  bucket(cols, col_idx.data(), row_idx.data(), values.data(), n, by_col.indptr, by_col.indices,
         by_col.data);
  return by_col.transpose();
}

Csr Csr::from_interactions(int64_t n_users, int64_t n_items, const Interactions& x,
                           const std::vector<float>& values) {
  return from_coo(n_users, n_items, x.users, x.items, values);
}

Csr Csr::transpose() const {
  // Expand row indices, then bucket by column; scanning rows in order keeps the new columns
  // (old rows) sorted within each new row.
  const offset_t n = nnz();
  std::vector<index_t> row_of(n);
  for (int64_t r = 0; r < rows; ++r)
    for (offset_t k = indptr[r]; k < indptr[r + 1]; ++k) row_of[k] = static_cast<index_t>(r);
  Csr t;
  t.rows = cols;
  t.cols = rows;
  bucket(cols, indices.data(), row_of.data(), data.data(), n, t.indptr, t.indices, t.data);
  return t;
}

}  // namespace recforge::data
