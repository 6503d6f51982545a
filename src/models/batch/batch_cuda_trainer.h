#pragma once
/// @file batch_cuda_trainer.h
/// BPR, sampled softmax and CCL training on a CUDA GPU behind a CUDA-free interface: the same losses,
/// samplers and optimisers as models/batch/batch_cpu.h. Samples are drawn on the GPU (cuRAND,
/// Philox, from the seed, the epoch and the step); BPR runs one fused kernel per batch step
/// (sample, score, gradient and optimiser update of the three rows); softmax runs the gather,
/// three cuBLAS GEMMs, the row softmax and the sparse optimiser update per batch; CCL the same
/// with its own row kernel, and with user-side aggregation three more GEMMs around the history
/// map. No host round trip per batch (aggregation reads one number per step, the batch's history
/// entries): an epoch's loss is summed on the GPU and read once at its end. A build without
/// CUDA links stand-ins (no_cuda.cpp) that refuse with a sentence saying how to rebuild.

#include <cstdint>
#include <memory>
#include <vector>

#include "models/batch/batch_math.h"
#include "models/batch/batch_cpu.h"
#include "core/npy.h"
#include "data/csr.h"

namespace recforge::backend::cuda {

class CudaResources;

/// One batch model's state on a GPU: both factor matrices (float32, n × params.dim()), their
/// optimiser state, the interactions and the sampler tables.
class BatchTrainerCuda {
 public:
  virtual ~BatchTrainerCuda() = default;
  /// Uploads both factor matrices (n_users × dim and n_items × dim; with aggregation the users'
  /// own rows) and zeroes the optimiser state (with aggregation the history map becomes the
  /// identity, as on the CPU).
  virtual void set_factors(const Matrix& users, const Matrix& items) = 0;
  /// Downloads both factor matrices.
  virtual void get_factors(Matrix& users, Matrix& items) = 0;
  /// Downloads the optimiser state and step count (for a checkpoint); with aggregation also the
  /// history map and its moments.
  virtual cpu::OptimizerState optimizer_state() = 0;
  /// Uploads an optimiser state that optimizer_state() gave, after set_factors (which zeroes
  /// it): resuming a checkpoint. Empty arrays leave the state zero.
  virtual void set_optimizer_state(const cpu::OptimizerState& state) = 0;
  /// One epoch (1-based): nnz positives in batches of params.batch_size, as
  /// cpu::BatchTrainerCpu::epoch does. The first call uploads `user_items` (every stored entry is
  /// a positive) and the sampler's alias table; later calls reuse them, so the matrix must not
  /// change between calls.
  virtual cpu::EpochStats epoch(const data::Csr& user_items, const cpu::ItemSampler& sampler,
                                int epoch, uint64_t seed) = 0;
  /// What the last epoch left non-finite, checked on the GPU and read back with its loss:
  /// bit 0 the user factors, bit 1 the item factors (0 when all finite or before any epoch).
  /// The caller downloads the factors only when this is set, to name the side in its error.
  virtual int nonfinite() const = 0;
  /// CCL only: one optimiser step on the given samples, the code an epoch runs after it has
  /// drawn them, as cpu::BatchTrainerCpu::step: rows (batch_users[b], positives[b]) against the
  /// shared candidates (the negatives, after the positives when in_batch), at learning rate `lr`,
  /// the step count advanced by one. 1 to batch_size rows and exactly model.negatives negatives;
  /// with aggregation, after use_interactions() (the users' histories).
  /// Returns the batch's mean loss before the update. Tests call it with chosen samples to
  /// compare the devices step by step; with dropout the mask is drawn on the GPU (Philox from
  /// `seed`), so only a dropout-free step is the CPU's.
  virtual double step(const std::vector<data::index_t>& batch_users,
                      const std::vector<data::index_t>& positives,
                      const std::vector<data::index_t>& negatives, double lr, uint64_t seed) = 0;
  /// Uploads the interactions (every stored entry a positive) and the sampler's tables, as the
  /// first epoch does; a CCL step() with aggregation reads the users' histories from them.
  virtual void use_interactions(const data::Csr& user_items, const cpu::ItemSampler& sampler) = 0;
  /// CCL with history_weight > 0: the history map W (factors × factors, row-major; the
  /// identity after set_factors and before the first step), downloaded.
  virtual std::vector<float> history_map() = 0;
  /// CCL with dropout: the last step's masks, one row of dim values per batch row (0, or
  /// 1/(1 − p)), for tests that check a step against the same masks; empty without dropout or
  /// before the first step.
  virtual std::vector<float> dropout_mask() = 0;
};

/// Creates the GPU state of an n_users × n_items batch model. Throws recforge::Error when the
/// factors and optimiser state do not fit in GPU memory, and in a build without CUDA.
std::unique_ptr<BatchTrainerCuda> make_batch_trainer_cuda(std::shared_ptr<CudaResources> gpu, int64_t n_users,
                                         int64_t n_items, const BatchParams& params);

}  // namespace recforge::backend::cuda
