#include "models/batch/batch_cuda.h"

#include <vector>

#include "core/error.h"

namespace recforge::models {

BatchModelCuda::BatchModelCuda(BatchOptions options, const Context& ctx)
    : o_(std::move(options)), device_name_(ctx.device().name()), threads_(ctx.threads()) {
  RF_ASSERT(ctx.device().kind == Device::Kind::kCuda, "BatchModelCuda needs a CUDA context");
  gpu_ = ctx.cuda();
}

BatchModelCuda::~BatchModelCuda() = default;

void BatchModelCuda::create_state(int64_t n_users, int64_t n_items) {
  state_.reset();  // free the old state's GPU memory before allocating the new one
  state_ = backend::cuda::make_batch_trainer_cuda(gpu_, n_users, n_items, o_.params);
}

void BatchModelCuda::init(int64_t n_users, int64_t n_items) {
  // The same host draw as the CPU model, so both devices start from identical factors.
  auto [users, items] = initial_embeddings(o_, n_users, n_items);
  create_state(n_users, n_items);
  epochs_done_ = 0;
  last_loss_ = 0;
  set_factors(std::move(users), std::move(items));
}

void BatchModelCuda::iterate(const data::Csr& user_items, const data::Csr&) {
  RF_ASSERT(state_, "BatchModelCuda::iterate before init");
  if (!sampler_ || trained_on_ != &user_items) {
    if (user_items.nnz() == 0) fail("{} needs at least one training interaction", type());
    sampler_ = std::make_unique<backend::cpu::ItemSampler>(backend::cpu::item_counts(user_items),
                                                           o_.params.negative_exp);
    trained_on_ = &user_items;
  }
  stale_ = true;  // also when the epoch fails half-way
  ++epochs_done_;
  last_loss_ = state_->epoch(user_items, *sampler_, epochs_done_, o_.seed).loss;
  if (const int bad = state_->nonfinite()) {
    refresh();
    if (bad & 1) check_finite_factors(aggregating() ? rows_ : users_, "user", epochs_done_);
    check_finite_factors(items_, "item", epochs_done_);
  }
  if (aggregating()) {  // the served vectors, as the CPU model makes them after each epoch
    refresh();
    check_finite_factors(users_, "aggregated user", epochs_done_);
  }
}

double BatchModelCuda::loss(const data::Csr&, const data::Csr&) const { return last_loss_; }

void BatchModelCuda::refresh() const {
  if (!stale_) return;
  if (aggregating()) {
    // The users' own rows and the history map from the GPU; the served vectors aggregated on the
    // host by the CPU model's code (stale_ is set only by an epoch, so trained_on_ is known).
    state_->get_factors(rows_, items_);
    assign_keeping_storage(users_, backend::cpu::aggregate_users(o_.params, rows_,
                                                                 state_->history_map(), items_,
                                                                 *trained_on_, threads_));
  } else {
    state_->get_factors(users_, items_);
  }
  stale_ = false;
}

const Matrix& BatchModelCuda::user_factors() const {
  refresh();
  return users_;
}

const Matrix& BatchModelCuda::item_factors() const {
  refresh();
  return items_;
}

void BatchModelCuda::set_factors(Matrix users, Matrix items) {
  RF_ASSERT(users.cols == o_.params.dim() && items.cols == o_.params.dim(),
            "set_factors: factor count differs from the model's dimension");
  if (!state_) create_state(users.rows, items.rows);
  state_->set_factors(users, items);  // also drops the optimiser state, as the CPU model does
  users_ = std::move(users);
  items_ = std::move(items);
  // Aggregating: training continues from the given (served) vectors as the users' own rows,
  // with a fresh history map (set_factors above), as on the CPU.
  if (aggregating()) rows_ = users_;
  stale_ = false;
}

TrainingState BatchModelCuda::training_state() const {
  RF_ASSERT(state_, "BatchModelCuda::training_state before init");
  TrainingState s =
      batch_state(epochs_done_, last_loss_, state_->optimizer_state(), o_.params.dim());
  // With aggregation the checkpoint's user factors are the served vectors; the users' own rows
  // are what training continues from (as the CPU model's state).
  if (aggregating()) {
    refresh();
    s.arrays["user_rows"] = rows_;
  }
  return s;
}

void BatchModelCuda::resume(Matrix users, Matrix items, int iterations_done, TrainingState state) {
  check_batch_state(o_.params, state, users.rows, items.rows);
  // Aggregating: the users' own rows from the state (without them, as set_factors: the served
  // vectors, and a fresh history map).
  Matrix rows = take_user_rows(state, users, aggregating());
  set_factors(std::move(users), std::move(items));  // creates the GPU state, zeroes the optimiser's
  if (rows.rows > 0) {
    state_->set_factors(rows, items_);  // the own rows on the GPU (the map stays the identity)
    rows_ = std::move(rows);
  }
  epochs_done_ = iterations_done;
  last_loss_ = state.values.value("last_loss", 0.0);
  state_->set_optimizer_state(optimizer_state(std::move(state)));
}

Matrix BatchModelCuda::fold_in_rows(const data::Csr& rows) const {
  RF_ASSERT(state_, "BatchModelCuda::fold_in_rows before init or set_factors");
  const Matrix& items = item_factors();
  // The sampler of the training data when there is one, else uniform over the items (as the
  // CPU model does).
  if (sampler_) return backend::cpu::fold_in(o_.params, rows, items, *sampler_, o_.seed, threads_);
  const backend::cpu::ItemSampler uniform(std::vector<int64_t>(static_cast<size_t>(items.rows), 0),
                                          0.0);
  return backend::cpu::fold_in(o_.params, rows, items, uniform, o_.seed, threads_);
}

nlohmann::json BatchModelCuda::describe() const {
  nlohmann::json j = describe_batch(o_);
  j["device"] = device_name_;
  return j;
}

}  // namespace recforge::models
