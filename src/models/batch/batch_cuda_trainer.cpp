// BPR, sampled softmax and CCL on the GPU: the host side. Both factor matrices (compact row-major
// float32, dim columns) and their optimiser state live on the device for the model's lifetime;
// the interactions (offsets, items, the user of every interaction) and the sampler tables are
// uploaded by the first epoch. An epoch enqueues all of its steps on the compute stream without
// waiting: BPR one fused kernel per step (models/batch/bpr.cu); softmax per step the sampling and
// gathers, three cuBLAS GEMMs, the row softmax and two sparse optimiser updates
// (models/batch/softmax.cu); CCL as the softmax, and with user-side aggregation also the history
// means, three more GEMMs and the history map's step (models/batch/ccl_history.cu). The loss is
// summed on the GPU and read, with the non-finite flags, once at the end of the epoch; only
// aggregation reads one number per step (the batch's history entries, which size the sort).
#include "models/batch/batch_cuda_trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cuda/cuda_resources.h"
#include "backend/cuda/launch.h"
#include "core/error.h"
#include "core/rng.h"

namespace recforge::backend::cuda {
namespace {

constexpr double kGiB = 1073741824.0;

static_assert(std::is_same_v<data::index_t, int32_t>, "device code reads int32 item ids");
static_assert(std::is_same_v<data::offset_t, int64_t>, "device code reads int64 offsets");

// Bits of the row ids below n (at least 1), the radix sort's end bit.
int id_bits(int64_t n) {
  int b = 1;
  while (b < 31 && (int64_t{1} << b) < n) ++b;
  return b;
}

const char* optimizer_name(Optimizer o) {
  switch (o) {
    case Optimizer::kSgd: return "sgd";
    case Optimizer::kAdagrad: return "adagrad";
    case Optimizer::kAdam: return "adam";
  }
  return "?";
}

// Optimiser state arrays per factor matrix: Adam m and v, Adagrad v, SGD none.
int state_arrays(Optimizer o) {
  return o == Optimizer::kAdam ? 2 : o == Optimizer::kAdagrad ? 1 : 0;
}

// Identifies the host matrix and sampler an epoch uploaded.
struct DataKey {
  const void* indptr = nullptr;
  const void* indices = nullptr;
  const void* sampler = nullptr;
  int64_t nnz = -1;
  uint64_t sample = 0;
  bool operator==(const DataKey& o) const {
    return indptr == o.indptr && indices == o.indices && sampler == o.sampler && nnz == o.nnz &&
           sample == o.sample;
  }
};

DataKey key_of(const data::Csr& ui, const cpu::ItemSampler& sampler) {
  DataKey k{ui.indptr.data(), ui.indices.data(), &sampler, ui.nnz(), 0};
  const int64_t n = ui.nnz();
  for (int s = 0; s < 64 && n > 0; ++s) {  // a cheap sample of the contents
    const int64_t e = n * s / 64;
    k.sample = k.sample * 1000003u + static_cast<uint64_t>(ui.indices[static_cast<size_t>(e)]);
  }
  return k;
}

class BatchTrainerCudaImpl final : public BatchTrainerCuda {
 public:
  BatchTrainerCudaImpl(std::shared_ptr<CudaResources> gpu, int64_t n_users, int64_t n_items,
               const BatchParams& params)
      : gpu_(std::move(gpu)), nu_(n_users), ni_(n_items), p_(params), dim_(params.dim()),
        softmax_(params.loss != BatchLoss::kBpr),
        ccl_(params.loss == BatchLoss::kCcl),
        agg_(ccl_ && params.history_weight > 0),
        cands_(params.batch_size + (softmax_ ? params.negatives : 0)),
        ids_(cands_ + (ccl_ ? params.batch_size : 0)) {
    DeviceScope scope(g().device());
    const int states = state_arrays(p_.optimizer);
    const int64_t factors = (nu_ + ni_) * dim_ * 4 * (1 + states) +
                            (agg_ ? int64_t{dim_} * dim_ * 4 * (2 + states) : 0);  // W, dW
    const int64_t scratch = softmax_ ? softmax_bytes() : 0;
    const int64_t free = g().free_bytes();
    if (factors + scratch > free * 9 / 10)
      fail("the {} model needs {:.2f} GiB of GPU memory ({} users + {} items × {} columns of "
           "float32 with {} {} state array(s){}) and {} has {:.2f} GiB free; lower model.factors{}",
           loss_label(), (factors + scratch) / kGiB, nu_, ni_, dim_, states,
           optimizer_name(p_.optimizer),
           softmax_ ? fmt::format(", plus {:.2f} GiB of batch buffers", scratch / kGiB) : "",
           g().description(), free / kGiB,
           softmax_ ? ", model.batch_size or model.negatives" : " or use model.optimizer: sgd");
    const cudaStream_t s = g().stream();
    users_.reset(nu_ * dim_);
    items_.reset(ni_ * dim_);
    if (p_.optimizer == Optimizer::kAdam) {
      user_m_.reset(nu_ * dim_);
      item_m_.reset(ni_ * dim_);
    }
    if (p_.optimizer != Optimizer::kSgd) {
      user_v_.reset(nu_ * dim_);
      item_v_.reset(ni_ * dim_);
    }
    if (agg_) {  // the history map (zero_state() sets it to the identity) and its update's rows
      map_.reset(int64_t{dim_} * dim_);
      if (p_.optimizer == Optimizer::kAdam) map_m_.reset(int64_t{dim_} * dim_);
      if (p_.optimizer != Optimizer::kSgd) map_v_.reset(int64_t{dim_} * dim_);
      gmap_.reset(int64_t{dim_} * dim_);
      map_ids_.reset(dim_);
      launch_iota(map_ids_.data(), dim_, s);
    }
    zero(users_);
    zero(items_);
    zero_state();
    loss_.reset(2);
    flags_.reset(2);
    if (softmax_) {
      // CCL: ids_ = C + B ids (the positives once more after the candidates, for their own
      // gradient rows) and the positives' rows vp.
      const int64_t b = p_.batch_size, c = cands_, n = ids_;
      batch_users_.reset(b);
      cand_.reset(n);
      if (!ccl_) log_expected_.reset(c);  // logq: the softmax only
      ub_.reset(b * dim_);
      if (ccl_) vp_.reset(b * dim_);
      if (ccl_ && p_.dropout > 0) mask_.reset(b * dim_);
      cm_.reset(c * dim_);
      scores_.reset(b * c);
      du_.reset(b * dim_);
      dv_.reset((n + (agg_ ? b : 0)) * dim_);  // aggregation: the history means' rows after
      if (agg_) {
        hm_.reset(b * dim_);
        z_.reset(b * dim_);
        znorm_.reset(b);
        hist_off_.reset(b + 1);
      }
      ids_out_.reset(n);
      positions_.reset(n);
      pos_out_.reset(n);
      sort_bits_ = id_bits(std::max(nu_, ni_));
      sort_temp_bytes_ = sort_row_ids_temp_bytes(n, sort_bits_);
      sort_temp_.reset(static_cast<int64_t>(sort_temp_bytes_) + 1);
      launch_iota(positions_.data(), n, s);
    }
    g().synchronize();
  }

  ~BatchTrainerCudaImpl() override {
    // Wait for work that still reads the buffers (destructors never throw).
    int previous = 0;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != g().device())
      cudaSetDevice(g().device());
    cudaStreamSynchronize(g().stream());
    if (previous != g().device()) cudaSetDevice(previous);
  }

  void set_factors(const Matrix& users, const Matrix& items) override {
    RF_ASSERT(users.rows == nu_ && items.rows == ni_ && users.cols == dim_ && items.cols == dim_,
              "BatchTrainerCuda::set_factors: shapes differ from the model's");
    DeviceScope scope(g().device());
    copy_to_device(users_.data(), users.data.data(), nu_ * dim_, g().stream());
    copy_to_device(items_.data(), items.data.data(), ni_ * dim_, g().stream());
    zero_state();
    step_ = 0;  // Adam's bias corrections restart with the zeroed moments
    nonfinite_ = 0;
    g().synchronize();
  }

  void get_factors(Matrix& users, Matrix& items) override {
    DeviceScope scope(g().device());
    users.rows = nu_;
    users.cols = dim_;
    users.data.resize(static_cast<size_t>(nu_ * dim_));
    items.rows = ni_;
    items.cols = dim_;
    items.data.resize(static_cast<size_t>(ni_ * dim_));
    copy_to_host(users.data.data(), users_.data(), nu_ * dim_, g().stream());
    copy_to_host(items.data.data(), items_.data(), ni_ * dim_, g().stream());
    g().synchronize();
  }

  cpu::OptimizerState optimizer_state() override {
    DeviceScope scope(g().device());
    cpu::OptimizerState s;
    s.steps = step_;
    const auto get = [&](std::vector<float>& dst, DeviceBuffer<float>& src) {
      dst.resize(static_cast<size_t>(src.size()));
      if (src.size() > 0) copy_to_host(dst.data(), src.data(), src.size(), g().stream());
    };
    get(s.user_m, user_m_);
    get(s.user_v, user_v_);
    get(s.item_m, item_m_);
    get(s.item_v, item_v_);
    if (agg_) {
      get(s.map, map_);
      get(s.map_m, map_m_);
      get(s.map_v, map_v_);
    }
    g().synchronize();
    return s;
  }

  void set_optimizer_state(const cpu::OptimizerState& state) override {
    const auto fits = [](const std::vector<float>& a, const DeviceBuffer<float>& b) {
      return a.empty() || static_cast<int64_t>(a.size()) == b.size();
    };
    RF_ASSERT(fits(state.user_m, user_m_) && fits(state.user_v, user_v_) &&
                  fits(state.item_m, item_m_) && fits(state.item_v, item_v_) && state.steps >= 0,
              "BatchTrainerCuda::set_optimizer_state: shapes differ from the model's");
    RF_ASSERT((state.map.empty() && state.map_m.empty() && state.map_v.empty()) ||
                  (agg_ && static_cast<int64_t>(state.map.size()) == map_.size() &&
                   fits(state.map_m, map_m_) && fits(state.map_v, map_v_)),
              "BatchTrainerCuda::set_optimizer_state: the history map does not match the model");
    DeviceScope scope(g().device());
    const auto put = [&](DeviceBuffer<float>& dst, const std::vector<float>& src) {
      if (!src.empty()) copy_to_device(dst.data(), src.data(), dst.size(), g().stream());
    };
    put(user_m_, state.user_m);
    put(user_v_, state.user_v);
    put(item_m_, state.item_m);
    put(item_v_, state.item_v);
    if (agg_ && state.map.empty()) {  // a fresh map, as the CPU's (the identity, no moments)
      zero(map_m_);
      zero(map_v_);
      copy_to_device(map_.data(), identity_.data(), map_.size(), g().stream());
    } else {
      put(map_, state.map);
      put(map_m_, state.map_m);
      put(map_v_, state.map_v);
    }
    step_ = state.steps;
    g().synchronize();
  }

  cpu::EpochStats epoch(const data::Csr& ui, const cpu::ItemSampler& sampler, int epoch,
                        uint64_t seed) override {
    RF_ASSERT(epoch >= 1, "BatchTrainerCuda::epoch: epochs are 1-based");
    DeviceScope scope(g().device());
    ensure_data(ui, sampler);
    cpu::EpochStats stats;
    const int64_t nnz = ui.nnz();
    if (nnz == 0) return stats;
    const cudaStream_t s = g().stream();
    const double lr = p_.learning_rate * std::pow(p_.lr_decay, static_cast<double>(epoch - 1));
    const int64_t b = p_.batch_size;
    const int64_t steps = (nnz + b - 1) / b;
    PhiloxPlan rng;
    rng.seed = derive_seed(seed, static_cast<uint64_t>(epoch));
    rng.stride = static_cast<uint64_t>(cands_);  // BPR: b; softmax: b + negatives
    RF_CHECK_CUDA(cudaMemsetAsync(loss_.data(), 0, 2 * sizeof(double), s));
    RF_CHECK_CUDA(cudaMemsetAsync(flags_.data(), 0, 2 * sizeof(int), s));
    for (int64_t st = 0; st < steps; ++st) {
      const int64_t bs = std::min(b, nnz - st * b);
      const OptimizerStep os = optimizer_step(p_, lr, ++step_);
      rng.step = static_cast<uint64_t>(st);
      if (ccl_)
        ccl_step(bs, rng, os);
      else if (softmax_)
        softmax_step(bs, rng, os);
      else
        launch_bpr_step(factors_view(), data_view(), rng, bs, p_.negatives, p_.hard_negatives, p_.reject_seen,
                        static_cast<float>(p_.regularization), os, loss_.data(), s);
    }
    launch_count_nonfinite(users_.data(), nu_ * dim_, flags_.data(), s);
    launch_count_nonfinite(items_.data(), ni_ * dim_, flags_.data() + 1, s);
    double sums[2] = {0, 0};
    int flags[2] = {0, 0};
    copy_to_host(sums, loss_.data(), 2, s);
    copy_to_host(flags, flags_.data(), 2, s);
    g().synchronize();
    nonfinite_ = (flags[0] ? 1 : 0) | (flags[1] ? 2 : 0);
    stats.samples = nnz;
    stats.steps = steps;
    // Softmax, CCL: mean over positives; BPR: mean over the triples trained (skipped ones
    // excluded).
    const double count = softmax_ ? static_cast<double>(nnz) : sums[1];
    stats.loss = count > 0 ? sums[0] / count : 0.0;
    return stats;
  }

  int nonfinite() const override { return nonfinite_; }

  void use_interactions(const data::Csr& ui, const cpu::ItemSampler& sampler) override {
    DeviceScope scope(g().device());
    ensure_data(ui, sampler);
  }

  std::vector<float> history_map() override {
    RF_ASSERT(agg_, "BatchTrainerCuda::history_map: only ccl with a history weight has one");
    std::vector<float> w(static_cast<size_t>(map_.size()));
    DeviceScope scope(g().device());
    copy_to_host(w.data(), map_.data(), map_.size(), g().stream());
    g().synchronize();
    return w;
  }

  double step(const std::vector<data::index_t>& batch_users,
              const std::vector<data::index_t>& positives,
              const std::vector<data::index_t>& negatives, double lr, uint64_t seed) override {
    RF_ASSERT(ccl_, "BatchTrainerCuda::step: CCL only (BPR and softmax sample inside their step)");
    const auto bs = static_cast<int64_t>(batch_users.size());
    RF_ASSERT(bs >= 1 && bs <= p_.batch_size && positives.size() == batch_users.size() &&
                  static_cast<int64_t>(negatives.size()) == p_.negatives,
              "BatchTrainerCuda::step: 1..batch_size rows, a positive per row and "
              "model.negatives negatives");
    for (const data::index_t u : batch_users)
      RF_ASSERT(u >= 0 && u < nu_, "BatchTrainerCuda::step: user id out of range");
    for (const auto* ids : {&positives, &negatives})
      for (const data::index_t i : *ids)
        RF_ASSERT(i >= 0 && i < ni_, "BatchTrainerCuda::step: item id out of range");
    RF_ASSERT(!agg_ || uploaded_,
              "BatchTrainerCuda::step: aggregation reads the histories; call use_interactions");
    DeviceScope scope(g().device());
    const cudaStream_t s = g().stream();
    copy_to_device(batch_users_.data(), batch_users.data(), bs, s);
    copy_to_device(cand_.data(), positives.data(), bs, s);
    if (!negatives.empty()) copy_to_device(cand_.data() + bs, negatives.data(), p_.negatives, s);
    RF_CHECK_CUDA(cudaMemsetAsync(loss_.data(), 0, 2 * sizeof(double), s));
    PhiloxPlan rng;
    rng.seed = seed;
    rng.stride = static_cast<uint64_t>(cands_);
    ccl_update(bs, rng, optimizer_step(p_, lr, ++step_));
    double sums[2] = {0, 0};
    copy_to_host(sums, loss_.data(), 2, s);
    g().synchronize();  // the host vectors are read until here
    return sums[0] / static_cast<double>(bs);
  }

  std::vector<float> dropout_mask() override {
    std::vector<float> mask(static_cast<size_t>(mask_rows_ * dim_));
    if (mask.empty()) return mask;
    DeviceScope scope(g().device());
    copy_to_host(mask.data(), mask_.data(), mask_rows_ * dim_, g().stream());
    g().synchronize();
    return mask;
  }

 private:
  CudaResources& g() const { return *gpu_; }

  const char* loss_label() const { return ccl_ ? "ccl" : softmax_ ? "softmax" : "bpr"; }

  template <typename T>
  void zero(DeviceBuffer<T>& b) {
    if (b.bytes() > 0) RF_CHECK_CUDA(cudaMemsetAsync(b.data(), 0, b.bytes(), g().stream()));
  }

  void zero_state() {
    zero(user_m_);
    zero(user_v_);
    zero(item_m_);
    zero(item_v_);
    if (agg_) {  // a fresh history map: the identity, no moments (as the CPU's reset_state)
      zero(map_m_);
      zero(map_v_);
      if (identity_.empty()) identity_ = identity(dim_);
      copy_to_device(map_.data(), identity_.data(), map_.size(), g().stream());
    }
  }

  static std::vector<float> identity(int d) {
    std::vector<float> w(static_cast<size_t>(d) * d, 0.f);
    for (int c = 0; c < d; ++c) w[static_cast<size_t>(c) * d + c] = 1.f;
    return w;
  }

  // Bytes of the softmax batch buffers (B = batch_size, C = B + negatives, N = ids_): ids, log E
  // (softmax), the gathered rows and their gradients (ub, cm, du, dv; CCL also the positives'
  // rows vp and, with dropout, the B × dim mask), the B × C scores, the sort's buffers (CUB's
  // temporary storage estimated at 16 bytes per id).
  int64_t softmax_bytes() const {
    const int64_t b = p_.batch_size, c = cands_, n = ids_;
    // Aggregation: the history means, z and the history means' gradient rows (B × dim each),
    // ‖z‖ and the history offsets (the history entries' ids grow with the batches:
    // reserve_history).
    const int64_t rows = b + c + b + n + (ccl_ ? b : 0) + (ccl_ && p_.dropout > 0 ? b : 0) +
                         (agg_ ? 3 * b : 0);
    return 4 * (b + n + (ccl_ ? 0 : c)) + 4 * rows * dim_ + 4 * b * c + 4 * 3 * n + 16 * n +
           (agg_ ? 4 * b + 8 * (b + 1) : 0) + (1 << 20);
  }

  BatchFactorsView factors_view() {
    BatchFactorsView f;
    f.users = users_.data();
    f.items = items_.data();
    f.user_m = user_m_.data();
    f.user_v = user_v_.data();
    f.item_m = item_m_.data();
    f.item_v = item_v_.data();
    f.n_users = nu_;
    f.n_items = ni_;
    f.dim = dim_;
    f.item_bias = p_.item_bias;
    return f;
  }

  BatchDataView data_view() const {
    BatchDataView d;
    d.indptr = indptr_.data();
    d.indices = indices_.data();
    d.row_of = row_of_.data();
    d.nnz = nnz_;
    d.accept = accept_.data();
    d.alias = alias_.data();  // null for a uniform sampler
    d.n_items = ni_;
    return d;
  }

  // Uploads the interactions and the sampler tables unless these are already on the GPU.
  void ensure_data(const data::Csr& ui, const cpu::ItemSampler& sampler) {
    if (ui.rows != nu_ || ui.cols != ni_)
      fail("{} on the GPU: the interaction matrix is {}×{}; the model is {} users × {} items",
           loss_label(), ui.rows, ui.cols, nu_, ni_);
    RF_ASSERT(sampler.size() == ni_, "BatchTrainerCuda::epoch: the sampler covers another item count");
    const DataKey key = key_of(ui, sampler);
    if (uploaded_ && key == key_) return;
    uploaded_ = false;
    const int64_t nnz = ui.nnz();
    const bool table = !sampler.uniform();
    // Offsets, items and the user of every interaction; alias table; logq rates.
    const bool logq_tables = softmax_ && !ccl_;  // the softmax's rates; CCL reads none
    const int64_t need =
        (nu_ + 1) * 8 + nnz * 8 + ni_ * 4 * ((table ? 2 : 0) + (logq_tables ? 2 : 0));
    const int64_t held = indptr_.bytes() + indices_.bytes() + row_of_.bytes() + accept_.bytes() +
                         alias_.bytes() + pos_rate_.bytes() + neg_prob_.bytes();
    const int64_t free = g().free_bytes() + held;
    if (need > free * 9 / 10)
      fail("the {} interactions need {:.2f} GiB of GPU memory next to the factors and {} has "
           "{:.2f} GiB free; train on the CPU (train.device: cpu) or lower model.factors",
           nnz, need / kGiB, g().description(), free / kGiB);
    const cudaStream_t s = g().stream();
    indptr_ = DeviceBuffer<int64_t>();
    indices_ = DeviceBuffer<int32_t>();
    row_of_ = DeviceBuffer<int32_t>();
    indptr_.reset(nu_ + 1);
    indices_.reset(nnz);
    row_of_.reset(nnz);
    copy_to_device(indptr_.data(), ui.indptr.data(), nu_ + 1, s);
    copy_to_device(indices_.data(), ui.indices.data(), nnz, s);
    launch_row_of(indptr_.data(), nu_, row_of_.data(), s);
    accept_ = DeviceBuffer<float>();
    alias_ = DeviceBuffer<int32_t>();
    if (table) {
      RF_ASSERT(static_cast<int64_t>(sampler.accept().size()) == ni_ &&
                    static_cast<int64_t>(sampler.alias().size()) == ni_,
                "BatchTrainerCuda::epoch: the sampler's alias table has the wrong size");
      accept_.reset(ni_);
      alias_.reset(ni_);
      copy_to_device(accept_.data(), sampler.accept().data(), ni_, s);
      copy_to_device(alias_.data(), sampler.alias().data(), ni_, s);
    }
    std::vector<float> rate, prob;
    pos_rate_ = DeviceBuffer<float>();
    neg_prob_ = DeviceBuffer<float>();
    if (logq_tables) {
      // logq: E_c = B·n_c/nnz (in-batch) + N·q_c, computed per candidate by the sampling kernel.
      const std::vector<int64_t> counts = cpu::item_counts(ui);
      rate.resize(static_cast<size_t>(ni_));
      prob.resize(static_cast<size_t>(ni_));
      const double inv_nnz = 1.0 / static_cast<double>(std::max<int64_t>(nnz, 1));
      for (int64_t j = 0; j < ni_; ++j) {
        const auto js = static_cast<size_t>(j);
        rate[js] = static_cast<float>(static_cast<double>(counts[js]) * inv_nnz);
        prob[js] = static_cast<float>(sampler.probability(static_cast<data::index_t>(j)));
      }
      pos_rate_.reset(ni_);
      neg_prob_.reset(ni_);
      copy_to_device(pos_rate_.data(), rate.data(), ni_, s);
      copy_to_device(neg_prob_.data(), prob.data(), ni_, s);
    }
    g().synchronize();  // the host vectors above die here
    nnz_ = nnz;
    key_ = key;
    uploaded_ = true;
  }

  // The shared-candidate products of softmax_step and ccl_step. Row-major X (r × k) is
  // column-major Xᵀ with leading dimension k, so each product is written for the transposes.
  // S (bs × c) = alpha Ub Cmᵀ, stored row-major: column-major Sᵀ = Cm Ubᵀ.
  void gemm_scores(int64_t bs, int64_t c, float alpha) {
    if (c == 0) return;
    const float zero = 0.f;
    const int ic = static_cast<int>(c), ib = static_cast<int>(bs), id = dim_;
    RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_T, CUBLAS_OP_N, ic, ib, id, &alpha,
                                cm_.data(), id, ub_.data(), id, &zero, scores_.data(), ic));
  }

  // From G (the gradient of the scores, in scores_): dU (bs × dim) = alpha G Cm, column-major
  // dUᵀ = Cmᵀ Gᵀ; and dV's first c rows = alpha Gᵀ Ub, column-major dVᵀ = Ubᵀ G (G being the
  // transpose of the stored Gᵀ). Without candidates dU is zero.
  void gemm_grads(int64_t bs, int64_t c, float alpha) {
    if (c == 0) {
      RF_CHECK_CUDA(cudaMemsetAsync(du_.data(), 0, bs * dim_ * sizeof(float), g().stream()));
      return;
    }
    const float zero = 0.f;
    const int ic = static_cast<int>(c), ib = static_cast<int>(bs), id = dim_;
    RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_N, CUBLAS_OP_N, id, ib, ic, &alpha,
                                cm_.data(), id, scores_.data(), ic, &zero, du_.data(), id));
    RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_N, CUBLAS_OP_T, id, ic, ib, &alpha,
                                ub_.data(), id, scores_.data(), ic, &zero, dv_.data(), id));
  }

  // Applies `count` gradient rows (grads) to the rows `ids` of w (users or items, with their
  // optimiser state): sorted by id so that repeats are summed, then one step per distinct row
  // on its first `cols` columns, the first `sphere` on the unit sphere. Entry k's gradient row
  // is row positions[k] of grads (default: row k).
  void apply_rows(float* w, float* m, float* v, int cols, const int32_t* ids, int64_t count,
                  const float* grads, int sphere, const OptimizerStep& os,
                  const int32_t* positions = nullptr) {
    const cudaStream_t s = g().stream();
    sort_row_ids(sort_temp_.data(), sort_temp_bytes_, ids, ids_out_.data(),
                 positions ? positions : positions_.data(), pos_out_.data(), count, sort_bits_, s);
    launch_apply_rows(w, m, v, dim_, cols, ids_out_.data(), pos_out_.data(), count, grads,
                      static_cast<float>(p_.regularization), sphere, os, s);
  }

  // One softmax step on bs positives: candidates = the bs positives, then the negatives.
  void softmax_step(int64_t bs, const PhiloxPlan& rng, const OptimizerStep& os) {
    const cudaStream_t s = g().stream();
    const int n = p_.negatives;
    const int64_t c = bs + n;
    launch_softmax_sample(data_view(), rng, bs, n, p_.in_batch ? pos_rate_.data() : nullptr,
                          neg_prob_.data(), batch_users_.data(), cand_.data(),
                          p_.logq ? log_expected_.data() : nullptr, s);
    launch_gather_rows(users_.data(), dim_, batch_users_.data(), bs, ub_.data(), s);
    launch_gather_rows(items_.data(), dim_, cand_.data(), c, cm_.data(), s);
    const float inv_tau = static_cast<float>(1.0 / p_.temperature);
    gemm_scores(bs, c, inv_tau);  // S = Ub Cmᵀ / τ
    launch_softmax_rows(scores_.data(), bs, c, cand_.data(), p_.logq ? log_expected_.data() : nullptr,
                        p_.in_batch, loss_.data(), s);
    gemm_grads(bs, c, inv_tau);  // dL/dscore = G / τ
    const int user_cols = p_.item_bias ? dim_ - 1 : dim_;  // the users' bias column stays 1
    const int sphere = p_.normalize ? p_.factors : 0;       // cosine part; the bias is outside
    apply_rows(users_.data(), user_m_.data(), user_v_.data(), user_cols, batch_users_.data(), bs,
               du_.data(), sphere, os);
    apply_rows(items_.data(), item_m_.data(), item_v_.data(), dim_, cand_.data(), c, dv_.data(),
               sphere, os);
  }

  // One CCL step on bs positives. cand_ holds [positives (bs) | negatives (n) | positives
  // again (bs)]; the score matrix's candidates start at the positives with in_batch, else at
  // the negatives, and each row's own positive is scored by its own dot (ccl_rows). The items'
  // gradient rows follow the same ids: the candidates', then the positives'.
  void ccl_step(int64_t bs, const PhiloxPlan& rng, const OptimizerStep& os) {
    launch_softmax_sample(data_view(), rng, bs, p_.negatives, nullptr, nullptr,
                          batch_users_.data(), cand_.data(), nullptr, g().stream());
    ccl_update(bs, rng, os);
  }

  // The rest of a CCL step, on the samples in batch_users_ and cand_'s first bs + negatives ids
  // (the positives, then the negatives); rng draws the dropout mask.
  void ccl_update(int64_t bs, const PhiloxPlan& rng, const OptimizerStep& os) {
    const cudaStream_t s = g().stream();
    const int n = p_.negatives;
    RF_CHECK_CUDA(cudaMemcpyAsync(cand_.data() + bs + n, cand_.data(), bs * sizeof(int32_t),
                                  cudaMemcpyDeviceToDevice, s));
    const int64_t first = p_.in_batch ? 0 : bs;  // the score matrix's first candidate
    const int64_t c = bs + n - first;
    const int32_t* cands = cand_.data() + first;
    // Aggregation: the batch's history entries size the items' sort (read first, so that the
    // gathers below are enqueued while the host waits for nothing else).
    const float h = static_cast<float>(p_.history_weight);
    int64_t entries = 0;
    if (agg_) {
      launch_ccl_history_sizes(indptr_.data(), batch_users_.data(), bs, hist_off_.data(), s);
      copy_to_host(&entries, hist_off_.data() + bs, 1, s);
      g().synchronize();
      reserve_history(c + bs + entries);
    }
    launch_gather_rows(users_.data(), dim_, batch_users_.data(), bs, ub_.data(), s);
    launch_gather_rows(items_.data(), dim_, cand_.data(), bs, vp_.data(), s);
    launch_gather_rows(items_.data(), dim_, cands, c, cm_.data(), s);
    // Aggregation: the rows score with u' = z / ‖z‖, z = (1 − h)·e + h·W·m (ub_ holds e, then u').
    if (agg_) {
      launch_ccl_history_means(items_.data(), dim_, indptr_.data(), indices_.data(),
                               batch_users_.data(), bs, hm_.data(), s);
      // Z = h·HM·Wᵀ (row-major bs × dim): column-major Zᵀ = h·W·HMᵀ, W being the transpose of
      // the stored row-major W read column-major.
      const float zero = 0.f;
      RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_T, CUBLAS_OP_N, dim_, static_cast<int>(bs),
                                  dim_, &h, map_.data(), dim_, hm_.data(), dim_, &zero, z_.data(),
                                  dim_));
      launch_ccl_aggregate(z_.data(), ub_.data(), znorm_.data(), bs, dim_, h, s);
    }
    // Dropout: the rows score, and reach the items' gradients, masked (as on the CPU).
    const bool drop = p_.dropout > 0;
    if (drop) launch_ccl_dropout(rng, bs, dim_, p_.dropout, mask_.data(), ub_.data(), s);
    mask_rows_ = drop ? bs : 0;
    gemm_scores(bs, c, 1.f);  // the cosines
    launch_ccl_rows(scores_.data(), bs, c, cands, cand_.data(), ub_.data(), vp_.data(), dim_,
                    static_cast<float>(p_.margin), static_cast<float>(p_.negative_weight),
                    loss_.data(), s);
    gemm_grads(bs, c, 1.f);  // dU = G Cm; dV's candidate rows = Gᵀ Ub
    launch_ccl_positive_grads(ub_.data(), vp_.data(), drop ? mask_.data() : nullptr, bs, dim_,
                              -1.f / static_cast<float>(bs), du_.data(), dv_.data() + c * dim_, s);
    if (agg_) {
      // du is d loss / d u'; back through the normalisation: z_ becomes dZ, du_ the own rows'
      // (1 − h)·dZ. The history means get GM = h·dZ·W (rows c + bs .. of dv_, each later divided
      // by its history's size) and W gets dW = h·dZᵀ·HM; column-major, GMᵀ = h·Wᵀ·dZᵀ and
      // dWᵀ = h·HMᵀ·dZ.
      launch_ccl_aggregate_backprop(du_.data(), z_.data(), znorm_.data(), bs, dim_, h, s);
      const float zero = 0.f;
      const int ib = static_cast<int>(bs);
      float* gm = dv_.data() + (c + bs) * dim_;
      RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_N, CUBLAS_OP_N, dim_, ib, dim_, &h,
                                  map_.data(), dim_, z_.data(), dim_, &zero, gm, dim_));
      RF_CHECK_CUBLAS(cublasSgemm(g().cublas(), CUBLAS_OP_N, CUBLAS_OP_T, dim_, dim_, ib, &h,
                                  hm_.data(), dim_, z_.data(), dim_, &zero, gmap_.data(), dim_));
      // The items' entries: the candidates' and positives' rows (positions 0 .. c + bs), then
      // every history item of row b pointing at gm row b.
      RF_CHECK_CUDA(cudaMemcpyAsync(agg_ids_.data(), cands, (c + bs) * sizeof(int32_t),
                                    cudaMemcpyDeviceToDevice, s));
      launch_iota(agg_pos_.data(), c + bs, s);
      launch_ccl_history_entries(indptr_.data(), indices_.data(), batch_users_.data(), bs,
                                 hist_off_.data(), static_cast<int32_t>(c + bs), gm, dim_,
                                 agg_ids_.data() + c + bs, agg_pos_.data() + c + bs, s);
    }
    // Every column on the unit sphere; the items' rows: the candidates', then the positives'
    // (then, aggregating, the history items').
    apply_rows(users_.data(), user_m_.data(), user_v_.data(), dim_, batch_users_.data(), bs,
               du_.data(), dim_, os);
    if (agg_) {
      apply_rows(items_.data(), item_m_.data(), item_v_.data(), dim_, agg_ids_.data(),
                 c + bs + entries, dv_.data(), dim_, os, agg_pos_.data());
      // W is a free matrix: a plain step without L2, as on the CPU (rows 0 .. dim, in order).
      launch_apply_rows(map_.data(), map_m_.data(), map_v_.data(), dim_, dim_, map_ids_.data(),
                        map_ids_.data(), dim_, gmap_.data(), 0.f, 0, os, s);
    } else {
      apply_rows(items_.data(), item_m_.data(), item_v_.data(), dim_, cands, c + bs, dv_.data(),
                 dim_, os);
    }
  }

  // Aggregation: room for n item entries of a step (the candidates', the positives' and the
  // history items'), in the entry buffers and the sort's; grown to half as much again as asked,
  // so that a few large batches do not reallocate every step.
  void reserve_history(int64_t n) {
    if (n <= hist_cap_) return;
    if (n > INT32_MAX)
      fail("ccl with model.history_weight on the GPU: a batch's item entries (candidates, "
           "positives and the users' history items) number {}; at most {} fit; lower "
           "model.batch_size",
           n, INT32_MAX);
    const int64_t cap = std::min<int64_t>(INT32_MAX, std::max(n, hist_cap_ + hist_cap_ / 2));
    const size_t temp = sort_row_ids_temp_bytes(cap, sort_bits_);
    const int64_t bytes = 4 * 4 * cap + static_cast<int64_t>(temp);
    const int64_t free = g().free_bytes() + agg_ids_.bytes() + agg_pos_.bytes() +
                         ids_out_.bytes() + pos_out_.bytes() + sort_temp_.bytes();
    if (bytes > free * 9 / 10)
      fail("ccl with model.history_weight on the GPU: a batch's {} item entries (candidates, "
           "positives and the users' histories) need {:.2f} GiB of GPU memory and {} has {:.2f} "
           "GiB free; lower model.batch_size or train on the CPU (train.device: cpu)",
           n, bytes / kGiB, g().description(), free / kGiB);
    g().synchronize();  // the buffers may still be read by the previous step
    agg_ids_ = DeviceBuffer<int32_t>();
    agg_pos_ = DeviceBuffer<int32_t>();
    ids_out_ = DeviceBuffer<int32_t>();
    pos_out_ = DeviceBuffer<int32_t>();
    sort_temp_ = DeviceBuffer<unsigned char>();
    agg_ids_.reset(cap);
    agg_pos_.reset(cap);
    ids_out_.reset(cap);
    pos_out_.reset(cap);
    sort_temp_bytes_ = temp;
    sort_temp_.reset(static_cast<int64_t>(temp) + 1);
    hist_cap_ = cap;
  }

  std::shared_ptr<CudaResources> gpu_;
  int64_t nu_, ni_;
  BatchParams p_;
  int dim_;
  bool softmax_;   // softmax or CCL: batches with shared candidates
  bool ccl_;
  bool agg_;       // CCL with user-side aggregation (history_weight > 0)
  int64_t cands_;  // BPR: batch_size; softmax, CCL: batch_size + negatives (the draws)
  int64_t ids_;    // item ids of a step: cands_, plus batch_size for CCL
  DeviceBuffer<float> users_, items_;                    // n × dim, row-major
  DeviceBuffer<float> user_m_, user_v_, item_m_, item_v_;  // optimiser state (may be empty)
  DeviceBuffer<double> loss_;                            // the epoch's loss sum, BPR triples
  DeviceBuffer<int> flags_;                              // non-finite users, items
  int64_t step_ = 0;                                     // optimiser steps so far (Adam's t)
  int nonfinite_ = 0;
  // Interactions and sampler tables (ensure_data).
  bool uploaded_ = false;
  DataKey key_;
  int64_t nnz_ = 0;
  DeviceBuffer<int64_t> indptr_;
  DeviceBuffer<int32_t> indices_, row_of_;
  DeviceBuffer<float> accept_;
  DeviceBuffer<int32_t> alias_;
  DeviceBuffer<float> pos_rate_, neg_prob_;  // softmax: n_c / nnz and q_c per item
  // Softmax batch buffers (B = batch_size, C = B + negatives).
  DeviceBuffer<int32_t> batch_users_, cand_;  // B, C
  DeviceBuffer<float> log_expected_;          // C
  DeviceBuffer<float> ub_, cm_;               // B × dim, C × dim gathered rows
  DeviceBuffer<float> mask_;                  // CCL dropout: the step's B × dim mask
  int64_t mask_rows_ = 0;                     // rows of mask_ the last step drew
  DeviceBuffer<float> vp_;                    // CCL: B × dim positives' rows
  DeviceBuffer<float> scores_;                // B × C scores, then G
  DeviceBuffer<float> du_, dv_;  // B × dim, C × dim gradients (CCL: C + B; aggregating: C + 2B)
  // Sort buffers, C (CCL: C + B) each; aggregating, ids_out_ and pos_out_ hold hist_cap_.
  DeviceBuffer<int32_t> ids_out_, positions_, pos_out_;
  DeviceBuffer<unsigned char> sort_temp_;
  size_t sort_temp_bytes_ = 0;
  // CCL's user-side aggregation: the history map W (dim × dim, row-major), its moments and
  // gradient, the row ids 0 .. dim of its update; per batch row the history mean, z (then dZ)
  // and ‖z‖; the history offsets (B + 1); the item entries of a step and their gradient rows'
  // positions (hist_cap_ each).
  DeviceBuffer<float> map_, map_m_, map_v_, gmap_;
  DeviceBuffer<int32_t> map_ids_;
  DeviceBuffer<float> hm_, z_, znorm_;
  DeviceBuffer<int64_t> hist_off_;
  DeviceBuffer<int32_t> agg_ids_, agg_pos_;
  int64_t hist_cap_ = 0;
  std::vector<float> identity_;  // the host copy of the identity uploaded by zero_state()
  int sort_bits_ = 1;  // radix bits of every row id (both sides, one temporary size)
};

}  // namespace

std::unique_ptr<BatchTrainerCuda> make_batch_trainer_cuda(std::shared_ptr<CudaResources> gpu, int64_t n_users,
                                         int64_t n_items, const BatchParams& params) {
  RF_ASSERT(gpu != nullptr, "make_batch_trainer_cuda: no GPU resources");
  const char* name = params.loss == BatchLoss::kSoftmax ? "softmax"
                     : params.loss == BatchLoss::kCcl   ? "ccl"
                                                        : "bpr";
  if (n_users > INT32_MAX || n_items > INT32_MAX)
    fail("{} on the GPU: {} users and {} items; expected at most {} of each", name, n_users,
         n_items, INT32_MAX);
  if (n_items < 1) fail("{} on the GPU needs at least one item", name);
  if (params.factors < 1) fail("model.factors is {}; expected at least 1", params.factors);
  if (params.batch_size < 1) fail("model.batch_size is {}; expected at least 1", params.batch_size);
  if (params.negatives < 0 || (params.loss == BatchLoss::kBpr && params.negatives < 1))
    fail("model.negatives is {}; {} needs at least {}", params.negatives, name,
         params.loss == BatchLoss::kBpr ? 1 : 0);
  if (params.loss != BatchLoss::kBpr &&
      2 * params.batch_size + params.negatives > INT32_MAX / 2)
    fail("model.batch_size + model.negatives is {}; the GPU {} supports at most {}",
         params.batch_size + params.negatives, name, INT32_MAX / 2 - params.batch_size);
  if (params.loss == BatchLoss::kCcl && params.item_bias)
    fail("ccl has no item bias (its scores are cosines); set model.item_bias: false");
  if (params.loss == BatchLoss::kSoftmax) {
    if (!(params.temperature > 0)) fail("model.temperature is {}; expected > 0", params.temperature);
  }
  return std::make_unique<BatchTrainerCudaImpl>(std::move(gpu), n_users, n_items, params);
}

}  // namespace recforge::backend::cuda
