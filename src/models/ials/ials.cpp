#include "models/ials/ials.h"

#include <algorithm>
#include <cmath>

#include "core/blas.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "models/batch/batch.h"
#include "models/ials/ials_cuda.h"
#include "models/memory.h"

namespace recforge::models {

bool all_finite(const Matrix& m) {
  bool finite = true;
#pragma omp parallel for reduction(&& : finite) schedule(static)
  for (int64_t j = 0; j < static_cast<int64_t>(m.data.size()); ++j)
    finite = finite && std::isfinite(m.data[j]);
  return finite;
}

Matrix random_factors(int64_t rows, int k, double stddev, uint64_t seed, int64_t first_row) {
  Matrix m;
  m.rows = rows;
  m.cols = k;
  m.data.resize(static_cast<size_t>(rows) * k);
  const double s = stddev / std::sqrt(static_cast<double>(k));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    Rng rng(derive_seed(seed, static_cast<uint64_t>(first_row + r)));
    float* row = m.row(r);
    for (int c = 0; c < k; ++c) row[c] = static_cast<float>(s * rng.normal());
  }
  return m;
}

std::pair<Matrix, Matrix> initial_factors(const IalsOptions& o, int64_t n_users, int64_t n_items) {
  // Users and items draw from separate streams of the same seed.
  return {random_factors(n_users, o.factors, o.init_std, derive_seed(o.seed, 1)),
          random_factors(n_items, o.factors, o.init_std, derive_seed(o.seed, 2))};
}

namespace {

// Throws recforge::Error naming the side and iteration when `m` holds a NaN or an infinity.
void check_finite(const Matrix& m, const char* side, int iteration) {
  if (!all_finite(m))
    fail(
        "iALS iteration {} produced non-finite {} factors (NaN or infinity); check the "
        "interaction weights and lower model.alpha or model.init_std, or raise "
        "model.regularization",
        iteration, side);
}

}  // namespace

Ials::Ials(IalsOptions options, int threads) : o_(options), threads_(threads) {
  if (o_.dtype != backend::cuda::Storage::kFloat32)
    fail(
        "model.dtype {} needs a CUDA device (train.device: cuda); the CPU backend stores "
        "factors in float32 only",
        backend::cuda::storage_name(o_.dtype));
}

std::vector<MemoryPart> ials_memory(const IalsOptions& o, int64_t n_users, int64_t n_items,
                                    int threads) {
  const double k = o.factors, f = sizeof(float), rows = static_cast<double>(n_users + n_items);
  const double per_thread =
      f * (5 * 64 * k + (1 << 18) + 256 * k +                     // CG blocks, gather, rotation
           (o.solve.cholesky ? k * k + 257 * k : 0) +              // Cholesky systems
           128 * 2048 + 128 * k + 128 * 1024) +                    // evaluation tiles
      kPerThreadReserve;                                           // BLAS buffer, malloc arena
  std::string lower;
  threads = buffer_threads(threads, &lower);                       // OpenBLAS's pool threads too
  return {{"factors", rows * k * f},
          {"Gram and eigenvector matrices", 4 * k * k * f},       // G, basis, LAPACK work
          // Training rotates both sides in place (solve_half); what is copied is the items: scaled
          // by their weights (model.unobserved_exp) and rotated for a fold-in (split.method users).
          {"weighted and rotated copies of the items", 2 * static_cast<double>(n_items) * k * f},
          {fmt::format("buffers of {} threads", threads), threads * per_thread}};
}

void Ials::init(int64_t n_users, int64_t n_items) {
  std::string lower;
  buffer_threads(threads_, &lower);
  check_memory(fmt::format("iALS with model.factors {}", o_.factors),
               ials_memory(o_, n_users, n_items, threads_), "model.factors or " + lower);
  drop_prepared();
  std::tie(users_, items_) = initial_factors(o_, n_users, n_items);
  iterations_done_ = 0;
}

void Ials::iterate(const data::Csr& user_items, const data::Csr& item_users) {
  drop_prepared();
  if (o_.unobserved_exp != 0 && item_weights_.empty())
    item_weights_ = backend::cpu::popularity_weights(item_users, o_.unobserved_exp);
  ++iterations_done_;
  namespace cpu = backend::cpu;
  cpu::solve_half(user_items, items_, users_, cpu::half_params(o_.solve, iterations_done_, "user"),
                  threads_, item_weights_);
  check_finite(users_, "user", iterations_done_);
  cpu::solve_half(item_users, users_, items_, cpu::half_params(o_.solve, iterations_done_, "item"),
                  threads_, {}, item_weights_);
  check_finite(items_, "item", iterations_done_);
}

double Ials::loss(const data::Csr& user_items, const data::Csr& item_users) const {
  return backend::cpu::objective(user_items, item_users, users_, items_, o_.solve, item_weights_);
}

void Ials::set_factors(Matrix users, Matrix items) {
  RF_ASSERT(users.cols == items.cols, "set_factors: factor counts differ");
  drop_prepared();
  users_ = std::move(users);
  items_ = std::move(items);
}

void Ials::set_item_counts(const std::vector<int64_t>& counts) {
  drop_prepared();
  item_weights_ = backend::cpu::popularity_weights(counts, o_.unobserved_exp);
}

TrainingState Ials::training_state() const {
  TrainingState s;
  s.values["iterations_done"] = iterations_done_;
  return s;
}

void Ials::resume(Matrix users, Matrix items, int iterations_done, TrainingState) {
  set_factors(std::move(users), std::move(items));
  iterations_done_ = iterations_done;
}

void Ials::prepare_queries(Query which) {
  if (which == Query::kFoldIn)
    gram_ = std::make_shared<const std::vector<float>>(
        backend::cpu::weighted_gram(items_, o_.solve.unobserved_weight, item_weights_));
  else
    unobserved_ = std::make_shared<const std::vector<double>>(
        backend::cpu::explain_unobserved(items_, o_.solve, item_weights_));
}

Matrix Ials::fold_in_rows(const data::Csr& rows) const {
  return backend::cpu::fold_in(rows, items_, o_.solve, threads_, item_weights_,
                               gram_.get());
}

std::vector<Explanation> Ials::explain(const data::Csr& row, const float* user,
                                       const std::vector<int64_t>& items) const {
  return backend::cpu::explain_user(row, items_, o_.solve, item_weights_, user, items,
                                    unobserved_.get());
}

nlohmann::json Ials::describe() const { return describe_ials(o_); }

nlohmann::json describe_ials(const IalsOptions& o_) {
  const auto& s = o_.solve;
  return {{"type", "ials"},
          {"factors", o_.factors},
          {"iterations", o_.iterations},
          {"regularization", s.regularization},
          {"reg_exp", s.reg_exp},
          {"reg_offset", s.reg_offset},
          {"unobserved_weight", s.unobserved_weight},
          {"unobserved_exp", o_.unobserved_exp},
          {"observed_weight", o_.observed_weight},
          {"alpha", s.alpha},
          {"init_std", o_.init_std},
          {"seed", o_.seed},
          {"solver", s.cholesky ? "cholesky" : "cg"},
          {"cg_steps", s.cg_steps},
          {"dtype", backend::cuda::storage_name(o_.dtype)}};
}

std::unique_ptr<Model> make_model(const ModelOptions& options, const Context& ctx) {
  switch (options.family) {
    case ModelOptions::Family::kNone:
      return nullptr;
    case ModelOptions::Family::kBatch:
      return make_batch_model(options.batch, ctx);
    case ModelOptions::Family::kIals:
      break;
  }
  return make_ials(options.ials, ctx);
}

std::unique_ptr<Model> make_ials(const IalsOptions& options, const Context& ctx) {
  return ctx.dispatch(
      [&]() -> std::unique_ptr<Model> { return std::make_unique<Ials>(options, ctx.threads()); },
      [&]() -> std::unique_ptr<Model> { return std::make_unique<IalsCuda>(options, ctx); });
}

}  // namespace recforge::models
