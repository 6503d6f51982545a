#include "data/csr.h"

#include <gtest/gtest.h>

#include "core/rng.h"

namespace recforge::data {
namespace {

TEST(Csr, FromCooSortsColumnsWithinRows) {
  const Csr m = Csr::from_coo(3, 4, {2, 0, 2, 0, 1}, {1, 3, 0, 0, 2}, {1, 2, 3, 4, 5});
  EXPECT_EQ(m.indptr, (std::vector<offset_t>{0, 2, 3, 5}));
  EXPECT_EQ(m.indices, (std::vector<index_t>{0, 3, 2, 0, 1}));
  EXPECT_EQ(m.data, (std::vector<float>{4, 2, 5, 3, 1}));
  EXPECT_EQ(m.nnz(), 5);
  EXPECT_EQ(m.row_size(2), 2);
}

TEST(Csr, EmptyRowsAndColumns) {
  const Csr m = Csr::from_coo(4, 5, {1}, {3}, {7});
  EXPECT_EQ(m.indptr, (std::vector<offset_t>{0, 0, 1, 1, 1}));
  const Csr t = m.transpose();
  EXPECT_EQ(t.rows, 5);
  EXPECT_EQ(t.indptr, (std::vector<offset_t>{0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(t.indices, (std::vector<index_t>{1}));
}

TEST(Csr, TransposeMatchesDenseAndRoundTrips) {
  Rng rng(11);
  const int rows = 37, cols = 23;
  std::vector<index_t> r, c;
  std::vector<float> v;
  std::vector<float> dense(rows * cols, 0.f);
  for (int k = 0; k < 300; ++k) {
    const index_t i = static_cast<index_t>(rng.below(rows)), j = static_cast<index_t>(rng.below(cols));
    if (dense[i * cols + j] != 0.f) continue;  // unique pairs
    const float x = 1.f + static_cast<float>(rng.below(100));
    dense[i * cols + j] = x;
    r.push_back(i);
    c.push_back(j);
    v.push_back(x);
  }
  const Csr m = Csr::from_coo(rows, cols, r, c, v);
  const Csr t = m.transpose();
  for (int j = 0; j < cols; ++j)
    for (offset_t k = t.indptr[j]; k < t.indptr[j + 1]; ++k) {
      EXPECT_EQ(dense[t.indices[k] * cols + j], t.data[k]);
      if (k > t.indptr[j]) {
        EXPECT_LT(t.indices[k - 1], t.indices[k]);
      }
    }
  EXPECT_EQ(t.nnz(), m.nnz());
  const Csr back = t.transpose();
  EXPECT_EQ(back.indptr, m.indptr);
  EXPECT_EQ(back.indices, m.indices);
  EXPECT_EQ(back.data, m.data);
}

}  // namespace
}  // namespace recforge::data
