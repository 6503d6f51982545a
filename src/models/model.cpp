#include "models/model.h"

#include <algorithm>
#include <cmath>

namespace recforge::models {

Matrix Model::fold_in(const data::Csr& rows) const {
  Matrix q = fold_in_rows(rows);
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* b = q.row(r);
    const float* e = b + q.cols;
    float largest = 0;
    for (int64_t j = rows.indptr[r]; j < rows.indptr[r + 1]; ++j)
      largest = std::max(largest, rows.data[static_cast<size_t>(j)]);
    const bool broke = std::any_of(b, e, [](float v) { return !std::isfinite(v); }) ||
                       (largest > 0 && std::all_of(b, e, [](float v) { return v == 0.f; }));
    if (broke)
      fail("fold-in of row {}: the solve for its factors broke down (non-finite or all-zero "
           "factors, with confidences up to {}); expected smaller weights (confidences)",
           r, largest);
  }
  return q;
}

}  // namespace recforge::models
