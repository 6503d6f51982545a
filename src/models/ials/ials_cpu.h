#pragma once
/// @file ials_cpu.h
/// iALS on the CPU: Gram matrix with BLAS, per-row solves by blocked conjugate gradient or
/// exact Cholesky, OpenMP over rows, and the full weighted objective.
///
/// Objective (Rendle et al. 2022): for observed pairs S with weights w_ui,
///   L = Σ_S w_ui (1 − x_u·y_i)² + α0 Σ_{all u,i} (x_u·y_i)²
///       + λ Σ_u (n_u + ν)^e ‖x_u‖² + λ Σ_i (n_i + ν)^e ‖y_i‖².
/// With Y fixed, row u's optimum solves (α0 YᵀY + Σ_{i∈S_u} w_ui y_i y_iᵀ + λ_u I) x = Σ w_ui y_i.

#include <string>
#include <vector>

#include "core/npy.h"
#include "data/csr.h"

namespace recforge::backend::cpu {

/// How CG applies the Gram matrix G. `kDense`: one GEMM with G per block of rows and CG step
/// (plus one for the initial residual). `kEigen`: in G's eigenbasis, where G is diagonal: each
/// row is rotated into the basis and back (two GEMMs per block) and the other side's factors
/// once per solve, so the Gram product per step costs k instead of k². The two are the same CG
/// in exact arithmetic. `kAuto` picks the cheaper by a count of k² products.
enum class CgBasis { kAuto, kDense, kEigen };

/// Hyperparameters of one iALS solve.
struct IalsSolveParams {
  double regularization = 0.01;     ///< λ
  double reg_exp = 1.0;             ///< e in λ (n + ν)^e
  double reg_offset = 1.0;          ///< ν
  double unobserved_weight = 0.05;  ///< α0
  double alpha = 1.0;               ///< observed weight = alpha × CSR value
  /// Subtracted from an observed pair's quadratic weight: 0 for iALS (an observed pair weighs
  /// α0 + alpha·c through the Gram matrix), α0 for model.observed_weight replaced (it weighs
  /// alpha·c, as in Hu et al. and implicit). The right-hand side is Σ alpha·c·y either way.
  double observed_offset = 0;
  bool cholesky = false;            ///< exact solve instead of CG
  int cg_steps = 3;                 ///< CG steps per row (warm-started)
  CgBasis cg_basis = CgBasis::kAuto;
  /// What a solve's input errors begin with: "iALS", or the iteration and the side that
  /// training solves (e.g. "iALS iteration 3, item factors").
  std::string where = "iALS";
};

/// `p` for one half of training iteration `iteration`: its `where` names the iteration and the
/// side ("iALS iteration 3, item factors"), so that a solve's input error says where it arose.
IalsSolveParams half_params(const IalsSolveParams& p, int iteration, const char* side);

/// λ (n + ν)^e for a row with n observed interactions.
double row_regularization(const IalsSolveParams& p, int64_t n);

/// G = α0 · Σ_j c_j y_j y_jᵀ as a full symmetric k×k row-major matrix (multithreaded BLAS);
/// c_j = 1 when `weights` is empty.
std::vector<float> weighted_gram(const Matrix& y, double alpha0,
                                 const std::vector<float>& weights = {});

/// Per-item unobserved weights (eALS, He et al. 2016): c_i = n_items · f_i^β / Σ_j f_j^β, f_i the
/// item's number of interactions, so the mean weight is 1 and β = 0 gives uniform weights.
/// Empty when β = 0.
std::vector<float> popularity_weights(const data::Csr& item_users, double beta);
/// The same from each item's number of interactions.
std::vector<float> popularity_weights(const std::vector<int64_t>& counts, double beta);

/// Solves every row of `r` (rows × cols, values = confidences) against the fixed `y`
/// (cols × k), updating `x` (rows × k) in place (CG warm-starts from it). Rows without
/// interactions get zero factors. With item weights c (see popularity_weights), the user side
/// passes them as `col_weights` (G = α0 Σ c_j y_j y_jᵀ) and the item side as `row_weights`
/// (row i's Gram term is scaled by c_i). `threads` OpenMP threads.
void solve_side(const data::Csr& r, const Matrix& y, Matrix& x, const IalsSolveParams& p,
                int threads, const std::vector<float>& col_weights = {},
                const std::vector<float>& row_weights = {});

/// Whether solve_half rotates both sides into the Gram matrix's eigenbasis (else it solves with
/// the dense G): by a count of k² products, dense CG costs (cg_steps + 1)·rows, the rotation
/// rows + other_rows plus the decomposition (about 30·k³, counted as 30·k rows); the eigenbasis
/// is taken below 0.8× the dense count. `kDense` / `kEigen` force the choice; never for Cholesky.
bool use_eigenframe(const IalsSolveParams& p, int k, int64_t rows, int64_t other_rows);

/// One half-iteration of training: solves every row of `r` as solve_side does, but may first
/// rotate both sides by the eigenvectors Q of G (y ← yQ, x ← xQ; see use_eigenframe), so that CG
/// applies a diagonal G at O(k) per row and step. An orthogonal Q changes no score x·y, norm,
/// regulariser or loss, so the factors simply stay in the rotated frame: only the user and
/// item factors together are meaningful, as for any factorization. Compared with solve_side's
/// eigenbasis, which rotates each solved row in and back out and a copy of `y`, this saves the
/// rotation back and the copy. Same CG in exact arithmetic as the dense solve.
void solve_half(const data::Csr& r, Matrix& y, Matrix& x, const IalsSolveParams& p, int threads,
                const std::vector<float>& col_weights = {},
                const std::vector<float>& row_weights = {});

/// The Gram matrix as solve_rows applies it: the dense k×k G (row-major, symmetric), or, with
/// `eig` set, the diagonal of its eigenvalues, the rows of x and y being in G's eigenbasis.
struct GramView {
  const float* g = nullptr;    ///< dense G (when eig is null)
  const float* eig = nullptr;  ///< G's eigenvalues (x and y rotated into its eigenbasis)
};

/// The row solves of solve_side / solve_half with the Gram matrix given instead of computed from
/// `y`: for callers that hold only the rows of the other side that `r`'s columns index (a
/// distributed run, src/dist), whose G is a sum over processes. CG by default, Cholesky with
/// p.cholesky (which needs the dense G). `row_weights` as in solve_side.
void solve_rows(const data::Csr& r, const Matrix& y, Matrix& x, const IalsSolveParams& p,
                int threads, GramView gram, const std::vector<float>& row_weights = {});

/// G's eigendecomposition in place: `basis` (G on entry, k×k) gets the eigenvectors as rows;
/// returns the eigenvalues. Throws recforge::Error when G is not finite (float32 overflow of
/// the squared factors), beginning with `where` (IalsSolveParams::where).
std::vector<float> gram_eigen(std::vector<float>& basis, int k, const std::string& where = "iALS");

/// m ← m Q in place, Q's columns the rows of `basis` (into G's eigenbasis), `threads` threads.
void rotate_rows(Matrix& m, const std::vector<float>& basis, int threads);

/// The observed part of the objective over the rows of `r`: Σ_rows Σ_e alpha·r_e·(1 − s)² − o·s²
/// with s = x_row·y_col and o = p.observed_offset (x: r.rows × k, y: the rows that r's columns
/// index).
double observed_term(const data::Csr& r, const Matrix& x, const Matrix& y, const IalsSolveParams& p);

/// The regularisation of the rows of `r`'s matrix: Σ_rows λ (n_row + ν)^e ‖x_row‖².
double regularization_term(const data::Csr& r, const Matrix& x, const IalsSolveParams& p);

/// Solves rows given as a CSR against `y` exactly as training does, starting from zero factors
/// (fold-in of users not seen in training). Returns rows × k factors. `gram`, when given, is
/// weighted_gram(y, p.unobserved_weight, col_weights) computed earlier (a served model's, kept
/// across calls): the result is the same to the bit, without the items × k² products. At most
/// one thread per row (a one-user fold-in starts no OpenMP team).
Matrix fold_in(const data::Csr& rows, const Matrix& y, const IalsSolveParams& p, int threads,
               const std::vector<float>& col_weights = {},
               const std::vector<float>* gram = nullptr);

/// The full objective L above (user rows of `r`, user factors `x`, item factors `y`), with the
/// unobserved term weighted by `item_weights` when given.
double objective(const data::Csr& r, const data::Csr& rt, const Matrix& x, const Matrix& y,
                 const IalsSolveParams& p, const std::vector<float>& item_weights = {});

}  // namespace recforge::backend::cpu

namespace recforge::models {
struct Explanation;
}  // namespace recforge::models

namespace recforge::backend::cpu {

/// The exact decomposition of one user's iALS solve, in double. With t_j = alpha · r_uj the
/// confidences of the user's training items I_u (the values of the 1-row CSR `row`), c_j the
/// per-item unobserved weights (`col_weights`, 1 when empty), n = |I_u| and λ_u = λ (n + ν)^e:
///   A = α0 Σ_{all j} c_j y_j y_jᵀ + Σ_{j∈I_u} (t_j − o) y_j y_jᵀ + λ_u I,   b = Σ_{j∈I_u} t_j y_j,
/// o = p.observed_offset (0, or α0 with model.observed_weight replaced), the system that solve_side's Cholesky and CG (approximately) solve for x_u. Then
///   score(u, i) = y_iᵀ A⁻¹ b = Σ_{j∈I_u} t_j · y_iᵀ A⁻¹ y_j,
/// and item j contributes t_j · y_iᵀ A⁻¹ y_j = t_j · w·y_j with w = A⁻¹ y_i (A symmetric),
/// computed from one Cholesky factorisation of A per user and one solve per explained item.
/// `user` (k floats, or nullptr) gives model_score = y_i · x_u. A user without training items
/// has x_u = 0: score 0, no contributions.
/// `unobserved`, when given, is explain_unobserved(y, p, col_weights) computed earlier: the
/// result is the same to the bit, without the items × k²/2 products.
std::vector<models::Explanation> explain_user(const data::Csr& row, const Matrix& y,
                                              const IalsSolveParams& p,
                                              const std::vector<float>& col_weights,
                                              const float* user,
                                              const std::vector<int64_t>& items,
                                              const std::vector<double>* unobserved = nullptr);

/// The part of explain_user's A that does not depend on the user, in double: α0 Σ_j c_j y_j y_jᵀ
/// (k×k row-major, lower triangle and diagonal; zeros above).
std::vector<double> explain_unobserved(const Matrix& y, const IalsSolveParams& p,
                                       const std::vector<float>& col_weights);

}  // namespace recforge::backend::cpu
