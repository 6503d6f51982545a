#pragma once
/// @file ials.h
/// Implicit-feedback ALS (Hu, Koren & Volinsky 2008) in the formulation of Rendle et al. 2022:
/// unobserved weight α0 on all pairs through the Gram matrix, frequency-scaled L2, CG or
/// Cholesky row solves. See backend/cpu/ials_cpu.h for the objective.

#include "backend/cpu/ials_cpu.h"
#include "models/model.h"

namespace recforge::models {

/// iALS options (the `model` section).
struct IalsOptions {
  int factors = 64;                       ///< embedding dimension
  int iterations = 15;                    ///< iterations (users then items)
  double init_std = 0.1;                  ///< initial factors ~ N(0, (init_std/√factors)²)
  uint64_t seed = 42;                     ///< seed of the initial factors
  double unobserved_exp = 0.0;            ///< β of the per-item unobserved weights (0: uniform)
  backend::cpu::IalsSolveParams solve;    ///< λ, exponent, offset, α0, alpha, solver
};

/// iALS on the CPU (OpenMP + BLAS/LAPACK).
class Ials : public Model {
 public:
  /// A model with `threads` CPU threads.
  Ials(IalsOptions options, int threads);
  std::string type() const override { return "ials"; }
  int iterations() const override { return o_.iterations; }
  void init(int64_t n_users, int64_t n_items) override;
  void iterate(const data::Csr& user_items, const data::Csr& item_users) override;
  double loss(const data::Csr& user_items, const data::Csr& item_users) const override;
  const Matrix& user_factors() const override { return users_; }
  const Matrix& item_factors() const override { return items_; }
  void set_factors(Matrix users, Matrix items) override;
  Matrix fold_in(const data::Csr& rows) const override;
  nlohmann::json describe() const override;
  /// The options in use.
  const IalsOptions& options() const { return o_; }

 private:
  IalsOptions o_;
  int threads_;
  Matrix users_, items_;
  std::vector<float> item_weights_;  // per-item unobserved weights (empty: uniform)
};

/// Options from the `model` section (model.seed falls back to run.seed).
IalsOptions ials_options(const config::Config& cfg);

}  // namespace recforge::models
