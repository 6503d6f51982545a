// The exact decomposition of an iALS user solve (explain_user in ials_cpu.h), and the item
// similarity explanation of models without one (Model::explain's default).
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/blas.h"
#include "core/error.h"
#include "models/ials/ials_cpu.h"
#include "models/model.h"

namespace recforge {
namespace {

constexpr double kUnit = std::numeric_limits<double>::epsilon() / 2;  // unit roundoff u

// γ_m = m u / (1 − m u) (Higham): the relative error bound of an m-term sum or dot product.
double gamma(double m) { return m * kUnit / (1 - m * kUnit); }

// Largest first, ties by item row.
void sort_contributions(std::vector<models::Contribution>& c) {
  std::sort(c.begin(), c.end(), [](const models::Contribution& a, const models::Contribution& b) {
    return a.contribution != b.contribution ? a.contribution > b.contribution : a.item < b.item;
  });
}

double model_score(const Matrix& y, const float* user, int64_t item) {
  if (!user) return 0;
  double s = 0;
  for (int64_t c = 0; c < y.cols; ++c) s += static_cast<double>(y.row(item)[c]) * user[c];
  return s;
}

void check_row(const data::Csr& row, const Matrix& y, const std::vector<int64_t>& items) {
  RF_ASSERT(row.rows == 1 && row.cols == y.rows, "explain: expected one row over the items");
  for (int64_t i : items) RF_ASSERT(i >= 0 && i < y.rows, "explain: item row out of range");
}

// a += w v vᵀ on the lower triangle and diagonal of the k×k `a`.
void add_outer(std::vector<double>& a, int64_t k, const float* v, double w) {
  for (int64_t r = 0; r < k; ++r) {
    const double wr = w * v[r];
    double* ar = a.data() + r * k;
    for (int64_t c = 0; c <= r; ++c) ar[c] += wr * v[c];
  }
}

}  // namespace

namespace backend::cpu {

std::vector<double> explain_unobserved(const Matrix& y, const IalsSolveParams& p,
                                       const std::vector<float>& col_weights) {
  // Σ_j (√(α0 c_j) y_j)(√(α0 c_j) y_j)ᵀ by DSYRK on blocks of rows converted to double.
  RF_ASSERT(col_weights.empty() || static_cast<int64_t>(col_weights.size()) == y.rows,
            "explain: item weights size");
  RF_ASSERT(p.unobserved_weight >= 0, "explain: negative unobserved weight");
  const int64_t k = y.cols;
  std::vector<double> a(static_cast<size_t>(k * k), 0.0);
  constexpr int64_t kBlock = 1024;
  std::vector<double> block(static_cast<size_t>(std::min(kBlock, y.rows) * k));
  for (int64_t j0 = 0; j0 < y.rows; j0 += kBlock) {
    const int64_t n = std::min(kBlock, y.rows - j0);
    for (int64_t j = 0; j < n; ++j) {
      const double c = col_weights.empty() ? 1.0 : col_weights[static_cast<size_t>(j0 + j)];
      const double s = std::sqrt(p.unobserved_weight * c);
      for (int64_t col = 0; col < k; ++col) block[j * k + col] = s * y.row(j0 + j)[col];
    }
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, static_cast<int>(k), static_cast<int>(n),
                1.0, block.data(), static_cast<int>(k), 1.0, a.data(), static_cast<int>(k));
  }
  return a;
}

std::vector<models::Explanation> explain_user(const data::Csr& row, const Matrix& y,
                                              const IalsSolveParams& p,
                                              const std::vector<float>& col_weights,
                                              const float* user,
                                              const std::vector<int64_t>& items,
                                              const std::vector<double>* unobserved) {
  check_row(row, y, items);
  const int64_t k = y.cols;
  const int64_t n = row.row_size(0);
  std::vector<models::Explanation> out;
  if (n == 0) {  // no training items: x_u = 0 (solve_side), nothing contributes
    for (int64_t i : items) {
      models::Explanation e;
      e.method = "exact_decomposition";
      e.model_score = model_score(y, user, i);
      out.push_back(std::move(e));
    }
    return out;
  }
  // A in double, its lower triangle: the unobserved part, then the user's items.
  RF_ASSERT(!unobserved || static_cast<int64_t>(unobserved->size()) == k * k,
            "explain: the precomputed unobserved part has the wrong size");
  std::vector<double> a = unobserved ? *unobserved : explain_unobserved(y, p, col_weights);
  std::vector<double> t(static_cast<size_t>(n)), b(static_cast<size_t>(k), 0.0);
  for (int64_t e = 0; e < n; ++e) {
    const int64_t j = row.indices[e];
    t[e] = p.alpha * static_cast<double>(row.data[e]);
    add_outer(a, k, y.row(j), t[e] - p.observed_offset);  // model.observed_weight replaced
    for (int64_t c = 0; c < k; ++c) b[c] += t[e] * y.row(j)[c];
  }
  const double lambda = row_regularization(p, n);
  double trace = 0;
  for (int64_t r = 0; r < k; ++r) {
    a[r * k + r] += lambda;
    trace += a[r * k + r];
  }
  // Cholesky A = L Lᵀ (L in the lower triangle of `a`).
  for (int64_t c = 0; c < k; ++c) {
    double d = a[c * k + c];
    for (int64_t m = 0; m < c; ++m) d -= a[c * k + m] * a[c * k + m];
    if (!(d > 0))
      fail("iALS explain: the user's system is not positive definite (model.regularization 0 "
           "with too few interactions?); expected a regularization above 0");
    const double l = std::sqrt(d);
    a[c * k + c] = l;
    for (int64_t r = c + 1; r < k; ++r) {
      double s = a[r * k + c];
      for (int64_t m = 0; m < c; ++m) s -= a[r * k + m] * a[c * k + m];
      a[r * k + c] = s / l;
    }
  }
  auto solve = [&](std::vector<double>& v) {  // v ← A⁻¹ v
    for (int64_t r = 0; r < k; ++r) {
      double s = v[r];
      for (int64_t m = 0; m < r; ++m) s -= a[r * k + m] * v[m];
      v[r] = s / a[r * k + r];
    }
    for (int64_t r = k - 1; r >= 0; --r) {
      double s = v[r];
      for (int64_t m = r + 1; m < k; ++m) s -= a[m * k + r] * v[m];
      v[r] = s / a[r * k + r];
    }
  };
  for (int64_t i : items) {
    models::Explanation e;
    e.method = "exact_decomposition";
    e.model_score = model_score(y, user, i);
    e.condition_bound = trace / lambda;
    std::vector<double> w(static_cast<size_t>(k));  // w = A⁻¹ y_i
    for (int64_t c = 0; c < k; ++c) w[c] = y.row(i)[c];
    solve(w);
    double score = 0;
    for (int64_t c = 0; c < k; ++c) score += w[c] * b[c];
    e.score = score;
    // |Σ_j t_j (w·y_j) − w·b|: both sides are sums of the same n·k products t_j w_c y_jc in
    // another order, each side within γ_{k+n+1} Σ |t_j| |w_c| |y_jc| of the exact sum.
    double magnitude = 0;
    for (int64_t el = 0; el < n; ++el) {
      const float* yj = y.row(row.indices[el]);
      double dot = 0, abs_dot = 0;
      for (int64_t c = 0; c < k; ++c) {
        dot += w[c] * yj[c];
        abs_dot += std::abs(w[c] * yj[c]);
      }
      magnitude += std::abs(t[el]) * abs_dot;
      e.contributions.push_back({row.indices[el], static_cast<double>(row.data[el]), t[el],
                                 t[el] * dot});
    }
    e.tolerance = 2 * gamma(static_cast<double>(k + n + 1)) * magnitude;
    e.cholesky = a;  // L in the lower triangle; add_outer never wrote above the diagonal
    sort_contributions(e.contributions);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace backend::cpu

namespace models {

std::vector<Explanation> Model::explain(const data::Csr& row, const float* user,
                                        const std::vector<int64_t>& items) const {
  const Matrix& y = item_factors();
  check_row(row, y, items);
  auto norm = [&](int64_t j) {
    double s = 0;
    for (int64_t c = 0; c < y.cols; ++c) s += static_cast<double>(y.row(j)[c]) * y.row(j)[c];
    return std::sqrt(s);
  };
  std::vector<Explanation> out;
  for (int64_t i : items) {
    Explanation e;
    e.method = "item_similarity";
    e.model_score = e.score = model_score(y, user, i);
    const double ni = norm(i);
    for (data::offset_t el = row.indptr[0]; el < row.indptr[1]; ++el) {
      const int64_t j = row.indices[el];
      double dot = 0;
      for (int64_t c = 0; c < y.cols; ++c) dot += static_cast<double>(y.row(i)[c]) * y.row(j)[c];
      const double nj = norm(j);
      e.contributions.push_back(
          {j, row.data[el], row.data[el], ni > 0 && nj > 0 ? dot / (ni * nj) : 0.0});
    }
    sort_contributions(e.contributions);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace models
}  // namespace recforge
