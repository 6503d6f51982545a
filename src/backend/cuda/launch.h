#pragma once
/// @file launch.h
/// Host-side declarations of the kernel launchers defined in *.cu files (CUDA builds only).
/// Every launcher enqueues on the given stream and checks the launch (RF_CHECK_LAUNCH); none
/// synchronises. Arguments are plain device pointers and sizes; factor matrices are passed as
/// `const void*` with their Storage type and a padded row length `kp` (a multiple of 32; the
/// padding columns hold zeros and stay zero through every solve).

#include <cuda_runtime.h>

#include <cstdint>

#include "models/batch/batch_math.h"
#include "models/ials/ials_cuda_solver.h"

namespace recforge::backend::cuda {

// ---- iALS ----------------------------------------------------------------------------------

/// Interactions a row solve may read are split into segments of at most this many, each one
/// thread block's work, so that a row with 100,000 interactions spreads over many blocks.
constexpr int kSegmentItems = 512;

/// One chunk of rows of one side (users or items) and its interactions.
struct RowsView {
  const int64_t* indptr = nullptr;   ///< absolute offsets of every row of the side (rows + 1)
  const int32_t* indices = nullptr;  ///< columns of interactions base, base + 1, ...
  const float* values = nullptr;     ///< confidences of the same interactions
  int64_t base = 0;                  ///< absolute offset of indices[0]
  int64_t row0 = 0;                  ///< first row of the chunk
  int64_t nrows = 0;                 ///< rows in the chunk
};

/// The chunk's segments: segment s (absolute index) covers interactions
/// [begin[s], min(begin[s] + kSegmentItems, indptr[row[s] + 1])) of row row[s].
struct Segments {
  const int32_t* row = nullptr;    ///< absolute row of each segment of the side
  const int64_t* begin = nullptr;  ///< absolute offset of each segment's first interaction
  const int64_t* ptr = nullptr;    ///< per row of the side (rows + 1): its first segment
  int64_t seg0 = 0;                ///< first segment of the chunk
  int64_t nseg = 0;                ///< segments in the chunk
};

/// Row-solve hyperparameters as the kernels see them.
struct SolveArgs {
  float alpha = 1;                    ///< observed weight = alpha × confidence
  double reg = 0, reg_exp = 1, reg_offset = 1;  ///< λ (n + ν)^e
  const float* row_scale = nullptr;   ///< per-row scale of the Gram term (absolute row), or null
};

/// CG workspace of a chunk, chunk-local rows of kp floats.
struct CgBuffers {
  float* x = nullptr;        ///< factors being solved (float32 copy, or the storage itself)
  float* r = nullptr;        ///< residuals
  float* p = nullptr;        ///< search directions
  float* ap = nullptr;       ///< G·x or G·p from cuBLAS, then A·p
  float* rs = nullptr;       ///< per row: r·r (0 once converged or empty)
  float* seg_obs = nullptr;  ///< per segment: its share of Σ c_i y_i (nseg × kp)
  int kp = 0;                ///< padded factor count
  int k = 0;                 ///< true factor count: the update touches columns below k only
};

/// Per segment: Σ_i c_i y_i with c_i = w_i (1 − y_i·x) (residual) or w_i (y_i·p) (step), w_i =
/// alpha × confidence, into seg_obs. Step mode skips rows whose rs is below 1e-20.
void launch_cg_observed(Storage st, bool residual, const RowsView& rows, const Segments& seg,
                        const void* y, const CgBuffers& b, float alpha, cudaStream_t stream);
/// Per row: residual mode sets r = p = b − A x (zero x, r, p and rs for rows without
/// interactions); step mode finishes A p = s·(G p) + λ p + Σ segments and takes one CG step.
void launch_cg_update(bool residual, const RowsView& rows, const Segments& seg, const CgBuffers& b,
                      const SolveArgs& args, cudaStream_t stream);
/// x32[e] = float(x[e]) for n elements.
void launch_load_rows(Storage st, const void* x, float* x32, int64_t n, cudaStream_t stream);
/// Checks n float32 values and writes them to storage (`write` false: check only, x32 is the
/// storage); sets *flag to 1 when one of them (after rounding to storage) is not finite.
void launch_store_rows(Storage st, const float* x32, void* x, int64_t n, bool write, int* flag,
                       cudaStream_t stream);
/// Exact solves of the chunk's rows, one block per row in `order` (chunk-local rows, longest
/// first): A = s·G + λI + Σ w y yᵀ, b = Σ w y, Cholesky, x written to storage `x` (absolute
/// rows). `slots` (nslots × k × k floats) holds the matrices when they do not fit in shared
/// memory (launch_cholesky_slot_floats tells). flags[1] is set when a row's matrix is not
/// positive definite, flags[0] when a solution is not finite.
void launch_cholesky(Storage st, const RowsView& rows, const int32_t* order, const void* y,
                     const float* g, int kp, int k, const SolveArgs& args, void* x, float* slots,
                     int nslots, int* flags, cudaStream_t stream);
/// Floats of global workspace one Cholesky block needs (0 when its matrix fits in shared memory).
int64_t cholesky_slot_floats(int k);
/// Writes rows × k float32 (compact) as rows × kp storage, zero padding.
void launch_pack(Storage st, const float* src, int64_t rows, int k, int kp, void* dst,
                 cudaStream_t stream);
/// Reads rows × kp storage into rows × k float32 (compact).
void launch_unpack(Storage st, const void* src, int64_t rows, int k, int kp, float* dst,
                   cudaStream_t stream);
/// dst = √w[r] · float(src[r]) row by row (w may be null: 1), rows × kp.
void launch_convert_scale(Storage st, const void* src, int64_t rows, int kp, const float* w,
                          float* dst, cudaStream_t stream);
/// Copies the lower triangle of the column-major kp × kp `g` onto its upper triangle.
void launch_symmetrize(float* g, int kp, cudaStream_t stream);
/// Per block b: partials[b] = Σ over the chunk's segments of alpha·w·(1 − x_u·y_i)².
void launch_loss_observed(Storage st, const RowsView& rows, const Segments& seg, const void* x,
                          const void* y, int kp, double alpha, double* partials, int blocks,
                          cudaStream_t stream);
/// partials[b] = Σ over rows of λ (n + ν)^e ‖x_r‖² (n from indptr).
void launch_loss_reg(Storage st, const void* x, const int64_t* indptr, int64_t rows, int kp,
                     double reg, double reg_exp, double reg_offset, double* partials, int blocks,
                     cudaStream_t stream);
/// partials[b] = Σ a[i] b[i] (double) over n elements.
void launch_dot(const float* a, const float* b, int64_t n, double* partials, int blocks,
                cudaStream_t stream);

// ---- CSR -----------------------------------------------------------------------------------

/// keys[e] = (column << 32) | row of every interaction of a CSR (the transpose's sort keys).
void launch_transpose_keys(const int64_t* indptr, int64_t rows, const int32_t* indices,
                           int64_t nnz, uint64_t* keys, cudaStream_t stream);
/// keys[e] = (row[e] << 32) | col[e].
void launch_coo_keys(const int32_t* row, const int32_t* col, int64_t nnz, uint64_t* keys,
                     cudaStream_t stream);
/// Temporary bytes of sort_pairs for nnz pairs.
size_t sort_pairs_temp_bytes(int64_t nnz, int end_bit);
/// Stable radix sort of (key, value) pairs on bits [0, end_bit) of the keys (CUB).
void sort_pairs(void* temp, size_t temp_bytes, const uint64_t* keys_in, uint64_t* keys_out,
                const float* values_in, float* values_out, int64_t nnz, int end_bit,
                cudaStream_t stream);
/// From keys sorted by (row << 32 | column): indptr (rows + 1 entries) and column indices.
void launch_csr_from_sorted_keys(const uint64_t* keys, int64_t nnz, int64_t rows, int64_t* indptr,
                                 int32_t* indices, cudaStream_t stream);

// ---- top-k ---------------------------------------------------------------------------------

/// Threads of a selection block and scores each one reads per step.
constexpr int kSelectThreads = 256;
constexpr int kSelectChunk = kSelectThreads * 4;

/// A batch of queries' running selection state: query q keeps up to k keys (score, item)
/// packed so that a smaller key ranks higher, their count, and a threshold key (only keys below
/// it can enter).
struct SelectState {
  uint64_t* kept = nullptr;       ///< batch × k keys
  int32_t* count = nullptr;       ///< batch
  uint64_t* threshold = nullptr;  ///< batch (all ones: none yet)
};

/// Masks (optional): query q of the batch masks row mask_rows[q0 + q] (or q0 + q) of the CSR.
struct MaskView {
  const int64_t* indptr = nullptr;  ///< null: no mask
  const int32_t* indices = nullptr;
  const int32_t* rows = nullptr;    ///< per query (global index), or null for the identity
};

/// Shared memory bytes of the selection kernel for k and an item tile of `tile` items.
size_t select_smem_bytes(int k, int tile);
/// Merges the tile of scores (nq × w, row stride ld, items t0 .. t0 + w) into the batch's state.
void launch_topk_select(const float* scores, int64_t ld, int64_t nq, int64_t q0, int64_t t0,
                        int w, int tile, int k, const SelectState& state, const MaskView& mask,
                        cudaStream_t stream);
/// Sorts each query's kept keys and writes k items and scores per query (padding -1 / -inf)
/// to items/scores rows q0 ...
void launch_topk_finalize(const SelectState& state, int64_t nq, int k, int32_t* items,
                          float* scores, cudaStream_t stream);

// ---- metrics -------------------------------------------------------------------------------

/// Most cutoffs the GPU metrics handle in one pass.
constexpr int kMaxCutoffs = 32;

/// Per query q: values[q * (1 + 5 nk) + ...] = (evaluated?, then recall, precision, ndcg, map,
/// hit for each cutoff in `ks_sorted` order); first_rank[item] = min rank over evaluated queries.
void launch_metrics_users(const int32_t* lists, int64_t nq, int k, const int64_t* truth_indptr,
                          const int32_t* truth_indices, const int32_t* truth_rows, int nk,
                          const int* ks_sorted, int max_k, int32_t* first_rank, double* values,
                          cudaStream_t stream);
/// partials[c * blocks + b] = Σ over queries q of block b's share of values[q * ncols + c].
void launch_column_sums(const double* values, int64_t n, int ncols, double* partials, int blocks,
                        cudaStream_t stream);
/// partials[c * blocks + b] = number of items of block b's share with first_rank < ks[c].
void launch_coverage(const int32_t* first_rank, int64_t n_items, int nk, const int* ks,
                     long long* partials, int blocks, cudaStream_t stream);
/// Fills n ints with v.
void launch_fill(int32_t* p, int64_t n, int32_t v, cudaStream_t stream);

// ---- BPR, sampled softmax and CCL (models/batch/bpr.cu, models/batch/softmax.cu) ------------------------

/// A batch model's factors on the device: compact row-major float32 rows of `dim` columns
/// (64-bit row offsets), with their optimiser state (same shape; null when the optimiser keeps
/// none: m for SGD and Adagrad, v for SGD). With item_bias the last column is the bias: users
/// hold 1 there, and no kernel writes it.
struct BatchFactorsView {
  float* users = nullptr;
  float* items = nullptr;
  float* user_m = nullptr;
  float* user_v = nullptr;
  float* item_m = nullptr;
  float* item_v = nullptr;
  int64_t n_users = 0;
  int64_t n_items = 0;
  int dim = 0;             ///< stored columns (factors + item bias)
  bool item_bias = false;  ///< the last column is the item bias
};

/// The positives and the negative sampler on the device.
struct BatchDataView {
  const int64_t* indptr = nullptr;   ///< user × item CSR offsets (n_users + 1)
  const int32_t* indices = nullptr;  ///< items of every interaction, sorted within rows
  const int32_t* row_of = nullptr;   ///< user of every interaction
  int64_t nnz = 0;                   ///< interactions (> 0)
  const float* accept = nullptr;     ///< alias table: keep column j with probability accept[j]
  const int32_t* alias = nullptr;    ///< alias table: the item drawn otherwise (null: uniform)
  int64_t n_items = 0;
};

/// Random numbers of one epoch: Philox seeded with `seed`; sample s of step `step` uses
/// subsequence step × stride + s (so every sample of an epoch has its own stream).
struct PhiloxPlan {
  uint64_t seed = 0;
  uint64_t step = 0;
  uint64_t stride = 0;
};

/// row_of[e] = r for every interaction e of row r (a warp per row).
void launch_row_of(const int64_t* indptr, int64_t rows, int32_t* row_of, cudaStream_t stream);

/// One BPR step of `samples` positives, each with `negatives` triples (u, i, j) applied one after
/// the other by one warp (lanes over columns); warps run Hogwild on shared item rows. A negative
/// is redrawn when it is the positive or (reject_seen) in the user's row, up to 16 draws, else
/// the triple is skipped. Adds the step's summed −log σ(x_ui − x_uj) (no L2) to sums[0] and its
/// number of triples to sums[1].
void launch_bpr_step(const BatchFactorsView& f, const BatchDataView& d, const PhiloxPlan& rng,
                     int64_t samples, int negatives, int hard_negatives, bool reject_seen,
                     float regularization, const OptimizerStep& step, double* sums,
                     cudaStream_t stream);

/// Sets *flag to 1 when one of the n floats of x is NaN or infinite (never clears it).
void launch_count_nonfinite(const float* x, int64_t n, int* flag, cudaStream_t stream);

/// Softmax step, sampling: for k < batch + negatives (subsequence rng.step × rng.stride + k),
/// k < batch draws an interaction (users[k], candidates[k]) uniformly; k ≥ batch draws a negative
/// candidates[k] from the sampler. log_expected (null: no logq) receives log E_c of every
/// candidate, E_c = batch · pos_rate[c] + negatives · neg_prob[c] (pos_rate null: no in-batch
/// term); 0 where E_c is 0.
void launch_softmax_sample(const BatchDataView& d, const PhiloxPlan& rng, int64_t batch,
                           int negatives, const float* pos_rate, const float* neg_prob,
                           int32_t* users, int32_t* candidates, float* log_expected,
                           cudaStream_t stream);
/// dst row r = src row ids[r] (n rows of dim floats).
void launch_gather_rows(const float* src, int dim, const int32_t* ids, int64_t n, float* dst,
                        cudaStream_t stream);
/// In place on the row-major batch × cands score matrix s (already u·v / temperature): row b's
/// logits s − log_expected (when not null), columns masked (not own column b, and: c < batch
/// when !in_batch, or candidates[c] == candidates[b]); adds Σ_b −log softmax(row b)[b] to
/// *loss_sum and leaves G = (softmax − onehot(b)) / batch, 0 at masked columns.
void launch_softmax_rows(float* s, int64_t batch, int64_t cands, const int32_t* candidates,
                         const float* log_expected, bool in_batch, double* loss_sum,
                         cudaStream_t stream);
/// CCL on the row-major batch × cands cosine matrix s (u·v of unit rows), in place: row b's
/// negatives are the candidates other than positives[b]; adds Σ_b (1 − ub_b·vp_b) + weight ·
/// mean over b's negatives of max(0, s − margin) to *loss_sum and leaves G = d mean-loss / d s
/// (weight / (negatives · batch) where s > margin, else 0). ub, vp: the rows' user and positive
/// vectors (batch × dim).
void launch_ccl_rows(float* s, int64_t batch, int64_t cands, const int32_t* candidates,
                     const int32_t* positives, const float* ub, const float* vp, int dim,
                     float margin, float weight, double* loss_sum, cudaStream_t stream);
/// CCL's positive terms (g = d mean-loss / d cos⁺ = −1 / batch): du += g·vp, dvp = g·ub
/// (batch × dim each); with dropout, `mask` (else null) then multiplies du (the gradient of the
/// unmasked vectors).
void launch_ccl_positive_grads(const float* ub, const float* vp, const float* mask, int64_t batch,
                               int dim, float g, float* du, float* dvp, cudaStream_t stream);
/// CCL's dropout on the user vectors `ub` (batch × dim): mask = 0 with probability p, else
/// 1/(1 − p), drawn from Philox (a stream of its own under rng's seed and step); ub *= mask.
void launch_ccl_dropout(const PhiloxPlan& rng, int64_t batch, int dim, double p, float* mask,
                        float* ub, cudaStream_t stream);
/// CCL's user-side aggregation (models/batch/ccl_history.cu), on a batch of `batch` rows whose
/// users are `users`, with the interactions' CSR (indptr, indices). History sizes: off[b] = the
/// history entries of rows before b, off[batch] their total (one block; off has batch + 1
/// values).
void launch_ccl_history_sizes(const int64_t* indptr, const int32_t* users, int64_t batch,
                              int64_t* off, cudaStream_t stream);
/// hm row b (batch × dim) = the mean of the item rows of users[b]'s history, 0 when empty.
void launch_ccl_history_means(const float* items, int dim, const int64_t* indptr,
                              const int32_t* indices, const int32_t* users, int64_t batch,
                              float* hm, cudaStream_t stream);
/// z (batch × dim, holding h·W·m) += (1 − h)·ub (the users' own rows); then ub = z / ‖z‖ and
/// znorm[b] = ‖z_b‖.
void launch_ccl_aggregate(float* z, float* ub, float* znorm, int64_t batch, int dim, float h,
                          cudaStream_t stream);
/// Back through the normalisation: z becomes dz = (du − (du·u') u') / ‖z‖ and du the own rows'
/// gradient (1 − h)·dz.
void launch_ccl_aggregate_backprop(float* du, float* z, const float* znorm, int64_t batch,
                                   int dim, float h, cudaStream_t stream);
/// Row b's history entries in off[b] .. off[b + 1] of ids (the history items) and pos (all
/// first_pos + b: row b of the gradient rows that follow the candidates' and the positives'); gm
/// row b (batch × dim) is divided by the history size n_b.
void launch_ccl_history_entries(const int64_t* indptr, const int32_t* indices,
                                const int32_t* users, int64_t batch, const int64_t* off,
                                int32_t first_pos, float* gm, int dim, int32_t* ids, int32_t* pos,
                                cudaStream_t stream);
/// Temporary bytes of sort_row_ids for n ids.
size_t sort_row_ids_temp_bytes(int64_t n, int end_bit);
/// Sorts (row id, position) pairs by row id on bits [0, end_bit) (CUB radix sort; stable).
void sort_row_ids(void* temp, size_t temp_bytes, const int32_t* ids_in, int32_t* ids_out,
                  const int32_t* pos_in, int32_t* pos_out, int64_t n, int end_bit,
                  cudaStream_t stream);
/// positions[k] = k for n values.
void launch_iota(int32_t* p, int64_t n, cudaStream_t stream);
/// Sparse optimiser update of the unique rows among n sorted (row id, position) pairs: a warp
/// per run of equal ids sums the gradient rows grad[position] (row-major, dim columns), adds
/// regularization × w once, and applies the optimiser to row id of w (state m, v may be null).
/// Columns ≥ update_cols are left alone (the users' bias column). With sphere > 0 the first
/// `sphere` columns stay a unit vector (cosine scores: projected step, then rescaled).
void launch_apply_rows(float* w, float* m, float* v, int dim, int update_cols,
                       const int32_t* sorted_ids, const int32_t* sorted_pos, int64_t n,
                       const float* grad, float regularization, int sphere,
                       const OptimizerStep& step, cudaStream_t stream);

}  // namespace recforge::backend::cuda
