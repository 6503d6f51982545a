#include "models/ials/ials_cuda.h"

#include "core/error.h"

namespace recforge::models {

namespace {

backend::cuda::IalsCudaSolverOptions gpu_options(const IalsOptions& o) {
  backend::cuda::IalsCudaSolverOptions g;
  g.solve = o.solve;
  g.storage = o.dtype;
  g.streaming = o.streaming;
  g.stream_batch_nnz = o.stream_batch_nnz;
  return g;
}

}  // namespace

IalsCuda::IalsCuda(IalsOptions options, const Context& ctx)
    : o_(std::move(options)), device_name_(ctx.device().name()) {
  RF_ASSERT(ctx.device().kind == Device::Kind::kCuda, "IalsCuda needs a CUDA context");
  if (o_.factors > backend::cuda::max_factors())
    fail("model.factors is {}; the GPU solver supports at most {} factors (use "
         "train.device: cpu for more)",
         o_.factors, backend::cuda::max_factors());
  backend::cuda::check_gpu_solver(o_.factors, o_.solve);  // before any GPU work
  gpu_ = ctx.cuda();
}

IalsCuda::~IalsCuda() = default;

void IalsCuda::create_state(int64_t n_users, int64_t n_items) {
  state_ = backend::cuda::make_ials_cuda_solver(gpu_, n_users, n_items, o_.factors, gpu_options(o_));
}

void IalsCuda::init(int64_t n_users, int64_t n_items) {
  // The same host draw as the CPU model, so both devices start from identical factors.
  auto [users, items] = initial_factors(o_, n_users, n_items);
  create_state(n_users, n_items);
  item_weights_.clear();
  iterations_done_ = 0;
  set_factors(std::move(users), std::move(items));
}

void IalsCuda::iterate(const data::Csr& user_items, const data::Csr& item_users) {
  RF_ASSERT(state_, "IalsCuda::iterate before init");
  if (o_.unobserved_exp != 0 && item_weights_.empty())
    item_weights_ = backend::cpu::popularity_weights(item_users, o_.unobserved_exp);
  stale_ = true;  // also when the iteration fails half-way
  state_->iterate(user_items, item_users, item_weights_, ++iterations_done_);
}

double IalsCuda::loss(const data::Csr& user_items, const data::Csr& item_users) const {
  RF_ASSERT(state_, "IalsCuda::loss before init");
  std::vector<float> weights = item_weights_;
  if (o_.unobserved_exp != 0 && weights.empty())
    weights = backend::cpu::popularity_weights(item_users, o_.unobserved_exp);
  return state_->loss(user_items, item_users, weights);
}

void IalsCuda::refresh() const {
  if (!stale_) return;
  state_->get_factors(users_, items_);
  stale_ = false;
}

const Matrix& IalsCuda::user_factors() const {
  refresh();
  return users_;
}

const Matrix& IalsCuda::item_factors() const {
  refresh();
  return items_;
}

void IalsCuda::set_item_counts(const std::vector<int64_t>& counts) {
  item_weights_ = backend::cpu::popularity_weights(counts, o_.unobserved_exp);
}

void IalsCuda::set_factors(Matrix users, Matrix items) {
  RF_ASSERT(users.cols == items.cols, "set_factors: factor counts differ");
  RF_ASSERT(users.cols == o_.factors, "set_factors: factor count differs from model.factors");
  if (!state_) create_state(users.rows, items.rows);
  state_->set_factors(users, items);
  if (o_.dtype == backend::cuda::Storage::kFloat32) {
    users_ = std::move(users);
    items_ = std::move(items);
    stale_ = false;
  } else {
    stale_ = true;  // the host copies must show the rounded values the GPU holds
  }
}

TrainingState IalsCuda::training_state() const {
  TrainingState s;
  s.values["iterations_done"] = iterations_done_;
  return s;
}

void IalsCuda::resume(Matrix users, Matrix items, int iterations_done, TrainingState) {
  set_factors(std::move(users), std::move(items));  // creates the GPU state when needed
  item_weights_.clear();  // recomputed from the interactions by the next iterate()
  iterations_done_ = iterations_done;
}

std::vector<Explanation> IalsCuda::explain(const data::Csr& row, const float* user,
                                           const std::vector<int64_t>& items) const {
  return backend::cpu::explain_user(row, item_factors(), o_.solve, item_weights_, user, items);
}

Matrix IalsCuda::fold_in_rows(const data::Csr& rows) const {
  RF_ASSERT(state_, "IalsCuda::fold_in_rows before init or set_factors");
  return state_->fold_in(rows, item_weights_);
}

nlohmann::json IalsCuda::describe() const {
  nlohmann::json j = describe_ials(o_);
  j["device"] = device_name_;
  if (state_ && !state_->data_mode().empty()) {  // "resident" or "streamed"
    const std::string mode = state_->data_mode();
    j["gpu_data"] = mode.substr(0, mode.find(' '));
  }
  return j;
}

std::string IalsCuda::data_mode() const { return state_ ? state_->data_mode() : std::string(); }

}  // namespace recforge::models
