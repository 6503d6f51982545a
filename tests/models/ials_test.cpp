#include "models/ials/ials.h"

#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "models/ials/ials_cpu.h"
#include "core/blas.h"
#include "core/rng.h"
#include "eval/topk.h"
#include "random_data.h"

namespace recforge::models {
namespace {

using backend::cpu::IalsSolveParams;
using data::Csr;
using data::index_t;

using test::random_csr;
using test::random_matrix;

// The dense normal equations of row u in double: A = α0 YᵀY + Σ w y yᵀ + λ_u I (full k×k)
// and b = Σ w y. With `col_w`, the unobserved term of column i is weighted by col_w[i];
// `row_scale` multiplies the whole unobserved term of this row.
void dense_system(const Csr& r, int64_t u, const Matrix& y, const IalsSolveParams& p,
                  std::vector<double>& a, std::vector<double>& b,
                  const std::vector<float>& col_w = {}, double row_scale = 1.0) {
  const int k = static_cast<int>(y.cols);
  a.assign(static_cast<size_t>(k) * k, 0.0);
  b.assign(static_cast<size_t>(k), 0.0);
  for (int64_t i = 0; i < y.rows; ++i) {
    const double c = row_scale * p.unobserved_weight * (col_w.empty() ? 1.0 : col_w[i]);
    for (int s = 0; s < k; ++s)
      for (int t = 0; t < k; ++t) a[s * k + t] += c * y.row(i)[s] * y.row(i)[t];
  }
  for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
    const float* yi = y.row(r.indices[e]);
    const double w = p.alpha * r.data[e], q = w - p.observed_offset;
    for (int s = 0; s < k; ++s) {
      b[s] += w * yi[s];
      for (int t = 0; t < k; ++t) a[s * k + t] += q * yi[s] * yi[t];
    }
  }
  const double lam = backend::cpu::row_regularization(p, r.row_size(u));
  for (int s = 0; s < k; ++s) a[s * k + s] += lam;
}

// Solves the k×k system a·x = b (row-major) in double by Gaussian elimination with partial
// pivoting.
std::vector<double> gauss_solve(std::vector<double> a, std::vector<double> b, int k) {
  for (int col = 0; col < k; ++col) {
    int piv = col;
    for (int row = col + 1; row < k; ++row)
      if (std::fabs(a[row * k + col]) > std::fabs(a[piv * k + col])) piv = row;
    for (int t = 0; t < k; ++t) std::swap(a[col * k + t], a[piv * k + t]);
    std::swap(b[col], b[piv]);
    for (int row = col + 1; row < k; ++row) {
      const double f = a[row * k + col] / a[col * k + col];
      for (int t = col; t < k; ++t) a[row * k + t] -= f * a[col * k + t];
      b[row] -= f * b[col];
    }
  }
  std::vector<double> x(k);
  for (int row = k - 1; row >= 0; --row) {
    double s = b[row];
    for (int t = row + 1; t < k; ++t) s -= a[row * k + t] * x[t];
    x[row] = s / a[row * k + row];
  }
  return x;
}

// Dense reference: solves row u's normal equations (dense_system) in double by Gaussian
// elimination.
std::vector<double> dense_solve(const Csr& r, int64_t u, const Matrix& y, const IalsSolveParams& p,
                                const std::vector<float>& col_w = {}, double row_scale = 1.0) {
  std::vector<double> a, b;
  dense_system(r, u, y, p, a, b, col_w, row_scale);
  return gauss_solve(std::move(a), std::move(b), static_cast<int>(y.cols));
}

IalsSolveParams params(bool cholesky, int cg_steps = 3,
                       backend::cpu::CgBasis basis = backend::cpu::CgBasis::kDense) {
  IalsSolveParams p;
  p.cg_basis = basis;
  p.regularization = 0.05;
  p.reg_exp = 1.0;
  p.reg_offset = 1.0;
  p.unobserved_weight = 0.1;
  p.alpha = 1.5;
  p.cholesky = cholesky;
  p.cg_steps = cg_steps;
  return p;
}

// model.observed_weight replaced (observed_offset = α0): the objective of Hu et al. and
// implicit, Σ_u,i w_ui (p_ui − x·y)² + λ‖x‖² with w = alpha·c on observed pairs and α0 on the
// others. Its normal equations, written here pair by pair in double (no Gram matrix, no offset),
// against the Cholesky solve, and CG (dense and in the eigenbasis, many steps) against it, on
// confidences 0.2-1 below α0 = 1, where an observed pair weighs less than an unobserved one;
// and the observed part of the loss (with the Gram term, the whole objective) pair by pair.
TEST(IalsSolve, ReplacedObservedWeightSolvesImplicitsObjective) {
  for (int k : {5, 16}) {
    Csr r = random_csr(40, 30, 6, 500 + k);
    for (float& v : r.data) v *= 0.2f;  // 0.2 .. 1
    const Matrix y = random_matrix(30, k, 600 + k);
    IalsSolveParams p = params(true);
    p.unobserved_weight = 1.0;
    p.alpha = 1.0;
    p.observed_offset = 1.0;
    Matrix x = random_matrix(40, k, 700 + k);
    backend::cpu::solve_side(r, y, x, p, 2);
    for (int64_t u = 0; u < r.rows; ++u) {
      if (r.row_size(u) == 0) continue;
      std::vector<double> a(static_cast<size_t>(k) * k, 0.0), b(static_cast<size_t>(k), 0.0);
      std::vector<double> w(static_cast<size_t>(y.rows), p.unobserved_weight);
      for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
        w[static_cast<size_t>(r.indices[e])] = p.alpha * r.data[e];
        for (int s = 0; s < k; ++s) b[s] += p.alpha * r.data[e] * y.row(r.indices[e])[s];
      }
      for (int64_t i = 0; i < y.rows; ++i)
        for (int s = 0; s < k; ++s)
          for (int t = 0; t < k; ++t) a[s * k + t] += w[i] * y.row(i)[s] * y.row(i)[t];
      const double lam = backend::cpu::row_regularization(p, r.row_size(u));
      for (int s = 0; s < k; ++s) a[s * k + s] += lam;
      const std::vector<double> z = gauss_solve(std::move(a), std::move(b), k);
      for (int c = 0; c < k; ++c)
        EXPECT_NEAR(x.row(u)[c], z[c], 1e-4 * (1 + std::fabs(z[c]))) << "k=" << k << " u=" << u;
      // The offset's reference (dense_system with w − offset) is the same system.
      const auto ref = dense_solve(r, u, y, p);
      for (int c = 0; c < k; ++c) EXPECT_NEAR(ref[c], z[c], 1e-9 * (1 + std::fabs(z[c])));
    }
    for (const auto basis : {backend::cpu::CgBasis::kDense, backend::cpu::CgBasis::kEigen}) {
      Matrix cg = random_matrix(40, k, 700 + k);
      IalsSolveParams pc = p;
      pc.cholesky = false;
      pc.cg_steps = 80;
      pc.cg_basis = basis;
      backend::cpu::solve_side(r, y, cg, pc, 2);
      double max_err = 0;
      for (size_t j = 0; j < x.data.size(); ++j)
        max_err = std::max(max_err, static_cast<double>(std::fabs(x.data[j] - cg.data[j])));
      EXPECT_LT(max_err, 1e-3) << "k=" << k;
    }
    // The engine's scores are float32 dot products: each within γ_k Σ_c |x_c y_c| (u = 2^-24)
    // of the double s, which moves a pair's term by at most (2·alpha·c·|1 − s| + 2·o·|s|) times
    // that (to first order; the rest is double rounding, far below).
    double observed = 0, bound = 0;
    const double gk = k * 0x1p-24 / (1 - k * 0x1p-24);
    for (int64_t u = 0; u < r.rows; ++u)
      for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
        double s = 0, abs_dot = 0;
        for (int c = 0; c < k; ++c) {
          const double xy = static_cast<double>(x.row(u)[c]) * y.row(r.indices[e])[c];
          s += xy;
          abs_dot += std::fabs(xy);
        }
        observed += p.alpha * r.data[e] * (1 - s) * (1 - s) - p.unobserved_weight * s * s;
        bound += (2 * p.alpha * r.data[e] * std::fabs(1 - s) + 2 * p.unobserved_weight * std::fabs(s)) *
                 gk * abs_dot * 1.01;
      }
    EXPECT_NEAR(backend::cpu::observed_term(r, x, y, p), observed, bound + 1e-12 * std::fabs(observed));
  }
}

TEST(IalsSolve, CholeskyEqualsDenseNormalEquations) {
  for (int k : {1, 5, 16}) {
    const Csr r = random_csr(30, 25, 6, 100 + k);
    const Matrix y = random_matrix(25, k, 200 + k);
    Matrix x = random_matrix(30, k, 300 + k);
    const IalsSolveParams p = params(true);
    backend::cpu::solve_side(r, y, x, p, 2);
    for (int64_t u = 0; u < r.rows; ++u) {
      const auto ref = dense_solve(r, u, y, p);
      for (int c = 0; c < k; ++c) {
        if (r.row_size(u) == 0) {
          EXPECT_EQ(x.row(u)[c], 0.f) << "empty rows get zero factors";
          continue;
        }
        EXPECT_NEAR(x.row(u)[c], ref[c], 1e-4 * (1 + std::fabs(ref[c]))) << "k=" << k << " u=" << u;
      }
    }
  }
}

// γ_n = n·u/(1 − n·u) for unit roundoff u.
double gamma_n(double n, double u) { return n * u / (1 - n * u); }

TEST(IalsSolve, ConfidencesFarAboveTheGramMatrixAreSolvedInDouble) {
  // alpha·c of 1e8-1e14 (raw counts or durations as weights) against a Gram matrix and λ of
  // order 1: float32 rounds A by more than its smallest eigenvalues, so spotrf finds it
  // indefinite and the exact solve used to fail with an internal error. Such rows are solved
  // in double and the answer rounded to float, so each row's residual is that of the exact
  // solution rounded to float, plus the float32 Gram matrix's own rounding and double-level
  // terms (derived below), whatever the CPU.
  const int k = 16;
  Csr r = random_csr(40, 30, 6, 91);
  const Matrix y = random_matrix(30, k, 92);
  const double big[] = {1e8, 1e10, 1e12, 1e14};
  std::vector<bool> is_big(static_cast<size_t>(r.rows), false);
  for (int64_t u = 0, j = 0; u < 12; ++u)
    if (r.row_size(u) > 0) r.data[r.indptr[u]] = static_cast<float>(big[j++ % 4]), is_big[u] = true;
  const IalsSolveParams p = params(true);
  Matrix x = random_matrix(40, k, 93);
  backend::cpu::solve_side(r, y, x, p, 2);
  const double u32 = std::ldexp(1.0, -24), u64 = std::ldexp(1.0, -53);
  const int64_t m = y.rows;
  int checked = 0;
  for (int64_t u = 0; u < r.rows; ++u) {
    if (!is_big[u]) continue;
    ++checked;
    std::vector<double> a, b;
    dense_system(r, u, y, p, a, b);
    const int64_t n = r.row_size(u);
    const double lam = backend::cpu::row_regularization(p, n);
    // Frobenius norms of A, of α0·|Y|ᵀ|Y| and Σ w·|y||y|ᵀ; the 2-norm of Σ |w·y|.
    double norm_a = 0, s_g = 0, s_w = 0, s_b = 0;
    for (int c1 = 0; c1 < k; ++c1) {
      double bw = 0;
      for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e)
        bw += std::fabs(p.alpha * r.data[e] * y.row(r.indices[e])[c1]);
      s_b += bw * bw;
      for (int c2 = 0; c2 < k; ++c2) {
        norm_a += a[c1 * k + c2] * a[c1 * k + c2];
        double g = 0, w = 0;
        for (int64_t i = 0; i < m; ++i) g += std::fabs(double{y.row(i)[c1]} * y.row(i)[c2]);
        for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
          const float* yi = y.row(r.indices[e]);
          w += p.alpha * r.data[e] * std::fabs(double{yi[c1]} * yi[c2]);
        }
        s_g += (p.unobserved_weight * g) * (p.unobserved_weight * g);
        s_w += w * w;
      }
    }
    norm_a = std::sqrt(norm_a), s_g = std::sqrt(s_g), s_w = std::sqrt(s_w), s_b = std::sqrt(s_b);
    // The premise: float32 cannot hold A to within λ.
    ASSERT_GT(u32 * s_w, 10 * lam) << "row " << u;
    const float* xf = x.row(u);
    double norm_x = 0, norm_b = 0, res = 0;
    for (int c = 0; c < k; ++c) norm_x += double{xf[c]} * xf[c], norm_b += b[c] * b[c];
    norm_x = std::sqrt(norm_x), norm_b = std::sqrt(norm_b);
    for (int c1 = 0; c1 < k; ++c1) {
      double ri = -b[c1];
      for (int c2 = 0; c2 < k; ++c2) ri += a[c1 * k + c2] * xf[c2];
      res += ri * ri;
    }
    res = std::sqrt(res);
    // ‖A·x_f − b‖ ≤ ‖A‖·‖x_f − x̂‖ + ‖A·x̂ − b‖, x̂ the double solution and x_f = fl(x̂):
    // - rounding to float: ‖x_f − x̂‖ ≤ u·‖x̂‖;
    // - the float32 Gram matrix α0·YᵀY (SSYRK with α0 as a float): γ_{m+2}(u)·α0·|Y|ᵀ|Y|;
    // - λ as a float: u·λ;
    // - A and b accumulated in double, by the solve and again by this test: 2γ_{m+n+3}(u')
    //   times |A|'s parts, and 2γ_{n+1}(u')·Σ|w·y| for b;
    // - Cholesky's backward error in double: γ_{3k+1}(u')·k·‖A‖;
    // - this residual's own double sums of k + 1 terms: γ_{k+1}(u')·(‖A‖·‖x_f‖ + ‖b‖).
    const double tol = gamma_n(k + 1, u64) * (norm_a * norm_x + norm_b) +
        norm_x * (1 + 2 * u32) *
            (u32 / (1 - u32) * norm_a + gamma_n(m + 2, u32) * s_g + u32 * lam +
             2 * gamma_n(m + n + 3, u64) * (s_g + s_w + std::sqrt(k) * lam) +
             gamma_n(3 * k + 1, u64) * k * norm_a * (1 + 1e-6)) +
        2 * gamma_n(n + 1, u64) * s_b;
    EXPECT_LE(res, tol) << "row " << u << " (‖A‖ " << norm_a << ", ‖x‖ " << norm_x << ")";
  }
  EXPECT_GE(checked, 8);
}

TEST(IalsSolve, ASystemTooIllConditionedForDoubleIsTheInputsError) {
  // alpha·c = 7.5e17 (still below float32 overflow of the products, 1e18): double's rounding
  // of A (about 1e2) is far above λ, so no precision this solver has can solve the row.
  Csr r = random_csr(20, 30, 6, 94);
  const Matrix y = random_matrix(30, 16, 95);
  int64_t row = 0;
  while (r.row_size(row) == 0) ++row;
  r.data[r.indptr[row]] = 5e17f;
  Matrix x = random_matrix(20, 16, 96);
  try {
    backend::cpu::solve_side(r, y, x, params(true), 2);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too ill-conditioned to solve even in double precision"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("expected confidences spanning fewer orders of magnitude"),
              std::string::npos)
        << e.what();
  }
}

TEST(IalsSolve, PopularityWeightedUnobservedTermMatchesDense) {
  const int k = 6;
  const Csr r = random_csr(40, 30, 6, 71);
  const Csr rt = r.transpose();
  const std::vector<float> c = backend::cpu::popularity_weights(rt, 0.7);
  ASSERT_EQ(c.size(), 30u);
  double mean = 0;
  for (float v : c) mean += v / 30.0;
  EXPECT_NEAR(mean, 1.0, 1e-5);
  const Matrix y = random_matrix(30, k, 72);
  // Cholesky, then CG with G dense and in its eigenbasis.
  for (int mode = 0; mode < 3; ++mode) {
    const bool cholesky = mode == 0;
    const auto basis = mode == 2 ? backend::cpu::CgBasis::kEigen : backend::cpu::CgBasis::kDense;
    // User side: the Gram matrix is weighted per item.
    Matrix x = random_matrix(40, k, 73);
    backend::cpu::solve_side(r, y, x, params(cholesky, 50, basis), 2, c);
    for (int64_t u = 0; u < r.rows; ++u) {
      if (r.row_size(u) == 0) continue;
      const auto ref = dense_solve(r, u, y, params(true), c);
      for (int j = 0; j < k; ++j) EXPECT_NEAR(x.row(u)[j], ref[j], 2e-4 * (1 + std::fabs(ref[j])));
    }
    // Item side: each item's unobserved term is scaled by its own weight.
    const Matrix xu = random_matrix(40, k, 74);
    Matrix yi = random_matrix(30, k, 75);
    backend::cpu::solve_side(rt, xu, yi, params(cholesky, 50, basis), 2, {}, c);
    for (int64_t i = 0; i < rt.rows; ++i) {
      if (rt.row_size(i) == 0) continue;
      const auto ref = dense_solve(rt, i, xu, params(true), {}, c[i]);
      for (int j = 0; j < k; ++j) EXPECT_NEAR(yi.row(i)[j], ref[j], 2e-4 * (1 + std::fabs(ref[j])));
    }
  }
}

TEST(IalsSolve, ConjugateGradientWithManyStepsEqualsCholesky) {
  const int k = 24;
  const Csr r = random_csr(200, 80, 10, 7);
  const Matrix y = random_matrix(80, k, 8);
  Matrix exact = random_matrix(200, k, 9);
  backend::cpu::solve_side(r, y, exact, params(true), 2);
  for (auto basis : {backend::cpu::CgBasis::kDense, backend::cpu::CgBasis::kEigen}) {
    Matrix cg = random_matrix(200, k, 9);  // the same warm start as the exact solve
    backend::cpu::solve_side(r, y, cg, params(false, 60, basis), 2);
    double max_err = 0;
    for (size_t j = 0; j < exact.data.size(); ++j)
      max_err = std::max(max_err, static_cast<double>(std::fabs(exact.data[j] - cg.data[j])));
    EXPECT_LT(max_err, 1e-4) << "eigenbasis " << (basis == backend::cpu::CgBasis::kEigen);
  }
  // And three warm-started steps already get close; one step is further away.
  Matrix few = random_matrix(200, k, 9), one = few;
  backend::cpu::solve_side(r, y, few, params(false, 3), 2);
  backend::cpu::solve_side(r, y, one, params(false, 1), 2);
  double err3 = 0, err1 = 0;
  for (size_t j = 0; j < exact.data.size(); ++j) {
    err3 += std::pow(exact.data[j] - few.data[j], 2);
    err1 += std::pow(exact.data[j] - one.data[j], 2);
  }
  EXPECT_LT(err3, err1);
}

// In exact arithmetic CG is the same in any orthonormal basis: three warm-started steps in G's
// eigenbasis (G diagonal there) land where three steps with the dense G do, on both sides of
// the problem (the item side scales each row's Gram term by its popularity weight), with empty
// rows, and for more rows than one block.
TEST(IalsSolve, EigenbasisConjugateGradientEqualsDense) {
  const int k = 40;
  const Csr r = random_csr(300, 120, 8, 31);  // some rows empty
  const Csr rt = r.transpose();
  const std::vector<float> c = backend::cpu::popularity_weights(rt, 0.5);
  const Matrix y = random_matrix(120, k, 32), xu = random_matrix(300, k, 33);
  for (int side = 0; side < 2; ++side) {
    const Csr& rows = side == 0 ? r : rt;
    const Matrix& other = side == 0 ? y : xu;
    Matrix dense = random_matrix(rows.rows, k, 34), eigen = dense, start = dense;
    auto solve = [&](Matrix& x, backend::cpu::CgBasis b) {
      if (side == 0)
        backend::cpu::solve_side(rows, other, x, params(false, 3, b), 2, c);
      else
        backend::cpu::solve_side(rows, other, x, params(false, 3, b), 2, {}, c);
    };
    solve(dense, backend::cpu::CgBasis::kDense);
    solve(eigen, backend::cpu::CgBasis::kEigen);
    double max_err = 0, max_move = 0;
    for (size_t j = 0; j < dense.data.size(); ++j) {
      max_err = std::max(max_err, static_cast<double>(std::fabs(dense.data[j] - eigen.data[j])));
      max_move = std::max(max_move, static_cast<double>(std::fabs(dense.data[j] - start.data[j])));
    }
    EXPECT_GT(max_move, 0.05) << "side " << side << ": the three steps moved the factors";
    EXPECT_LT(max_err, 2e-5 * std::max(1.0, max_move)) << "side " << side;
  }
}

// Rows with up to ~3,000 interactions at 160 factors: blocks are cut so that their rows fit the
// gather buffer (1 MiB per thread), and a row longer than the whole buffer is read in place;
// gathered and in-place rows must solve the same systems (here in the eigenbasis).
TEST(IalsSolve, LongRowsBeyondTheGatherBufferEqualCholesky) {
  const int k = 160;
  const Csr r = random_csr(12, 5000, 1500, 21);
  int64_t longest = 0;
  for (int64_t u = 0; u < r.rows; ++u) longest = std::max(longest, r.row_size(u));
  ASSERT_GT(longest * k, int64_t{1} << 18);  // at least one row cannot be gathered
  const Matrix y = random_matrix(5000, k, 22, 0.1);
  Matrix exact = random_matrix(12, k, 23), cg = exact;
  backend::cpu::solve_side(r, y, exact, params(true), 2);
  backend::cpu::solve_side(r, y, cg, params(false, 150, backend::cpu::CgBasis::kEigen), 2);
  double max_err = 0, max_abs = 0;
  for (size_t j = 0; j < exact.data.size(); ++j) {
    max_err = std::max(max_err, static_cast<double>(std::fabs(exact.data[j] - cg.data[j])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(exact.data[j])));
  }
  EXPECT_GT(max_abs, 1e-3);  // a non-trivial solution
  EXPECT_LT(max_err, 1e-4 * std::max(1.0, max_abs));
}

// At 512 factors, rows of ~80 interactions: six fit the gather buffer, and the block goes on
// with rows read in place (up to a Gram matrix's worth of floats) rather than being cut after
// six rows. Blocks that mix gathered and in-place rows must solve the same systems, in the
// dense basis and in the eigenbasis.
TEST(IalsSolve, BlocksMixingGatheredAndInPlaceRowsEqualCholesky) {
  const int k = 512;
  const Csr r = random_csr(40, 3000, 80, 31);
  int64_t total = 0;
  for (int64_t u = 0; u < r.rows; ++u) total += r.row_size(u);
  ASSERT_GT(total * k, 3 * (int64_t{1} << 18));  // far more than one buffer's worth
  const Matrix y = random_matrix(3000, k, 32, 0.1);
  Matrix exact = random_matrix(40, k, 33);
  Matrix dense = exact, eigen = exact;
  backend::cpu::solve_side(r, y, exact, params(true), 2);
  backend::cpu::solve_side(r, y, dense, params(false, 120, backend::cpu::CgBasis::kDense), 2);
  backend::cpu::solve_side(r, y, eigen, params(false, 120, backend::cpu::CgBasis::kEigen), 2);
  double err_dense = 0, err_eigen = 0, max_abs = 0;
  for (size_t j = 0; j < exact.data.size(); ++j) {
    err_dense = std::max(err_dense, static_cast<double>(std::fabs(exact.data[j] - dense.data[j])));
    err_eigen = std::max(err_eigen, static_cast<double>(std::fabs(exact.data[j] - eigen.data[j])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(exact.data[j])));
  }
  EXPECT_GT(max_abs, 1e-3);
  EXPECT_LT(err_dense, 1e-4 * std::max(1.0, max_abs));
  EXPECT_LT(err_eigen, 1e-4 * std::max(1.0, max_abs));
}

// One half-iteration of dense warm-started CG in double: the arithmetic of cg_block (the same
// residual, step and direction updates, the same stopping tests) without float32 rounding.
// `x`, `y`: row-major factors with `k` columns; `col_w` weights the Gram matrix per column of
// `r` and `row_w` scales it per row, as solve_half's col_weights and row_weights do.
void cg_half_double(const Csr& r, const std::vector<double>& y, std::vector<double>& x, int k,
                    const IalsSolveParams& p, const std::vector<float>& col_w,
                    const std::vector<float>& row_w) {
  std::vector<double> g(static_cast<size_t>(k) * k, 0.0);
  for (int64_t j = 0; j < r.cols; ++j) {
    const double c = p.unobserved_weight * (col_w.empty() ? 1.0 : col_w[j]);
    for (int s = 0; s < k; ++s)
      for (int t = 0; t < k; ++t) g[s * k + t] += c * y[j * k + s] * y[j * k + t];
  }
  std::vector<double> res(k), dir(k), ad(k);
  for (int64_t u = 0; u < r.rows; ++u) {
    double* xu = x.data() + u * k;
    const int64_t n = r.row_size(u);
    if (n == 0) {
      std::fill(xu, xu + k, 0.0);
      continue;
    }
    const double lam = backend::cpu::row_regularization(p, n);
    const double gs = row_w.empty() ? 1.0 : row_w[u];
    auto apply = [&](const double* v, double* out) {  // out = A v
      for (int s = 0; s < k; ++s) {
        double a = 0;
        for (int t = 0; t < k; ++t) a += g[s * k + t] * v[t];
        out[s] = gs * a + lam * v[s];
      }
      for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
        const double* yi = y.data() + static_cast<int64_t>(r.indices[e]) * k;
        double d = 0;
        for (int c = 0; c < k; ++c) d += yi[c] * v[c];
        for (int c = 0; c < k; ++c) out[c] += p.alpha * r.data[e] * d * yi[c];
      }
    };
    apply(xu, ad.data());
    for (int c = 0; c < k; ++c) res[c] = -ad[c];
    for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e)
      for (int c = 0; c < k; ++c)
        res[c] += p.alpha * r.data[e] * y[static_cast<int64_t>(r.indices[e]) * k + c];
    dir = res;
    double rs = 0;
    for (double v : res) rs += v * v;
    for (int step = 0; step < p.cg_steps && rs >= 1e-20; ++step) {
      apply(dir.data(), ad.data());
      double pap = 0;
      for (int c = 0; c < k; ++c) pap += dir[c] * ad[c];
      if (!(pap > 0)) break;
      const double a = rs / pap;
      double rs_new = 0;
      for (int c = 0; c < k; ++c) {
        xu[c] += a * dir[c];
        res[c] -= a * ad[c];
        rs_new += res[c] * res[c];
      }
      for (int c = 0; c < k; ++c) dir[c] = res[c] + rs_new / rs * dir[c];
      rs = rs_new;
    }
  }
}

// Training's half-iterations in the rotated frame (both sides turned by the Gram matrix's
// eigenvectors, CG with a diagonal Gram) against the dense solve: two full iterations, with
// popularity weights on both sides. The factors differ by a rotation; every score x·y, the
// Gram matrix of the item rows and the objective agree.
//
// How closely: in exact arithmetic both equal the dense CG run in double (cg_half_double), so
// each float32 run is compared with that reference, not with the other float32 run. Their
// distance is not set by the eigendecomposition or the rotation (a dense float32 run lands as far
// from the reference) but by the conditioning of three warm-started CG steps: on a row whose warm
// start is nearly converged (user 34 here, 2 interactions) a last-bit change of the inputs moves
// the iterate about 200 times as much, so OpenBLAS kernel families (Zen and Haswell against
// SkylakeX) summing in other orders land up to 2e-4 apart in the scores. The bound is therefore
// the reference's own sensitivity: every float32 dot product, GEMM entry and eigenvector of a
// half carries a relative error of at most γ_k ≈ k·u (k = 24 terms, u = 2⁻²⁴; Higham, Accuracy and
// Stability, §3.1), and to first order a half computed that way moves like the exact half on
// inputs perturbed by that much. `band` is the largest change of the double reference's scores
// (and item Gram entries) when every half's inputs are perturbed by uniform relative errors of
// up to k·u (four draws); each float32 run must stay within it.
TEST(IalsSolve, EigenframeHalvesEqualDenseUpToARotation) {
  const int k = 24;
  const Csr r = random_csr(70, 50, 9, 41);
  const Csr rt = r.transpose();
  const std::vector<float> w = backend::cpu::popularity_weights(rt, 0.4);
  const Matrix x0 = random_matrix(70, k, 42), y0 = random_matrix(50, k, 43);
  Matrix xf = x0, yf = y0, xd = x0, yd = y0;
  const IalsSolveParams frame = params(false, 3, backend::cpu::CgBasis::kEigen);
  const IalsSolveParams dense = params(false, 3, backend::cpu::CgBasis::kDense);
  for (int it = 0; it < 2; ++it) {
    backend::cpu::solve_half(r, yf, xf, frame, 2, w);
    backend::cpu::solve_half(rt, xf, yf, frame, 2, {}, w);
    backend::cpu::solve_half(r, yd, xd, dense, 2, w);
    backend::cpu::solve_half(rt, xd, yd, dense, 2, {}, w);
  }
  double moved = 0;
  for (size_t j = 0; j < yf.data.size(); ++j)
    moved = std::max(moved, static_cast<double>(std::fabs(yf.data[j] - yd.data[j])));
  EXPECT_GT(moved, 0.05) << "the frame was rotated";

  // Scores of all (user, item) pairs, then the Gram entries of all item pairs.
  auto invariants = [&](const double* x, const double* y) {
    std::vector<double> v;
    auto dot = [&](const double* a, const double* b) {
      double s = 0;
      for (int c = 0; c < k; ++c) s += a[c] * b[c];
      return s;
    };
    for (int64_t u = 0; u < r.rows; ++u)
      for (int64_t i = 0; i < r.cols; ++i) v.push_back(dot(x + u * k, y + i * k));
    for (int64_t i = 0; i < r.cols; ++i)
      for (int64_t j = 0; j < r.cols; ++j) v.push_back(dot(y + i * k, y + j * k));
    return v;
  };
  auto of_floats = [&](const Matrix& x, const Matrix& y) {
    const std::vector<double> xv(x.data.begin(), x.data.end()), yv(y.data.begin(), y.data.end());
    return invariants(xv.data(), yv.data());
  };
  const double gamma_k = k * std::ldexp(1.0, -24);
  auto reference = [&](double rel, uint64_t seed) {
    std::vector<double> x(x0.data.begin(), x0.data.end()), y(y0.data.begin(), y0.data.end());
    Rng rng(seed);
    auto perturb = [&] {
      for (auto* m : {&x, &y})
        for (double& v : *m) v *= 1 + rel * (2 * rng.uniform() - 1);
    };
    for (int it = 0; it < 2; ++it) {
      perturb();
      cg_half_double(r, y, x, k, dense, w, {});
      perturb();
      cg_half_double(rt, x, y, k, dense, {}, w);
    }
    return invariants(x.data(), y.data());
  };
  const size_t n_scores = static_cast<size_t>(r.rows * r.cols);
  auto max_diff = [n_scores](const std::vector<double>& a, const std::vector<double>& b,
                             bool scores) {
    double m = 0;
    for (size_t j = scores ? 0 : n_scores; j < (scores ? n_scores : a.size()); ++j)
      m = std::max(m, std::fabs(a[j] - b[j]));
    return m;
  };
  const std::vector<double> ref = reference(0, 0);
  double band_scores = 0, band_gram = 0, score_max = 0;
  for (uint64_t draw = 1; draw <= 4; ++draw) {
    const std::vector<double> perturbed = reference(gamma_k, draw);
    band_scores = std::max(band_scores, max_diff(perturbed, ref, true));
    band_gram = std::max(band_gram, max_diff(perturbed, ref, false));
  }
  for (size_t j = 0; j < n_scores; ++j) score_max = std::max(score_max, std::fabs(ref[j]));
  EXPECT_GT(score_max, 0.1);
  // The band is a rounding band, far below the scores: a real difference would not fit in it.
  EXPECT_LT(band_scores, 1e-3 * score_max);
  const std::vector<double> in_frame = of_floats(xf, yf), in_dense = of_floats(xd, yd);
  EXPECT_LE(max_diff(in_frame, ref, true), band_scores) << "frame, core " << blas_core_name();
  EXPECT_LE(max_diff(in_dense, ref, true), band_scores) << "dense, core " << blas_core_name();
  EXPECT_LE(max_diff(in_frame, ref, false), band_gram) << "frame, core " << blas_core_name();
  EXPECT_LE(max_diff(in_dense, ref, false), band_gram) << "dense, core " << blas_core_name();
  const double lf = backend::cpu::objective(r, rt, xf, yf, frame, w);
  const double ld = backend::cpu::objective(r, rt, xd, yd, dense, w);
  EXPECT_NEAR(lf, ld, 1e-5 * ld);
}

// Factors whose squares overflow float32 (1e20² > 3.4e38) make the Gram matrix infinite: the
// eigenframe refuses it as the settings' fault (recforge::Error naming model.init_std) instead of
// handing it to LAPACK, whose failure was reported as an internal error (exit 3).
TEST(IalsSolve, OverflowingGramMatrixIsAUserError) {
  const int k = 8;
  const Csr r = random_csr(20, 15, 4, 51);
  Matrix x = random_matrix(20, k, 52), y = random_matrix(15, k, 53);
  y.row(3)[2] = 1e20f;
  try {
    backend::cpu::solve_half(r, y, x, params(false, 3, backend::cpu::CgBasis::kEigen), 2);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overflowed float32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.init_std"), std::string::npos) << e.what();
  }
}

// The choice of frame or dense per half, by the count of k² products.
TEST(IalsSolve, EigenframeIsChosenWhereItSavesProducts) {
  const IalsSolveParams p = params(false, 3, backend::cpu::CgBasis::kAuto);  // dense: 4 per row
  using backend::cpu::use_eigenframe;
  EXPECT_TRUE(use_eigenframe(p, 256, 29858, 40981));  // Gowalla users: 71k+7.7k < 0.8 x 119k
  EXPECT_TRUE(use_eigenframe(p, 256, 40981, 29858));  // Gowalla items
  EXPECT_TRUE(use_eigenframe(p, 256, 500000, 100000));
  EXPECT_FALSE(use_eigenframe(p, 256, 100000, 500000));           // the short side stays dense
  EXPECT_FALSE(use_eigenframe(p, 1024, 2000, 3000));              // the decomposition does not pay
  EXPECT_FALSE(use_eigenframe(params(true), 256, 29858, 40981));  // Cholesky never
  EXPECT_TRUE(use_eigenframe(params(false, 3, backend::cpu::CgBasis::kEigen), 1024, 10, 10));
  EXPECT_FALSE(use_eigenframe(params(false, 3, backend::cpu::CgBasis::kDense), 256, 29858, 40981));
}

TEST(IalsSolve, ObjectiveMatchesBruteForce) {
  const int k = 6;
  const Csr r = random_csr(15, 12, 4, 21);
  const Csr rt = r.transpose();
  const Matrix x = random_matrix(15, k, 22), y = random_matrix(12, k, 23);
  const IalsSolveParams p = params(true);
  double ref = 0;
  std::vector<std::vector<float>> w(15, std::vector<float>(12, 0.f));
  for (int u = 0; u < 15; ++u)
    for (auto e = r.indptr[u]; e < r.indptr[u + 1]; ++e) w[u][r.indices[e]] = r.data[e];
  for (int u = 0; u < 15; ++u)
    for (int i = 0; i < 12; ++i) {
      double s = 0;
      for (int c = 0; c < k; ++c) s += x.row(u)[c] * y.row(i)[c];
      if (w[u][i] > 0) ref += p.alpha * w[u][i] * (1 - s) * (1 - s);
      ref += p.unobserved_weight * s * s;
    }
  auto norm2 = [&](const float* v) {
    double s = 0;
    for (int c = 0; c < k; ++c) s += v[c] * v[c];
    return s;
  };
  for (int u = 0; u < 15; ++u)
    ref += backend::cpu::row_regularization(p, r.row_size(u)) * norm2(x.row(u));
  for (int i = 0; i < 12; ++i)
    ref += backend::cpu::row_regularization(p, rt.row_size(i)) * norm2(y.row(i));
  EXPECT_NEAR(backend::cpu::objective(r, rt, x, y, p), ref, 1e-4 * ref);
}

IalsOptions options(int factors, bool cholesky, int iterations) {
  IalsOptions o;
  o.factors = factors;
  o.iterations = iterations;
  o.seed = 5;
  o.solve = params(cholesky);
  return o;
}

TEST(Ials, LossNeverIncreasesWithTheExactSolver) {
  const Csr r = random_csr(300, 120, 12, 31);
  const Csr rt = r.transpose();
  Ials m(options(16, true, 10), 2);
  m.init(r.rows, r.cols);
  double prev = m.loss(r, rt);
  for (int it = 0; it < 10; ++it) {
    m.iterate(r, rt);
    const double l = m.loss(r, rt);
    EXPECT_LE(l, prev * (1 + 1e-6)) << "iteration " << it;
    prev = l;
  }
}

// Implicit's checkerboard: users and items in blocks, each user interacts with every item of
// its block but one; that held-out item must then rank first for every user.
TEST(Ials, CheckerboardHeldOutItemRanksFirst) {
  const int blocks = 4, per = 12;  // 48 users × 48 items
  const int n = blocks * per;
  std::vector<index_t> ru, ri;
  std::vector<index_t> held(n);
  for (int u = 0; u < n; ++u) {
    const int b = u / per;
    held[u] = b * per + (u % per);  // a different held-out item per user of the block
    for (int i = b * per; i < (b + 1) * per; ++i)
      if (i != held[u]) {
        ru.push_back(u);
        ri.push_back(i);
      }
  }
  const Csr r = Csr::from_coo(n, n, ru, ri, std::vector<float>(ru.size(), 1.f));
  const Csr rt = r.transpose();
  for (bool cholesky : {true, false}) {
    IalsOptions o = options(8, cholesky, 15);
    o.solve.unobserved_weight = 0.1;
    o.solve.regularization = 0.01;
    Ials m(o, 2);
    m.init(n, n);
    for (int it = 0; it < o.iterations; ++it) m.iterate(r, rt);
    const eval::TopK top =
        eval::topk(m.user_factors().data.data(), n, m.item_factors().data.data(), n, 8, 1, &r);
    for (int u = 0; u < n; ++u)
      EXPECT_EQ(top.items[u], held[u]) << "user " << u << (cholesky ? " cholesky" : " cg");
  }
}

TEST(Ials, MoreThan1024FactorsTrain) {
  const Csr r = random_csr(60, 50, 8, 41);
  const Csr rt = r.transpose();
  for (bool cholesky : {false, true}) {
    Ials m(options(1100, cholesky, 2), 2);
    m.init(r.rows, r.cols);
    const double l0 = m.loss(r, rt);
    m.iterate(r, rt);
    m.iterate(r, rt);
    const double l2 = m.loss(r, rt);
    EXPECT_TRUE(std::isfinite(l2));
    EXPECT_LT(l2, 0.5 * l0) << (cholesky ? "cholesky" : "cg");
    EXPECT_EQ(m.user_factors().cols, 1100);
  }
}

TEST(Ials, FoldInIsTheTrainingSolve) {
  const Csr r = random_csr(80, 40, 6, 51);
  const Csr rt = r.transpose();
  Ials m(options(10, true, 4), 2);
  m.init(r.rows, r.cols);
  for (int it = 0; it < 4; ++it) m.iterate(r, rt);
  // Re-solving users against the final items (what a user half-step does) must equal fold-in.
  Matrix resolved = m.user_factors();
  backend::cpu::solve_side(r, m.item_factors(), resolved, m.options().solve, 2);
  const Matrix folded = m.fold_in(r);
  ASSERT_EQ(folded.rows, r.rows);
  for (size_t j = 0; j < folded.data.size(); ++j)
    EXPECT_NEAR(folded.data[j], resolved.data[j], 1e-5);
}

TEST(Ials, AFoldInWhoseSolveBreaksDownIsRefused) {
  // Confidences near float's limit overflow the user solve. The conjugate gradient returned
  // all-zero factors (a served new user got arbitrary items at score 0): Model::fold_in refuses
  // the row. The exact solve threw an internal error inside its parallel region, which ended
  // the process: it is now the input's error, thrown from the calling thread.
  const Csr r = random_csr(80, 40, 6, 51);
  const Csr rt = r.transpose();
  const Csr fine = Csr::from_coo(1, r.cols, {0, 0}, {1, 2}, {1.f, 3.f});
  const Csr huge = Csr::from_coo(1, r.cols, {0, 0}, {1, 2}, {1e38f, 1e38f});
  for (bool cholesky : {false, true}) {
    SCOPED_TRACE(cholesky ? "cholesky" : "conjugate gradient");
    Ials m(options(10, cholesky, 4), 2);
    m.init(r.rows, r.cols);
    for (int it = 0; it < 2; ++it) m.iterate(r, rt);
    const Matrix q = m.fold_in(fine);
    EXPECT_TRUE(std::any_of(q.data.begin(), q.data.end(), [](float v) { return v != 0.f; }));
    try {
      m.fold_in(huge);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(cholesky ? "a row's system overflowed float32"
                                   : "the conjugate gradient of 1 of 1 rows overflowed float32"),
                std::string::npos)
          << what;
      EXPECT_NE(what.find("expected smaller weights"), std::string::npos) << what;
    }
  }
}

TEST(Ials, AConjugateGradientThatOverflowsIsTheInputsErrorNotAKeptRow) {
  // alpha·c = 1.5e25: the row's residual, about alpha·c·y, squares past float32's range. The
  // conjugate gradient then left the row at its previous factors and the iteration "succeeded";
  // it is refused, with the count of such rows and the largest confidence.
  Csr r = random_csr(60, 40, 6, 57);
  int64_t row = 0;
  while (r.row_size(row) == 0) ++row;
  r.data[r.indptr[row]] = 1e25f;
  const Csr rt = r.transpose();
  Ials m(options(10, false, 2), 2);
  m.init(r.rows, r.cols);
  try {
    m.iterate(r, rt);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the conjugate gradient of 1 of 60 rows overflowed float32"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("confidences up to 1e+25"), std::string::npos) << what;
  }
}

TEST(Ials, ARestoredModelFoldsInWithTheItemCountsItIsGiven) {
  // With model.unobserved_exp the unobserved term of item i is weighted by its popularity. A
  // model restored by set_factors (a reopened run, an export) has not seen the training data:
  // set_item_counts gives it the counts, and its fold-in is then the trained model's.
  const Csr r = random_csr(80, 40, 6, 53);
  const Csr rt = r.transpose();
  IalsOptions o = options(10, true, 3);
  o.unobserved_exp = 0.8;
  Ials trained(o, 2);
  trained.init(r.rows, r.cols);
  for (int it = 0; it < 3; ++it) trained.iterate(r, rt);
  const Matrix want = trained.fold_in(r);
  Ials restored(o, 2);
  restored.set_factors(trained.user_factors(), trained.item_factors());
  const Matrix uniform = restored.fold_in(r);
  double diff = 0;
  for (size_t j = 0; j < want.data.size(); ++j)
    diff = std::max(diff, std::fabs(double(want.data[j]) - uniform.data[j]));
  EXPECT_GT(diff, 1e-3) << "the item weights made no difference";
  std::vector<int64_t> counts(static_cast<size_t>(rt.rows));
  for (int64_t i = 0; i < rt.rows; ++i) counts[static_cast<size_t>(i)] = rt.row_size(i);
  restored.set_item_counts(counts);
  const Matrix got = restored.fold_in(r);
  ASSERT_EQ(got.data.size(), want.data.size());
  for (size_t j = 0; j < want.data.size(); ++j) EXPECT_EQ(got.data[j], want.data[j]) << j;
}

TEST(Ials, PreparedQueriesAnswerToTheBitUntilTheModelChanges) {
  // prepare_queries keeps the weighted Gram matrix (fold-in) and its double twin (explain); the
  // answers must not move by a bit, and every change of the model must drop what was kept: a
  // stale Gram matrix would fold in against the items of before.
  const Csr r = random_csr(80, 40, 6, 57);
  const Csr rt = r.transpose();
  const Csr rows = Csr::from_coo(3, r.cols, {0, 0, 1, 2, 2, 2}, {1, 7, 3, 0, 5, 9},
                                 {1.f, 2.f, 1.f, 3.f, 1.f, 0.5f});
  const Csr one = Csr::from_coo(1, r.cols, {0, 0, 0}, {0, 5, 9}, {3.f, 1.f, 0.5f});
  const std::vector<int64_t> explained{2, 11, 30};
  std::vector<int64_t> counts(static_cast<size_t>(rt.rows));
  for (int64_t i = 0; i < rt.rows; ++i) counts[static_cast<size_t>(i)] = rt.row_size(i);
  auto same = [](const Matrix& a, const Matrix& b) {
    ASSERT_EQ(a.data.size(), b.data.size());
    for (size_t j = 0; j < a.data.size(); ++j) ASSERT_EQ(a.data[j], b.data[j]) << j;
  };
  // What a model that never prepared anything answers with these factors and counts.
  auto unprepared = [&](const IalsOptions& o, const Ials& m) {
    Ials fresh(o, 2);
    fresh.set_factors(m.user_factors(), m.item_factors());
    fresh.set_item_counts(counts);
    return fresh.fold_in(rows);
  };
  auto explained_by = [&](const IalsOptions& o, const Ials& m) {
    Ials fresh(o, 2);
    fresh.set_factors(m.user_factors(), m.item_factors());
    fresh.set_item_counts(counts);
    return fresh.explain(one, m.user_factors().row(0), explained);
  };
  for (bool cholesky : {false, true}) {
    SCOPED_TRACE(cholesky ? "cholesky" : "conjugate gradient");
    IalsOptions o = options(10, cholesky, 3);
    o.unobserved_exp = 0.5;  // the Gram matrix is weighted by item popularity
    Ials m(o, 2);
    m.init(r.rows, r.cols);
    for (int it = 0; it < 2; ++it) m.iterate(r, rt);
    const Matrix before = m.fold_in(rows);
    const std::vector<Explanation> ex = m.explain(one, m.user_factors().row(0), explained);
    m.prepare_queries(Model::Query::kFoldIn);
    m.prepare_queries(Model::Query::kExplain);
    same(m.fold_in(rows), before);
    const std::vector<Explanation> ex2 = m.explain(one, m.user_factors().row(0), explained);
    ASSERT_EQ(ex2.size(), ex.size());
    for (size_t q = 0; q < ex.size(); ++q) {
      EXPECT_EQ(ex2[q].score, ex[q].score);
      EXPECT_EQ(ex2[q].tolerance, ex[q].tolerance);
      EXPECT_EQ(ex2[q].cholesky, ex[q].cholesky);
      ASSERT_EQ(ex2[q].contributions.size(), ex[q].contributions.size());
      for (size_t c = 0; c < ex[q].contributions.size(); ++c)
        EXPECT_EQ(ex2[q].contributions[c].contribution, ex[q].contributions[c].contribution);
    }
    // An iteration moves the items: the prepared answers must follow.
    m.iterate(r, rt);
    const Matrix after = m.fold_in(rows);
    same(after, unprepared(o, m));
    const std::vector<Explanation> ex3 = m.explain(one, m.user_factors().row(0), explained);
    const std::vector<Explanation> want3 = explained_by(o, m);
    ASSERT_EQ(ex3.size(), want3.size());
    for (size_t q = 0; q < ex3.size(); ++q) EXPECT_EQ(ex3[q].score, want3[q].score);
    EXPECT_NE(ex3[0].score, ex[0].score) << "the iteration did not move the explanation";
    double moved = 0;
    for (size_t j = 0; j < after.data.size(); ++j)
      moved = std::max(moved, std::fabs(double(after.data[j]) - before.data[j]));
    EXPECT_GT(moved, 1e-4) << "the iteration did not move the fold-in; the check proves nothing";
    // New factors, and new item counts, each drop what was prepared.
    m.prepare_queries(Model::Query::kFoldIn);
    Matrix items = m.item_factors();
    for (auto& v : items.data) v *= 0.5f;
    m.set_factors(m.user_factors(), items);
    same(m.fold_in(rows), unprepared(o, m));
    m.prepare_queries(Model::Query::kFoldIn);
    std::vector<int64_t> flat(counts.size(), 3);
    m.set_item_counts(flat);
    Ials fresh(o, 2);
    fresh.set_factors(m.user_factors(), m.item_factors());
    fresh.set_item_counts(flat);
    same(m.fold_in(rows), fresh.fold_in(rows));
  }
}

TEST(Ials, DeterministicForASeedAndThreadCount) {
  const Csr r = random_csr(100, 60, 8, 61);
  const Csr rt = r.transpose();
  Ials a(options(12, false, 3), 1), b(options(12, false, 3), 2);
  a.init(r.rows, r.cols);
  b.init(r.rows, r.cols);
  EXPECT_EQ(a.user_factors().data, b.user_factors().data);
  for (int it = 0; it < 3; ++it) {
    a.iterate(r, rt);
    b.iterate(r, rt);
  }
  // Rows are solved independently, so the thread count does not change any value.
  EXPECT_EQ(a.item_factors().data, b.item_factors().data);
}

}  // namespace
}  // namespace recforge::models
