#pragma once
/// @file batch.h
/// The batch-trained embedding models, `model.type: bpr` (Rendle et al. 2009) and
/// `model.type: softmax` (sampled softmax with in-batch and sampled negatives, log-Q corrected;
/// Yi et al. 2019) and `model.type: ccl` (SimpleX's cosine contrastive loss, Mao et al. 2021):
/// the same models::Model interface, evaluation and export as iALS. One
/// iteration is one epoch. The losses are defined in models/batch/batch_cpu.h; the CUDA model is
/// models/batch/batch_cuda.h.

#include <memory>
#include <utility>

#include "models/batch/batch_math.h"
#include "models/batch/batch_cpu.h"
#include "models/model.h"

namespace recforge::models {

/// Options of a batch model (the `model` section).
struct BatchOptions {
  backend::BatchParams params;  ///< loss, factors, batch, optimiser, negatives, ...
  int epochs = 20;              ///< `model.iterations`
  double init_std = 0.1;        ///< initial factors ~ N(0, (init_std/√factors)²); item bias 0
  uint64_t seed = 42;           ///< seed of the initial factors and of every sample
};

/// "bpr", "softmax" or "ccl".
const char* loss_name(backend::BatchLoss loss);

/// The initial user and item factors (n × dim; with item_bias, users hold 1 and items 0 in the
/// last column). The same on every device.
std::pair<Matrix, Matrix> initial_embeddings(const BatchOptions& o, int64_t n_users,
                                             int64_t n_items);

/// The hyperparameters as JSON, shared by the CPU and GPU models.
nlohmann::json describe_batch(const BatchOptions& o);

/// Throws recforge::Error naming the side and epoch when `m` holds a NaN or an infinity.
void check_finite_factors(const Matrix& m, const char* side, int epoch);

/// A batch model's TrainingState (shared by the CPU and GPU models): epochs done, the last
/// epoch's loss and the optimiser state, its arrays as n × `dim` matrices.
TrainingState batch_state(int epochs_done, double last_loss,
                              backend::cpu::OptimizerState optimizer, int dim);

/// The optimiser state of a TrainingState that batch_state() made.
backend::cpu::OptimizerState optimizer_state(TrainingState state);

/// Checks a TrainingState read back from a checkpoint against a model of `params` with
/// `n_users` × `n_items` factors, before resume() hands it on. Throws recforge::Error naming
/// the first part that does not fit: a value ("epochs_done", "last_loss", "steps") of the wrong
/// type or a negative step count; an array it does not know; an optimiser array whose size is
/// not the one the optimiser and the factors give (all absent is a model that has not stepped
/// yet), or that this optimiser does not keep; a history map (or its moments) without
/// aggregation, or not factors × factors; own user rows ("user_rows") without aggregation or not
/// of the users' shape.
void check_batch_state(const backend::BatchParams& params, const TrainingState& state, int64_t n_users,
                       int64_t n_items);

/// CCL with user-side aggregation: takes the users' own rows ("user_rows", what training
/// continues from) out of a checkpoint's state, checked against the served `users`; an empty
/// matrix when the state has none (then training continues from the served vectors).
Matrix take_user_rows(TrainingState& state, const Matrix& users, bool aggregating);

/// `served` into `users`' own storage when the shapes agree, so that views of it (the Python
/// package's user_factors) see the new vectors rather than a freed buffer; else replaces it.
void assign_keeping_storage(Matrix& users, Matrix served);

/// BPR, sampled softmax or CCL on the CPU (backend::cpu::BatchTrainerCpu).
class BatchModel : public Model {
 public:
  /// A model with `threads` CPU threads.
  BatchModel(BatchOptions options, int threads);
  ~BatchModel() override;
  std::string type() const override { return loss_name(o_.params.loss); }
  int iterations() const override { return o_.epochs; }
  void init(int64_t n_users, int64_t n_items) override;
  /// One epoch. The first call prepares the sampler for `user_items`, which must not change
  /// between calls.
  void iterate(const data::Csr& user_items, const data::Csr& item_users) override;
  /// The mean sample loss of the last epoch (0 before the first).
  double loss(const data::Csr& user_items, const data::Csr& item_users) const override;
  const Matrix& user_factors() const override { return users_; }
  const Matrix& item_factors() const override { return items_; }
  void set_factors(Matrix users, Matrix items) override;
  /// backend::cpu::fold_in with this model's items.
  Matrix fold_in_rows(const data::Csr& rows) const override;
  nlohmann::json describe() const override;
  /// The state: epochs done, the last loss, the optimiser's steps and moments (the samples of
  /// an epoch depend only on the seed and the epoch number).
  bool can_checkpoint() const override { return true; }
  TrainingState training_state() const override;
  void resume(Matrix users, Matrix items, int iterations_done, TrainingState state) override;
  /// The options in use.
  const BatchOptions& options() const { return o_; }

 private:
  // CCL with user-side aggregation: users_ are the aggregated (served) vectors, rows_ the
  // users' own trained rows.
  bool aggregating() const {
    return o_.params.loss == backend::BatchLoss::kCcl && o_.params.history_weight > 0;
  }
  BatchOptions o_;
  int threads_;
  Matrix users_, items_;
  Matrix rows_;
  std::unique_ptr<backend::cpu::BatchTrainerCpu> trainer_;
  // Optimiser state of a checkpoint, for the trainer that the next iterate() creates.
  std::unique_ptr<backend::cpu::OptimizerState> resumed_state_;
  const data::Csr* trained_on_ = nullptr;  // the matrix trainer_ was built for
  double last_loss_ = 0;
  int epochs_done_ = 0;
};

/// A batch model on the Context's device: models::BatchModel on the CPU, models::BatchModelCuda
/// on a GPU.
std::unique_ptr<Model> make_batch_model(const BatchOptions& options, const Context& ctx);

}  // namespace recforge::models
