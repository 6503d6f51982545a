#include "models/ials.h"

#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"

namespace recforge::models {
namespace {

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

}  // namespace

Ials::Ials(IalsOptions options, int threads) : o_(options), threads_(threads) {}

void Ials::init(int64_t n_users, int64_t n_items) {
  // Users and items draw from separate streams of the same seed.
  users_ = random_factors(n_users, o_.factors, o_.init_std, derive_seed(o_.seed, 1));
  items_ = random_factors(n_items, o_.factors, o_.init_std, derive_seed(o_.seed, 2));
}

void Ials::iterate(const data::Csr& user_items, const data::Csr& item_users) {
  if (o_.unobserved_exp != 0 && item_weights_.empty())
    item_weights_ = backend::cpu::popularity_weights(item_users, o_.unobserved_exp);
  backend::cpu::solve_side(user_items, items_, users_, o_.solve, threads_, item_weights_);
  backend::cpu::solve_side(item_users, users_, items_, o_.solve, threads_, {}, item_weights_);
}

double Ials::loss(const data::Csr& user_items, const data::Csr& item_users) const {
  return backend::cpu::objective(user_items, item_users, users_, items_, o_.solve, item_weights_);
}

void Ials::set_factors(Matrix users, Matrix items) {
  RF_ASSERT(users.cols == items.cols, "set_factors: factor counts differ");
  users_ = std::move(users);
  items_ = std::move(items);
}

Matrix Ials::fold_in(const data::Csr& rows) const {
  return backend::cpu::fold_in(rows, items_, o_.solve, threads_, item_weights_);
}

nlohmann::json Ials::describe() const {
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
          {"dtype", "float32"}};
}

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
  if (s.regularization == 0 && s.unobserved_weight == 0)
    fail("{}: model.regularization and model.unobserved_weight are both 0, so rows with fewer "
         "interactions than factors have no unique solution; set either above 0",
         cfg.where("model.regularization"));
  return o;
}

std::unique_ptr<Model> make_model(const config::Config& cfg, const Context& ctx) {
  const std::string& type = cfg.get_string("model.type");
  if (type == "none") return nullptr;
  if (ctx.device().kind == Device::Kind::kCuda) {
    if (!parse_device(cfg.get_string("train.device")).is_auto)
      fail("{}: model.type {} has no CUDA implementation yet; use train.device: cpu",
           cfg.where("train.device"), type);
    log().info("model {} runs on the CPU (no CUDA implementation yet)", type);
  }
  return std::make_unique<Ials>(ials_options(cfg), ctx.threads());
}

}  // namespace recforge::models
