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

std::string nonfinite_loss_cause(const config::Config& cfg, const data::Csr& user_items) {
  float largest = 0;
  for (const float c : user_items.data)
    if (!(std::fabs(c) <= largest)) largest = std::fabs(c);  // NaN and inf win
  const std::string& type = cfg.get_string("model.type");
  if (!std::isfinite(largest))
    return fmt::format(
        "an interaction confidence is {} (float32 holds at most 3.4e38): a weight, a sum of "
        "duplicate weights (data.duplicates: sum) or the weighting scheme overflows; lower the "
        "weights, use data.duplicates: max, or set weighting.scheme",
        largest);
  if (type == "ials")
    return fmt::format(
        "the largest interaction confidence is {:.3g} and model.alpha {}; lower them, or "
        "model.init_std ({}), or raise model.regularization",
        largest, cfg.get_float("model.alpha"), cfg.get_float("model.init_std"));
  if (type == "softmax")
    return fmt::format(
        "scores divided by model.temperature {} overflow float32; raise model.temperature or "
        "lower model.learning_rate ({}) or model.init_std ({})",
        cfg.get_float("model.temperature"), cfg.get_float("model.learning_rate"),
        cfg.get_float("model.init_std"));
  return fmt::format("the factors diverged; lower model.learning_rate ({}) or model.init_std "
                     "({}), or raise model.regularization",
                     cfg.get_float("model.learning_rate"), cfg.get_float("model.init_std"));
}

Matrix random_factors(int64_t rows, int k, double stddev, uint64_t seed) {
  Matrix m;
  m.rows = rows;
  m.cols = k;
  m.data.resize(static_cast<size_t>(rows) * k);
  const double s = stddev / std::sqrt(static_cast<double>(k));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    Rng rng(derive_seed(seed, static_cast<uint64_t>(r)));
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
  const double longer = static_cast<double>(std::max(n_users, n_items));
  const double per_thread =
      f * (5 * 64 * k + (1 << 18) + 256 * k +                     // CG blocks, gather, rotation
           (o.solve.cholesky ? k * k + 257 * k : 0) +              // Cholesky systems
           128 * 2048 + 128 * k + 128 * 1024) +                    // evaluation tiles
      kPerThreadReserve;                                           // BLAS buffer, malloc arena
  threads = std::max(threads, openblas_get_num_threads());        // OpenBLAS's pool threads too
  return {{"factors", rows * k * f},
          {"Gram and eigenvector matrices", 4 * k * k * f},       // G, basis, LAPACK work
          {"rotated and weighted copies", 2 * longer * k * f},
          {fmt::format("buffers of {} threads", threads), threads * per_thread}};
}

void Ials::init(int64_t n_users, int64_t n_items) {
  check_memory(fmt::format("iALS with model.factors {}", o_.factors),
               ials_memory(o_, n_users, n_items, threads_), "model.factors or train.threads");
  std::tie(users_, items_) = initial_factors(o_, n_users, n_items);
  iterations_done_ = 0;
}

void Ials::iterate(const data::Csr& user_items, const data::Csr& item_users) {
  if (o_.unobserved_exp != 0 && item_weights_.empty())
    item_weights_ = backend::cpu::popularity_weights(item_users, o_.unobserved_exp);
  ++iterations_done_;
  backend::cpu::solve_half(user_items, items_, users_, o_.solve, threads_, item_weights_);
  check_finite(users_, "user", iterations_done_);
  backend::cpu::solve_half(item_users, users_, items_, o_.solve, threads_, {}, item_weights_);
  check_finite(items_, "item", iterations_done_);
}

double Ials::loss(const data::Csr& user_items, const data::Csr& item_users) const {
  return backend::cpu::objective(user_items, item_users, users_, items_, o_.solve, item_weights_);
}

void Ials::set_factors(Matrix users, Matrix items) {
  RF_ASSERT(users.cols == items.cols, "set_factors: factor counts differ");
  users_ = std::move(users);
  items_ = std::move(items);
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

Matrix Ials::fold_in(const data::Csr& rows) const {
  return backend::cpu::fold_in(rows, items_, o_.solve, threads_, item_weights_);
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
          {"alpha", s.alpha},
          {"init_std", o_.init_std},
          {"seed", o_.seed},
          {"solver", s.cholesky ? "cholesky" : "cg"},
          {"cg_steps", s.cg_steps},
          {"dtype", backend::cuda::storage_name(o_.dtype)}};
}

namespace {

/// Parses a `model.dtype` value; throws recforge::Error naming `where` for anything else.
backend::cuda::Storage parse_storage(const std::string& name, const std::string& where) {
  if (name == "float32") return backend::cuda::Storage::kFloat32;
  if (name == "float16") return backend::cuda::Storage::kFloat16;
  if (name == "bfloat16") return backend::cuda::Storage::kBFloat16;
  fail("{}: model.dtype is \"{}\"; expected float32, float16 or bfloat16", where, name);
}

/// Parses `auto`, `on` or `off`; throws recforge::Error naming `where` for anything else.
backend::cuda::Streaming parse_streaming(const std::string& name, const std::string& where) {
  if (name == "auto") return backend::cuda::Streaming::kAuto;
  if (name == "on") return backend::cuda::Streaming::kOn;
  if (name == "off") return backend::cuda::Streaming::kOff;
  fail("{}: train.gpu_streaming is \"{}\"; expected auto, on or off", where, name);
}

}  // namespace

IalsOptions ials_options(const config::Config& cfg) {
  IalsOptions o;
  o.factors = static_cast<int>(cfg.get_int("model.factors"));
  o.iterations = static_cast<int>(cfg.get_int("model.iterations"));
  o.init_std = cfg.get_float("model.init_std");
  o.unobserved_exp = cfg.get_float("model.unobserved_exp");
  o.seed = static_cast<uint64_t>(cfg.is_set("model.seed") ? cfg.get_int("model.seed")
                                                          : cfg.get_int("run.seed"));
  auto& s = o.solve;
  s.regularization = cfg.get_float("model.regularization");
  s.reg_exp = cfg.get_float("model.reg_exp");
  s.reg_offset = cfg.get_float("model.reg_offset");
  s.unobserved_weight = cfg.get_float("model.unobserved_weight");
  s.alpha = cfg.get_float("model.alpha");
  s.cholesky = cfg.get_string("model.solver") == "cholesky";
  s.cg_steps = static_cast<int>(cfg.get_int("model.cg_steps"));
  o.dtype = parse_storage(cfg.get_string("model.dtype"), cfg.where("model.dtype"));
  o.streaming = parse_streaming(cfg.get_string("train.gpu_streaming"),
                                               cfg.where("train.gpu_streaming"));
  if (s.regularization == 0 && s.unobserved_weight == 0)
    fail(
        "{}: model.regularization and model.unobserved_weight are both 0, so rows with fewer "
        "interactions than factors have no unique solution; set either above 0",
        cfg.where("model.regularization"));
  return o;
}

std::unique_ptr<Model> make_model(const config::Config& cfg, const Context& ctx) {
  const std::string& type = cfg.get_string("model.type");
  if (type == "none") return nullptr;
  if (type == "bpr" || type == "softmax") return make_batch_model(batch_options(cfg), ctx);
  const IalsOptions o = ials_options(cfg);
  if (ctx.device().kind == Device::Kind::kCpu && o.dtype != backend::cuda::Storage::kFloat32)
    fail(
        "{}: model.dtype {} needs a CUDA device, but this run trains on the CPU, which stores "
        "factors in float32 only; set model.dtype: float32 or train.device: cuda",
        cfg.where("model.dtype"), backend::cuda::storage_name(o.dtype));
  return make_ials(o, ctx);
}

std::unique_ptr<Model> make_ials(const IalsOptions& options, const Context& ctx) {
  return ctx.dispatch(
      [&]() -> std::unique_ptr<Model> { return std::make_unique<Ials>(options, ctx.threads()); },
      [&]() -> std::unique_ptr<Model> { return std::make_unique<IalsCuda>(options, ctx); });
}

}  // namespace recforge::models
