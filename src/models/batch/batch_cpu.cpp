#include "models/batch/batch_cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <cstring>
#include <numeric>

#include "core/blas.h"
#include "core/error.h"
#include "core/log.h"

namespace recforge::backend::cpu {

// ---- sampler -------------------------------------------------------------------------------

ItemSampler::ItemSampler(const std::vector<int64_t>& counts, double exponent)
    : n_(counts.size()), uniform_(exponent == 0.0) {
  RF_ASSERT(n_ > 0, "ItemSampler: no items");
  if (uniform_) return;
  // Vose's alias method: split columns into those below and above the mean weight, then pair
  // each small column with a large one.
  prob_.resize(n_);
  double total = 0;
  for (uint64_t j = 0; j < n_; ++j) total += prob_[j] = std::pow(static_cast<double>(counts[j]) + 1.0, exponent);
  for (double& p : prob_) p /= total;
  std::vector<double> scaled(n_);
  std::vector<data::index_t> small, large;
  for (uint64_t j = 0; j < n_; ++j) {
    scaled[j] = prob_[j] * static_cast<double>(n_);
    (scaled[j] < 1.0 ? small : large).push_back(static_cast<data::index_t>(j));
  }
  accept_.assign(n_, 1.f);
  alias_.resize(n_);
  for (uint64_t j = 0; j < n_; ++j) alias_[j] = static_cast<data::index_t>(j);
  while (!small.empty() && !large.empty()) {
    const data::index_t s = small.back(), l = large.back();
    small.pop_back();
    accept_[s] = static_cast<float>(scaled[s]);
    alias_[s] = l;
    scaled[l] -= 1.0 - scaled[s];
    if (scaled[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // What is left holds (up to rounding) exactly one column's weight: keep it always.
}

std::vector<int64_t> item_counts(const data::Csr& user_items) {
  std::vector<int64_t> counts(static_cast<size_t>(user_items.cols), 0);
  for (data::index_t j : user_items.indices) ++counts[j];
  return counts;
}

namespace {

// Whether the sorted row [begin, end) holds `item`.
bool row_has(const data::index_t* begin, const data::index_t* end, data::index_t item) {
  return std::binary_search(begin, end, item);
}

// One weight's optimiser step (column c of a row whose state rows are m and v), the kind fixed
// at compile time so the row loops vectorise.
template <int Kind>
inline void update(float& w, float g, float* m, float* v, int64_t c, const OptimizerStep& s) {
  optimizer_update_as<Kind>(w, g, Kind == 2 ? m + c : nullptr, Kind != 0 ? v + c : nullptr, s);
}

// e^x to within a few float ulps, in plain arithmetic that vectorises (std::exp does not without
// -ffast-math): 2^n · p(r) with n = round(x / ln 2), r = x − n ln 2 in two parts, p the degree-6
// Taylor polynomial (|r| ≤ ln2/2, so its error is below 2e-8 relative). Below −87 (including
// the −inf of a masked logit) the result is 0.
inline float fast_exp(float x) {
  const float xc = std::min(std::max(x, -87.f), 88.f);
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < -87.f ? 0.f : p * scale;
}

inline float dot(const float* a, const float* b, int d) {
  float x = 0;
#pragma omp simd reduction(+ : x)
  for (int c = 0; c < d; ++c) x += a[c] * b[c];
  return x;
}

// The mean of the item rows listed in [begin, end) into out[0..d) (0 for an empty list): a
// user's history mean m_u of the aggregation.
inline void history_mean(const Matrix& items, const data::index_t* begin,
                         const data::index_t* end, int d, float* out) {
  std::fill_n(out, d, 0.f);
  for (const data::index_t* j = begin; j != end; ++j) {
    const float* it = items.row(*j);
#pragma omp simd
    for (int c = 0; c < d; ++c) out[c] += it[c];
  }
  const float inv_n = end > begin ? 1.f / static_cast<float>(end - begin) : 0.f;
  for (int c = 0; c < d; ++c) out[c] *= inv_n;
}

// Row r's optimiser state in a flat array of rows × d values (nullptr when there is none).
inline float* state_row(std::vector<float>& state, int64_t r, int d) {
  return state.empty() ? nullptr : state.data() + r * d;
}

// One BPR triple: loss −log σ(u·(p − n)); the gradient of it plus λ/2 of the three squared
// norms, applied to u (its first `ku` columns), p and n. Returns the loss.
template <int Kind>
float bpr_triple(float* u, float* p, float* n, int d, int ku, float reg, float* um, float* uv,
                 float* pm, float* pv, float* nm, float* nv, const OptimizerStep& s) {
  float x = 0;
#pragma omp simd reduction(+ : x)
  for (int c = 0; c < d; ++c) x += u[c] * (p[c] - n[c]);
  const float g = -sigmoid(-x);  // d loss / d x
  for (int c = 0; c < ku; ++c) {
    const float uc = u[c], pc = p[c], nc = n[c];
    update<Kind>(u[c], g * (pc - nc) + reg * uc, um, uv, c, s);
    update<Kind>(p[c], g * uc + reg * pc, pm, pv, c, s);
    update<Kind>(n[c], -g * uc + reg * nc, nm, nv, c, s);
  }
  for (int c = ku; c < d; ++c) {  // the item-bias column: users hold 1 there
    const float uc = u[c], pc = p[c], nc = n[c];
    update<Kind>(p[c], g * uc + reg * pc, pm, pv, c, s);
    update<Kind>(n[c], -g * uc + reg * nc, nm, nv, c, s);
  }
  return neg_log_sigmoid(x);
}

using TripleFn = float (*)(float*, float*, float*, int, int, float, float*, float*, float*, float*,
                           float*, float*, const OptimizerStep&);

TripleFn triple_fn(Optimizer o) {
  switch (o) {
    case Optimizer::kSgd: return bpr_triple<0>;
    case Optimizer::kAdagrad: return bpr_triple<1>;
    case Optimizer::kAdam: break;
  }
  return bpr_triple<2>;
}

}  // namespace

data::index_t draw_negative(const ItemSampler& sampler, Rng& rng, data::index_t positive,
                            bool reject_seen, const data::index_t* row_begin,
                            const data::index_t* row_end, int attempts) {
  for (int attempt = 0; attempt < attempts; ++attempt) {
    const data::index_t j = sampler.draw(rng);
    if (j == positive) continue;
    if (reject_seen && row_has(row_begin, row_end, j)) continue;
    return j;
  }
  return -1;
}


// ---- trainer -------------------------------------------------------------------------------

struct BatchTrainerCpu::Scratch {
  std::vector<float> u, v, scores, du, dv;   // gathered rows, logits/gradients, row gradients
  std::vector<float> vp;                     // CCL: the positives' rows
  std::vector<double> log_expected;          // per candidate
  std::vector<int32_t> user_slot, item_slot; // row → index in the unique lists, or -1
  std::vector<data::index_t> unique_users, unique_items;
  std::vector<float> gu, gi;                 // summed gradients of the unique rows
  // CCL with aggregation: history means m_b, then z_b and dL/dz_b; ‖z_b‖; dL/dm_b; dL/dW.
  std::vector<float> hm, z, znorm, gm, gmap;
  std::vector<float> mask;  // CCL dropout: B × d
  // CCL: row b's candidates above the margin (the nonzero columns of its row of G, each equal
  // to act_scale[b]).
  std::vector<std::vector<int32_t>> active;
  std::vector<float> act_scale;
  std::vector<data::index_t> map_rows;  // 0..factors−1, W's row ids for apply()
};

BatchTrainerCpu::BatchTrainerCpu(const BatchParams& params, const data::Csr& user_items,
                                 int threads)
    : p_(params),
      x_(user_items),
      threads_(std::max(1, threads)),
      counts_(item_counts(user_items)),
      sampler_(counts_, params.negative_exp),
      scratch_(std::make_unique<Scratch>()) {
  RF_ASSERT(user_items.nnz() > 0, "BatchTrainerCpu: no interactions");
  row_of_.resize(static_cast<size_t>(user_items.nnz()));
#pragma omp parallel for schedule(static) num_threads(threads_)
  for (int64_t r = 0; r < user_items.rows; ++r)
    for (data::offset_t e = user_items.indptr[r]; e < user_items.indptr[r + 1]; ++e)
      row_of_[e] = static_cast<data::index_t>(r);
}

BatchTrainerCpu::~BatchTrainerCpu() = default;

void BatchTrainerCpu::reset_state() {
  um_.clear();
  uv_.clear();
  im_.clear();
  iv_.clear();
  step_ = 0;
  map_.clear();
  mm_.clear();
  mv_.clear();
}

const std::vector<float>& BatchTrainerCpu::history_map() {
  const int k = p_.factors;
  if (map_.empty()) {
    map_.assign(static_cast<size_t>(k) * k, 0.f);
    for (int c = 0; c < k; ++c) map_[static_cast<size_t>(c) * k + c] = 1.f;
  }
  return map_;
}

void BatchTrainerCpu::set_optimizer_state(OptimizerState s, int64_t n_users, int64_t n_items) {
  const size_t nu = static_cast<size_t>(n_users * p_.dim()), ni = static_cast<size_t>(n_items * p_.dim());
  const bool v = p_.optimizer != Optimizer::kSgd, m = p_.optimizer == Optimizer::kAdam;
  // All arrays absent (no step yet), or exactly those of this optimiser with the factors' sizes.
  const bool none = s.user_m.empty() && s.item_m.empty() && s.user_v.empty() && s.item_v.empty();
  const auto fits = [](const std::vector<float>& a, bool used, size_t n) {
    return a.size() == (used ? n : 0);
  };
  const bool full = fits(s.user_m, m, nu) && fits(s.item_m, m, ni) && fits(s.user_v, v, nu) &&
                    fits(s.item_v, v, ni);
  RF_ASSERT((none || full) && s.steps >= 0,
            "BatchTrainerCpu::set_optimizer_state: state does not match the optimiser or shapes");
  const size_t nm = static_cast<size_t>(p_.factors) * p_.factors;
  const bool agg = p_.loss == BatchLoss::kCcl && p_.history_weight > 0;
  RF_ASSERT((s.map.empty() && s.map_m.empty() && s.map_v.empty()) ||
                (agg && s.map.size() == nm && fits(s.map_m, m, nm) && fits(s.map_v, v, nm)),
            "BatchTrainerCpu::set_optimizer_state: history map does not match the model");
  map_ = std::move(s.map);
  mm_ = std::move(s.map_m);
  mv_ = std::move(s.map_v);
  um_ = std::move(s.user_m);
  uv_ = std::move(s.user_v);
  im_ = std::move(s.item_m);
  iv_ = std::move(s.item_v);
  step_ = s.steps;
}

void BatchTrainerCpu::ensure_state(const Matrix& users, const Matrix& items) {
  RF_ASSERT(users.cols == p_.dim() && items.cols == p_.dim(),
            "BatchTrainerCpu: factor matrices must have params.dim() columns");
  if (p_.loss == BatchLoss::kCcl && p_.history_weight > 0) {
    history_map();
    const size_t nm = map_.size();
    if (p_.optimizer != Optimizer::kSgd && mv_.size() != nm) mv_.assign(nm, 0.f);
    if (p_.optimizer == Optimizer::kAdam && mm_.size() != nm) mm_.assign(nm, 0.f);
  }
  if (p_.optimizer == Optimizer::kSgd || !uv_.empty()) return;
  uv_.assign(users.data.size(), 0.f);
  iv_.assign(items.data.size(), 0.f);
  if (p_.optimizer == Optimizer::kAdam) {
    um_.assign(users.data.size(), 0.f);
    im_.assign(items.data.size(), 0.f);
  }
}

EpochStats BatchTrainerCpu::epoch(Matrix& users, Matrix& items, int epoch, uint64_t seed) {
  ensure_state(users, items);
  const double lr = p_.learning_rate * std::pow(p_.lr_decay, epoch - 1);
  const uint64_t epoch_seed = derive_seed(seed, static_cast<uint64_t>(epoch));
  Progress progress(fmt::format("epoch {}", epoch), x_.nnz(), "samples");
  const HingeCounts before = hinge_;
  const EpochStats stats = p_.loss == BatchLoss::kBpr
                               ? bpr_epoch(users, items, lr, epoch_seed, progress)
                               : shared_epoch(users, items, lr, epoch_seed, progress);
  progress.finish(stats.samples);
  if (p_.loss == BatchLoss::kCcl && hinge_.pairs > before.pairs)
    log().debug(
        "epoch {}: {:.3f}% of row-candidate pairs above the margin; {} of {} steps took "
        "the pair-by-pair gradient products",
        epoch,
        100.0 * static_cast<double>(hinge_.active - before.active) /
            static_cast<double>(hinge_.pairs - before.pairs),
        hinge_.sparse_steps - before.sparse_steps, stats.steps);
  return stats;
}

EpochStats BatchTrainerCpu::bpr_epoch(Matrix& users, Matrix& items, double lr, uint64_t seed,
                                      Progress& progress) {
  const int64_t n = x_.nnz();
  const int64_t batch = p_.batch_size;
  const int64_t batches = (n + batch - 1) / batch;
  const int d = p_.dim(), ku = p_.factors;
  const float reg = static_cast<float>(p_.regularization);
  const TripleFn triple = triple_fn(p_.optimizer);
  double loss = 0;
  int64_t triples = 0;
  const int64_t step0 = step_;
  std::atomic<int64_t> batches_done{0};
#pragma omp parallel num_threads(threads_) reduction(+ : loss, triples)
  {
    const bool reporter = omp_get_thread_num() == 0;  // Progress is not thread-safe
    // Each sample touches rows at random (its interaction, the user's row and CSR row, the
    // positive's and negative's rows, the alias table): one dependent cache miss after another
    // when taken one sample at a time. So samples go in chunks, in passes that each prefetch what
    // the next pass reads: draws → user and positive → their rows and the first negative's → the
    // user's items (for rejecting seen negatives) → the triples.
    constexpr int kChunk = 32;
    int64_t es[kChunk];
    ItemSampler::Column cols[kChunk];
    data::index_t us[kChunk], ps[kChunk], ns[kChunk];
    const bool one_negative = p_.negatives == 1 && p_.hard_negatives <= 1;
    const int row_bytes = d * static_cast<int>(sizeof(float));
    const auto prefetch_rows = [&](const float* a, const float* b, const float* c) {
      for (int o = 0; o < row_bytes; o += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(a) + o, 1);
        __builtin_prefetch(reinterpret_cast<const char*>(b) + o, 1);
        if (c) __builtin_prefetch(reinterpret_cast<const char*>(c) + o, 1);
      }
    };
    const auto apply = [&](data::index_t u, data::index_t pos, data::index_t neg,
                           const OptimizerStep& s) {
      return triple(users.row(u), items.row(pos), items.row(neg), d, ku, reg,
                    state_row(um_, u, d), state_row(uv_, u, d), state_row(im_, pos, d),
                    state_row(iv_, pos, d), state_row(im_, neg, d), state_row(iv_, neg, d), s);
    };
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < batches; ++b) {
      Rng rng(derive_seed(seed, static_cast<uint64_t>(b)));
      const OptimizerStep s = optimizer_step(p_, lr, step0 + b + 1);
      const int64_t count = std::min(batch, n - b * batch);
      for (int64_t i0 = 0; i0 < count; i0 += kChunk) {
        const int m = static_cast<int>(std::min<int64_t>(kChunk, count - i0));
        for (int k = 0; k < m; ++k) {
          es[k] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
          __builtin_prefetch(row_of_.data() + es[k]);
          __builtin_prefetch(x_.indices.data() + es[k]);
          if (one_negative) {
            cols[k] = sampler_.column(rng);
            sampler_.prefetch(cols[k]);
          }
        }
        for (int k = 0; k < m; ++k) {
          us[k] = row_of_[es[k]];
          ps[k] = x_.indices[es[k]];
          __builtin_prefetch(x_.indptr.data() + us[k]);
          ns[k] = one_negative ? sampler_.resolve(cols[k]) : -1;
          prefetch_rows(users.row(us[k]), items.row(ps[k]),
                        ns[k] >= 0 ? items.row(ns[k]) : nullptr);
        }
        if (p_.reject_seen)
          for (int k = 0; k < m; ++k) {
            const data::offset_t mid = (x_.indptr[us[k]] + x_.indptr[us[k] + 1]) / 2;
            __builtin_prefetch(x_.indices.data() + mid);
          }
        for (int k = 0; k < m; ++k) {
          const data::index_t u = us[k], pos = ps[k];
          const data::index_t* rb = x_.indices.data() + x_.indptr[u];
          const data::index_t* re = x_.indices.data() + x_.indptr[u + 1];
          if (one_negative) {
            data::index_t neg = ns[k];
            if (neg == pos || (p_.reject_seen && row_has(rb, re, neg)))
              neg = draw_negative(sampler_, rng, pos, p_.reject_seen, rb, re,
                                  kNegativeAttempts - 1);
            if (neg < 0) continue;
            loss += apply(u, pos, neg, s);
            ++triples;
            continue;
          }
          const float* ur = users.row(u);
          for (int t = 0; t < p_.negatives; ++t) {
            data::index_t neg = draw_negative(sampler_, rng, pos, p_.reject_seen, rb, re);
            if (neg < 0) continue;
            if (p_.hard_negatives > 1) {
              // Dynamic negative sampling: of hard_negatives draws, the one the user scores
              // highest.
              float best = dot(ur, items.row(neg), d);
              for (int h = 1; h < p_.hard_negatives; ++h) {
                const data::index_t other =
                    draw_negative(sampler_, rng, pos, p_.reject_seen, rb, re);
                if (other < 0) continue;
                const float score = dot(ur, items.row(other), d);
                if (score > best) {
                  best = score;
                  neg = other;
                }
              }
            }
            loss += apply(u, pos, neg, s);
            ++triples;
          }
        }
      }
      const int64_t done = batches_done.fetch_add(1, std::memory_order_relaxed) + 1;
      if (reporter) progress.update(std::min(n, done * batch));
    }
  }
  step_ += batches;
  return {triples > 0 ? loss / static_cast<double>(triples) : 0.0, n, batches};
}

EpochStats BatchTrainerCpu::shared_epoch(Matrix& users, Matrix& items, double lr,
                                         uint64_t seed, Progress& progress) {
  const int64_t n = x_.nnz();
  const int64_t batch = p_.batch_size;
  const int64_t batches = (n + batch - 1) / batch;
  double loss = 0;
  std::vector<data::index_t> bu, bp, neg;
  for (int64_t b = 0; b < batches; ++b) {
    Rng rng(derive_seed(seed, static_cast<uint64_t>(b)));
    const int64_t count = std::min(batch, n - b * batch);
    bu.resize(static_cast<size_t>(count));
    bp.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const int64_t e = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
      bu[i] = row_of_[e];
      bp[i] = x_.indices[e];
    }
    neg.resize(static_cast<size_t>(p_.negatives));
    for (auto& j : neg) j = sampler_.draw(rng);
    mask_seed_ = rng.next();
    ++step_;
    const OptimizerStep os = optimizer_step(p_, lr, step_);
    loss += (p_.loss == BatchLoss::kCcl ? ccl_step(users, items, bu, bp, neg, os)
                                        : softmax_step(users, items, bu, bp, neg, os)) *
            static_cast<double>(count);
    progress.update(b * batch + count);
  }
  return {loss / static_cast<double>(n), n, batches};
}

double BatchTrainerCpu::step(Matrix& users, Matrix& items,
                             const std::vector<data::index_t>& batch_users,
                             const std::vector<data::index_t>& positives,
                             const std::vector<data::index_t>& negatives, double lr) {
  ensure_state(users, items);
  ++step_;
  mask_seed_ = derive_seed(0xd70u, static_cast<uint64_t>(step_));
  const OptimizerStep s = optimizer_step(p_, lr, step_);
  if (p_.loss == BatchLoss::kSoftmax)
    return softmax_step(users, items, batch_users, positives, negatives, s);
  if (p_.loss == BatchLoss::kCcl) return ccl_step(users, items, batch_users, positives, negatives, s);
  RF_ASSERT(batch_users.size() == positives.size() && positives.size() == negatives.size(),
            "BatchTrainerCpu::step: BPR needs one user, positive and negative per triple");
  const int d = p_.dim();
  const TripleFn triple = triple_fn(p_.optimizer);
  double loss = 0;
  for (size_t t = 0; t < batch_users.size(); ++t) {
    const data::index_t u = batch_users[t], pos = positives[t], neg = negatives[t];
    loss += triple(users.row(u), items.row(pos), items.row(neg), d, p_.factors,
                   static_cast<float>(p_.regularization), state_row(um_, u, d),
                   state_row(uv_, u, d), state_row(im_, pos, d), state_row(iv_, pos, d),
                   state_row(im_, neg, d), state_row(iv_, neg, d), s);
  }
  return loss;
}

namespace {

// update<Kind> of columns [c0, c1) of one row with gradient g[c] + a·w[c] (a = λ for the L2
// term, or minus the radial part on the sphere), as one element-wise loop that vectorises (the
// pointers do not alias): the rows of a shared-candidate step (~3,000 of them, each with its
// Adam moments) cost as much as the step's GEMMs when updated one scalar at a time.
template <int Kind>
inline void update_span(float* __restrict w, const float* __restrict g, float* __restrict m,
                        float* __restrict v, int c0, int c1, float a, const OptimizerStep& s) {
#pragma omp simd
  for (int c = c0; c < c1; ++c) update<Kind>(w[c], g[c] + a * w[c], m, v, c, s);
}

// Applies summed gradients `g` (one row per unique id) plus λ·w to the rows of `w`, the first
// `trained` columns of each.
// With `sphere` > 0 the first `sphere` columns of each row live on the unit sphere (cosine
// scores): their gradient is projected onto the tangent space (which also removes the L2 term,
// a radial direction) and they are rescaled to unit norm after the step. Columns past `sphere`
// (the item-bias column) take a plain step with L2.
template <int Kind>
void apply_rows(Matrix& w, std::vector<float>& m, std::vector<float>& v,
                const std::vector<data::index_t>& ids, std::vector<float>& g, int trained,
                int sphere, float reg, const OptimizerStep& s, int threads) {
  const int d = static_cast<int>(w.cols);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t q = 0; q < static_cast<int64_t>(ids.size()); ++q) {
    const int64_t r = ids[q];
    float* row = w.row(r);
    float* mr = state_row(m, r, d);
    float* vr = state_row(v, r, d);
    float* gr = g.data() + q * d;
    if (q + 1 < static_cast<int64_t>(ids.size())) {
      // The rows are scattered over tables far larger than the caches: fetch the next row and
      // its moments while this one is updated.
      const int64_t nr = ids[q + 1];
      const float* next[3] = {w.row(nr), state_row(m, nr, d), state_row(v, nr, d)};
      for (const float* p : next)
        if (p)
          for (int o = 0; o < d; o += 16) __builtin_prefetch(p + o, 1);
    }
    int c = 0;
    if (sphere > 0) {
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int k = 0; k < sphere; ++k) dot += gr[k] * row[k];
      update_span<Kind>(row, gr, mr, vr, 0, std::min(sphere, trained), -dot, s);
      normalize_row(row, sphere);
      c = sphere;
    }
    update_span<Kind>(row, gr, mr, vr, c, trained, reg, s);
  }
}

void apply(Matrix& w, std::vector<float>& m, std::vector<float>& v,
           const std::vector<data::index_t>& ids, std::vector<float>& g, int trained, int sphere,
           float reg, const OptimizerStep& s, int threads) {
  switch (s.kind) {
    case 0: return apply_rows<0>(w, m, v, ids, g, trained, sphere, reg, s, threads);
    case 1: return apply_rows<1>(w, m, v, ids, g, trained, sphere, reg, s, threads);
    default: return apply_rows<2>(w, m, v, ids, g, trained, sphere, reg, s, threads);
  }
}

// Sums the rows of `grads` (one per occurrence in `ids`) into one row per distinct id.
// With keep_slots, `slot` still maps each id to its row of `sums` on return (the caller adds
// more rows, then resets the slots of `unique` to −1).
void unique_sum(const std::vector<data::index_t>& ids, const float* grads, int d,
                std::vector<int32_t>& slot, std::vector<data::index_t>& unique,
                std::vector<float>& sums, bool keep_slots = false) {
  unique.clear();
  sums.clear();
  for (size_t q = 0; q < ids.size(); ++q) {
    int32_t& sl = slot[ids[q]];
    if (sl < 0) {
      sl = static_cast<int32_t>(unique.size());
      unique.push_back(ids[q]);
      sums.insert(sums.end(), grads + q * d, grads + (q + 1) * d);
    } else {
      float* dst = sums.data() + static_cast<size_t>(sl) * d;
      const float* src = grads + q * d;
      for (int c = 0; c < d; ++c) dst[c] += src[c];
    }
  }
  if (!keep_slots)
    for (data::index_t id : unique) slot[id] = -1;
}

// The shared-candidate products of softmax_step and ccl_step (row-major: U is B × d, V is
// C × d, S and its gradient G are B × C), each a single-threaded BLAS call on one thread's
// slice: rows r0..r1 of S = alpha U Vᵀ; rows r0..r1 of dU = G V; candidates c0..c1 of
// dV = Gᵀ U.
void slice_scores(const float* u, const float* v, float* scores, int64_t r0, int64_t r1,
                  int64_t C, int d, float alpha) {
  if (r1 <= r0 || C == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(r1 - r0),
              static_cast<int>(C), d, alpha, u + r0 * d, d, v, d, 0.f, scores + r0 * C,
              static_cast<int>(C));
}

void slice_row_grads(const float* g, const float* v, float* du, int64_t r0, int64_t r1,
                     int64_t C, int d) {
  if (r1 <= r0) return;
  if (C == 0) {
    std::fill(du + r0 * d, du + r1 * d, 0.f);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(r1 - r0), d,
              static_cast<int>(C), 1.f, g + r0 * C, static_cast<int>(C), v, d, 0.f, du + r0 * d,
              d);
}

void slice_cand_grads(const float* g, const float* u, float* dv, int64_t c0, int64_t c1,
                      int64_t B, int64_t C, int d) {
  if (c1 <= c0) return;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(c1 - c0), d,
              static_cast<int>(B), 1.f, g + c0, static_cast<int>(C), u, d, 0.f, dv + c0 * d, d);
}

}  // namespace

// One parallel region per step: each thread owns a range of batch rows for the scores, their
// gradients and dU, then a range of candidates for dV, with single-threaded BLAS calls on its
// slices (OpenBLAS's own thread pool would compete with OpenMP's for the same cores). A small
// step (below ~4M multiply-adds per GEMM) runs on one thread: waking the team and its barriers
// would cost more than the arithmetic, and much more when the cores are shared.
int BatchTrainerCpu::step_threads(int64_t multiply_adds) const {
  return multiply_adds < (int64_t{1} << 22) ? 1 : threads_;
}

void BatchTrainerCpu::sum_grads(const std::vector<data::index_t>& batch_users,
                                const std::vector<data::index_t>& item_ids, bool keep_item_slots,
                                int64_t users_rows, int64_t items_rows) {
  Scratch& w = *scratch_;
  const int d = p_.dim();
  if (w.user_slot.size() != static_cast<size_t>(users_rows)) w.user_slot.assign(users_rows, -1);
  if (w.item_slot.size() != static_cast<size_t>(items_rows)) w.item_slot.assign(items_rows, -1);
  unique_sum(batch_users, w.du.data(), d, w.user_slot, w.unique_users, w.gu);
  unique_sum(item_ids, w.dv.data(), d, w.item_slot, w.unique_items, w.gi, keep_item_slots);
}

void BatchTrainerCpu::apply_grads(Matrix& users, Matrix& items, int user_cols, int sphere,
                                  const OptimizerStep& s, int threads) {
  Scratch& w = *scratch_;
  const float reg = static_cast<float>(p_.regularization);
  apply(users, um_, uv_, w.unique_users, w.gu, user_cols, sphere, reg, s, threads);
  apply(items, im_, iv_, w.unique_items, w.gi, p_.dim(), sphere, reg, s, threads);
}

double BatchTrainerCpu::softmax_step(Matrix& users, Matrix& items,
                                     const std::vector<data::index_t>& batch_users,
                                     const std::vector<data::index_t>& positives,
                                     const std::vector<data::index_t>& negatives,
                                     const OptimizerStep& s) {
  RF_ASSERT(batch_users.size() == positives.size(), "softmax_step: one positive per row");
  Scratch& w = *scratch_;
  const int d = p_.dim();
  const int64_t B = static_cast<int64_t>(positives.size());
  const int64_t N = static_cast<int64_t>(negatives.size());
  const int64_t C = B + N;
  const float inv_t = static_cast<float>(1.0 / p_.temperature);
  std::vector<data::index_t> cand(positives);
  cand.insert(cand.end(), negatives.begin(), negatives.end());

  w.u.resize(static_cast<size_t>(B * d));
  w.v.resize(static_cast<size_t>(C * d));
  w.scores.resize(static_cast<size_t>(B * C));
  w.du.resize(static_cast<size_t>(B * d));
  w.dv.resize(static_cast<size_t>(C * d));
  w.log_expected.assign(static_cast<size_t>(C), 0.0);
  const double nnz = static_cast<double>(x_.nnz());
  double loss = 0;
  const float grad_scale = inv_t / static_cast<float>(B);
  const int threads = step_threads(B * C * d);  // one parallel region (step_threads())
  BlasThreads blas(1);
#pragma omp parallel num_threads(threads) reduction(+ : loss)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t b0 = B * tid / nt, b1 = B * (tid + 1) / nt;
    const int64_t c0 = C * tid / nt, c1 = C * (tid + 1) / nt;
    for (int64_t b = b0; b < b1; ++b) std::copy_n(users.row(batch_users[b]), d, w.u.data() + b * d);
    for (int64_t c = c0; c < c1; ++c) {
      std::copy_n(items.row(cand[c]), d, w.v.data() + c * d);
      if (p_.logq) {
        const double e = (p_.in_batch ? static_cast<double>(B) * static_cast<double>(counts_[cand[c]]) / nnz : 0.0) +
                         static_cast<double>(N) * sampler_.probability(cand[c]);
        w.log_expected[c] = e > 0 ? std::log(e) : 0.0;
      }
    }
#pragma omp barrier
    slice_scores(w.u.data(), w.v.data(), w.scores.data(), b0, b1, C, d, inv_t);  // U Vᵀ / τ
    for (int64_t b = b0; b < b1; ++b) {
      float* row = w.scores.data() + b * C;
      const data::index_t pos = positives[b];
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < C; ++c) {
        const bool keep = c == b || (c < B ? p_.in_batch && cand[c] != pos : cand[c] != pos);
        row[c] = keep ? row[c] - static_cast<float>(w.log_expected[c])
                      : -std::numeric_limits<float>::infinity();
        mx = std::max(mx, row[c]);
      }
      const float own = row[b];
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < C; ++c) {
        row[c] = fast_exp(row[c] - mx);  // 0 for masked columns
        sum += row[c];
      }
      const float inv = 1.f / sum;
      // −log softmax = mx − z_b + log Σ exp(z_c − mx), not −log(exp(z_b − mx) / sum): the
      // positive's probability underflows to 0 (a logit gap above ~104) at low temperatures,
      // which made the loss inf while the gradients stayed finite.
      loss += static_cast<double>(mx) - own + std::log(static_cast<double>(sum));
      // d mean-loss / d (u_b · v_c) = (P_bc − [c = b]) / (B · temperature).
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) row[c] *= inv * grad_scale;
      row[b] -= grad_scale;
    }
    slice_row_grads(w.scores.data(), w.v.data(), w.du.data(), b0, b1, C, d);  // dU = G V
#pragma omp barrier
    slice_cand_grads(w.scores.data(), w.u.data(), w.dv.data(), c0, c1, B, C, d);  // dV = Gᵀ U
  }
  sum_grads(batch_users, cand, false, users.rows, items.rows);
  // The users' bias column (item_bias) stays 1; with normalize, the cosine part is on the sphere.
  apply_grads(users, items, p_.factors, p_.normalize ? p_.factors : 0, s, threads);
  return loss / static_cast<double>(B);
}

double BatchTrainerCpu::ccl_step(Matrix& users, Matrix& items,
                                 const std::vector<data::index_t>& batch_users,
                                 const std::vector<data::index_t>& positives,
                                 const std::vector<data::index_t>& negatives,
                                 const OptimizerStep& s) {
  RF_ASSERT(batch_users.size() == positives.size(), "ccl_step: one positive per row");
  RF_ASSERT(!p_.item_bias, "ccl_step: CCL has no item bias");
  Scratch& w = *scratch_;
  const int d = p_.dim();
  const int64_t B = static_cast<int64_t>(positives.size());
  // The shared candidates: the batch's positives (in_batch) then the negatives. Each row's own
  // positive is scored on its own (a dot with its row), so without in_batch the B × B block of
  // the other rows' positives is never computed.
  std::vector<data::index_t> cand;
  if (p_.in_batch) cand = positives;
  cand.insert(cand.end(), negatives.begin(), negatives.end());
  const int64_t C = static_cast<int64_t>(cand.size());
  w.u.resize(static_cast<size_t>(B * d));
  w.vp.resize(static_cast<size_t>(B * d));
  w.v.resize(static_cast<size_t>(C * d));
  w.scores.resize(static_cast<size_t>(B * C));
  w.du.resize(static_cast<size_t>(B * d));
  w.dv.resize(static_cast<size_t>((C + B) * d));  // candidates' gradients, then the positives'
  const float margin = static_cast<float>(p_.margin);
  const float weight = static_cast<float>(p_.negative_weight);
  const float pos_grad = -1.f / static_cast<float>(B);  // d mean-loss / d cos(u_b, i_b)
  // User-side aggregation: row b scores with u'_b = z_b / ‖z_b‖, z_b = (1 − h) e_b + h W m_b.
  const bool agg = p_.history_weight > 0;
  const float h = static_cast<float>(p_.history_weight);
  if (agg) {
    history_map();
    w.hm.resize(static_cast<size_t>(B * d));
    w.z.resize(static_cast<size_t>(B * d));
    w.znorm.resize(static_cast<size_t>(B));
    w.gm.resize(static_cast<size_t>(B * d));
    w.gmap.resize(static_cast<size_t>(d) * d);
  }
  const bool drop = p_.dropout > 0;
  if (drop) w.mask.resize(static_cast<size_t>(B * d));
  const auto history = [this](data::index_t u) {
    return std::pair{x_.indices.data() + x_.indptr[u], x_.indices.data() + x_.indptr[u + 1]};
  };
  double loss = 0;
  const int threads = step_threads(B * (C + 1) * d);  // one parallel region (step_threads())
  if (w.active.size() < static_cast<size_t>(B)) w.active.resize(static_cast<size_t>(B));
  w.act_scale.resize(static_cast<size_t>(B));
  BlasThreads blas(1);
#pragma omp parallel num_threads(threads) reduction(+ : loss)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t b0 = B * tid / nt, b1 = B * (tid + 1) / nt;
    const int64_t c0 = C * tid / nt, c1 = C * (tid + 1) / nt;
    for (int64_t b = b0; b < b1; ++b) {
      std::copy_n(users.row(batch_users[b]), d, w.u.data() + b * d);
      std::copy_n(items.row(positives[b]), d, w.vp.data() + b * d);
      if (!agg) continue;
      const auto [hb, he] = history(batch_users[b]);
      history_mean(items, hb, he, d, w.hm.data() + b * d);
    }
    if (agg && b1 > b0) {
      // z = (1 − h) E + h M Wᵀ over rows b0..b1; the rows of U become z / ‖z‖.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(b1 - b0), d, d, h,
                  w.hm.data() + b0 * d, d, map_.data(), d, 0.f, w.z.data() + b0 * d, d);
      for (int64_t b = b0; b < b1; ++b) {
        float* zb = w.z.data() + b * d;
        float* ub = w.u.data() + b * d;
        double norm = 0;
        for (int c = 0; c < d; ++c) {
          zb[c] += (1.f - h) * ub[c];
          norm += static_cast<double>(zb[c]) * zb[c];
        }
        const float len = static_cast<float>(std::sqrt(norm));
        w.znorm[b] = len;
        const float inv = len > 0 ? 1.f / len : 0.f;
        for (int c = 0; c < d; ++c) ub[c] = zb[c] * inv;
      }
    }
    if (drop)  // the scored vectors are the masked ones
      for (int64_t b = b0; b < b1; ++b) {
        float* mb = w.mask.data() + b * d;
        dropout_mask(mask_seed_, b, d, p_.dropout, mb);
        float* ub = w.u.data() + b * d;
        for (int c = 0; c < d; ++c) ub[c] *= mb[c];
      }
    for (int64_t c = c0; c < c1; ++c) std::copy_n(items.row(cand[c]), d, w.v.data() + c * d);
#pragma omp barrier
    const int rows = static_cast<int>(b1 - b0);
    slice_scores(w.u.data(), w.v.data(), w.scores.data(), b0, b1, C, d, 1.f);  // cosines
    for (int64_t b = b0; b < b1; ++b) {
      const float* ub = w.u.data() + b * d;
      const float* vb = w.vp.data() + b * d;
      float* row = w.scores.data() + b * C;
      const data::index_t pos = positives[b];
      // The row's negatives: every candidate but its positive (its own column with in_batch,
      // and accidental hits).
      int64_t kept = 0;
      double above = 0;
      for (int64_t c = 0; c < C; ++c) {
        if (cand[c] == pos) continue;
        ++kept;
        if (row[c] > margin) above += static_cast<double>(row[c]) - margin;
      }
      const float scale =
          kept > 0 ? weight / static_cast<float>(kept) / static_cast<float>(B) : 0.f;
      std::vector<int32_t>& act = w.active[static_cast<size_t>(b)];
      act.clear();
      w.act_scale[b] = scale;
      for (int64_t c = 0; c < C; ++c) {
        const bool on = cand[c] != pos && row[c] > margin && scale > 0;
        row[c] = on ? scale : 0.f;
        if (on) act.push_back(static_cast<int32_t>(c));
      }
      loss += 1.0 - static_cast<double>(dot(ub, vb, d)) +
              (kept > 0 ? static_cast<double>(weight) * above / static_cast<double>(kept) : 0.0);
    }
#pragma omp barrier
    // Past a trained model's first epochs only a few per mille of the row–negative pairs are
    // above the margin, so G is nearly empty: its products then go pair by pair (each thread its
    // own rows of dU, then its own candidates of dV) instead of as two dense GEMMs, the same sums
    // in another order. Dense when more than sparse_share_ (set_sparse_share()) of G is nonzero.
    int64_t nonzero = 0;
    for (int64_t b = 0; b < B; ++b) nonzero += static_cast<int64_t>(w.active[b].size());
    const bool sparse = static_cast<double>(nonzero) <= sparse_share_ * static_cast<double>(B * C);
#pragma omp single nowait
    {
      hinge_.active += nonzero;
      hinge_.pairs += B * C;
      hinge_.sparse_steps += sparse ? 1 : 0;
    }
    if (rows > 0) {
      // dU = G V over the candidates, plus the positive's term.
      if (sparse) {
        for (int64_t b = b0; b < b1; ++b) {
          float* du = w.du.data() + b * d;
          std::fill_n(du, d, 0.f);
          const float g = w.act_scale[b];
          for (const int32_t cand_c : w.active[b]) {
            const float* vc = w.v.data() + static_cast<int64_t>(cand_c) * d;
#pragma omp simd
            for (int c = 0; c < d; ++c) du[c] += g * vc[c];
          }
        }
      } else {
        slice_row_grads(w.scores.data(), w.v.data(), w.du.data(), b0, b1, C, d);
      }
      for (int64_t b = b0; b < b1; ++b) {
        float* du = w.du.data() + b * d;
        float* dp = w.dv.data() + (C + b) * d;
        const float* ub = w.u.data() + b * d;
        const float* vb = w.vp.data() + b * d;
        for (int c = 0; c < d; ++c) {
          du[c] += pos_grad * vb[c];
          dp[c] = pos_grad * ub[c];
        }
        if (drop) {  // through the mask: d loss / d (unmasked vector)
          const float* mb = w.mask.data() + b * d;
          for (int c = 0; c < d; ++c) du[c] *= mb[c];
        }
      }
      if (agg) {
        // Through u' = z / ‖z‖: dz = (du − (du·u') u') / ‖z‖, kept in w.z (u' from z, since w.u
        // may hold the masked vector); the user's own row gets (1 − h) dz, the history mean
        // h Wᵀ dz (w.gm, rows b0..b1).
        for (int64_t b = b0; b < b1; ++b) {
          float* du = w.du.data() + b * d;
          float* dz = w.z.data() + b * d;
          const float inv = w.znorm[b] > 0 ? 1.f / w.znorm[b] : 0.f;
          const float radial = dot(du, dz, d) * inv;
          for (int c = 0; c < d; ++c) {
            dz[c] = (du[c] - radial * dz[c] * inv) * inv;
            du[c] = (1.f - h) * dz[c];
          }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, d, h,
                    w.z.data() + b0 * d, d, map_.data(), d, 0.f, w.gm.data() + b0 * d, d);
      }
    }
#pragma omp barrier
    if (sparse) {  // dV = Gᵀ U, candidates c0..c1
      std::fill(w.dv.data() + c0 * d, w.dv.data() + c1 * d, 0.f);
      for (int64_t b = 0; b < B; ++b) {
        const float g = w.act_scale[b];
        const float* ub = w.u.data() + b * d;
        for (const int32_t cand_c : w.active[b]) {
          if (cand_c < c0 || cand_c >= c1) continue;
          float* dv = w.dv.data() + static_cast<int64_t>(cand_c) * d;
#pragma omp simd
          for (int c = 0; c < d; ++c) dv[c] += g * ub[c];
        }
      }
    } else {
      slice_cand_grads(w.scores.data(), w.u.data(), w.dv.data(), c0, c1, B, C, d);
    }
    // dW = h dZᵀ M, rows r0..r1 of factors × factors.
    const int64_t r0 = d * tid / nt, r1 = d * (tid + 1) / nt;
    if (agg && r1 > r0)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(r1 - r0), d,
                  static_cast<int>(B), h, w.z.data() + r0, d, w.hm.data(), d, 0.f,
                  w.gmap.data() + r0 * d, d);
  }
  std::vector<data::index_t> item_ids(cand);
  item_ids.insert(item_ids.end(), positives.begin(), positives.end());
  sum_grads(batch_users, item_ids, agg, users.rows, items.rows);
  if (agg) {
    // Every history item j of row b gets dL/dm_b / n_b. Slots first (one pass), then each
    // thread adds into its own range of slots.
    for (int64_t b = 0; b < B; ++b) {
      const auto [hb, he] = history(batch_users[b]);
      for (const data::index_t* j = hb; j != he; ++j)
        if (w.item_slot[*j] < 0) {
          w.item_slot[*j] = static_cast<int32_t>(w.unique_items.size());
          w.unique_items.push_back(*j);
        }
    }
    w.gi.resize(w.unique_items.size() * static_cast<size_t>(d), 0.f);
    const int64_t U = static_cast<int64_t>(w.unique_items.size());
#pragma omp parallel num_threads(threads)
    {
      const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t s0 = U * tid / nt, s1 = U * (tid + 1) / nt;
      for (int64_t b = 0; b < B; ++b) {
        const auto [hb, he] = history(batch_users[b]);
        if (he == hb) continue;
        const float inv_n = 1.f / static_cast<float>(he - hb);
        const float* g = w.gm.data() + b * d;
        for (const data::index_t* j = hb; j != he; ++j) {
          const int64_t sl = w.item_slot[*j];
          if (sl < s0 || sl >= s1) continue;
          float* dst = w.gi.data() + sl * d;
#pragma omp simd
          for (int c = 0; c < d; ++c) dst[c] += inv_n * g[c];
        }
      }
    }
    for (data::index_t id : w.unique_items) w.item_slot[id] = -1;
  }
  apply_grads(users, items, d, d, s, threads);  // every column on the sphere
  if (agg) {
    // W is a free matrix: a plain step, without L2 (model.regularization has no effect on ccl).
    Matrix map;
    map.rows = d;
    map.cols = d;
    map.data = std::move(map_);
    if (w.map_rows.size() != static_cast<size_t>(d)) {
      w.map_rows.resize(static_cast<size_t>(d));
      std::iota(w.map_rows.begin(), w.map_rows.end(), data::index_t{0});
    }
    apply(map, mm_, mv_, w.map_rows, w.gmap, d, 0, 0.f, s, threads);
    map_ = std::move(map.data).take();
  }
  return loss / static_cast<double>(B);
}

void dropout_mask(uint64_t seed, int64_t row, int d, double p, float* mask) {
  Rng rng(derive_seed(seed, static_cast<uint64_t>(row)));
  const float keep = static_cast<float>(1.0 / (1.0 - p));
  for (int c = 0; c < d; ++c) mask[c] = rng.uniform() < p ? 0.f : keep;
}

Matrix aggregate_users(const BatchParams& params, const Matrix& users,
                       const std::vector<float>& map, const Matrix& items,
                       const data::Csr& user_items, int threads) {
  const int d = params.factors;
  RF_ASSERT(params.loss == BatchLoss::kCcl && params.history_weight > 0 && !params.item_bias,
            "aggregate_users: only ccl with a history weight aggregates");
  RF_ASSERT(users.cols == d && items.cols == d && users.rows == user_items.rows &&
                items.rows == user_items.cols && map.size() == static_cast<size_t>(d) * d,
            "aggregate_users: shapes differ");
  const float h = static_cast<float>(params.history_weight);
  Matrix out;
  out.rows = users.rows;
  out.cols = d;
  out.data.assign(static_cast<size_t>(users.rows * d), 0.f);
  // Blocks of rows: history means into `out`, then z = (1 − h) E + h M Wᵀ, normalised.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (users.rows + kBlock - 1) / kBlock;
  BlasThreads blas(1);
#pragma omp parallel num_threads(std::max(1, threads))
  {
    std::vector<float> z(static_cast<size_t>(kBlock * d));
#pragma omp for schedule(dynamic, 4)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t r0 = blk * kBlock, r1 = std::min(users.rows, r0 + kBlock);
      for (int64_t r = r0; r < r1; ++r)
        history_mean(items, user_items.indices.data() + user_items.indptr[r],
                     user_items.indices.data() + user_items.indptr[r + 1], d, out.row(r));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(r1 - r0), d, d, h,
                  out.row(r0), d, map.data(), d, 0.f, z.data(), d);
      for (int64_t r = r0; r < r1; ++r) {
        float* o = out.row(r);
        const float* zr = z.data() + (r - r0) * d;
        const float* e = users.row(r);
        for (int c = 0; c < d; ++c) o[c] = zr[c] + (1.f - h) * e[c];
        normalize_row(o, d);
      }
    }
  }
  return out;
}

// ---- fold-in -------------------------------------------------------------------------------

Matrix fold_in(const BatchParams& params, const data::Csr& rows, const Matrix& items,
               const ItemSampler& sampler, uint64_t seed, int threads) {
  const int d = params.dim(), ku = params.factors;
  RF_ASSERT(items.cols == d && rows.cols == items.rows, "fold_in: shapes differ");
  Matrix out;
  out.rows = rows.rows;
  out.cols = d;
  out.data.assign(static_cast<size_t>(rows.rows * d), 0.f);
  const int M = std::max(params.negatives, 64);
  BatchParams adam = params;
  adam.optimizer = Optimizer::kAdam;
  const float reg = static_cast<float>(params.regularization);
  const float inv_t = static_cast<float>(1.0 / params.temperature);
  // Each row draws from its own stream, so the team size changes no result; more threads than
  // rows would only start idle ones (in a server, one team per concurrent request).
  const int team = static_cast<int>(std::min<int64_t>(std::max(1, threads), std::max<int64_t>(rows.rows, 1)));
#pragma omp parallel num_threads(team)
  {
    std::vector<float> g(d), m(d), v(d), sp, sn, gp, gn;
    std::vector<data::index_t> neg(M);
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows.rows; ++r) {
      float* u = out.row(r);
      if (params.item_bias) u[d - 1] = 1.f;
      const data::index_t* pb = rows.indices.data() + rows.indptr[r];
      const int64_t P = rows.row_size(r);
      if (P == 0) continue;
      Rng rng(derive_seed(seed, static_cast<uint64_t>(r)));
      std::fill(m.begin(), m.end(), 0.f);
      std::fill(v.begin(), v.end(), 0.f);
      if (params.loss == BatchLoss::kCcl) {
        // From the normalised sum of the row's items, projected steps on the sphere.
        for (int64_t q = 0; q < P; ++q) {
          const float* it = items.row(pb[q]);
          for (int c = 0; c < d; ++c) u[c] += it[c];
        }
        normalize_row(u, d);
        const float margin = static_cast<float>(params.margin);
        const float weight = static_cast<float>(params.negative_weight);
        for (int t = 1; t <= params.fold_in_steps; ++t) {
          for (auto& j : neg) j = sampler.draw(rng);
          for (int c = 0; c < d; ++c) g[c] = 0.f;
          // Mean over the positives of (1 − cos): −1/P times each positive's row.
          for (int64_t q = 0; q < P; ++q) {
            const float* it = items.row(pb[q]);
            for (int c = 0; c < d; ++c) g[c] -= it[c] / static_cast<float>(P);
          }
          int kept = 0;
          for (int j = 0; j < M; ++j) kept += !std::binary_search(pb, pb + P, neg[j]);
          for (int j = 0; j < M && kept > 0; ++j) {
            if (std::binary_search(pb, pb + P, neg[j])) continue;
            const float* it = items.row(neg[j]);
            if (dot(u, it, d) <= margin) continue;
            for (int c = 0; c < d; ++c) g[c] += weight / static_cast<float>(kept) * it[c];
          }
          float radial = 0;
          for (int c = 0; c < d; ++c) radial += g[c] * u[c];
          const OptimizerStep s = optimizer_step(adam, 0.01, t);
          for (int c = 0; c < d; ++c) update<2>(u[c], g[c] - radial * u[c], m.data(), v.data(), c, s);
          normalize_row(u, d);
        }
        continue;
      }
      sp.resize(P);
      sn.resize(M);
      gp.resize(P);
      gn.resize(M);
      for (int t = 1; t <= params.fold_in_steps; ++t) {
        for (auto& j : neg) j = sampler.draw(rng);
        for (int64_t q = 0; q < P; ++q) sp[q] = std::inner_product(u, u + d, items.row(pb[q]), 0.f);
        for (int q = 0; q < M; ++q) sn[q] = std::inner_product(u, u + d, items.row(neg[q]), 0.f);
        std::fill(gp.begin(), gp.end(), 0.f);
        std::fill(gn.begin(), gn.end(), 0.f);
        if (params.loss == BatchLoss::kBpr) {
          // Mean over pairs of −log σ(s_p − s_n).
          const float scale = 1.f / static_cast<float>(P * M);
          for (int64_t q = 0; q < P; ++q)
            for (int j = 0; j < M; ++j) {
              if (neg[j] == pb[q]) continue;
              const float gx = -sigmoid(sn[j] - sp[q]) * scale;
              gp[q] += gx;
              gn[j] -= gx;
            }
        } else {
          // Mean over positives of −log softmax against the negatives, log-Q corrected:
          // corrected logits z = s / temperature − log(M q).
          for (int64_t q = 0; q < P; ++q)
            sp[q] = sp[q] * inv_t - std::log(M * static_cast<float>(sampler.probability(pb[q])));
          for (int j = 0; j < M; ++j)
            sn[j] = sn[j] * inv_t - std::log(M * static_cast<float>(sampler.probability(neg[j])));
          const float scale = inv_t / static_cast<float>(P);
          for (int64_t q = 0; q < P; ++q) {
            float mx = sp[q];
            for (int j = 0; j < M; ++j)
              if (neg[j] != pb[q]) mx = std::max(mx, sn[j]);
            double sum = std::exp(sp[q] - mx);
            for (int j = 0; j < M; ++j)
              if (neg[j] != pb[q]) sum += std::exp(sn[j] - mx);
            gp[q] += (static_cast<float>(std::exp(sp[q] - mx) / sum) - 1.f) * scale;
            for (int j = 0; j < M; ++j)
              if (neg[j] != pb[q]) gn[j] += static_cast<float>(std::exp(sn[j] - mx) / sum) * scale;
          }
        }
        for (int c = 0; c < d; ++c) g[c] = reg * u[c];
        for (int64_t q = 0; q < P; ++q) {
          const float* it = items.row(pb[q]);
          for (int c = 0; c < d; ++c) g[c] += gp[q] * it[c];
        }
        for (int j = 0; j < M; ++j) {
          const float* it = items.row(neg[j]);
          for (int c = 0; c < d; ++c) g[c] += gn[j] * it[c];
        }
        const OptimizerStep s = optimizer_step(adam, 0.01, t);
        for (int c = 0; c < ku; ++c) update<2>(u[c], g[c], m.data(), v.data(), c, s);
      }
      if (params.normalize) normalize_row(u, ku);
    }
  }
  return out;
}

}  // namespace recforge::backend::cpu
