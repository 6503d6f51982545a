#pragma once
/// @file batch_cuda.h
/// BPR, sampled softmax and CCL on a CUDA GPU: the models::Model of batch.h with its factors,
/// optimiser state, interactions and training on the Context's GPU (models/batch/batch_cuda_trainer.h).
/// Same losses, samplers and optimisers as the CPU model and the same initial factors (drawn on
/// the host from the same seed); the samples differ (Philox on the GPU, xoshiro on the CPU), so
/// the two devices agree in distribution, not bit for bit. Evaluation of this model runs on the
/// GPU too (Model::gpu).

#include <memory>
#include <string>

#include "models/batch/batch_cpu.h"
#include "models/batch/batch_cuda_trainer.h"
#include "models/batch/batch.h"

namespace recforge::models {

/// BPR or sampled softmax on the Context's GPU. The host copies of the factors that
/// user_factors() and item_factors() return are refreshed from the GPU on demand.
class BatchModelCuda : public Model {
 public:
  /// A model on `ctx`'s GPU (ctx.device() must be CUDA).
  BatchModelCuda(BatchOptions options, const Context& ctx);
  ~BatchModelCuda() override;
  std::string type() const override { return loss_name(o_.params.loss); }
  int iterations() const override { return o_.epochs; }
  void init(int64_t n_users, int64_t n_items) override;
  /// One epoch on the GPU. The first call builds the negative sampler for `user_items` and
  /// moves the interactions to the GPU; the matrix must not change between calls. Non-finite
  /// factors are detected on the GPU every epoch (read back with the loss); only then are the
  /// factors downloaded, to throw check_finite_factors' error.
  void iterate(const data::Csr& user_items, const data::Csr& item_users) override;
  /// The mean sample loss of the last epoch (0 before the first).
  double loss(const data::Csr& user_items, const data::Csr& item_users) const override;
  const Matrix& user_factors() const override;
  const Matrix& item_factors() const override;
  void set_factors(Matrix users, Matrix items) override;
  /// backend::cpu::fold_in with this model's items (downloaded), on the host.
  Matrix fold_in_rows(const data::Csr& rows) const override;
  nlohmann::json describe() const override;
  /// As the CPU model's (batch_state); the optimiser state is downloaded from the GPU.
  bool can_checkpoint() const override { return true; }
  TrainingState training_state() const override;
  void resume(Matrix users, Matrix items, int iterations_done, TrainingState state) override;
  std::shared_ptr<backend::cuda::CudaResources> cuda() const override { return gpu_; }
  /// The options in use.
  const BatchOptions& options() const { return o_; }

 private:
  void create_state(int64_t n_users, int64_t n_items);
  void refresh() const;  // downloads the factors when the GPU copy changed
  // CCL with user-side aggregation: users_ are the served (aggregated) vectors, rows_ the users'
  // own trained rows (on the GPU: the trainer's user matrix).
  bool aggregating() const {
    return o_.params.loss == backend::BatchLoss::kCcl && o_.params.history_weight > 0;
  }

  BatchOptions o_;
  std::string device_name_;
  int threads_;
  std::shared_ptr<backend::cuda::CudaResources> gpu_;
  std::unique_ptr<backend::cuda::BatchTrainerCuda> state_;
  std::unique_ptr<backend::cpu::ItemSampler> sampler_;  // of trained_on_
  const data::Csr* trained_on_ = nullptr;
  mutable Matrix users_, items_;  // host copies
  mutable Matrix rows_;           // aggregating: the users' own rows (host copy)
  mutable bool stale_ = false;    // the GPU factors changed since the host copies were made
  double last_loss_ = 0;
  int epochs_done_ = 0;
};

}  // namespace recforge::models
