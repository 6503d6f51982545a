#pragma once
/// @file ials_cuda.h
/// iALS on a CUDA GPU: the models::Model of ials.h with its factors, interactions and solver on
/// the Context's GPU (models/ials/ials_cuda_solver.h). Same objective, same initial factors (drawn on
/// the host from the same seed) and same row solves as the CPU model, so a run can move between
/// devices; evaluation of this model runs on the GPU too (Model::gpu).

#include <memory>

#include "models/ials/ials_cuda_solver.h"
#include "models/ials/ials.h"

namespace recforge::models {

/// iALS on the Context's GPU. The host copies of the factors that user_factors() and
/// item_factors() return are refreshed from the GPU on demand.
class IalsCuda : public Model {
 public:
  /// A model on `ctx`'s GPU (ctx.device() must be CUDA). Throws recforge::Error when the factor
  /// count exceeds backend::cuda::max_factors().
  IalsCuda(IalsOptions options, const Context& ctx);
  ~IalsCuda() override;
  std::string type() const override { return "ials"; }
  int iterations() const override { return o_.iterations; }
  void init(int64_t n_users, int64_t n_items) override;
  void iterate(const data::Csr& user_items, const data::Csr& item_users) override;
  double loss(const data::Csr& user_items, const data::Csr& item_users) const override;
  const Matrix& user_factors() const override;
  const Matrix& item_factors() const override;
  void set_factors(Matrix users, Matrix items) override;
  /// As the CPU model's: the per-item unobserved weights from training interaction counts.
  void set_item_counts(const std::vector<int64_t>& counts) override;
  Matrix fold_in_rows(const data::Csr& rows) const override;
  /// The CPU's exact decomposition of the user solve over the host copy of the factors.
  std::vector<Explanation> explain(const data::Csr& row, const float* user,
                                   const std::vector<int64_t>& items) const override;
  nlohmann::json describe() const override;
  /// As the CPU model's: the factors and the iteration count.
  bool can_checkpoint() const override { return true; }
  TrainingState training_state() const override;
  void resume(Matrix users, Matrix items, int iterations_done, TrainingState state) override;
  std::shared_ptr<backend::cuda::CudaResources> cuda() const override { return gpu_; }
  /// The options in use.
  const IalsOptions& options() const { return o_; }
  /// "resident" or "streaming" (how the interactions reached the GPU), "" before the first
  /// iteration.
  std::string data_mode() const;

 private:
  void create_state(int64_t n_users, int64_t n_items);
  void refresh() const;  // downloads the factors when the GPU copy changed

  IalsOptions o_;
  std::string device_name_;
  std::shared_ptr<backend::cuda::CudaResources> gpu_;
  std::unique_ptr<backend::cuda::IalsCudaSolver> state_;
  mutable Matrix users_, items_;  // host copies
  mutable bool stale_ = false;    // the GPU factors changed since the host copies were made
  std::vector<float> item_weights_;
  int iterations_done_ = 0;
};

}  // namespace recforge::models
