#include "dist/ials_dist.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "dist/errors.h"
#include "dist/ials_dist_cuda.h"
#include "models/ials/ials_cpu.h"

namespace recforge::dist {

namespace cpu = backend::cpu;

Partition::Partition(std::vector<int64_t> starts) : starts_(std::move(starts)) {
  RF_ASSERT(starts_.size() >= 2 && starts_.front() == 0 &&
                std::is_sorted(starts_.begin(), starts_.end()),
            "Partition: starts");
}

Partition Partition::even(int64_t n, int ranks) {
  std::vector<int64_t> starts(static_cast<size_t>(ranks) + 1);
  // ⌊n·r/P⌋ without overflow: n = qP + m gives qr + ⌊mr/P⌋, with mr < P² < 2^62.
  const int64_t q = n / ranks, m = n % ranks;
  for (int r = 0; r <= ranks; ++r) starts[static_cast<size_t>(r)] = q * r + m * r / ranks;
  return Partition(std::move(starts));
}

int Partition::owner(int64_t row) const {
  RF_ASSERT(row >= 0 && row < rows(), "Partition::owner: row out of range");
  // The last range starting at or before `row` that is not empty.
  return static_cast<int>(std::upper_bound(starts_.begin(), starts_.end(), row) - starts_.begin()) - 1;
}

RowExchange::RowExchange(const Comm& comm, data::Csr& r, const Partition& other,
                         double targeted_below)
    : comm_(&comm), n_other_(other.rows()) {
  const int P = comm.size(), me = comm.rank();
  RF_ASSERT(other.ranks() == P, "RowExchange: partition of another job size");
  const int64_t n_other = other.rows();
  const Range own = other.range(me);
  other_starts_ = other.starts();
  // The distinct columns of r, sorted.
  std::vector<uint8_t> used(static_cast<size_t>(n_other), 0);
  for (const data::index_t c : r.indices) used[static_cast<size_t>(c)] = 1;
  std::vector<int64_t> needed;
  for (int64_t c = 0; c < n_other; ++c)
    if (used[static_cast<size_t>(c)]) needed.push_back(c);
  used = {};
  int64_t from_others = 0;
  for (const int64_t c : needed) from_others += (c < own.begin || c >= own.end) ? 1 : 0;
  int64_t v[2] = {n_other - own.size(), from_others};
  comm.allreduce_sum(v, 2);
  volume_.allgather = v[0];
  volume_.targeted = v[1];
  targeted_ = P > 1 && static_cast<double>(volume_.targeted) <
                           targeted_below * static_cast<double>(volume_.allgather);
  if (!targeted_) {
    rows_ = n_other;
    return;
  }
  // Requests, grouped by owner (needed is sorted, owners' ranges are contiguous and ordered).
  std::vector<int64_t> request_counts(static_cast<size_t>(P), 0);
  for (const int64_t c : needed) ++request_counts[static_cast<size_t>(other.owner(c))];
  const std::vector<int64_t> requested = comm.alltoallv(needed, request_counts, &send_counts_);
  send_rows_.resize(requested.size());
  for (size_t j = 0; j < requested.size(); ++j) {
    RF_ASSERT(requested[j] >= own.begin && requested[j] < own.end,
              "RowExchange: a row requested from the wrong owner");
    send_rows_[j] = requested[j] - own.begin;
  }
  recv_counts_ = request_counts;
  rows_ = static_cast<int64_t>(needed.size());
  // Columns become positions in `needed` (the order rows arrive in: by owner, then sorted).
  std::vector<data::index_t> position(static_cast<size_t>(n_other), -1);
  for (size_t j = 0; j < needed.size(); ++j)
    position[static_cast<size_t>(needed[j])] = static_cast<data::index_t>(j);
  for (data::index_t& c : r.indices) c = position[static_cast<size_t>(c)];
  r.cols = rows_;
  needed_ = std::move(needed);
}

data::Csr RowExchange::with_global_columns(const data::Csr& r) const {
  data::Csr g = r;
  if (!targeted_) return g;
  g.cols = n_other_;
  for (data::index_t& c : g.indices) c = static_cast<data::index_t>(needed_[static_cast<size_t>(c)]);
  return g;
}

void RowExchange::exchange(const Matrix& own, Matrix& out) const {
  const int64_t k = own.cols;
  out.cols = k;
  out.rows = rows_;
  // The rows land in out's own storage (reused from the last exchange: no second table).
  auto into = [&](int64_t total) {
    RF_ASSERT(total == rows_ * k, "RowExchange: received another number of values");
    out.data.resize(static_cast<size_t>(total));
    return out.data.data();
  };
  if (!targeted_) {
    comm_->allgatherv_into(own.data.data(), static_cast<int64_t>(own.data.size()), into);
    return;
  }
  std::vector<float> send(send_rows_.size() * static_cast<size_t>(k));
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < static_cast<int64_t>(send_rows_.size()); ++j)
    std::copy(own.row(send_rows_[j]), own.row(send_rows_[j]) + k, send.begin() + j * k);
  std::vector<int64_t> counts(send_counts_.size());
  for (size_t r = 0; r < counts.size(); ++r) counts[r] = send_counts_[r] * k;
  comm_->alltoallv_into(send.data(), counts, into);
}

IalsDist::IalsDist(const models::IalsOptions& options, int threads, const Comm& comm,
                   IalsShard& shard, const Context* gpu)
    : o_(options),
      threads_(threads),
      comm_(comm),
      shard_(shard),
      for_users_(comm, shard.user_items, shard.item_parts),
      for_items_(comm, shard.item_users, shard.user_parts) {
  RF_ASSERT(shard.user_items.rows == shard.users.size() && shard.item_users.rows == shard.items.size(),
            "IalsDist: shard rows");
  if (o_.unobserved_exp != 0) {
    const std::vector<float> all = cpu::popularity_weights(shard.item_counts, o_.unobserved_exp);
    item_w_own_.assign(all.begin() + shard.items.begin, all.begin() + shard.items.end);
  }
  if (gpu) gpu_ = IalsDistGpu::make(o_, *gpu, comm, shard_, for_users_, for_items_, item_w_own_);
}

IalsDist::~IalsDist() = default;

void IalsDist::sync() const {
  if (!gpu_ || !stale_) return;
  gpu_->get_rows(users_, items_);
  stale_ = false;
}

const Matrix& IalsDist::users() const {
  sync();
  return users_;
}

const Matrix& IalsDist::items() const {
  sync();
  return items_;
}

int64_t IalsDist::device_bytes_sent() const { return gpu_ ? gpu_->bytes_sent() : 0; }

std::string IalsDist::device() const { return gpu_ ? gpu_->description() : std::string("cpu"); }

void IalsDist::init(const Start& start) {
  const int k = o_.factors;
  users_ = models::random_factors(shard_.users.size(), k, o_.init_std, derive_seed(o_.seed, 1),
                                  shard_.users.begin);
  items_ = models::random_factors(shard_.items.size(), k, o_.init_std, derive_seed(o_.seed, 2),
                                  shard_.items.begin);
  if (start) start(users_, shard_.users.begin, items_, shard_.items.begin);
  iterations_done_ = 0;
  users_needed_fresh_ = false;
  if (gpu_) gpu_->set_rows(users_, items_);
}

namespace {

// Every rank stops with the same sentence when any rank's factors are not finite.
void check_finite(const Comm& comm, const Matrix& m, const char* side, int iteration) {
  bool bad = false;
  for (const float v : m.data)
    if (!std::isfinite(v)) {
      bad = true;
      break;
    }
  if (comm.any(bad))
    fail_collective("iALS iteration {} produced non-finite {} factors (NaN or infinity); check the "
         "interaction weights and lower model.alpha or model.init_std, or raise "
         "model.regularization",
         iteration, side);
}

// The k×k Gram matrix α Σ c_j y_j y_jᵀ over every rank's own rows, the same bits everywhere.
std::vector<float> global_gram(const Comm& comm, const Matrix& own, double alpha,
                               const std::vector<float>& weights, int k) {
  std::vector<float> g = own.rows > 0 ? cpu::weighted_gram(own, alpha, weights)
                                      : std::vector<float>(static_cast<size_t>(k) * k, 0.f);
  comm.allreduce_sum(g.data(), static_cast<int64_t>(g.size()));
  return g;
}

}  // namespace

void IalsDist::half(const char* side, const data::Csr& r, const RowExchange& ex,
                    Matrix& other_own, Matrix& mine, Matrix& other_needed,
                    const std::vector<float>& other_w, const std::vector<float>& mine_w,
                    int64_t rows_global, int64_t other_global) {
  const int k = o_.factors;
  const cpu::IalsSolveParams p = cpu::half_params(o_.solve, iterations_done_, side);
  std::vector<float> g = global_gram(comm_, other_own, o_.solve.unobserved_weight, other_w, k);
  if (cpu::use_eigenframe(p, k, rows_global, other_global)) {
    std::vector<float> eig(static_cast<size_t>(k));
    if (comm_.rank() == 0) eig = cpu::gram_eigen(g, k, p.where);  // g becomes the basis
    comm_.broadcast(g.data(), static_cast<int64_t>(g.size() * sizeof(float)), 0);
    comm_.broadcast(eig.data(), static_cast<int64_t>(eig.size() * sizeof(float)), 0);
    cpu::rotate_rows(other_own, g, threads_);
    cpu::rotate_rows(mine, g, threads_);
    ex.exchange(other_own, other_needed);
    cpu::solve_rows(r, other_needed, mine, p, threads_, cpu::GramView{nullptr, eig.data()},
                    mine_w);
  } else {
    ex.exchange(other_own, other_needed);
    cpu::solve_rows(r, other_needed, mine, p, threads_, cpu::GramView{g.data(), nullptr},
                    mine_w);
  }
}

void IalsDist::iterate() {
  ++iterations_done_;
  if (gpu_) {
    gpu_->iterate(iterations_done_);
    stale_ = true;
    return;
  }
  half("user", shard_.user_items, for_users_, items_, users_, items_needed_, item_w_own_, {},
       shard_.n_users, shard_.n_items);
  release(items_needed_);  // not needed before the next iteration: one other table at a time
  check_finite(comm_, users_, "user", iterations_done_);
  half("item", shard_.item_users, for_items_, users_, items_, users_needed_, {}, item_w_own_,
       shard_.n_items, shard_.n_users);
  check_finite(comm_, items_, "item", iterations_done_);
  users_needed_fresh_ = true;
}

double IalsDist::loss() {
  if (gpu_) return gpu_->loss();
  const int k = o_.factors;
  if (!users_needed_fresh_) {
    for_items_.exchange(users_, users_needed_);
    users_needed_fresh_ = true;
  }
  const std::vector<float> gx = global_gram(comm_, users_, 1.0, {}, k);
  const std::vector<float> gy = global_gram(comm_, items_, 1.0, item_w_own_, k);
  double all = 0;
  for (size_t j = 0; j < gx.size(); ++j) all += static_cast<double>(gx[j]) * gy[j];
  double parts[2] = {
      cpu::observed_term(shard_.item_users, items_, users_needed_, o_.solve),
      cpu::regularization_term(shard_.user_items, users_, o_.solve) +
          cpu::regularization_term(shard_.item_users, items_, o_.solve)};
  comm_.allreduce_sum(parts, 2);
  release(users_needed_);
  users_needed_fresh_ = false;
  return parts[0] + o_.solve.unobserved_weight * all + parts[1];
}

void IalsDist::release(Matrix& m) {
  m.data = FloatStore();
  m.rows = 0;
}

void IalsDist::set_own(Matrix users, Matrix items) {
  users_ = std::move(users);
  items_ = std::move(items);
  users_needed_fresh_ = false;
  stale_ = false;
  if (gpu_) gpu_->set_rows(users_, items_);
}

Matrix IalsDist::gather(const Matrix& own, int root) const {
  std::vector<float> mine(own.data.begin(), own.data.end());
  std::vector<float> all = comm_.gatherv(mine, root);
  Matrix m;
  if (comm_.rank() != root) return m;
  m.cols = own.cols;
  m.rows = own.cols > 0 ? static_cast<int64_t>(all.size()) / own.cols : 0;
  m.data = std::move(all);
  return m;
}

Matrix IalsDist::gather_users(int root) const { return gather(users(), root); }
Matrix IalsDist::gather_items(int root) const { return gather(items(), root); }

Matrix IalsDist::allgather_items() const {
  sync();
  Matrix m;
  m.cols = items_.cols;
  comm_.allgatherv_into(items_.data.data(), static_cast<int64_t>(items_.data.size()),
                        [&](int64_t total) {
                          m.data.resize(static_cast<size_t>(total));
                          return m.data.data();
                        });
  m.rows = static_cast<int64_t>(m.data.size()) / std::max<int64_t>(items_.cols, 1);
  return m;
}

}  // namespace recforge::dist
