#pragma once
// Test data and list comparisons shared by the tests of src/index (CPU and GPU Faiss).

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/npy.h"
#include "core/rng.h"
#include "data/csr.h"
#include "eval/topk.h"

namespace recforge::index::fixtures {

/// n × d N(0, 1) matrix from a seed.
inline Matrix gaussian(int64_t n, int d, uint64_t seed) {
  Rng rng(seed);
  Matrix m;
  m.rows = n;
  m.cols = d;
  m.data.resize(static_cast<size_t>(n * d));
  for (float& v : m.data) v = static_cast<float>(rng.normal());
  return m;
}

/// Items in `clusters` well-separated groups (so that IVF cells mean something).
inline Matrix clustered(int64_t n, int d, int clusters, uint64_t seed) {
  const Matrix centers = gaussian(clusters, d, seed + 1);
  Matrix m = gaussian(n, d, seed);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j)
      m.row(i)[j] = 0.3f * m.row(i)[j] + 2.f * centers.row(i % clusters)[j];
  return m;
}

/// A CSR from per-row item lists (sorted and deduplicated here).
inline data::Csr csr(const std::vector<std::vector<data::index_t>>& rows, int64_t n_items) {
  data::Csr c;
  c.rows = static_cast<int64_t>(rows.size());
  c.cols = n_items;
  c.indptr.push_back(0);
  for (auto r : rows) {
    std::sort(r.begin(), r.end());
    r.erase(std::unique(r.begin(), r.end()), r.end());
    c.indices.insert(c.indices.end(), r.begin(), r.end());
    c.indptr.push_back(static_cast<data::offset_t>(c.indices.size()));
  }
  c.data.assign(c.indices.size(), 1.f);
  return c;
}

/// Same ranked items; scores equal within `tol`. Where items differ, the two candidates must
/// be tied within `tie_tol` (float rounding may order exact ties either way).
inline void expect_same_lists(const eval::TopK& got, const eval::TopK& want, float tol = 1e-4f,
                              float tie_tol = 1e-5f) {
  ASSERT_EQ(got.n, want.n);
  ASSERT_EQ(got.k, want.k);
  for (int64_t q = 0; q < want.n; ++q)
    for (int j = 0; j < want.k; ++j) {
      if (want.item(q, j) < 0) {
        EXPECT_EQ(got.item(q, j), -1) << "query " << q << " rank " << j;
        continue;
      }
      EXPECT_NEAR(got.score(q, j), want.score(q, j), tol) << "query " << q << " rank " << j;
      if (got.item(q, j) != want.item(q, j)) {
        EXPECT_NEAR(got.score(q, j), want.score(q, j), tie_tol)
            << "query " << q << " rank " << j << ": item " << got.item(q, j) << " instead of "
            << want.item(q, j);
      }
    }
}

}  // namespace recforge::index::fixtures
