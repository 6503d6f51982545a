#include "models/batch/batch.h"

#include <algorithm>
#include <cmath>

#include "core/blas.h"
#include "core/error.h"
#include "models/batch/batch_cuda.h"
#include "models/ials/ials.h"
#include "models/memory.h"

namespace recforge::models {

using backend::BatchLoss;
using backend::Optimizer;

const char* loss_name(BatchLoss loss) {
  return loss == BatchLoss::kBpr ? "bpr" : loss == BatchLoss::kCcl ? "ccl" : "softmax";
}

namespace {

const char* optimizer_name(Optimizer o) {
  return o == Optimizer::kSgd ? "sgd" : o == Optimizer::kAdagrad ? "adagrad" : "adam";
}

}  // namespace

std::pair<Matrix, Matrix> initial_embeddings(const BatchOptions& o, int64_t n_users,
                                             int64_t n_items) {
  const int k = o.params.factors;
  Matrix users = random_factors(n_users, k, o.init_std, derive_seed(o.seed, 1));
  Matrix items = random_factors(n_items, k, o.init_std, derive_seed(o.seed, 2));
  if (o.params.normalize || o.params.loss == backend::BatchLoss::kCcl)  // ccl: always cosines
    for (Matrix* m : {&users, &items})
      for (int64_t r = 0; r < m->rows; ++r) backend::cpu::normalize_row(m->row(r), k);
  if (!o.params.item_bias) return {std::move(users), std::move(items)};
  // One more column: users hold 1 (so that score = u·v + bias), items start with bias 0.
  auto widen = [k](const Matrix& m, float last) {
    Matrix w;
    w.rows = m.rows;
    w.cols = k + 1;
    w.data.resize(static_cast<size_t>(m.rows * (k + 1)));
    for (int64_t r = 0; r < m.rows; ++r) {
      std::copy_n(m.row(r), k, w.row(r));
      w.row(r)[k] = last;
    }
    return w;
  };
  return {widen(users, 1.f), widen(items, 0.f)};
}

nlohmann::json describe_batch(const BatchOptions& o) {
  const auto& p = o.params;
  nlohmann::json j = {{"type", loss_name(p.loss)},
                      {"factors", p.factors},
                      {"item_bias", p.item_bias},
                      {"dimension", p.dim()},
                      {"iterations", o.epochs},
                      {"batch_size", p.batch_size},
                      {"learning_rate", p.learning_rate},
                      {"lr_decay", p.lr_decay},
                      {"regularization", p.regularization},
                      {"optimizer", optimizer_name(p.optimizer)},
                      {"negatives", p.negatives},
                      {"negative_exp", p.negative_exp},
                      {"init_std", o.init_std},
                      {"seed", o.seed}};
  if (p.loss == BatchLoss::kBpr) {
    j["reject_seen"] = p.reject_seen;
    j["hard_negatives"] = p.hard_negatives;
  } else if (p.loss == BatchLoss::kCcl) {
    j["margin"] = p.margin;
    j["negative_weight"] = p.negative_weight;
    j["history_weight"] = p.history_weight;
    j["dropout"] = p.dropout;
    j["in_batch"] = p.in_batch;
  } else {
    j["temperature"] = p.temperature;
    j["in_batch"] = p.in_batch;
    j["logq"] = p.logq;
    j["normalize"] = p.normalize;
  }
  return j;
}

void check_finite_factors(const Matrix& m, const char* side, int epoch) {
  if (!all_finite(m))
    fail("epoch {} produced non-finite {} factors (NaN or infinity); lower model.learning_rate "
         "or raise model.regularization",
         epoch, side);
}

namespace {

// The optimiser's arrays, then CCL's history map and its moments (factors × factors).
const char* const kStateArrays[] = {"user_m", "user_v", "item_m", "item_v",
                                    "history_map", "history_map_m", "history_map_v"};
constexpr int kNumStateArrays = 7;

std::vector<float>& state_array(backend::cpu::OptimizerState& s, int k) {
  switch (k) {
    case 0: return s.user_m;
    case 1: return s.user_v;
    case 2: return s.item_m;
    case 3: return s.item_v;
    case 4: return s.map;
    case 5: return s.map_m;
    default: return s.map_v;
  }
}

}  // namespace

TrainingState batch_state(int epochs_done, double last_loss,
                              backend::cpu::OptimizerState optimizer, int dim) {
  TrainingState s;
  s.values = {{"epochs_done", epochs_done}, {"last_loss", last_loss}, {"steps", optimizer.steps}};
  for (int k = 0; k < kNumStateArrays; ++k) {
    std::vector<float>& a = state_array(optimizer, k);
    if (a.empty()) continue;
    Matrix m;
    m.cols = dim;
    m.rows = static_cast<int64_t>(a.size()) / dim;
    m.data = std::move(a);
    s.arrays[kStateArrays[k]] = std::move(m);
  }
  return s;
}

backend::cpu::OptimizerState optimizer_state(TrainingState state) {
  backend::cpu::OptimizerState o;
  o.steps = state.values.value("steps", int64_t{0});
  for (int k = 0; k < kNumStateArrays; ++k) {
    const auto it = state.arrays.find(kStateArrays[k]);
    if (it != state.arrays.end()) state_array(o, k) = std::move(it->second.data).take();
  }
  return o;
}

void check_batch_state(const backend::BatchParams& p, const TrainingState& state, int64_t n_users,
                       int64_t n_items) {
  const nlohmann::json& v = state.values;
  if (!v.is_object()) fail("its model state is not a JSON object");
  for (const char* name : {"epochs_done", "steps"})
    if (v.contains(name) && !(v[name].is_number_integer() && v[name].get<int64_t>() >= 0))
      fail("its model state's {} is {}; expected a whole number >= 0", name, v[name].dump());
  if (v.contains("last_loss") && !v["last_loss"].is_number())
    fail("its model state's last_loss is {}; expected a number", v["last_loss"].dump());
  const bool agg = p.loss == BatchLoss::kCcl && p.history_weight > 0;
  const bool uses_v = p.optimizer != Optimizer::kSgd, uses_m = p.optimizer == Optimizer::kAdam;
  const int64_t d = p.dim(), nm = int64_t{p.factors} * p.factors;
  // Expected sizes of the optimiser's arrays (-1: this model keeps no such array).
  const int64_t sizes[kNumStateArrays] = {
      uses_m ? n_users * d : -1, uses_v ? n_users * d : -1, uses_m ? n_items * d : -1,
      uses_v ? n_items * d : -1, agg ? nm : -1, agg && uses_m ? nm : -1, agg && uses_v ? nm : -1};
  for (const auto& [name, m] : state.arrays) {
    if (name == "user_rows") {
      if (!agg || m.rows != n_users || m.cols != d)
        fail("its own user rows (model.user_rows.npy, {} × {}) do not fit this model{}", m.rows,
             m.cols,
             agg ? fmt::format(" ({} users × {} factors)", n_users, d)
                 : " (only ccl with model.history_weight keeps them)");
      continue;
    }
    const auto* known = std::find_if(std::begin(kStateArrays), std::end(kStateArrays),
                                     [&name = name](const char* a) { return name == a; });
    if (known == std::end(kStateArrays))
      fail("it holds an array model.{}.npy that {} models do not keep", name, loss_name(p.loss));
    const int k = static_cast<int>(known - std::begin(kStateArrays));
    const int64_t size = m.rows * m.cols;
    if (sizes[k] < 0)
      fail("it holds model.{}.npy, which {} with this optimiser{} does not keep", name,
           loss_name(p.loss), agg ? "" : " and without model.history_weight");
    if (size != sizes[k] || static_cast<int64_t>(m.data.size()) != size)
      fail("its model.{}.npy holds {} values; this model's has {}", name, size, sizes[k]);
  }
  // The moments: all of those the optimiser keeps, or none (a model that has not stepped).
  int moments = 0, kept = 0;
  for (int k = 0; k < 4; ++k)
    if (sizes[k] >= 0) {
      ++kept;
      moments += state.arrays.count(kStateArrays[k]) > 0 ? 1 : 0;
    }
  if (moments != 0 && moments != kept)
    fail("it holds {} of the optimiser's {} moment arrays (model.user_m.npy, ...); expected all "
         "or none",
         moments, kept);
  // The history map: with all the moments its optimiser keeps, or absent with its moments.
  const bool map = state.arrays.count("history_map") > 0;
  for (int k = 5; k < 7; ++k)
    if (sizes[k] >= 0 && (state.arrays.count(kStateArrays[k]) > 0) != map)
      fail("it holds the history map (model.history_map.npy) {} its moments (model.{}.npy)",
           map ? "without" : "not, but", kStateArrays[k]);
}

Matrix take_user_rows(TrainingState& state, const Matrix& users, bool aggregating) {
  Matrix rows;
  const auto it = state.arrays.find("user_rows");
  if (it == state.arrays.end()) return rows;
  RF_ASSERT(aggregating && it->second.rows == users.rows && it->second.cols == users.cols,
            "resume: the checkpoint's user rows do not fit the model");
  rows = std::move(it->second);
  state.arrays.erase(it);
  return rows;
}

void assign_keeping_storage(Matrix& users, Matrix served) {
  if (users.rows == served.rows && users.cols == served.cols && !users.data.empty())
    std::copy(served.data.begin(), served.data.end(), users.data.begin());
  else
    users = std::move(served);
}

BatchModel::BatchModel(BatchOptions options, int threads)
    : o_(std::move(options)), threads_(threads) {}

BatchModel::~BatchModel() = default;

void BatchModel::init(int64_t n_users, int64_t n_items) {
  {
    const auto& p = o_.params;
    const double d = p.dim(), f = sizeof(float), rows = static_cast<double>(n_users + n_items);
    const double state = p.optimizer == backend::Optimizer::kAdam      ? 2
                         : p.optimizer == backend::Optimizer::kAdagrad ? 1
                                                                       : 0;
    const double b = static_cast<double>(p.batch_size), c = b + p.negatives;
    std::string lower;
    const int threads = buffer_threads(threads_, &lower);  // and OpenBLAS's pool
    check_memory(fmt::format("{} with model.factors {}", type(), p.factors),
                 {{"factors", (rows + (aggregating() ? static_cast<double>(n_users) : 0.0)) * d * f},
                  {"optimizer state", state * rows * d * f},
                  {"batch buffers", f * (b * c + 2 * (b + c) * d)},
                  {fmt::format("buffers of {} threads", threads),
                   threads * (kPerThreadReserve + f * (128 * 2048 + 128 * d + 128 * 1024))}},
                 "model.factors, model.batch_size or " + lower);
  }
  std::tie(users_, items_) = initial_embeddings(o_, n_users, n_items);
  if (aggregating()) rows_ = users_;  // the served vectors are aggregated after each epoch
  if (trainer_) trainer_->reset_state();
  resumed_state_.reset();
  epochs_done_ = 0;
  last_loss_ = 0;
}

TrainingState BatchModel::training_state() const {
  TrainingState s =
      batch_state(epochs_done_, last_loss_,
                  trainer_          ? trainer_->optimizer_state()
                  : resumed_state_ ? *resumed_state_
                                   : backend::cpu::OptimizerState{},
                  o_.params.dim());
  // With aggregation the checkpoint's user factors are the served vectors; the users' own rows
  // are what training continues from.
  if (aggregating()) s.arrays["user_rows"] = rows_;
  return s;
}

void BatchModel::resume(Matrix users, Matrix items, int iterations_done, TrainingState state) {
  check_batch_state(o_.params, state, users.rows, items.rows);
  // Aggregating: the users' own rows from the state (without them, as set_factors: the served
  // vectors, and a fresh history map).
  Matrix rows = take_user_rows(state, users, aggregating());
  set_factors(std::move(users), std::move(items));
  if (rows.rows > 0) rows_ = std::move(rows);
  epochs_done_ = iterations_done;
  last_loss_ = state.values.value("last_loss", 0.0);
  resumed_state_ = std::make_unique<backend::cpu::OptimizerState>(optimizer_state(std::move(state)));
  if (trainer_) {
    trainer_->set_optimizer_state(std::move(*resumed_state_), users_.rows, items_.rows);
    resumed_state_.reset();
  }
}

void BatchModel::iterate(const data::Csr& user_items, const data::Csr&) {
  if (!trainer_ || trained_on_ != &user_items) {
    if (user_items.nnz() == 0) fail("{} needs at least one training interaction", type());
    trainer_ = std::make_unique<backend::cpu::BatchTrainerCpu>(o_.params, user_items, threads_);
    trained_on_ = &user_items;
    if (resumed_state_) {
      trainer_->set_optimizer_state(std::move(*resumed_state_), users_.rows, items_.rows);
      resumed_state_.reset();
    }
  }
  ++epochs_done_;
  last_loss_ = trainer_->epoch(aggregating() ? rows_ : users_, items_, epochs_done_, o_.seed).loss;
  check_finite_factors(aggregating() ? rows_ : users_, "user", epochs_done_);
  check_finite_factors(items_, "item", epochs_done_);
  if (aggregating()) {
    assign_keeping_storage(users_, backend::cpu::aggregate_users(o_.params, rows_,
                                                                 trainer_->history_map(), items_,
                                                                 user_items, threads_));
    check_finite_factors(users_, "aggregated user", epochs_done_);
  }
}

double BatchModel::loss(const data::Csr&, const data::Csr&) const { return last_loss_; }

void BatchModel::set_factors(Matrix users, Matrix items) {
  RF_ASSERT(users.cols == o_.params.dim() && items.cols == o_.params.dim(),
            "set_factors: factor count differs from the model's dimension");
  users_ = std::move(users);
  items_ = std::move(items);
  // Aggregating: training continues from the given (served) vectors as the users' own rows,
  // with a fresh history map.
  if (aggregating()) rows_ = users_;
  if (trainer_) trainer_->reset_state();
  resumed_state_.reset();
}

Matrix BatchModel::fold_in_rows(const data::Csr& rows) const {
  // The sampler of the training data when there is one, else uniform over the items.
  if (trainer_) return backend::cpu::fold_in(o_.params, rows, items_, trainer_->sampler(), o_.seed, threads_);
  const backend::cpu::ItemSampler uniform(std::vector<int64_t>(static_cast<size_t>(items_.rows), 0), 0.0);
  return backend::cpu::fold_in(o_.params, rows, items_, uniform, o_.seed, threads_);
}

nlohmann::json BatchModel::describe() const { return describe_batch(o_); }

std::unique_ptr<Model> make_batch_model(const BatchOptions& options, const Context& ctx) {
  return ctx.dispatch(
      [&]() -> std::unique_ptr<Model> {
        return std::make_unique<BatchModel>(options, ctx.threads());
      },
      [&]() -> std::unique_ptr<Model> { return std::make_unique<BatchModelCuda>(options, ctx); });
}

}  // namespace recforge::models
