#include "models/ials/ials_cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include "core/blas.h"
#include "core/error.h"
#include "core/log.h"

namespace recforge::backend::cpu {
namespace {

using data::index_t;
using data::offset_t;

// Four independent vector accumulators (32 lanes): one accumulator would chain every FMA on
// the previous one's latency, which made this loop the hottest of the solve.
[[gnu::always_inline]] inline float dot(const float* a, const float* b, int k) {
  constexpr int kLanes = 32;
  float acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= k; j += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l] * b[j + l];
  }
  float s = 0.f;
  for (; j < k; ++j) s += a[j] * b[j];
#pragma omp simd reduction(+ : s)
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// Starts loading the factor row of the interaction `ahead` positions later: rows are gathered
// at random, which the hardware prefetcher cannot predict. `end` is the end of the block's
// interactions, not of the row's: the next row's first factors load while this one finishes.
inline void prefetch_row(const data::Csr& r, const Matrix& y, offset_t e, offset_t end, int k) {
  constexpr offset_t kAhead = 4;
  if (e + kAhead >= end) return;
  const char* p = reinterpret_cast<const char*>(y.row(r.indices[e + kAhead]));
  for (int b = 0; b < k * static_cast<int>(sizeof(float)); b += 64) __builtin_prefetch(p + b);
}

inline void axpy(float a, const float* x, float* y, int k) {
#pragma omp simd
  for (int j = 0; j < k; ++j) y[j] += a * x[j];
}

// out += Σ_e c_e y_e over the interactions [begin, end) of one row, with
// c_e = α·data_e·(target − sign·(y_e·v)) and y_e = row_of(e); with an offset o (observed_offset,
// model.observed_weight replaced), c_e = α·data_e·target − sign·(α·data_e − o)·(y_e·v). A chunk's dot products come first,
// independent of each other, then its updates, four rows per pass over `out`: one row's update
// no longer waits for the reduction of its own dot product (with the prefetch across rows, about
// 10% less time per iteration at 64 and 256 factors on the benchmark's synthetic set).
template <bool kOffset, typename RowOf>
inline void add_weighted_rows_as(const data::Csr& r, offset_t begin, offset_t end, float alpha,
                                 float offset, float target, float sign, const float* v,
                                 float* out, int k, RowOf row_of) {
  constexpr int kChunk = 16;
  const float* rows[kChunk];
  float coef[kChunk];
  for (offset_t e0 = begin; e0 < end; e0 += kChunk) {
    const int m = static_cast<int>(std::min<offset_t>(kChunk, end - e0));
    for (int i = 0; i < m; ++i) {
      rows[i] = row_of(e0 + i);
      const float w = alpha * r.data[e0 + i];
      if constexpr (kOffset)
        coef[i] = w * target - sign * (w - offset) * dot(rows[i], v, k);
      else  // the iALS solve's expression as it always was (the same bits, no test in the loop)
        coef[i] = w * (target - sign * dot(rows[i], v, k));
    }
    int i = 0;
    for (; i + 4 <= m; i += 4) {  // added in the order of the rows, as one axpy after another
      const float c0 = coef[i], c1 = coef[i + 1], c2 = coef[i + 2], c3 = coef[i + 3];
      const float *y0 = rows[i], *y1 = rows[i + 1], *y2 = rows[i + 2], *y3 = rows[i + 3];
#pragma omp simd
      for (int j = 0; j < k; ++j)
        out[j] = out[j] + c0 * y0[j] + c1 * y1[j] + c2 * y2[j] + c3 * y3[j];
    }
    for (; i < m; ++i) axpy(coef[i], rows[i], out, k);
  }
}

template <typename RowOf>
inline void add_weighted_rows(const data::Csr& r, offset_t begin, offset_t end, float alpha,
                              float offset, float target, float sign, const float* v, float* out,
                              int k, RowOf row_of) {
  if (offset == 0.f)
    add_weighted_rows_as<false>(r, begin, end, alpha, offset, target, sign, v, out, k, row_of);
  else
    add_weighted_rows_as<true>(r, begin, end, alpha, offset, target, sign, v, out, k, row_of);
}

// Rows solved together (at most): their Gram products become one GEMM (BLAS-3) instead of one
// matrix-vector product per row.
constexpr int kBlock = 64;

// Observed factor rows gathered per block, in floats (1 MiB): a block's observed rows are
// copied once into this contiguous buffer, so the CG steps re-read them from the core's cache
// instead of gathering them again from random places in memory. Rows that do not fit are read in
// place at every step (see block_starts).
constexpr int64_t kGatherFloats = int64_t{1} << 18;

// Block boundaries over the rows of `r`: up to kBlock rows, cut early where re-reading observed
// rows from memory would cost more than one more block. Each CG step of a block streams the
// k×k Gram matrix once (its GEMM) and the block's observed rows (n_u · k floats each), from the
// gather buffer for the rows that fit and from memory for the others. A row that would overflow
// the buffer joins the block, read in place, while the block's in-place floats stay within one
// Gram matrix (k² floats); past that, a new block starts. Without the cut, a block of long rows
// (items with many users) re-fetched most of its factor rows at every step; with only the
// buffer's cut, blocks of short rows at large k (1024 factors: about 11 users of Gowalla) made
// the Gram GEMM re-read 4 MB per handful of rows.
std::vector<int64_t> block_starts(const data::Csr& r, int k) {
  std::vector<int64_t> starts;
  const int64_t gram_floats = static_cast<int64_t>(k) * k;
  int64_t rows = 0, floats = 0, spill = 0;
  for (int64_t u = 0; u < r.rows; ++u) {
    const int64_t need = r.row_size(u) * k;
    const bool fits = floats + need <= kGatherFloats;
    if (rows == 0 || rows == kBlock || (!fits && spill + need > gram_floats)) {
      starts.push_back(u);
      rows = 0;
      floats = 0;
      spill = 0;
    }
    ++rows;
    if (floats + need <= kGatherFloats)
      floats += need;
    else
      spill += need;
  }
  starts.push_back(r.rows);
  return starts;
}

// Per-thread scratch, allocated once per solve (no allocation per row).
struct CgScratch {
  explicit CgScratch(int k)
      : p(kBlock * k),
        r(kBlock * k),
        ap(kBlock * k),
        xt(kBlock * k),
        gscale(kBlock),
        gathered(kGatherFloats),
        rs(kBlock),
        lam(kBlock),
        start(kBlock) {}
  std::vector<float> p, r, ap, xt, gscale, gathered;
  std::vector<double> rs, lam;
  std::vector<int64_t> start;  ///< row j's offset in `gathered`, or −1 when read in place
  /// Rows whose residual or curvature pᵀAp overflowed float32, and their largest confidence.
  int64_t overflowed = 0;
  float overflow_largest = 0;
  void overflow(const data::Csr& rows, int64_t u) {
    float largest = 0;
    for (offset_t e = rows.indptr[u]; e < rows.indptr[u + 1]; ++e)
      largest = std::max(largest, rows.data[e]);
    ++overflowed;
    overflow_largest = std::max(overflow_largest, largest);
  }
};

// The Gram matrix as CG applies it: the dense k×k G, or (eig set) the diagonal of eigenvalues
// in G's eigenbasis, whose vectors are the rows of `basis`. With eig set and no basis, the rows
// are already in the eigenbasis (solve_half) and are neither rotated in nor out.
struct GramOp {
  const float* g = nullptr;
  const float* eig = nullptr;
  const float* basis = nullptr;
};

// out = in · G for the nb rows of a block (G symmetric): a GEMM, or a diagonal scaling.
void gram_times(const GramOp& op, const float* in, float* out, int nb, int k) {
  if (!op.eig) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, k, k, 1.f, in, k, op.g, k, 0.f, out,
                k);
    return;
  }
  for (int j = 0; j < nb; ++j) {
    const float* a = in + static_cast<int64_t>(j) * k;
    float* b = out + static_cast<int64_t>(j) * k;
#pragma omp simd
    for (int c = 0; c < k; ++c) b[c] = op.eig[c] * a[c];
  }
}

// Blocked CG for rows [r0, r1) of `r`: x ← x + steps of CG on
// (G + Σ (w − o) y yᵀ + λ_u I) x = Σ w y (o = p.observed_offset), warm-started from x. With an
// eigenbasis `y` is the other side already rotated into it, and the block's rows are rotated in
// here and back at the end.
void cg_block(const data::Csr& r, const Matrix& y, const GramOp& gram, Matrix& x, int64_t r0,
              int64_t r1, const IalsSolveParams& p, const float* row_w, CgScratch& s) {
  const int k = static_cast<int>(y.cols);
  const int nb = static_cast<int>(r1 - r0);
  const float alpha = static_cast<float>(p.alpha);
  const float offset = static_cast<float>(p.observed_offset);
  float* xb = x.row(r0);
  if (gram.basis) {  // x̃ = x Q, Q's columns the eigenvectors (the rows of `basis`)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, k, k, 1.f, xb, k, gram.basis, k, 0.f,
                s.xt.data(), k);
    xb = s.xt.data();
  }
  int64_t used = 0;  // floats of s.gathered in use
  const offset_t block_end = r.indptr[r1];
  // A·x for the Gram part: AX = X_b · G.
  gram_times(gram, xb, s.ap.data(), nb, k);
  for (int j = 0; j < nb; ++j) {
    const int64_t u = r0 + j;
    float* xu = xb + static_cast<int64_t>(j) * k;
    float* ru = s.r.data() + static_cast<int64_t>(j) * k;
    float* pu = s.p.data() + static_cast<int64_t>(j) * k;
    const float* axu = s.ap.data() + static_cast<int64_t>(j) * k;
    const int64_t n = r.row_size(u);
    if (n == 0) {  // no interactions: the optimum is exactly zero
      std::fill(xu, xu + k, 0.f);
      std::fill(pu, pu + k, 0.f);
      s.rs[j] = 0;
      continue;
    }
    s.lam[j] = row_regularization(p, n);
    s.gscale[j] = row_w ? row_w[u] : 1.f;
    const float lam = static_cast<float>(s.lam[j]), gs = s.gscale[j];
    // r = b − A x = Σ w (1 − y·x) y − c·AX − λ x
    for (int c = 0; c < k; ++c) ru[c] = -gs * axu[c] - lam * xu[c];
    float* dst = nullptr;
    if (used + n * k <= kGatherFloats) {
      s.start[j] = used;
      dst = s.gathered.data() + used;
      used += n * k;
    } else {
      s.start[j] = -1;
    }
    add_weighted_rows(r, r.indptr[u], r.indptr[u + 1], alpha, offset, 1.f, 1.f, xu, ru, k, [&](offset_t e) {
      prefetch_row(r, y, e, block_end, k);
      const float* yi = y.row(r.indices[e]);
      if (!dst) return yi;
      const float* copy = dst;
      dst = std::copy(yi, yi + k, dst);
      return copy;
    });
    std::copy(ru, ru + k, pu);
    s.rs[j] = dot(ru, ru, k);
    if (!std::isfinite(s.rs[j])) {  // the row is left as it was; run_cg reports it
      s.overflow(r, u);
      s.rs[j] = 0;
    }
  }
  for (int step = 0; step < p.cg_steps; ++step) {
    gram_times(gram, s.p.data(), s.ap.data(), nb, k);
    for (int j = 0; j < nb; ++j) {
      if (s.rs[j] < 1e-20) continue;  // converged (or an empty row)
      const int64_t u = r0 + j;
      float* xu = xb + static_cast<int64_t>(j) * k;
      float* ru = s.r.data() + static_cast<int64_t>(j) * k;
      float* pu = s.p.data() + static_cast<int64_t>(j) * k;
      float* apu = s.ap.data() + static_cast<int64_t>(j) * k;
      if (s.gscale[j] != 1.f) {
        const float gs = s.gscale[j];
#pragma omp simd
        for (int c = 0; c < k; ++c) apu[c] *= gs;
      }
      axpy(static_cast<float>(s.lam[j]), pu, apu, k);
      const offset_t first = r.indptr[u];
      if (s.start[j] >= 0) {
        const float* g = s.gathered.data() + s.start[j];
        add_weighted_rows(r, first, r.indptr[u + 1], alpha, offset, 0.f, -1.f, pu, apu, k,
                          [&](offset_t e) { return g + (e - first) * k; });
      } else {
        add_weighted_rows(r, first, r.indptr[u + 1], alpha, offset, 0.f, -1.f, pu, apu, k, [&](offset_t e) {
          prefetch_row(r, y, e, block_end, k);
          return y.row(r.indices[e]);
        });
      }
      const double pap = dot(pu, apu, k);
      if (!std::isfinite(pap)) {  // before x moves; run_cg reports it
        s.overflow(r, u);
        s.rs[j] = 0;
        continue;
      }
      if (!(pap > 0)) {
        s.rs[j] = 0;
        continue;
      }
      const float a = static_cast<float>(s.rs[j] / pap);
      axpy(a, pu, xu, k);
      axpy(-a, apu, ru, k);
      const double rs_new = dot(ru, ru, k);
      if (!std::isfinite(rs_new)) {
        s.overflow(r, u);
        s.rs[j] = 0;
        continue;
      }
      const float beta = static_cast<float>(rs_new / s.rs[j]);
#pragma omp simd
      for (int c = 0; c < k; ++c) pu[c] = ru[c] + beta * pu[c];
      s.rs[j] = rs_new;
    }
  }
  if (gram.basis)  // x = x̃ Qᵀ
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, k, k, 1.f, xb, k, gram.basis, k, 0.f,
                x.row(r0), k);
}

// Whether CG should run in G's eigenbasis, counting k² products: dense CG multiplies each row
// by G once for the initial residual and once per step; the eigenbasis rotates each row in and
// out, rotates the other side's rows once, and pays the decomposition (about 30 k³, counted
// generously, as k rows' worth). The 0.8 margin leaves the near-ties dense.
// `rotated_rows`: the rows the eigenbasis rotates (in k² products each).
bool eigen_pays(const IalsSolveParams& p, int k, int64_t rows, int64_t rotated_rows) {
  if (p.cg_basis != CgBasis::kAuto) return p.cg_basis == CgBasis::kEigen;
  const double dense = (1.0 + p.cg_steps) * static_cast<double>(rows);
  return static_cast<double>(rotated_rows) + 30.0 * k < 0.8 * dense;
}

bool use_eigenbasis(const IalsSolveParams& p, int k, int64_t rows, int64_t other_rows) {
  return eigen_pays(p, k, rows, 2 * rows + other_rows);
}

// Exact solve of row u: A = G + λ I + Σ w y yᵀ (via SYRK on sqrt(w)-scaled rows; minus
// o·Σ y yᵀ by a second SYRK when o = observed_offset > 0), b = Σ w y.
struct CholScratch {
  explicit CholScratch(int k)
      : a(static_cast<size_t>(k) * k), b(k), rows(kChunk * static_cast<size_t>(k)) {}
  static constexpr int kChunk = 256;
  std::vector<float> a, b, rows;
};

// Row u's system of cholesky_row accumulated and solved in double, for a row whose float32
// factorisation failed although nothing overflowed: confidences many orders of magnitude above
// the Gram matrix (raw counts or durations as weights; alpha·c from about 1e7 at 8-64 factors)
// round A in float32 by more than its smallest eigenvalue (λ or more), so spotrf finds it
// indefinite. Products of floats are exact in double and A's rounding there is 2^-29 times
// smaller. The solution is rounded once to float. False when A is not positive definite in
// double either, or x does not fit a float.
bool cholesky_row_double(const data::Csr& r, int64_t u, const Matrix& y, const float* g,
                         float gs, float lam, float alpha, float offset, float* xu) {
  const int k = static_cast<int>(y.cols);
  std::vector<double> a(static_cast<size_t>(k) * k, 0.0), b(static_cast<size_t>(k), 0.0);
  for (int c1 = 0; c1 < k; ++c1) {  // the lower triangle, as in the float system
    double* ar = a.data() + static_cast<size_t>(c1) * k;
    const float* gr = g + static_cast<size_t>(c1) * k;
    for (int c2 = 0; c2 <= c1; ++c2) ar[c2] = static_cast<double>(gs) * gr[c2];
    ar[c1] += lam;
  }
  for (offset_t e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
    const float* yi = y.row(r.indices[e]);
    const double w = static_cast<double>(alpha) * r.data[e];
    const double q = w - offset;  // the quadratic weight (observed_offset)
    for (int c1 = 0; c1 < k; ++c1) {
      b[static_cast<size_t>(c1)] += w * yi[c1];
      const double qy = q * yi[c1];
      double* ar = a.data() + static_cast<size_t>(c1) * k;
      for (int c2 = 0; c2 <= c1; ++c2) ar[c2] += qy * yi[c2];
    }
  }
  if (!cholesky_solve(a.data(), b.data(), k)) return false;
  for (double v : b)
    if (!(std::abs(v) <= std::numeric_limits<float>::max())) return false;
  for (int c = 0; c < k; ++c) xu[c] = static_cast<float>(b[static_cast<size_t>(c)]);
  return true;
}

// Returns true when the row was solved in double (cholesky_row_double).
bool cholesky_row(const data::Csr& r, int64_t u, const Matrix& y, const float* g, float* xu,
                  const IalsSolveParams& p, const float* row_w, CholScratch& s) {
  const int k = static_cast<int>(y.cols);
  const int64_t n = r.row_size(u);
  if (n == 0) {
    std::fill(xu, xu + k, 0.f);
    return false;
  }
  const float gs = row_w ? row_w[u] : 1.f;
  for (size_t j = 0; j < static_cast<size_t>(k) * k; ++j) s.a[j] = gs * g[j];
  const float lam = static_cast<float>(row_regularization(p, n));
  for (int c = 0; c < k; ++c) s.a[static_cast<size_t>(c) * k + c] += lam;
  std::fill(s.b.begin(), s.b.end(), 0.f);
  const float alpha = static_cast<float>(p.alpha);
  const float offset = static_cast<float>(p.observed_offset);
  for (offset_t e0 = r.indptr[u]; e0 < r.indptr[u + 1]; e0 += CholScratch::kChunk) {
    const offset_t e1 = std::min<offset_t>(e0 + CholScratch::kChunk, r.indptr[u + 1]);
    const int m = static_cast<int>(e1 - e0);
    for (offset_t e = e0; e < e1; ++e) {
      const float* yi = y.row(r.indices[e]);
      const float w = alpha * r.data[e];
      axpy(w, yi, s.b.data(), k);
      const float sw = std::sqrt(w);
      float* dst = s.rows.data() + (e - e0) * k;
      for (int c = 0; c < k; ++c) dst[c] = sw * yi[c];
    }
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, k, m, 1.f, s.rows.data(), k, 1.f, s.a.data(),
                k);
    if (offset > 0) {  // observed_offset: − o · Σ y yᵀ over the chunk's rows
      const float so = std::sqrt(offset);
      for (offset_t e = e0; e < e1; ++e) {
        const float* yi = y.row(r.indices[e]);
        float* dst = s.rows.data() + (e - e0) * k;
        for (int c = 0; c < k; ++c) dst[c] = so * yi[c];
      }
      cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, k, m, -1.f, s.rows.data(), k, 1.f,
                  s.a.data(), k);
    }
  }
  if (!cholesky_solve(s.a.data(), s.b.data(), k)) {
    // Confidences near float's limit (a fold-in's raw weights) overflow the system: the input's
    // fault, not the solver's. Looked for only after a failure, off the training's hot path.
    // The factorisation multiplies entries of the system, alpha·c·y_i·y_j: past √FLT_MAX
    // ≈ 1.8e19 the products overflow (b = Σ alpha·c·y is still the right-hand side: spotrf failed
    // before the solve).
    const float largest =
        *std::max_element(r.data.begin() + r.indptr[u], r.data.begin() + r.indptr[u + 1]);
    if (!std::all_of(s.b.begin(), s.b.end(), [](float v) { return std::isfinite(v); }) ||
        static_cast<double>(alpha) * largest > 1e18)
      fail("{}: a row's system overflowed float32 (alpha {} times confidences up to {}); "
           "expected smaller weights (confidences)",
           p.where, alpha, largest);
    if (cholesky_row_double(r, u, y, g, gs, lam, alpha, offset, xu)) return true;
    // With λ > 0 the exact A is positive definite: only its condition (the confidences'
    // range against λ) defeats even double precision.
    if (lam > 0)
      fail("{}: a row's system is too ill-conditioned to solve even in double precision "
           "(alpha {} times confidences up to {}, against regularization {}); expected "
           "confidences spanning fewer orders of magnitude (scale the values down, e.g. "
           "log(1 + value))",
           p.where, alpha, largest, lam);
    throw InternalError(
        "iALS: a row's system is not positive definite (regularization 0 with "
        "too few interactions?)",
        __FILE__, __LINE__);
  }
  std::copy(s.b.begin(), s.b.end(), xu);
  return false;
}

}  // namespace

double row_regularization(const IalsSolveParams& p, int64_t n) {
  return p.regularization * std::pow(static_cast<double>(n) + p.reg_offset, p.reg_exp);
}

std::vector<float> weighted_gram(const Matrix& y, double alpha0,
                                 const std::vector<float>& weights) {
  const int k = static_cast<int>(y.cols);
  std::vector<float> g(static_cast<size_t>(k) * k, 0.f);
  const float* src = y.data.data();
  std::vector<float> scaled;
  if (!weights.empty()) {  // Σ c_j y_j y_jᵀ = (√c ∘ Y)ᵀ (√c ∘ Y)
    RF_ASSERT(static_cast<int64_t>(weights.size()) == y.rows, "weighted_gram: weights size");
    scaled.resize(y.data.size());
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < y.rows; ++j) {
      const float sw = std::sqrt(weights[j]);
      for (int c = 0; c < k; ++c) scaled[j * k + c] = sw * y.row(j)[c];
    }
    src = scaled.data();
  }
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, k, static_cast<int>(y.rows),
              static_cast<float>(alpha0), src, k, 0.f, g.data(), k);
  for (int i = 0; i < k; ++i)
    for (int j = i + 1; j < k; ++j)
      g[static_cast<size_t>(i) * k + j] = g[static_cast<size_t>(j) * k + i];
  return g;
}

std::vector<float> popularity_weights(const data::Csr& item_users, double beta) {
  if (beta == 0) return {};
  std::vector<int64_t> counts(static_cast<size_t>(item_users.rows));
  for (int64_t i = 0; i < item_users.rows; ++i) counts[static_cast<size_t>(i)] = item_users.row_size(i);
  return popularity_weights(counts, beta);
}

std::vector<float> popularity_weights(const std::vector<int64_t>& counts, double beta) {
  if (beta == 0) return {};
  const int64_t n = static_cast<int64_t>(counts.size());
  std::vector<float> c(static_cast<size_t>(n));
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double f = static_cast<double>(counts[static_cast<size_t>(i)]);
    c[i] = static_cast<float>(f > 0 ? std::pow(f, beta) : 0.0);
    total += c[i];
  }
  const double scale = total > 0 ? static_cast<double>(n) / total : 0.0;
  for (auto& v : c) v = static_cast<float>(v * scale);
  return c;
}

namespace {

// G's eigendecomposition in place: `basis` (G on entry) gets the eigenvectors as rows. A Gram
// matrix whose sums of squared factors overflowed float32 is the settings' fault, not LAPACK's.
std::vector<float> eigen_of(std::vector<float>& basis, int k, const std::string& where) {
  BlasThreads one(1);  // a multithreaded ssyevd: 34 s instead of 10 for one iteration next to
                       // another busy process (1024 factors, Gowalla)
  for (const float v : basis)
    if (!std::isfinite(v))
      fail("{}: the Gram matrix of the factors overflowed float32 (it sums squared factors, "
           "at most 3.4e38); lower model.init_std or model.alpha, or raise model.regularization",
           where);
  std::vector<float> eig(static_cast<size_t>(k));
  if (!symmetric_eigen(basis.data(), eig.data(), k))
    throw InternalError("iALS: LAPACK's eigendecomposition of the Gram matrix did not converge",
                        __FILE__, __LINE__);
  return eig;
}

// out = m Q (Q's columns the rows of `basis`), in chunks of rows: single-threaded GEMMs under
// OpenMP (one multithreaded GEMM over the whole matrix ran at about half the speed of these).
// `out` may be `m` (each chunk goes through a per-thread buffer).
void rotate_rows(const Matrix& m, const std::vector<float>& basis, Matrix& out, int threads) {
  const int k = static_cast<int>(m.cols);
  if (&out != &m) {
    out.rows = m.rows;
    out.cols = m.cols;
    out.data.resize(m.data.size());
  }
  constexpr int64_t kChunk = 256;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> tmp(static_cast<size_t>(kChunk) * k);
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < m.rows; c0 += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, m.rows - c0));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, k, 1.f, m.row(c0), k, basis.data(),
                  k, 0.f, tmp.data(), k);
      std::copy(tmp.begin(), tmp.begin() + static_cast<int64_t>(n) * k, out.row(c0));
    }
  }
}

// Blocked CG over all rows of `r` against `other` with the Gram operator `op`.
void run_cg(const data::Csr& r, const Matrix& other, const GramOp& op, Matrix& x,
            const IalsSolveParams& p, int threads, const float* row_w) {
  const int k = static_cast<int>(other.cols);
  const std::vector<int64_t> starts = block_starts(r, k);
  const int64_t blocks = static_cast<int64_t>(starts.size()) - 1;
  int64_t overflowed = 0;
  float largest = 0;
#pragma omp parallel num_threads(threads) reduction(+ : overflowed) reduction(max : largest)
  {
    CgScratch s(k);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b)
      cg_block(r, other, op, x, starts[b], starts[b + 1], p, row_w, s);
    overflowed += s.overflowed;
    largest = std::max(largest, s.overflow_largest);
  }
  // Those rows kept their previous factors; silently, the model would look trained.
  if (overflowed > 0)
    fail("{}: the conjugate gradient of {} of {} rows overflowed float32 (a non-finite "
         "residual or step; alpha {} times confidences up to {}); expected smaller weights "
         "(confidences), e.g. log(1 + value), or model.solver: cholesky, which solves "
         "ill-conditioned rows in double",
         p.where, overflowed, r.rows, p.alpha, largest);
}

// Exact solves of all rows of `r` against `other` with the dense Gram matrix `g`.
void run_cholesky(const data::Csr& r, const Matrix& other, const float* g, Matrix& x,
                  const IalsSolveParams& p, int threads, const float* row_w) {
  const int k = static_cast<int>(other.cols);
  // A row's error (an overflowed or indefinite system) must leave the parallel region as an
  // exception of this thread: thrown inside it, it ended the process (std::terminate).
  std::exception_ptr error;
  int64_t in_double = 0;  // rows solved by cholesky_row_double
#pragma omp parallel num_threads(threads) reduction(+ : in_double)
  {
    CholScratch s(k);
#pragma omp for schedule(dynamic, 16)
    for (int64_t u = 0; u < r.rows; ++u) {
      try {
        in_double += cholesky_row(r, u, other, g, x.row(u), p, row_w, s) ? 1 : 0;
      } catch (...) {
#pragma omp critical(rf_cholesky_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  if (in_double > 0) {
    // Once per process at warning level (a server folds in on every request), then at debug.
    static std::atomic<bool> warned{false};
    log().log(warned.exchange(true) ? spdlog::level::debug : spdlog::level::warn,
              "iALS: {} of {} rows were solved in double precision: their float32 systems were "
              "too ill-conditioned (confidences, alpha {} times the interaction values, span too "
              "many orders of magnitude); scaling the values down (e.g. log(1 + value)) keeps "
              "the faster float32 path",
              in_double, r.rows, p.alpha);
  }
}

void check_shapes(const data::Csr& r, const Matrix& y, const Matrix& x,
                  const std::vector<float>& row_weights) {
  RF_ASSERT(r.rows == x.rows && r.cols == y.rows && x.cols == y.cols, "iALS solve: shapes");
  RF_ASSERT(row_weights.empty() || static_cast<int64_t>(row_weights.size()) == r.rows,
            "iALS solve: row weights size");
}

}  // namespace

IalsSolveParams half_params(const IalsSolveParams& p, int iteration, const char* side) {
  IalsSolveParams h = p;
  h.where = fmt::format("iALS iteration {}, {} factors", iteration, side);
  return h;
}

std::vector<float> gram_eigen(std::vector<float>& basis, int k, const std::string& where) {
  return eigen_of(basis, k, where);
}

void rotate_rows(Matrix& m, const std::vector<float>& basis, int threads) {
  BlasThreads one(1);
  rotate_rows(m, basis, m, threads);
}

void solve_rows(const data::Csr& r, const Matrix& y, Matrix& x, const IalsSolveParams& p,
                int threads, GramView gram, const std::vector<float>& row_weights) {
  check_shapes(r, y, x, row_weights);
  const float* row_w = row_weights.empty() ? nullptr : row_weights.data();
  BlasThreads one(1);
  if (p.cholesky) {
    RF_ASSERT(gram.g && !gram.eig, "solve_rows: Cholesky needs the dense Gram matrix");
    run_cholesky(r, y, gram.g, x, p, threads, row_w);
    return;
  }
  RF_ASSERT(gram.g || gram.eig, "solve_rows: no Gram matrix");
  run_cg(r, y, gram.eig ? GramOp{nullptr, gram.eig, nullptr} : GramOp{gram.g, nullptr, nullptr},
         x, p, threads, row_w);
}

namespace {

// solve_side with its Gram matrix `g` (weighted_gram of y) given.
void solve_side_with(const data::Csr& r, const Matrix& y, Matrix& x, const IalsSolveParams& p,
                     int threads, const std::vector<float>& g,
                     const std::vector<float>& row_weights) {
  const int k = static_cast<int>(y.cols);
  RF_ASSERT(static_cast<int64_t>(g.size()) == static_cast<int64_t>(k) * k,
            "iALS solve: Gram matrix size");
  const float* row_w = row_weights.empty() ? nullptr : row_weights.data();
  BlasThreads one(1);
  if (p.cholesky) {
    run_cholesky(r, y, g.data(), x, p, threads, row_w);
    return;
  }
  if (!use_eigenbasis(p, k, r.rows, y.rows)) {
    run_cg(r, y, GramOp{g.data(), nullptr, nullptr}, x, p, threads, row_w);
    return;
  }
  std::vector<float> basis = g;
  const std::vector<float> eig = eigen_of(basis, k, p.where);
  Matrix rotated;  // the other side in G's eigenbasis: Y Q
  rotate_rows(y, basis, rotated, threads);
  run_cg(r, rotated, GramOp{nullptr, eig.data(), basis.data()}, x, p, threads, row_w);
}

}  // namespace

void solve_side(const data::Csr& r, const Matrix& y, Matrix& x, const IalsSolveParams& p,
                int threads, const std::vector<float>& col_weights,
                const std::vector<float>& row_weights) {
  check_shapes(r, y, x, row_weights);
  solve_side_with(r, y, x, p, threads, weighted_gram(y, p.unobserved_weight, col_weights),
                  row_weights);
}

bool use_eigenframe(const IalsSolveParams& p, int k, int64_t rows, int64_t other_rows) {
  return !p.cholesky && eigen_pays(p, k, rows, rows + other_rows);
}

void solve_half(const data::Csr& r, Matrix& y, Matrix& x, const IalsSolveParams& p, int threads,
                const std::vector<float>& col_weights, const std::vector<float>& row_weights) {
  check_shapes(r, y, x, row_weights);
  const int k = static_cast<int>(y.cols);
  if (!use_eigenframe(p, k, r.rows, y.rows)) {
    IalsSolveParams dense = p;
    dense.cg_basis = CgBasis::kDense;
    solve_side(r, y, x, dense, threads, col_weights, row_weights);
    return;
  }
  std::vector<float> basis = weighted_gram(y, p.unobserved_weight, col_weights);
  BlasThreads one(1);  // single-threaded GEMMs under OpenMP (rotate_rows, run_cg)
  const std::vector<float> eig = eigen_of(basis, k, p.where);
  rotate_rows(y, basis, y, threads);
  rotate_rows(x, basis, x, threads);
  run_cg(r, y, GramOp{nullptr, eig.data(), nullptr}, x, p, threads,
         row_weights.empty() ? nullptr : row_weights.data());
}

Matrix fold_in(const data::Csr& rows, const Matrix& y, const IalsSolveParams& p, int threads,
               const std::vector<float>& col_weights, const std::vector<float>* gram) {
  Matrix x;
  x.rows = rows.rows;
  x.cols = y.cols;
  x.data.assign(static_cast<size_t>(x.rows * x.cols), 0.f);
  if (x.rows == 0) return x;
  check_shapes(rows, y, x, {});
  // Rows are solved independently: more threads than rows only start idle ones (in a server,
  // one team per concurrent request).
  const int team = static_cast<int>(std::min<int64_t>(std::max(threads, 1), rows.rows));
  const std::vector<float> own =
      gram ? std::vector<float>() : weighted_gram(y, p.unobserved_weight, col_weights);
  solve_side_with(rows, y, x, p, team, gram ? *gram : own, {});
  return x;
}

double observed_term(const data::Csr& r, const Matrix& x, const Matrix& y,
                     const IalsSolveParams& p) {
  const int k = static_cast<int>(y.cols);
  double observed = 0;
#pragma omp parallel for reduction(+ : observed) schedule(dynamic, 256)
  for (int64_t u = 0; u < r.rows; ++u) {
    const float* xu = x.row(u);
    for (offset_t e = r.indptr[u]; e < r.indptr[u + 1]; ++e) {
      const double s = dot(xu, y.row(r.indices[e]), k), err = 1.0 - s;
      // observed_offset: the unobserved weight the Gram term gave this pair, taken back.
      observed += p.alpha * r.data[e] * err * err - p.observed_offset * s * s;
    }
  }
  return observed;
}

double regularization_term(const data::Csr& r, const Matrix& x, const IalsSolveParams& p) {
  const int k = static_cast<int>(x.cols);
  double reg = 0;
#pragma omp parallel for reduction(+ : reg) schedule(static)
  for (int64_t u = 0; u < r.rows; ++u)
    reg += row_regularization(p, r.row_size(u)) * dot(x.row(u), x.row(u), k);
  return reg;
}

double objective(const data::Csr& r, const data::Csr& rt, const Matrix& x, const Matrix& y,
                 const IalsSolveParams& p, const std::vector<float>& item_weights) {
  // α0 Σ_all c_i (x·y)² = α0 ⟨XᵀX, YᵀCY⟩.
  const std::vector<float> gx = weighted_gram(x, 1.0), gy = weighted_gram(y, 1.0, item_weights);
  double all = 0;
  for (size_t j = 0; j < gx.size(); ++j) all += static_cast<double>(gx[j]) * gy[j];
  return observed_term(r, x, y, p) + p.unobserved_weight * all + regularization_term(r, x, p) +
         regularization_term(rt, y, p);
}

}  // namespace recforge::backend::cpu
