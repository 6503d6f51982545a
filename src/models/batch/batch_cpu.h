#pragma once
/// @file batch_cpu.h
/// BPR and sampled-softmax training on the CPU (the math is in models/batch/batch_math.h).
///
/// BPR (Rendle et al. 2009): a sample is a training interaction (u, i) drawn uniformly and a
/// negative item j drawn from the negative distribution; its loss is −log σ(x_ui − x_uj) with
/// x_ui = u·i, plus λ/2 (‖u‖² + ‖i‖² + ‖j‖²). A batch of `batch_size` samples is one optimiser
/// step; threads take whole batches and update the shared factors without locks (Hogwild,
/// Recht et al. 2011), so results with more than one thread vary slightly between runs.
///
/// Dynamic negative sampling (Zhang et al. 2013, `hard_negatives` > 1): each negative is the
/// highest-scored of that many draws under the current factors.
///
/// Sampled softmax: a batch is `batch_size` training interactions (u_b, i_b) drawn uniformly.
/// Its candidates are the batch's positives (when in_batch) and `negatives` items drawn from the
/// negative distribution, shared by the batch. Row b's logits are s_bc = u_b·v_c / temperature
/// − log E_c (logq: E_c is the expected number of times item c is among the candidates); the
/// loss is the mean over rows of −log softmax(s_b)[i_b], plus λ/2 of the touched rows' squared
/// norms. Candidates equal to the row's own positive other than its own column ("accidental
/// hits") are left out of that row. Scores and gradients are three GEMMs per batch.
///
/// Cosine contrastive loss (SimpleX, Mao et al. 2021; `model.type: ccl`): every user and item
/// row is kept at unit norm, so a score is a cosine. A batch is `batch_size` training
/// interactions (u_b, i_b) and `negatives` items shared by the batch (plus, with in_batch, the
/// batch's positives); row b's loss is (1 − cos(u_b, i_b)) + w · mean over its negatives c of
/// max(0, cos(u_b, c) − margin), w the negative weight, candidates equal to the row's positive
/// left out. The step follows the gradient of the batch's mean loss projected onto the sphere,
/// then rescales the rows (as the normalised softmax); scores and gradients are three GEMMs.
///
/// User-side aggregation (SimpleX; ccl with history_weight h > 0): the user vector a row scores
/// with is u' = z / ‖z‖, z = (1 − h)·e_u + h·W·m_u, where e_u is the user's own unit row, m_u the
/// mean of the item rows of the user's training history (the matrix the trainer was built for)
/// and W a learned factors × factors matrix (the "history map", the identity at the start). The
/// step back-propagates through the normalisation into e_u (on the sphere), W (a free matrix)
/// and every history item's row. aggregate_users() gives the u' of every user, the factors a
/// model exports.
///
/// Dropout (ccl with dropout p > 0, SimpleX's): the user vector a batch row scores with (u_b, or
/// u' with aggregation) is multiplied coordinate-wise by a mask of 0 (probability p) and
/// 1/(1 − p) (dropout_mask(), a new mask per row and step); the gradient flows through the mask.
/// Evaluation and export use the whole vector.
///
/// Negatives: item j is drawn with probability ∝ (n_j + 1)^negative_exp, n_j its training
/// interactions (0: uniform), through Walker's alias table.

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "models/batch/batch_math.h"
#include "core/npy.h"
#include "core/rng.h"
#include "data/csr.h"

namespace recforge {
class Progress;
}  // namespace recforge

namespace recforge::backend::cpu {

/// Draws items with probability ∝ (count + 1)^exponent in O(1) per draw (Walker's alias
/// method); exponent 0 draws uniformly.
class ItemSampler {
 public:
  /// A sampler over counts.size() items.
  ItemSampler(const std::vector<int64_t>& counts, double exponent);
  /// One draw.
  data::index_t draw(Rng& rng) const { return resolve(column(rng)); }
  /// The same draw in two halves, so that a caller can prefetch the table entry in between:
  /// `column` takes the random numbers, `resolve` reads the table.
  struct Column {
    uint64_t j;
    double coin;
  };
  Column column(Rng& rng) const {
    const uint64_t j = rng.below(n_);
    return {j, uniform_ ? 0.0 : rng.uniform()};
  }
  void prefetch(const Column& c) const {
    if (uniform_) return;
    __builtin_prefetch(accept_.data() + c.j);
    __builtin_prefetch(alias_.data() + c.j);
  }
  data::index_t resolve(const Column& c) const {
    if (uniform_) return static_cast<data::index_t>(c.j);
    return c.coin < accept_[c.j] ? static_cast<data::index_t>(c.j) : alias_[c.j];
  }
  /// Probability of drawing item j.
  double probability(data::index_t j) const { return uniform_ ? 1.0 / n_ : prob_[j]; }
  /// Number of items.
  int64_t size() const { return static_cast<int64_t>(n_); }
  /// Whether every item is equally likely.
  bool uniform() const { return uniform_; }
  /// Alias table: column j is kept with probability accept()[j], else alias()[j] is drawn.
  const std::vector<float>& accept() const { return accept_; }
  /// Alias table: the item drawn when column j is not kept.
  const std::vector<data::index_t>& alias() const { return alias_; }

 private:
  uint64_t n_ = 0;
  bool uniform_ = true;
  std::vector<double> prob_;
  std::vector<float> accept_;
  std::vector<data::index_t> alias_;
};

/// Scales row[0..d) to unit Euclidean norm (a zero row stays zero).
inline void normalize_row(float* row, int d) {
  double norm = 0;
#pragma omp simd reduction(+ : norm)
  for (int c = 0; c < d; ++c) norm += static_cast<double>(row[c]) * row[c];
  const float inv = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.f;
#pragma omp simd
  for (int c = 0; c < d; ++c) row[c] *= inv;
}

/// Items' training interaction counts (column counts of a user×item CSR).
std::vector<int64_t> item_counts(const data::Csr& user_items);

/// A draw from `sampler` that is not `positive` and, with reject_seen, not in the sorted row
/// [row_begin, row_end) (the user's training items); -1 when `attempts` draws all failed (a
/// user who has seen nearly every item), and the sample is then skipped. A caller that already
/// made one draw of its own passes kNegativeAttempts − 1, so that every negative gets 16 draws.
constexpr int kNegativeAttempts = 16;
data::index_t draw_negative(const ItemSampler& sampler, Rng& rng, data::index_t positive,
                            bool reject_seen, const data::index_t* row_begin,
                            const data::index_t* row_end, int attempts = kNegativeAttempts);

/// What one epoch did.
struct EpochStats {
  double loss = 0;      ///< mean sample loss (BPR: per triple; softmax: per positive), no L2
  int64_t samples = 0;  ///< positives processed
  int64_t steps = 0;    ///< optimiser steps (batches)
};

/// An optimiser's state (for checkpoints): Adam's first (m) and second (v) moments or
/// Adagrad's sums (v) per factor matrix, row-major like the factors (empty when the optimiser
/// keeps none, SGD, or before the first step), and the steps taken (Adam's t).
struct OptimizerState {
  std::vector<float> user_m, user_v, item_m, item_v;
  int64_t steps = 0;
  /// CCL with history_weight > 0: the history map W (factors × factors, row-major) and its
  /// moments (empty otherwise, and before the first step).
  std::vector<float> map, map_m, map_v;
};

/// The dropout mask of batch row `row` under `seed` (BatchTrainerCpu::dropout_seed() of the
/// step): d values, each 0 with probability p, else 1/(1 − p).
void dropout_mask(uint64_t seed, int64_t row, int d, double p, float* mask);

/// The aggregated user vectors u' (see the file comment) of every row of `user_items`, given the
/// users' own rows, the history map W (factors × factors) and the item rows.
Matrix aggregate_users(const BatchParams& params, const Matrix& users, const std::vector<float>& map,
                       const Matrix& items, const data::Csr& user_items, int threads);

/// Trains BPR or sampled softmax on the CPU. Holds what every epoch reuses: the row of each
/// interaction, the negative sampler, the optimiser state.
class BatchTrainerCpu {
 public:
  /// A trainer for `user_items` (positives: every stored entry) with `threads` threads. The
  /// matrix must outlive the trainer.
  BatchTrainerCpu(const BatchParams& params, const data::Csr& user_items, int threads);
  ~BatchTrainerCpu();
  /// One epoch (1-based `epoch`): nnz positives in batches, updating both factor matrices
  /// (n_users × dim and n_items × dim). `seed` and `epoch` fix the samples. Progress (samples)
  /// is shown as for other long stages, and epochs over a second log their rate.
  EpochStats epoch(Matrix& users, Matrix& items, int epoch, uint64_t seed);
  /// One optimiser step on the given samples, the same code the epochs run (tests call it with
  /// chosen samples). BPR: triples (batch_users[s], positives[s], negatives[s]), applied one
  /// after the other, each with the gradient of its own loss; softmax and CCL: rows
  /// (batch_users[b], positives[b]) against the shared candidates (softmax: positives ++
  /// negatives; CCL: the negatives, after the positives when in_batch), the gradient of the
  /// batch's mean loss. Returns the summed (BPR) or mean (softmax, CCL) loss before the update.
  double step(Matrix& users, Matrix& items, const std::vector<data::index_t>& batch_users,
              const std::vector<data::index_t>& positives,
              const std::vector<data::index_t>& negatives, double lr);
  /// Drops the optimiser state (new factors, e.g. after set_factors).
  void reset_state();
  /// The optimiser state, for a checkpoint.
  OptimizerState optimizer_state() const { return {um_, uv_, im_, iv_, step_, map_, mm_, mv_}; }
  /// CCL with history_weight > 0: the history map W (factors × factors; the identity before the
  /// first step).
  const std::vector<float>& history_map();
  /// Replaces the optimiser state with one optimizer_state() gave (resuming a checkpoint); the
  /// arrays must be empty or match factors of `n_users` and `n_items` rows for this optimiser.
  void set_optimizer_state(OptimizerState s, int64_t n_users, int64_t n_items);
  /// Optimiser steps taken so far.
  int64_t steps() const { return step_; }
  /// The seed of the last step's dropout masks (dropout_mask()).
  uint64_t dropout_seed() const { return mask_seed_; }
  /// The negative sampler.
  const ItemSampler& sampler() const { return sampler_; }
  /// CCL: the share of nonzero entries of a step's gradient matrix G (row–candidate pairs above
  /// the margin) up to which its two products are computed pair by pair rather than as dense
  /// GEMMs (default 0.05; 0 keeps them dense unless G is all zero, 1 always pair by pair). The same
  /// sums, in another order; tests and benchmarks set it to compare the two.
  void set_sparse_share(double share) { sparse_share_ = share; }
  /// CCL: the nonzero entries of G and all its entries (B × candidates), summed over the steps
  /// taken so far, and the steps that took the pair-by-pair products.
  struct HingeCounts {
    int64_t active = 0, pairs = 0, sparse_steps = 0;
  };
  const HingeCounts& hinge_counts() const { return hinge_; }

 private:
  EpochStats bpr_epoch(Matrix& users, Matrix& items, double lr, uint64_t seed, Progress& progress);
  // Softmax and CCL: batches of positives with negatives shared by the batch.
  EpochStats shared_epoch(Matrix& users, Matrix& items, double lr, uint64_t seed,
                          Progress& progress);
  double softmax_step(Matrix& users, Matrix& items, const std::vector<data::index_t>& batch_users,
                      const std::vector<data::index_t>& positives,
                      const std::vector<data::index_t>& negatives, const OptimizerStep& s);
  double ccl_step(Matrix& users, Matrix& items, const std::vector<data::index_t>& batch_users,
                  const std::vector<data::index_t>& positives,
                  const std::vector<data::index_t>& negatives, const OptimizerStep& s);
  void ensure_state(const Matrix& users, const Matrix& items);
  // The parts softmax_step and ccl_step share: the threads of a step of `multiply_adds` per
  // GEMM; the gradient rows du (over batch_users) and dv (over item_ids) summed per unique row
  // (keep_item_slots: see unique_sum); those sums applied, the users' first user_cols columns
  // and every item column, the first `sphere` columns on the unit sphere.
  int step_threads(int64_t multiply_adds) const;
  void sum_grads(const std::vector<data::index_t>& batch_users,
                 const std::vector<data::index_t>& item_ids, bool keep_item_slots,
                 int64_t users_rows, int64_t items_rows);
  void apply_grads(Matrix& users, Matrix& items, int user_cols, int sphere,
                   const OptimizerStep& s, int threads);

  BatchParams p_;
  const data::Csr& x_;
  int threads_;
  std::vector<data::index_t> row_of_;  // user of each interaction
  std::vector<int64_t> counts_;        // item interaction counts
  ItemSampler sampler_;
  std::vector<float> um_, uv_, im_, iv_;  // optimiser state (empty for SGD)
  int64_t step_ = 0;
  std::vector<float> map_, mm_, mv_;      // history map W and its moments (aggregation only)
  uint64_t mask_seed_ = 0;                // seed of the current step's dropout masks
  double sparse_share_ = 0.05;            // see set_sparse_share()
  HingeCounts hinge_;
  struct Scratch;                    // softmax batch buffers
  std::unique_ptr<Scratch> scratch_;
};

/// Factors of new rows (positives: every stored entry of each row), the item factors fixed:
/// `fold_in_steps` Adam steps (learning rate 0.01) from zero on the row's loss against all its positives and
/// `max(negatives, 64)` negatives per step (BPR: every positive against every negative; softmax:
/// each positive against the row's positives and the negatives, logq corrected). CCL starts
/// from the normalised sum of the row's items and takes projected steps on the unit sphere on
/// its loss (negatives that are among the row's items left out). The bias column of the result
/// holds 1. Rows with no entries come out 0 (and 1 in the bias column).
Matrix fold_in(const BatchParams& params, const data::Csr& rows, const Matrix& items,
               const ItemSampler& sampler, uint64_t seed, int threads);

}  // namespace recforge::backend::cpu
