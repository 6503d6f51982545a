#include "data/interactions.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace recforge::data {

IdMap::IdMap(std::vector<std::string> ids) : ids_(std::move(ids)) {
  if (size() > kMaxIds)
    fail("{} distinct ids; recforge numbers users and items with 32-bit integers, so a data set "
         "holds at most {} users and {} items",
         size(), kMaxIds, kMaxIds);
}

IdMap::IdMap(IdMap&& other) noexcept
    : ids_(std::move(other.ids_)),
      lookup_(std::move(other.lookup_)),
      built_(other.built_.exchange(false)) {
  other.lookup_.clear();
}

IdMap& IdMap::operator=(const IdMap& other) {
  if (this != &other) *this = IdMap(other);
  return *this;
}

IdMap& IdMap::operator=(IdMap&& other) noexcept {
  if (this != &other) {
    ids_ = std::move(other.ids_);
    lookup_ = std::move(other.lookup_);
    built_.store(other.built_.exchange(false));
    other.lookup_.clear();
  }
  return *this;
}

void IdMap::build_lookup() const {
  if (built_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(build_mutex_);
  if (built_.load(std::memory_order_relaxed)) return;
  lookup_.clear();
  lookup_.reserve(ids_.size());
  for (size_t i = 0; i < ids_.size(); ++i) lookup_.emplace(ids_[i], static_cast<index_t>(i));
  built_.store(true, std::memory_order_release);
}

std::optional<index_t> IdMap::find(std::string_view id) const {
  build_lookup();
  auto it = lookup_.find(id);
  if (it == lookup_.end()) return std::nullopt;
  return it->second;
}

std::vector<index_t> IdMap::compact(const std::vector<uint8_t>& keep) {
  RF_ASSERT(keep.size() == ids_.size(), "IdMap::compact: mask size mismatch");
  std::vector<index_t> old_to_new(ids_.size(), -1);
  std::vector<std::string> kept;
  for (size_t i = 0; i < ids_.size(); ++i) {
    if (!keep[i]) continue;
    old_to_new[i] = static_cast<index_t>(kept.size());
    kept.push_back(std::move(ids_[i]));
  }
  ids_ = std::move(kept);
  lookup_.clear();
  built_.store(false);
  return old_to_new;
}

void Interactions::reserve(offset_t n, bool with_times) {
  users.reserve(n);
  items.reserve(n);
  weights.reserve(n);
  if (with_times) {
    with_times_ = true;
    times.reserve(n);
  }
}

void Interactions::remap(const std::vector<index_t>& user_map, const std::vector<index_t>& item_map) {
  offset_t out = 0;
  const bool t = has_times();
  for (offset_t k = 0; k < size(); ++k) {
    const index_t u = user_map[users[k]], i = item_map[items[k]];
    if (u < 0 || i < 0) continue;
    users[out] = u;
    items[out] = i;
    weights[out] = weights[k];
    if (t) times[out] = times[k];
    ++out;
  }
  users.resize(out);
  items.resize(out);
  weights.resize(out);
  if (t) times.resize(out);
}

offset_t combine_duplicates(Interactions& x, int64_t n_users, Duplicates rule) {
  const offset_t n = x.size();
  if (n == 0) return 0;
  // Stable counting sort by user keeps file order inside each user: O(nnz + users).
  std::vector<offset_t> start(static_cast<size_t>(n_users) + 1, 0);
  for (offset_t k = 0; k < n; ++k) ++start[x.users[k] + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<offset_t> order(n);
  {
    std::vector<offset_t> pos(start.begin(), start.end() - 1);
    for (offset_t k = 0; k < n; ++k) order[pos[x.users[k]]++] = k;
  }
  const bool t = x.has_times();
  Interactions out = x.empty_like();
  out.reserve(n, t);
  for (int64_t u = 0; u < n_users; ++u) {
    auto b = order.begin() + start[u], e = order.begin() + start[u + 1];
    // Within a user: by item, then (for "last") by time, then file order.
    std::stable_sort(b, e, [&](offset_t a, offset_t c) {
      if (x.items[a] != x.items[c]) return x.items[a] < x.items[c];
      return t && x.times[a] < x.times[c];
    });
    for (auto it = b; it != e;) {
      auto run_end = it + 1;
      while (run_end != e && x.items[*run_end] == x.items[*it]) ++run_end;
      float w = x.weights[*it];
      int64_t time = t ? x.times[*it] : 0;
      for (auto r = it + 1; r != run_end; ++r) {
        const float wr = x.weights[*r];
        switch (rule) {
          case Duplicates::kSum: w += wr; break;
          case Duplicates::kMax: w = std::max(w, wr); break;
          case Duplicates::kLast: w = wr; break;
        }
        if (t) time = std::max(time, x.times[*r]);
      }
      out.push(static_cast<index_t>(u), x.items[*it], w, time);
      it = run_end;
    }
  }
  const offset_t removed = n - out.size();
  x = std::move(out);
  return removed;
}

void check_combined_weights(const Interactions& x, const IdMap& users, const IdMap& items,
                            const std::string& file) {
  for (offset_t k = 0; k < x.size(); ++k) {
    if (std::isfinite(x.weights[k]))
      continue;
    const size_t user = users.external(x.users[k]).size();
    fail("{}: the weights of a user (an id of {} byte{}) and item \"{}\" sum to {}, past "
         "float32's largest value 3.4e38 (data.duplicates: sum adds the weights of repeated "
         "pairs); lower the weights or set data.duplicates: max",
         file, user, user == 1 ? "" : "s", items.external(x.items[k]), x.weights[k]);
  }
}

}  // namespace recforge::data
