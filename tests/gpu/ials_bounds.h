#pragma once
/// @file ials_bounds.h
/// How far two float32 iALS computations of the same problem (GPU and CPU, other summation
/// orders) may lie apart, derived from the problem itself instead of a tolerance fitted to one
/// machine. Rounding model: Higham & Mary's probabilistic bound (SIAM J. Sci. Comput. 2019): a
/// float32 sum of m terms carries a relative error of at most kSigmas·√m·u (u = 2⁻²⁴), except with
/// probability 2·exp(−kSigmas²/2) ≈ 3e-8 per sum; with kSigmas = 6 a test run of ~1e6 sums stays
/// inside with probability ~0.97 even if every sum were at its worst.
///
/// Row u of a half solves A x = b, A = s·G + λ_u I + Σ_i w_i y_i y_iᵀ (G = α0 Σ_j c_j y_j y_jᵀ over
/// the fixed side), b = Σ_i w_i y_i. Errors are measured in A's energy norm ‖v‖_A = √(vᵀAv), the
/// norm CG minimises in: every term of A is positive semi-definite, so λ_min(A) ≥ λ_u, and a
/// computed x̂ solving (A + δA) x̂ = b + δb lies within (‖δA‖‖x‖ + ‖δb‖)/√λ_u of x in it (a
/// factor √κ below the 2-norm's worst case). ‖y yᵀ‖ = ‖y‖², so the terms' norms add up to
/// T = s α0 Σ_j c_j ‖y_j‖² + Σ_i w_i ‖y_i‖² ≥ ‖A‖ − λ_u, and:
///   forming A, b:     ‖δA‖ ≤ γ(n_fixed + n_u) T,  ‖δb‖ ≤ γ(n_u) Σ w_i ‖y_i‖
///   inputs ŷ = y + δy (16-bit storage): ‖δA‖ += 2 (s α0 Σ c_j ‖y_j‖ ‖δy_j‖ +
///                     Σ w_i ‖y_i‖ ‖δy_i‖),  ‖δb‖ += Σ w_i ‖δy_i‖
///   the solver:       CG: each of its steps + 1 products with A rounds like a k-term sum,
///                     γ(k)(λ_u + T), and feeds the iterate, so the bound is taken steps + 1
///                     times; Cholesky: backward error γ(3k + 1)‖A‖ (Higham, Accuracy and
///                     Stability, Thm 10.3), taken once.
///   eigenbasis (CPU): eigenpairs exact for G perturbed by k·u·‖G‖ (a backward-stable
///                     symmetric eigensolver), rotations of both sides γ(k) relative per row.
///   warm start:       CG never raises the A-norm of its error: a start off by δ (16-bit
///                     storage) moves the result by at most ‖δ‖_A ≤ √(λ_u + T)‖δ‖ (first order).
///   storage:          the stored value rounds by at most store_u relative (float32: u,
///                     float16: 2⁻¹¹, bfloat16: 2⁻⁸), ≤ √(λ_u + T) store_u ‖x‖ in the A-norm.
/// The bound is per device against exact arithmetic; two devices differ by at most twice it.
/// It is applied to one half at a time, from inputs both devices hold exactly (the GPU's own
/// factors of the previous half, downloaded, are the CPU reference's inputs): chained through
/// both halves, the worst-case amplification of the first half's error would make the second
/// half's bound useless (≫ 1).

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/npy.h"
#include "data/csr.h"
#include "models/ials/ials.h"

namespace recforge::test {

constexpr double kUnitRoundoff = 0x1p-24;  // float32
constexpr double kSigmas = 6;
/// Relative rounding of the storage types (round to nearest).
constexpr double kFloat16Roundoff = 0x1p-11;
constexpr double kBFloat16Roundoff = 0x1p-8;

/// The probabilistic bound on the relative error of a float32 sum of m terms.
inline double gamma_sum(double m) { return kSigmas * std::sqrt(std::max(m, 1.0)) * kUnitRoundoff; }

inline double row_norm(const Matrix& m, int64_t r) {
  double s = 0;
  for (int64_t c = 0; c < m.cols; ++c) s += static_cast<double>(m.row(r)[c]) * m.row(r)[c];
  return std::sqrt(s);
}

/// How a half was computed, for its bound.
struct HalfNumerics {
  bool cholesky = false;
  int cg_steps = 3;
  bool eigen = false;           ///< the CPU's eigenbasis (solve_half's rotated frame)
  double store_u = kUnitRoundoff;
};

/// Per solved row: a bound on ‖x̂_u − x_u‖_A for one device against exact arithmetic (see above).
/// `r`: the solved rows' interactions (values = confidences), `y`/`dy`: the fixed side and its
/// per-row error (2-norm), `x`: the (reference) solution, `col_w`: c_j (empty: 1), `row_w`: s_u
/// (empty: 1), `dx0`: per-row error of CG's warm start (2-norm; empty: none).
inline std::vector<double> half_error(const data::Csr& r, const Matrix& y, const std::vector<double>& dy,
                                      const Matrix& x, const backend::cpu::IalsSolveParams& p,
                                      const HalfNumerics& h, const std::vector<float>& col_w = {},
                                      const std::vector<float>& row_w = {},
                                      const std::vector<double>& dx0 = {}) {
  const int k = static_cast<int>(y.cols);
  double gram_t = 0, gram_d = 0;  // α0 Σ c_j ‖y_j‖², α0 Σ c_j ‖y_j‖ ‖δy_j‖
  std::vector<double> yn(static_cast<size_t>(y.rows));
  for (int64_t j = 0; j < y.rows; ++j) {
    const double c = col_w.empty() ? 1.0 : col_w[static_cast<size_t>(j)];
    yn[static_cast<size_t>(j)] = row_norm(y, j);
    gram_t += p.unobserved_weight * c * yn[static_cast<size_t>(j)] * yn[static_cast<size_t>(j)];
    gram_d += p.unobserved_weight * c * yn[static_cast<size_t>(j)] * dy[static_cast<size_t>(j)];
  }
  const double solver_times = h.cholesky ? 1.0 : 1.0 + h.cg_steps;
  std::vector<double> e(static_cast<size_t>(r.rows), 0.0);
  for (int64_t u = 0; u < r.rows; ++u) {
    const int64_t n = r.row_size(u);
    if (n == 0) continue;  // exactly zero on every device
    const double s = row_w.empty() ? 1.0 : row_w[static_cast<size_t>(u)];
    const double lam = backend::cpu::row_regularization(p, n);
    double obs_t = 0, obs_d = 0, b_norm = 0, b_d = 0;
    for (auto q = r.indptr[u]; q < r.indptr[u + 1]; ++q) {
      const size_t i = static_cast<size_t>(r.indices[q]);
      const double w = p.alpha * r.data[q];
      obs_t += w * yn[i] * yn[i];
      obs_d += w * yn[i] * dy[i];
      b_norm += w * yn[i];
      b_d += w * dy[i];
    }
    const double t = s * gram_t + obs_t, a_norm = lam + t;
    double da = gamma_sum(static_cast<double>(y.rows + n)) * t + 2 * (s * gram_d + obs_d);
    da += h.cholesky ? gamma_sum(3.0 * k + 1) * a_norm : gamma_sum(k) * a_norm;
    if (h.eigen) da += k * kUnitRoundoff * s * gram_t + 2 * gamma_sum(k) * a_norm;
    const double db = gamma_sum(static_cast<double>(n)) * b_norm + b_d;
    const double xn = row_norm(x, u);
    double eu = solver_times * (da * xn + db) / std::sqrt(lam) + std::sqrt(a_norm) * h.store_u * xn;
    if (!dx0.empty() && !h.cholesky) eu += std::sqrt(a_norm) * dx0[static_cast<size_t>(u)];
    e[static_cast<size_t>(u)] = eu;
  }
  return e;
}

/// Per solved row: ‖v_u‖_A (A of the row, as above) of the rows of `v`, in double.
inline std::vector<double> energy_norms(const data::Csr& r, const Matrix& y, const Matrix& v,
                                        const backend::cpu::IalsSolveParams& p,
                                        const std::vector<float>& col_w = {},
                                        const std::vector<float>& row_w = {}) {
  const int64_t k = y.cols;
  auto dot = [k](const float* a, const float* b) {
    double d = 0;
    for (int64_t c = 0; c < k; ++c) d += static_cast<double>(a[c]) * b[c];
    return d;
  };
  std::vector<double> out(static_cast<size_t>(v.rows));
  for (int64_t u = 0; u < v.rows; ++u) {
    const int64_t n = r.row_size(u);
    const float* x = v.row(u);
    double gram = 0;
    for (int64_t j = 0; j < y.rows; ++j)
      gram += (col_w.empty() ? 1.0 : col_w[static_cast<size_t>(j)]) * std::pow(dot(y.row(j), x), 2);
    double obs = 0;
    for (auto q = r.indptr[u]; q < r.indptr[u + 1]; ++q)
      obs += p.alpha * r.data[q] * std::pow(dot(y.row(r.indices[q]), x), 2);
    const double s = row_w.empty() ? 1.0 : row_w[static_cast<size_t>(u)];
    out[static_cast<size_t>(u)] = std::sqrt(s * p.unobserved_weight * gram +
                                            backend::cpu::row_regularization(p, n) * dot(x, x) + obs);
  }
  return out;
}

/// ‖a − b‖_A / ‖b‖_A over all rows (A per row, as above).
inline double energy_difference(const data::Csr& r, const Matrix& y, const Matrix& a, const Matrix& b,
                                const backend::cpu::IalsSolveParams& p,
                                const std::vector<float>& col_w = {},
                                const std::vector<float>& row_w = {}) {
  Matrix d = a;
  // float − float: exact within a factor 2 of each other (Sterbenz), else off by u relative.
  for (size_t j = 0; j < d.data.size(); ++j) d.data[j] -= b.data[j];
  double num = 0, den = 0;
  for (double v : energy_norms(r, y, d, p, col_w, row_w)) num += v * v;
  for (double v : energy_norms(r, y, b, p, col_w, row_w)) den += v * v;
  return std::sqrt(num / std::max(den, 1e-300));
}

/// 2‖e‖ / ‖norms‖: the relative difference two devices may show, given per-row error bounds `e`
/// and the reference's per-row norms in the same norm.
inline double relative_bound(const std::vector<double>& e, const std::vector<double>& norms) {
  double num = 0, den = 0;
  for (double v : e) num += v * v;
  for (double v : norms) den += v * v;
  return 2 * std::sqrt(num / std::max(den, 1e-300));
}

/// Per-row 2-norm bounds from energy-norm bounds e: ‖v‖₂ ≤ ‖v‖_A / √λ_u.
inline std::vector<double> two_norm_errors(const data::Csr& r, const std::vector<double>& e,
                                           const backend::cpu::IalsSolveParams& p) {
  std::vector<double> out(e.size());
  for (int64_t u = 0; u < r.rows; ++u)
    out[static_cast<size_t>(u)] =
        e[static_cast<size_t>(u)] / std::sqrt(backend::cpu::row_regularization(p, r.row_size(u)));
  return out;
}

/// How `o`'s numerics enter the bound: the solver, storage rounding `store_u`, eigenframe.
inline HalfNumerics half_numerics(const models::IalsOptions& o, double store_u, bool eigen) {
  HalfNumerics h;
  h.cholesky = o.solve.cholesky;
  h.cg_steps = o.solve.cg_steps;
  h.store_u = store_u;
  h.eigen = eigen;
  return h;
}

/// Per-row errors of factors `m` as a device storing with relative rounding `start_u` holds them
/// (0: the exact values).
inline std::vector<double> rounding_errors(const Matrix& m, double start_u) {
  std::vector<double> e(static_cast<size_t>(m.rows));
  for (int64_t r = 0; r < m.rows; ++r) e[static_cast<size_t>(r)] = start_u * row_norm(m, r);
  return e;
}

/// How far two devices' objectives (models/ials/ials_cpu.h) of the same float32 factors may
/// lie apart: both sum in double, so the float32 parts count: the Gram matrices XᵀX and YᵀCY
/// (entrywise error γ(rows)·Σ‖row‖², so ‖δG‖_F ≤ γ(rows) Σ‖row‖²) in α0⟨XᵀX, YᵀCY⟩, and each
/// observed dot product x·y (error γ(k)‖x‖‖y‖) in w(1 − x·y)²; twice the one-device bound.
inline double loss_bound(const data::Csr& r, const Matrix& x, const Matrix& y,
                         const backend::cpu::IalsSolveParams& p, const std::vector<float>& w = {}) {
  const int k = static_cast<int>(x.cols);
  // ‖Σ_j c_j v_j v_jᵀ‖_F, in double: from the k × k sum, or as Σ_jl c_j c_l (v_j·v_l)² when the
  // rows are fewer than the columns; `trace` gets Σ_j c_j ‖v_j‖².
  auto gram_f = [k](const Matrix& m, const std::vector<float>& c, double& trace) {
    auto cw = [&](int64_t j) { return c.empty() ? 1.0 : static_cast<double>(c[static_cast<size_t>(j)]); };
    trace = 0;
    for (int64_t j = 0; j < m.rows; ++j) trace += cw(j) * std::pow(row_norm(m, j), 2);
    double f = 0;
    if (m.rows < k) {
      for (int64_t j = 0; j < m.rows; ++j)
        for (int64_t l = 0; l < m.rows; ++l) {
          double d = 0;
          for (int a = 0; a < k; ++a) d += static_cast<double>(m.row(j)[a]) * m.row(l)[a];
          f += cw(j) * cw(l) * d * d;
        }
      return std::sqrt(f);
    }
    std::vector<double> g(static_cast<size_t>(k) * k, 0.0);
    for (int64_t j = 0; j < m.rows; ++j) {
      const float* v = m.row(j);
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) g[static_cast<size_t>(a) * k + b] += cw(j) * v[a] * v[b];
    }
    for (double e : g) f += e * e;
    return std::sqrt(f);
  };
  double tx = 0, ty = 0;
  const double gx = gram_f(x, {}, tx), gy = gram_f(y, w, ty);
  double e = p.unobserved_weight * (gamma_sum(static_cast<double>(x.rows)) * tx * gy +
                                    gx * gamma_sum(static_cast<double>(y.rows)) * ty);
  for (int64_t u = 0; u < r.rows; ++u) {
    const double xn = row_norm(x, u);
    for (auto q = r.indptr[u]; q < r.indptr[u + 1]; ++q) {
      const int64_t i = r.indices[q];
      double d = 0;
      for (int c = 0; c < k; ++c) d += static_cast<double>(x.row(u)[c]) * y.row(i)[c];
      const double de = gamma_sum(k) * xn * row_norm(y, i);
      e += p.alpha * r.data[q] * (2 * std::abs(1 - d) * de + de * de);
    }
  }
  // λ (n + ν)^e ‖row‖², a float32 k-term sum per row on the GPU.
  std::vector<int64_t> item_n(static_cast<size_t>(y.rows), 0);
  for (auto i : r.indices) ++item_n[static_cast<size_t>(i)];
  for (int64_t u = 0; u < x.rows; ++u)
    e += gamma_sum(k) * backend::cpu::row_regularization(p, r.row_size(u)) * std::pow(row_norm(x, u), 2);
  for (int64_t i = 0; i < y.rows; ++i)
    e += gamma_sum(k) * backend::cpu::row_regularization(p, item_n[static_cast<size_t>(i)]) *
         std::pow(row_norm(y, i), 2);
  return 2 * e;
}

/// ‖A Bᵀ − C Dᵀ‖_F / (‖C‖_F ‖D‖_F): the score matrices of two factorizations, in double.
inline double score_difference(const Matrix& a, const Matrix& b, const Matrix& c, const Matrix& d) {
  double num = 0, nc = 0, nd = 0;
  for (int64_t u = 0; u < a.rows; ++u)
    for (int64_t i = 0; i < b.rows; ++i) {
      double s1 = 0, s2 = 0;
      for (int64_t f = 0; f < a.cols; ++f) {
        s1 += static_cast<double>(a.row(u)[f]) * b.row(i)[f];
        s2 += static_cast<double>(c.row(u)[f]) * d.row(i)[f];
      }
      num += (s1 - s2) * (s1 - s2);
    }
  for (float v : c.data) nc += static_cast<double>(v) * v;
  for (float v : d.data) nd += static_cast<double>(v) * v;
  return std::sqrt(num) / std::max(std::sqrt(nc * nd), 1e-300);
}

}  // namespace recforge::test
