#pragma once
/// @file ials.h
/// Implicit-feedback ALS (Hu, Koren & Volinsky 2008) in the formulation of Rendle et al. 2022:
/// unobserved weight α0 on all pairs through the Gram matrix, frequency-scaled L2, CG or
/// Cholesky row solves. See models/ials/ials_cpu.h for the objective.

#include <utility>

#include "models/ials/ials_cpu.h"
#include "models/ials/ials_storage.h"
#include "models/batch/batch.h"
#include "models/memory.h"
#include "models/model.h"

namespace recforge::models {

/// iALS options (the `model` section).
struct IalsOptions {
  int factors = 64;                       ///< embedding dimension
  int iterations = 15;                    ///< iterations (users then items)
  double init_std = 0.1;                  ///< initial factors ~ N(0, (init_std/√factors)²)
  uint64_t seed = 42;                     ///< seed of the initial factors
  double unobserved_exp = 0.0;            ///< β of the per-item unobserved weights (0: uniform)
  /// model.observed_weight as configured, "added" or "replaced" (solve.observed_offset is its
  /// effect: unobserved_weight when replaced, which is 0 with unobserved_weight 0).
  std::string observed_weight = "added";
  backend::cpu::IalsSolveParams solve;    ///< λ, exponent, offset, α0, alpha, solver
  /// Factor storage type (`model.dtype`); the CPU stores float32 only.
  backend::cuda::Storage dtype = backend::cuda::Storage::kFloat32;
  /// GPU only: whether interactions stream from pinned host memory (`train.gpu_streaming`).
  backend::cuda::Streaming streaming = backend::cuda::Streaming::kAuto;
  /// GPU only: interactions per streamed batch (0: chosen from free memory; tests set it small).
  int64_t stream_batch_nnz = 0;
};

/// rows × k factors drawn from N(0, (stddev/√k)²), row r from its own stream of `seed`, so the
/// values do not depend on the thread count or the device that trains them. `first_row`: the
/// rows are rows first_row .. first_row + rows - 1 of a larger matrix (a distributed run's
/// shard draws exactly the rows that one process would draw for it).
Matrix random_factors(int64_t rows, int k, double stddev, uint64_t seed, int64_t first_row = 0);

/// The initial user and item factors of a model with these options (what init() draws).
std::pair<Matrix, Matrix> initial_factors(const IalsOptions& o, int64_t n_users, int64_t n_items);

/// The hyperparameters as JSON, shared by the CPU and GPU models (run.json, manifests).
nlohmann::json describe_ials(const IalsOptions& o);

/// iALS on the CPU (OpenMP + BLAS/LAPACK).
class Ials : public Model {
 public:
  /// A model with `threads` CPU threads. Throws recforge::Error when options.dtype is not
  /// float32 (the CPU stores float32 factors only).
  Ials(IalsOptions options, int threads);
  std::string type() const override { return "ials"; }
  int iterations() const override { return o_.iterations; }
  void init(int64_t n_users, int64_t n_items) override;
  void iterate(const data::Csr& user_items, const data::Csr& item_users) override;
  double loss(const data::Csr& user_items, const data::Csr& item_users) const override;
  const Matrix& user_factors() const override { return users_; }
  const Matrix& item_factors() const override { return items_; }
  void set_factors(Matrix users, Matrix items) override;
  /// The per-item unobserved weights of training (model.unobserved_exp), from each item's
  /// number of training interactions.
  void set_item_counts(const std::vector<int64_t>& counts) override;
  Matrix fold_in_rows(const data::Csr& rows) const override;
  /// Keeps the weighted Gram matrix of the item factors (kFoldIn, float) or its double twin
  /// (kExplain) until the model changes.
  void prepare_queries(Query which) override;
  /// The exact decomposition of the user solve (backend::cpu::explain_user).
  std::vector<Explanation> explain(const data::Csr& row, const float* user,
                                   const std::vector<int64_t>& items) const override;
  nlohmann::json describe() const override;
  /// iALS needs nothing besides the factors (the item weights are recomputed); the state holds
  /// the iteration count only.
  bool can_checkpoint() const override { return true; }
  TrainingState training_state() const override;
  void resume(Matrix users, Matrix items, int iterations_done, TrainingState state) override;
  /// The options in use.
  const IalsOptions& options() const { return o_; }

 private:
  IalsOptions o_;
  int threads_;
  Matrix users_, items_;
  std::vector<float> item_weights_;  // per-item unobserved weights (empty: uniform)
  int iterations_done_ = 0;          // names the iteration in errors
  // prepare_queries(), from items_ and item_weights_; reset by every change of the model.
  std::shared_ptr<const std::vector<float>> gram_;         // weighted_gram, for fold_in
  std::shared_ptr<const std::vector<double>> unobserved_;  // explain_unobserved, for explain
  void drop_prepared() { gram_.reset(), unobserved_.reset(); }
};

/// iALS with these options on the Context's device: models::Ials on the CPU, models::IalsCuda
/// on a GPU. Throws recforge::Error when the CPU is asked for a dtype other than float32.
std::unique_ptr<Model> make_ials(const IalsOptions& options, const Context& ctx);

/// What models::make_model builds: no model, iALS, or a batch model (bpr or softmax, told
/// apart by batch.params.loss); only the chosen family's options are read.
struct ModelOptions {
  /// The model family.
  enum class Family { kNone, kIals, kBatch };
  Family family = Family::kIals;  ///< which model
  IalsOptions ials;               ///< options of kIals
  BatchOptions batch;             ///< options of kBatch
};

/// The memory iALS on the CPU allocates for n_users × n_items with `threads` threads, by part
/// (factors, k×k matrices, copies, per-thread buffers); Ials::init refuses to start when it
/// exceeds the memory available (models/memory.h).
std::vector<MemoryPart> ials_memory(const IalsOptions& o, int64_t n_users, int64_t n_items,
                                    int threads);

}  // namespace recforge::models
