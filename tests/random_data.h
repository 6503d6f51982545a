#pragma once
/// @file random_data.h
/// Seeded random interaction matrices and factor matrices for tests (shared by the model tests
/// and the per-device tests, so both draw the same problems).

#include <cstdint>
#include <vector>

#include "core/npy.h"
#include "core/rng.h"
#include "data/csr.h"

namespace recforge::test {

/// A random sparse matrix with about `per_row` entries per row (some rows empty) and
/// confidences in [1, 5).
inline data::Csr random_csr(int rows, int cols, int per_row, uint64_t seed) {
  Rng rng(seed);
  std::vector<data::index_t> r, c;
  std::vector<float> v;
  for (int i = 0; i < rows; ++i) {
    std::vector<bool> used(static_cast<size_t>(cols), false);
    const int n = static_cast<int>(rng.below(static_cast<uint64_t>(2 * per_row)));
    for (int e = 0; e < n; ++e) {
      const int j = static_cast<int>(rng.below(static_cast<uint64_t>(cols)));
      if (used[static_cast<size_t>(j)]) continue;
      used[static_cast<size_t>(j)] = true;
      r.push_back(i);
      c.push_back(j);
      v.push_back(1.f + 4.f * static_cast<float>(rng.uniform()));
    }
  }
  return data::Csr::from_coo(rows, cols, r, c, v);
}

/// rows × k factors ~ N(0, scale²).
inline Matrix random_matrix(int64_t rows, int k, uint64_t seed, double scale = 0.3) {
  Matrix m;
  m.rows = rows;
  m.cols = k;
  Rng rng(seed);
  for (int64_t j = 0; j < rows * k; ++j) m.data.push_back(static_cast<float>(scale * rng.normal()));
  return m;
}

}  // namespace recforge::test
